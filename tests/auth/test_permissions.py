"""The permission table: users x routes x own/other jobs against the documented example.

Chapter 3.1.3 of the 4.0 documentation: administrators create, view, edit and delete any
job; wranglers create, view and edit any job (but delete none); artists create, view, edit
and delete only their own jobs. `nobody1` is in the directory but in no group.

Every cell runs the request as that user (HTTP Basic against a real slapd) and asserts the
outcome both ways: an allowed cell must answer 200 and have its effect (seen as admin1); a
denied cell must be refused (403, or for lists and forced owners a 200 without the job)
and leave nothing changed.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.authfarm import AuthServer

Y, N = True, False
# action -> user -> (allowed on own job, allowed on another user's job)
EXPECTED: dict[str, dict[str, tuple[bool, bool]]] = {
    "view": {"admin1": (Y, Y), "wrangler1": (Y, Y), "artist1": (Y, N), "nobody1": (N, N)},
    "edit": {"admin1": (Y, Y), "wrangler1": (Y, Y), "artist1": (Y, N), "nobody1": (N, N)},
    "delete": {"admin1": (Y, Y), "wrangler1": (N, N), "artist1": (Y, N), "nobody1": (N, N)},
    # create "other": a job for another user (an artist's job is forced to be his own)
    "create": {"admin1": (Y, Y), "wrangler1": (Y, Y), "artist1": (Y, N), "nobody1": (N, N)},
    # give a job to another user: editjobglobal only
    "owner": {"admin1": (Y, Y), "wrangler1": (Y, Y), "artist1": (N, N), "nobody1": (N, N)},
}
OTHER = {"admin1": "artist1", "wrangler1": "artist1", "artist1": "artist2", "nobody1": "artist1"}
USERS = list(OTHER)
_count = itertools.count(1)


@dataclass
class Cell:
    """One table cell's context: the farm, admin1's client and the acting user's client."""

    farm: AuthServer
    admin: requests.Session
    me: requests.Session
    user: str
    owner: str  # the owner of the job the cell acts on

    def url(self, path: str) -> str:
        return self.farm.url + path

    def job(self, owner: str | None = None, **fields: Any) -> int:
        """A job owned by `owner` (default: the cell's), created by admin1 (create-global)."""
        body = {"title": f"cell-{next(_count)}", "command": "true", "user": owner or self.owner, **fields}
        r = self.admin.put(self.url("/api/jobs"), json=body)
        assert r.status_code == 200, r.text
        return int(r.json())

    def get(self, jid: int) -> dict[str, Any] | None:
        r = self.admin.get(self.url(f"/api/jobs/{jid}"))
        return r.json() if r.status_code == 200 else None

    def run(self, jid: int, exit_code: int = 0) -> None:
        """Run a job once with a scripted worker (picked through a tag only it has)."""
        tag = f"tag{jid}"
        self.admin.post(self.url("/api/jobs"), json={str(jid): {"affinity": tag}}).raise_for_status()
        name = f"w{next(_count)}"
        picked = self.farm.worker("pickjob", {"name": name, "affinity": tag}).json()["job"]
        assert picked is not None and picked["id"] == jid, picked
        log = base64.b64encode(b"hello from the job\n").decode()
        body = {"name": name, "job_id": jid, "event": picked["event"], "exit_code": exit_code, "log": log}
        assert self.farm.worker("endjob", body).status_code == 200


Outcome = tuple[int, bool]  # (HTTP status, whether the action happened / the job was visible)
Case = Callable[[Cell], Outcome]


def _listed(r: requests.Response, jid: int, key: str = "id") -> Outcome:
    if r.status_code != 200:
        return r.status_code, False
    data = r.json()
    rows = data["jobs"] if isinstance(data, dict) else data
    return 200, any(row.get(key) == jid or jid in (row.get("jobs") or []) for row in rows)


# -- view ----------------------------------------------------------------------------------
def list_roots(c: Cell) -> Outcome:
    jid = c.job()
    return _listed(c.me.get(c.url("/api/jobs")), jid)


def list_paged(c: Cell) -> Outcome:
    jid = c.job()
    title = c.get(jid)["title"]  # type: ignore[index]
    return _listed(c.me.get(c.url("/api/jobs"), params={"parent": "all", "text": title}), jid)


def get_job(c: Cell) -> Outcome:
    jid = c.job()
    r = c.me.get(c.url(f"/api/jobs/{jid}"))
    return r.status_code, r.status_code == 200 and r.json()["id"] == jid


