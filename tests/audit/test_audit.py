"""The audit trail: who created, edited, paused, reset or deleted what, and who operated
workers, in GET /api/audit and GET /api/events?kind=audit."""

from __future__ import annotations

from typing import Any

from tests.authfarm import AuthServer


def test_every_change_is_recorded_on_an_open_farm(make_auth_server: Any) -> None:
    farm: AuthServer = make_auth_server()
    jid = farm.submit(title="t", command="true", user="alice")
    farm.api("POST", "/api/jobs", {str(jid): {"command": "echo changed", "priority": 5}})
    farm.api("POST", "/api/pausejobs", [jid])
    farm.api("POST", "/api/startjobs", [jid])
    farm.api("POST", "/api/resetjobs", [jid])
    farm.api("POST", "/api/reseterrorjobs", [jid])
    farm.api("POST", f"/api/jobs/{jid}/dependencies", [])
    assert farm.worker("pickjob", {"name": "w1", "affinity": "none-here"}).status_code == 200
    farm.api("POST", "/api/stopworkers", ["w1"])
    farm.api("POST", "/api/clearsickworkers", ["w1"])  # not sick: audited all the same
    farm.api("POST", "/api/limits", {"nuke": 2})
    farm.api("DELETE", "/api/jobs", [jid])
    trail = farm.api("GET", "/api/audit", params={"limit": 20})
    assert [e["action"] for e in trail] == [
        "delete",
        "limits",
        "clearsick",
        "stopworkers",
        "edit",
        "reseterrors",
        "reset",
        "start",
        "pause",
        "edit",
        "create",
    ]
    assert all(e["address"] == "127.0.0.1" and e["user"] == "" for e in trail)
    edit = trail[-2]
    assert edit["jobs"] == [jid] and edit["owner"] == "alice"
    assert edit["detail"] == {"fields": ["command", "priority"], "command": "echo changed"}
    assert trail[0]["detail"]["titles"] == ["t"] and trail[2]["workers"] == trail[3]["workers"] == ["w1"]
    assert (trail[1]["limits"], trail[1]["detail"]) == (["nuke"], {"nuke": 2})
    assert farm.api("GET", "/api/events", params={"kind": "audit", "limit": 20}) == trail
    only = farm.api("GET", "/api/audit", params={"action": "pause", "job": jid})
    assert [e["action"] for e in only] == ["pause"]


def test_the_trail_names_the_login(ldap_farm: AuthServer) -> None:
    url = ldap_farm.url
    jid = int(
        ldap_farm.client("artist1").put(url + "/api/jobs", json={"title": "mine", "command": "true"}).json()
    )
    ldap_farm.client("wrangler1").post(url + "/api/pausejobs", json=[jid]).raise_for_status()
    seen_by_artist = ldap_farm.client("artist1").get(url + "/api/audit", params={"job": jid}).json()
    assert [(e["user"], e["action"], e["owner"]) for e in seen_by_artist] == [
        ("wrangler1", "pause", "artist1"),
        ("artist1", "create", "artist1"),
    ]
    # Another artist sees neither: not his job, not his doing.
    assert ldap_farm.client("artist2").get(url + "/api/audit", params={"job": jid}).json() == []
