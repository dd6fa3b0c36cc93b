"""Coalition's legacy submission routes: `/json/addjob` (documented in chapter 9, used by
control.py) and `/xmlrpc/addjob` (Coalition 4), GET or POST, query string or form fields,
chapter 8 attribute names. Both answer the new job's id as text.

Unknown fields are ignored (logged at debug), as Coalition 4 did: submitters in the wild send
extras. `PUT /api/jobs` stays strict, where a typo must not create a job with a default.
"""

from __future__ import annotations

import logging
from typing import Any

import cherrypy

from ..audit import Actor
from ..model import JOB_ALIASES, READ_ONLY, SETTABLE, parse_job_spec
from ..usecases import UseCases
from .auth import CREATE, EDIT, LEGACY, Auth
from .http import form_params
from .router import Raw, Router

log = logging.getLogger("coalition.server")


def known_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields a job has (chapter 8 names included); the others are dropped, and named in
    one debug line (the server's `verbose` shows it) so that a submitter's typo can be found."""
    kept = {}
    unknown = []
    for key, value in fields.items():
        name = JOB_ALIASES.get(key, key)
        if name in SETTABLE or name in READ_ONLY:
            kept[key] = value
        else:
            unknown.append(repr(key[:64]))
    if unknown:
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        log.debug("legacy addjob: ignoring unknown fields %s%s", ", ".join(sorted(unknown)[:10]), more)
    return kept


class LegacyApi:
    """Handlers of the legacy submission routes."""

    def __init__(self, uc: UseCases, auth: Auth):
        self.uc = uc
        self.auth = auth

    def routes(self, router: Router, prefix: str) -> None:
        """Register `<prefix>/addjob`."""
        router.add("GET POST", f"{prefix}/addjob", self.addjob, changes=True)

    def addjob(self, params: dict[str, Any]) -> Raw:
        """Create a job from chapter 8 attributes; answer its id."""
        who = self.auth.identify(LEGACY, cherrypy.request.headers)
        fields = form_params()
        fields.pop("_", None)
        spec = parse_job_spec(known_fields(fields), lenient=True)
        owner = self.auth.owner_for_new_job(who, spec.user)
        if owner != spec.user:
            from dataclasses import replace

            spec = replace(spec, user=owner)
        self.auth.require(who, CREATE)
        self.auth.check_commands(who, [(spec.user, spec.command)])
        job_id = self.uc.operator.submit(
            spec,
            Actor(who.user, cherrypy.request.remote.ip or ""),
            lambda row: self.auth.require(who, EDIT, [row]),
        )
        return Raw(str(job_id).encode())
