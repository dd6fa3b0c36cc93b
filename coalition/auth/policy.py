"""Pure permission decisions over the CRUD grants of the documented LDAP templates.

A login holds a set of grants, named after the `ldaptemplate<grant>` keys: `createjob`,
`viewjob`, `editjob`, `deletejob` cover the login's own jobs (a job's `user` is its owner),
and the `...global` variants cover every job (chapter 3.1.3 of the 4.0 documentation).
Actions that are not about one job's data follow the closest grant:

* `owner` (give a job to another user) and `workers` (start, stop, delete or re-tag
  workers, name affinities) need `editjobglobal`: they act on everybody's jobs;
* viewing the workers, the affinities, stats and events needs any view grant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

CREATE, VIEW, EDIT, DELETE = "create", "view", "edit", "delete"
OWNER, WORKERS = "owner", "workers"

ACTIONS = (CREATE, VIEW, EDIT, DELETE)
GRANTS = tuple(f"{action}job{scope}" for action in ACTIONS for scope in ("", "global"))


def template_key(grant: str) -> str:
    """The coalition.ini key that defines a grant, e.g. `ldaptemplateeditjobglobal`."""
    return f"ldaptemplate{grant}"


def may(grants: frozenset[str], login: str, action: str, owners: Iterable[str] = ()) -> bool:
    """Whether `login` holding `grants` may take `action` on jobs owned by `owners` (with no
    owners: whether it may take the action at all, on some job)."""
    if action in (OWNER, WORKERS):
        return "editjobglobal" in grants
    own, every = f"{action}job", f"{action}jobglobal"
    if every in grants:
        return True
    if own not in grants:
        return False
    return all(owner == login for owner in owners)


def refusal(grants: frozenset[str], login: str, action: str, owners: Iterable[str] = ()) -> str:
    """Why `may` said no, naming the grant (and so the ini key) that would allow it."""
    if action == OWNER:
        return f"{login} may not give jobs to other users (needs {template_key('editjobglobal')})"
    if action == WORKERS:
        return f"{login} may not operate workers or affinities (needs {template_key('editjobglobal')})"
    others = sorted({o for o in owners if o != login})
    if f"{action}job" in grants and others:
        whose = ", ".join(repr(o) for o in others[:3])
        return f"{login} may not {action} jobs of {whose} (needs {template_key(action + 'jobglobal')})"
    return (
        f"{login} may not {action} jobs (needs {template_key(action + 'job')} "
        f"or {template_key(action + 'jobglobal')})"
    )


def owner_for_new_job(grants: frozenset[str], login: str, requested: str) -> str:
    """The owner of a job `login` creates: without create-global, always the login."""
    if "createjobglobal" in grants and requested:
        return requested
    return login


def view_scope(grants: frozenset[str], login: str) -> str | None:
    """None when every job is visible, else the only owner whose jobs are."""
    return None if "viewjobglobal" in grants else login


def capabilities(grants: frozenset[str]) -> Mapping[str, bool]:
    """What a login may do, in the words the web page needs to show or hide its actions."""
    out: dict[str, bool] = {}
    for action in ACTIONS:
        out[action] = f"{action}job" in grants or f"{action}jobglobal" in grants
        out[f"{action}_all"] = f"{action}jobglobal" in grants
    out["change_owner"] = out["workers"] = "editjobglobal" in grants
    return out