def get_job_webfrontend(c: Cell) -> Outcome:
    jid = c.job()
    r = c.me.get(c.url(f"/api/webfrontend/jobs/{jid}"))
    return r.status_code, r.status_code == 200 and r.json()["id"] == jid


def children(c: Cell) -> Outcome:
    group = c.job(command="")
    child = c.job(parent=group)
    r = c.me.get(c.url(f"/api/jobs/{group}/children"))
    return _listed(r, child)


def log(c: Cell) -> Outcome:
    jid = c.job()
    c.run(jid)
    r = c.me.get(c.url(f"/api/jobs/{jid}/log"))
    return r.status_code, r.status_code == 200 and "hello from the job" in r.json()


def log_tail(c: Cell) -> Outcome:
    jid = c.job()
    c.run(jid)
    r = c.me.get(c.url(f"/api/jobs/{jid}/log"), params={"tail": 100})
    return r.status_code, r.status_code == 200 and "hello" in r.json()["data"]


def job_events(c: Cell) -> Outcome:
    jid = c.job()
    c.run(jid)
    r = c.me.get(c.url(f"/api/jobs/{jid}/events"))
    return r.status_code, r.status_code == 200 and len(r.json()) == 1


def events_of_job(c: Cell) -> Outcome:
    jid = c.job()
    c.run(jid)
    return _listed(c.me.get(c.url("/api/events"), params={"job": jid}), jid, "job_id")


def events_all(c: Cell) -> Outcome:
    jid = c.job()
    c.run(jid)
    return _listed(c.me.get(c.url("/api/events"), params={"howlong": 600}), jid, "job_id")


def dependencies(c: Cell) -> Outcome:
    first = c.job()
    second = c.job(dependencies=[first])
    return _listed(c.me.get(c.url(f"/api/jobs/{second}/dependencies")), first)


def children_dependencies(c: Cell) -> Outcome:
    group = c.job(command="")
    one = c.job(parent=group)
    c.job(parent=group, dependencies=[one])
    r = c.me.get(c.url(f"/api/jobs/{group}/childrendependencies"))
    return r.status_code, r.status_code == 200 and any(d["dependency"] == one for d in r.json())


def audit_of_job(c: Cell) -> Outcome:
    jid = c.job()
    r = c.me.get(c.url("/api/audit"), params={"job": jid})
    return _listed(r, jid, "jobs")


def audit_as_events(c: Cell) -> Outcome:
    jid = c.job()
    r = c.me.get(c.url("/api/events"), params={"kind": "audit", "job": jid})
    return _listed(r, jid, "jobs")


# -- edit ----------------------------------------------------------------------------------
def _edit(c: Cell, prefix: str) -> Outcome:
    jid = c.job()
    r = c.me.post(c.url(f"{prefix}/jobs"), json={str(jid): {"title": "renamed"}})
    return r.status_code, c.get(jid)["title"] == "renamed"  # type: ignore[index]


def edit_title(c: Cell) -> Outcome:
    return _edit(c, "/api")


def edit_title_webfrontend(c: Cell) -> Outcome:
    return _edit(c, "/api/webfrontend")


def pause(c: Cell) -> Outcome:
    jid = c.job()
    r = c.me.post(c.url("/api/pausejobs"), json=[jid])
    return r.status_code, c.get(jid)["state"] == "PAUSED"  # type: ignore[index]


def start(c: Cell) -> Outcome:
    jid = c.job(paused=True)
    r = c.me.post(c.url("/api/startjobs"), json=[jid])
    return r.status_code, c.get(jid)["state"] == "WAITING"  # type: ignore[index]


def reset(c: Cell) -> Outcome:
    jid = c.job()
    c.run(jid)
    assert c.get(jid)["state"] == "FINISHED"  # type: ignore[index]
    r = c.me.post(c.url("/api/resetjobs"), json=[jid])
    return r.status_code, c.get(jid)["state"] == "WAITING"  # type: ignore[index]


def reset_errors(c: Cell) -> Outcome:
    jid = c.job(retry=0)
    c.run(jid, exit_code=3)
    assert c.get(jid)["state"] == "ERROR"  # type: ignore[index]
    r = c.me.post(c.url("/api/reseterrorjobs"), json=[jid])
    return r.status_code, c.get(jid)["state"] == "WAITING"  # type: ignore[index]


def set_dependencies(c: Cell) -> Outcome:
    dep = c.job()
    jid = c.job()
    r = c.me.post(c.url(f"/api/jobs/{jid}/dependencies"), json=[dep])
    return r.status_code, c.get(jid)["dependencies"] == [dep]  # type: ignore[index]


def add_child(c: Cell) -> Outcome:
    group = c.job(command="")
    r = c.me.put(c.url("/api/jobs"), json={"title": "child", "command": "true", "parent": group})
    return r.status_code, c.get(group)["total"] == 1  # type: ignore[index]


def move_under(c: Cell) -> Outcome:
    group = c.job(command="")
    mine = c.job(owner=c.user)
    r = c.me.post(c.url("/api/jobs"), json={str(mine): {"parent": group}})
    return r.status_code, c.get(mine)["parent"] == group  # type: ignore[index]


# -- delete ----------------------------------------------------------------------------------
def delete(c: Cell) -> Outcome:
    jid = c.job()
    r = c.me.delete(c.url("/api/jobs"), json=[jid])
    return r.status_code, c.get(jid) is None


# -- create (own: the job is mine; other: a job for somebody else) ----------------------------
def job_blocks(c: Cell) -> Outcome:
    jid = c.job()
    r = c.me.get(c.url(f"/api/jobs/{jid}/blocks"))
    return r.status_code, r.status_code == 200 and r.json() == []


def lift_blocks(c: Cell) -> Outcome:
    # Failure handling (docs/failures.md): the job's owner may lift its blocks, like any edit.
    jid = c.job(hostfails=1)
    c.run(jid, exit_code=1)
    assert len(c.admin.get(c.url(f"/api/jobs/{jid}/blocks")).json()) == 1
    r = c.me.delete(c.url(f"/api/jobs/{jid}/blocks"))
    return r.status_code, c.admin.get(c.url(f"/api/jobs/{jid}/blocks")).json() == []


def _created_for(c: Cell, r: requests.Response) -> Outcome:
    if r.status_code != 200:
        return r.status_code, False
    return 200, c.get(int(r.text.strip().strip('"')))["user"] == c.owner  # type: ignore[index]


def create(c: Cell) -> Outcome:
    return _created_for(
        c, c.me.put(c.url("/api/jobs"), json={"title": "n", "command": "true", "user": c.owner})
    )


def create_json_legacy(c: Cell) -> Outcome:
    params = {"title": "legacy", "cmd": "true", "user": c.owner}
    return _created_for(c, c.me.get(c.url("/json/addjob"), params=params))


def create_xmlrpc_legacy(c: Cell) -> Outcome:
    data = {"title": "legacy", "cmd": "true", "user": c.owner}
    return _created_for(c, c.me.post(c.url("/xmlrpc/addjob"), data=data))


# -- owner -----------------------------------------------------------------------------------
def give_away(c: Cell) -> Outcome:
    jid = c.job()
    third = "someone-else"
    r = c.me.post(c.url("/api/jobs"), json={str(jid): {"user": third}})
    return r.status_code, c.get(jid)["user"] == third  # type: ignore[index]


ROUTES: dict[str, tuple[str, Case]] = {
    "GET /api/jobs": ("view", list_roots),
    "GET /api/jobs?parent=all&text=": ("view", list_paged),
    "GET /api/jobs/ID": ("view", get_job),
    "GET /api/webfrontend/jobs/ID": ("view", get_job_webfrontend),
    "GET /api/jobs/ID/children": ("view", children),
    "GET /api/jobs/ID/log": ("view", log),
    "GET /api/jobs/ID/log?tail=": ("view", log_tail),
    "GET /api/jobs/ID/events": ("view", job_events),
    "GET /api/events?job=ID": ("view", events_of_job),
    "GET /api/events?howlong=": ("view", events_all),
    "GET /api/jobs/ID/dependencies": ("view", dependencies),
    "GET /api/jobs/ID/childrendependencies": ("view", children_dependencies),
    "GET /api/audit?job=ID": ("view", audit_of_job),
    "GET /api/events?kind=audit&job=ID": ("view", audit_as_events),
    "POST /api/jobs (title)": ("edit", edit_title),
    "POST /api/webfrontend/jobs (title)": ("edit", edit_title_webfrontend),
    "POST /api/pausejobs": ("edit", pause),
    "POST /api/startjobs": ("edit", start),
    "POST /api/resetjobs": ("edit", reset),
    "POST /api/reseterrorjobs": ("edit", reset_errors),
    "POST /api/jobs/ID/dependencies": ("edit", set_dependencies),
    "PUT /api/jobs (child of ID)": ("edit", add_child),
    "POST /api/jobs (move under ID)": ("edit", move_under),
    "DELETE /api/jobs": ("delete", delete),
    "PUT /api/jobs": ("create", create),
    "GET /json/addjob": ("create", create_json_legacy),
    "POST /xmlrpc/addjob": ("create", create_xmlrpc_legacy),
    "POST /api/jobs (user)": ("owner", give_away),
    "GET /api/jobs/ID/blocks": ("view", job_blocks),
    "DELETE /api/jobs/ID/blocks": ("edit", lift_blocks),
}
# Denials that are not a 403: a list simply leaves the job out; a job created for somebody
# else by a user without create-global becomes the creator's own.
_QUIET_DENIALS = {"view": (200, 403), "create": (200, 403)}


@pytest.mark.parametrize("whose", ["own", "other"])
@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("route", list(ROUTES))
def test_permission_table(ldap_farm: AuthServer, route: str, user: str, whose: str) -> None:
    action, case = ROUTES[route]
    allowed = EXPECTED[action][user][0 if whose == "own" else 1]
    cell = Cell(
        ldap_farm,
        ldap_farm.client("admin1"),
        ldap_farm.client(user),
        user,
        user if whose == "own" else OTHER[user],
    )
    status, happened = case(cell)
    if allowed:
        assert (status, happened) == (200, True), f"{user} should be allowed {route} on {whose} job"
    else:
        quiet = _QUIET_DENIALS.get(action, ()) if route.startswith(("GET", "PUT", "POST /xmlrpc")) else ()
        assert status in ((403,) + tuple(quiet)), f"{user}: {route} on {whose} job answered {status}"
        assert not happened, f"{user} should be denied {route} on {whose} job"


# -- farm routes (no job owner) --------------------------------------------------------------
FARM_EXPECTED = {
    # route: users allowed
    "GET /api/workers": {"admin1", "wrangler1", "artist1"},
    "GET /api/affinities": {"admin1", "wrangler1", "artist1"},
    "GET /api/stats": {"admin1", "wrangler1", "artist1"},
    "GET /api/whoami": {"admin1", "wrangler1", "artist1", "nobody1"},
    "POST /api/stopworkers": {"admin1", "wrangler1"},
    "POST /api/startworkers": {"admin1", "wrangler1"},
    "POST /api/workers": {"admin1", "wrangler1"},
    "DELETE /api/workers": {"admin1", "wrangler1"},
    "POST /api/affinities": {"admin1", "wrangler1"},
    "POST /api/clearsickworkers": {"admin1", "wrangler1"},
}


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("route", list(FARM_EXPECTED))
def test_farm_routes(ldap_farm: AuthServer, route: str, user: str) -> None:
    name = f"fw{next(_count)}"
    assert ldap_farm.worker("pickjob", {"name": name, "affinity": "nothing-has-this"}).status_code == 200
    method, path = route.split(" ")
    body: Any = {
        "/api/stopworkers": [name],
        "/api/startworkers": [name],
        "/api/workers": {name: {"affinity": "x"}} if method == "POST" else [name],
        "/api/affinities": {"900": f"aff{next(_count)}"},
        "/api/clearsickworkers": [name],
    }.get(path)
    r = ldap_farm.client(user).request(method, ldap_farm.url + path, json=body)
    if user in FARM_EXPECTED[route]:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 403, r.text
        workers = {
            w["name"]: w for w in ldap_farm.client("admin1").get(ldap_farm.url + "/api/workers").json()
        }
        assert name in workers and workers[name]["active"] and workers[name]["affinity"] != "x"


def test_whoami_capabilities(ldap_farm: AuthServer) -> None:
    can = {u: ldap_farm.client(u).get(ldap_farm.url + "/api/whoami").json() for u in USERS}
    assert can["admin1"]["user"] == "admin1" and can["admin1"]["via"] == "basic"
    assert can["admin1"]["can"]["delete_all"] and can["admin1"]["can"]["workers"]
    assert can["wrangler1"]["can"]["edit_all"] and not can["wrangler1"]["can"]["delete"]
    artist = can["artist1"]["can"]
    assert artist["create"] and artist["edit"] and artist["delete"] and not artist["view_all"]
    assert not any(can["nobody1"]["can"].values())
