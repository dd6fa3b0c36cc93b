"""The REST API against a real server process: documented shapes, the additions, bad input."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import requests

from tests.api.conftest import scripted_worker
from tests.conftest import ServerProcess

JOB_KEYS = set(
    "id parent title command dir environment state worker start_time duration ping_time run_done retry "
    "timeout priority affinity user finished errors working total total_finished total_errors "
    "total_working url progress progress_pattern".split()
)
WORKER_KEYS = set(
    "name ip affinity state ping_time finished error last_job current_event cpu free_memory total_memory "
    "active".split()
)


def test_job_lifecycle_and_documented_shapes(api: ServerProcess) -> None:
    group = api.submit(title="shot", command="")
    assert isinstance(group, int)
    child = api.submit(title="frame 1", command="echo test", parent=group, priority=7, retry=2)
    roots = api.api("GET", "/api/jobs")
    assert isinstance(roots, list) and any(j["id"] == group for j in roots)
    assert all(JOB_KEYS <= set(j) for j in roots)
    job = api.job(child)
    assert JOB_KEYS | {"dependencies"} <= set(job)
    kids = api.api("GET", f"/api/jobs/{group}/children")
    assert [k["id"] for k in kids] == [child] and "dependencies" not in kids[0]
    assert api.api("POST", "/api/jobs", {str(child): {"title": "renamed"}}) == 1
    assert api.job(child)["title"] == "renamed"
    assert api.api("GET", f"/api/jobs/{group}/childrendependencies") == []


def test_webfrontend_alias(api: ServerProcess) -> None:
    jid = api.submit(title="alias", command="true")
    assert api.api("GET", f"/api/webfrontend/jobs/{jid}")["title"] == "alias"
    assert api.api("POST", "/api/webfrontend/pausejobs", [jid]) == 1
    assert api.job(jid)["state"] == "PAUSED"


def test_dependencies_routes(api: ServerProcess) -> None:
    a = api.submit(title="a", command="true")
    b = api.submit(title="b", command="true")
    c = api.submit(title="c", command="true")
    assert api.api("POST", f"/api/jobs/{c}/dependencies", [a, b]) == 1
    deps = api.api("GET", f"/api/jobs/{c}/dependencies")
    assert sorted(d["id"] for d in deps) == [a, b] and JOB_KEYS <= set(deps[0])
    assert api.job(c)["state"] == "PENDING"
    r = api.request("POST", f"/api/jobs/{a}/dependencies", [c])
    assert r.status_code == 400 and "cycle" in r.json()["error"]
    assert api.api("POST", f"/api/jobs/{c}/dependencies", "") == 1  # clear
    assert api.job(c)["state"] == "WAITING"


def test_worker_protocol_round_trip_with_log_and_next_job(api: ServerProcess) -> None:
    name = "proto-worker"
    api.api("POST", "/api/workers", {}, expect=200)
    first = api.submit(title="p1", command="echo 1", affinity="proto")
    second = api.submit(title="p2", command="echo 2", affinity="proto")
    job = scripted_worker(api, name, "proto")
    assert job["id"] == first and set(job) >= {
        "id",
        "event",
        "command",
        "dir",
        "environment",
        "user",
        "timeout",
    }
    chunk = base64.b64encode(b"PROGRESS:40\nhello\n").decode()
    beat = api.worker_call(
        "heartbeat",
        {
            "name": name,
            "job_id": first,
            "event": job["event"],
            "log": chunk,
            "log_offset": 0,
            "cpu": [1, 2, 3],
        },
    )
    assert beat == {"ok": True, "kill": False, "stop": False}
    assert api.job(first)["progress"] == 0.4
    assert api.api("GET", f"/api/jobs/{first}/log") == "PROGRESS:40\nhello\n"
    assert api.api("GET", f"/api/jobs/{first}/log?offset=12&limit=3") == {
        "data": "hel",
        "offset": 12,
        "next": 15,
        "size": 18,
    }
    assert api.api("GET", f"/api/jobs/{first}/log?tail=6")["data"] == "hello\n"
    out = api.worker_call(
        "endjob", {"name": name, "job_id": first, "event": job["event"], "exit_code": 0, "pick": True}
    )
    assert out["ok"] and out["job"]["id"] == second
    assert api.job(first)["state"] == "FINISHED"
    worker = api.api("GET", f"/api/workers/{name}")
    assert (
        WORKER_KEYS <= set(worker) and worker["state"] == "WORKING" and json.loads(worker["cpu"]) == [1, 2, 3]
    )
    assert any(w["name"] == name for w in api.api("GET", "/api/workers"))
    events = api.api("GET", f"/api/events?job={first}&worker={name}&howlong=3600")
    assert [(e["state"], e["job_id"]) for e in events] == [("FINISHED", first)]
    assert set(events[0]) == {
        "id", "worker", "job_id", "job_title", "state", "start", "duration", "cpu_time", "peak_memory",
        "reason",
    }  # fmt: skip


def test_legacy_worker_form_protocol(make_server: Any) -> None:
    api = make_server()
    jid = api.submit(title="legacy", command="echo 'quoted'", affinity="oldbox")
    api.api("POST", "/api/workers", {}, expect=200)
    r = api.request(
        "POST",
        "/workers/pickjob",
        data={"hostname": "c4box", "load": "[37]", "free_memory": "10", "total_memory": "20"},
    )
    assert r.text.startswith("(-1, ")  # no affinity rules yet: a tagged job is not for it
    api.api("POST", "/api/workers", {"c4box": {"affinity": "oldbox"}})
    r = api.request("POST", "/workers/pickjob", data={"hostname": "c4box"})
    assert r.text == f"({jid}, \"echo 'quoted'\", '.', '', None)"
    r = api.request(
        "POST",
        "/workers/heartbeat",
        data={"hostname": "c4box", "jobId": str(jid), "log": base64.b64encode(b"PROGRESS:50\n").decode()},
    )
    assert r.text == "true"
    r = api.request(
        "POST", "/workers/endjob", data={"hostname": "c4box", "jobId": str(jid), "errorCode": "0"}
    )
    assert r.text == "None" and api.job(jid)["state"] == "FINISHED"
    r = api.request("POST", "/workers/heartbeat", data={"hostname": "c4box", "jobId": str(jid), "log": ""})
    assert r.text == "false"


def test_paged_job_list(api: ServerProcess) -> None:
    group = api.submit(title="paged", command="")
    ids = api.api(
        "PUT",
        "/api/jobs",
        [{"title": f"f{i}", "command": "true", "parent": group, "priority": i} for i in range(30)],
    )
    assert len(ids) == 30
    page = api.api("GET", f"/api/jobs?parent={group}&sort=priority&order=desc&offset=5&limit=10")
    assert page["total"] == 30 and [j["priority"] for j in page["jobs"]] == list(range(24, 14, -1))
    assert all(j["dependencies"] == [] for j in page["jobs"])  # paged objects carry their dependencies
    since = page["now"]
    api.api("POST", "/api/jobs", {str(ids[3]): {"title": "changed"}})
    changed = api.api("GET", f"/api/jobs?parent={group}&changed_since={since}")
    assert [j["id"] for j in changed["jobs"]] == [ids[3]]
    paused = api.api("POST", "/api/pausejobs", [ids[0], ids[1]])
    assert paused == 1
    assert api.api("GET", f"/api/jobs?parent={group}&state=PAUSED")["total"] == 2
    assert api.api("GET", f"/api/jobs?parent={group}&text=F2")["total"] == 11  # f2, f20..f29, any case
    api.api("POST", f"/api/jobs/{ids[0]}/dependencies", [ids[1]])
    first = api.api("GET", f"/api/jobs?parent={group}&sort=id&limit=1")["jobs"][0]
    assert first["dependencies"] == [ids[1]]


def test_state_commands(api: ServerProcess) -> None:
    group = api.submit(title="cmds", command="")
    kids = api.api("PUT", "/api/jobs", [{"title": "k", "command": "true", "parent": group} for _ in range(2)])
    assert api.api("POST", "/api/pausejobs", [group]) == 1
    assert api.job(group)["state"] == "PAUSED"
    assert api.api("POST", "/api/startjobs", [group]) == 1
    assert api.api("POST", "/api/resetjobs", kids) == 1
    assert api.api("POST", "/api/reseterrorjobs", [group]) == 1
    assert api.api("DELETE", "/api/jobs", [group]) == 1
    assert api.request("GET", f"/api/jobs/{kids[0]}").status_code == 404


def test_workers_admin_routes(api: ServerProcess) -> None:
    for name in ("adm-1", "adm-2"):
        scripted_worker(api, name)
    assert api.api("POST", "/api/workers", {"adm-1": {"affinity": "LINUX\nWINDOWS,GL", "active": 0}}) == 1
    w = api.api("GET", "/api/workers/adm-1")
    assert (w["affinity"], w["active"]) == ("LINUX\nWINDOWS,GL", 0)
    assert api.api("POST", "/api/startworkers", ["adm-1"]) == 1
    assert api.api("POST", "/api/stopworkers", ["adm-2"]) == 1
    assert api.api("GET", "/api/workers/adm-2")["active"] == 0
    assert api.api("DELETE", "/api/workers", ["adm-1", "adm-2"]) == 1
    assert api.request("GET", "/api/workers/adm-1").status_code == 404
    r = api.request("POST", "/api/terminateworkers", ["adm-1"])
    assert r.status_code == 404 and "cloud mode" in r.json()["error"]


def test_affinities_registry(api: ServerProcess) -> None:
    assert api.api("POST", "/api/affinities", {"1": "linux", "2": "win", "3": "windows project"}) == 1
    reg = api.api("GET", "/api/affinities")
    assert reg["1"] == "linux" and reg["3"] == "windows project"
    jid = api.submit(title="num", command="true", affinity="#3,linux")
    assert api.job(jid)["affinity"] == "windows project,linux"


def test_ping_says_the_server_mode(api: ServerProcess) -> None:
    assert api.api("GET", "/api/ping") == {"ok": True, "servermode": "normal"}


def test_stats(api: ServerProcess) -> None:
    stats = api.api("GET", "/api/stats")
    assert {"jobs", "workers", "history", "finished_last_hour"} <= set(stats)
    assert len(stats["history"]["running"]) == 72


def test_legacy_submission_routes(api: ServerProcess) -> None:
    # Chapter 9, as a browser or `requests` sends the documented URL (the space encoded).
    r = requests.get(
        api.url + "/json/addjob?title=job&cmd=echo toto&priority=1000&affinity=linux&retry=10", timeout=10
    )
    assert r.status_code == 200
    job = api.job(int(r.text))
    assert (job["title"], job["command"], job["priority"], job["affinity"], job["retry"]) == (
        "job",
        "echo toto",
        1000,
        "linux",
        10,
    )
    parent = api.submit(title="legacy-parent", command="")
    r = api.request(
        "POST",
        "/xmlrpc/addjob",
        data={
            "title": "x",
            "cmd": "ls",
            "parent": "legacy-parent",
            "dependencies": f"{job['id']} ",
            "env": "A=1\\nB=2",
            "localprogress": "F %one",
            "globalprogress": "G %percent",
        },
    )
    assert r.status_code == 200
    x = api.job(int(r.text))
    assert (
        x["parent"],
        x["dependencies"],
        x["environment"],
        x["progress_pattern"],
        x["local_progress_pattern"],
    ) == (parent, [job["id"]], "A=1\\nB=2", "G %percent", "F %one")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("PUT", "/api/jobs", "{not json", 400, "malformed JSON"),
        ("PUT", "/api/jobs", {"title": "t", "priorty": 3}, 400, "unknown field(s): priorty"),
        ("PUT", "/api/jobs", {"title": "t", "priority": "high"}, 400, "priority must be an integer"),
        ("PUT", "/api/jobs", {"title": "t", "priority": -1}, 400, "priority must be between"),
        ("PUT", "/api/jobs", {"title": ["t"]}, 400, "title must be a string"),
        ("PUT", "/api/jobs", {"title": "t", "parent": 987654}, 400, "parent job 987654 does not exist"),
        ("PUT", "/api/jobs", {"title": "t", "dependencies": [987654]}, 400, "do not exist"),
        ("PUT", "/api/jobs", [], 400, "empty list"),
        ("PUT", "/api/jobs", "[1, 2]", 400, "a job must be a JSON object"),
        ("PUT", "/api/jobs", None, 400, "a JSON body is required"),
        ("POST", "/api/jobs", {"987654": {"title": "x"}}, 404, "not found"),
        ("POST", "/api/jobs", {"abc": {"title": "x"}}, 400, "id must be an integer"),
        ("POST", "/api/jobs", [1], 400, "expected a JSON object"),
        ("DELETE", "/api/jobs", {"a": 1}, 400, "list of job ids"),
        ("DELETE", "/api/jobs", [987654], 404, "not found"),
        ("GET", "/api/jobs/987654", None, 404, "not found"),
        ("GET", "/api/jobs/abc/children", None, 404, "not found"),
        ("GET", "/api/jobs?sort=nope", None, 400, "cannot sort by"),
        ("GET", "/api/jobs?limit=-4", None, 400, "limit must be between"),
        ("GET", "/api/jobs?bogus=1", None, 400, "unknown parameter"),
        ("GET", "/api/jobs?state=DONE", None, 400, "unknown state"),
        ("GET", "/api/events?howlong=soon", None, 400, "howlong"),
        ("POST", "/api/resetjobs", ["x"], 400, "job id must be an integer"),
        ("POST", "/api/workers", {"nobody": {"cpu": 1}}, 400, "read-only"),
        ("POST", "/api/affinities", {"x": "linux"}, 400, "integers"),
        ("PATCH", "/api/jobs", None, 405, "not allowed"),
        ("GET", "/api/nothing", None, 404, "no such route"),
        ("POST", "/workers/pickjob", {"cpu": [1]}, 400, "name must be"),
        ("POST", "/workers/heartbeat", {"name": "w", "job_id": "x"}, 400, "job_id must be an integer"),
        ("POST", "/workers/heartbeat", {"name": "w", "job_id": 1, "log": 5}, 400, "base64"),
        ("POST", "/workers/endjob", {"name": "w", "job_id": 1}, 400, "exit_code"),
        (
            "POST",
            "/workers/endjob",
            {"name": "w", "job_id": 1, "exit_code": 0, "usage": [1]},
            400,
            "usage must",
        ),
        (
            "POST",
            "/workers/endjob",
            {"name": "w", "job_id": 1, "exit_code": 0, "usage": {"cpu_s": -1}},
            400,
            "usage.cpu_s",
        ),
        (
            "POST",
            "/workers/endjob",
            {"name": "w", "job_id": 1, "exit_code": 0, "usage": {"peak_memory_mb": 1.5}},
            400,
            "usage.peak_memory_mb",
        ),
        (
            "POST",
            "/workers/endjob",
            {"name": "w", "job_id": 1, "exit_code": 0, "thumbnail": {"mime": "image/gif", "data": ""}},
            400,
            "thumbnail must be",
        ),
        (
            "POST",
            "/workers/endjob",
            {
                "name": "w",
                "job_id": 1,
                "exit_code": 0,
                "thumbnail": {"mime": "image/png", "data": "aGVsbG8="},
            },
            400,
            "not a image/png",
        ),
        (
            "POST",
            "/workers/endjob",
            {
                "name": "w",
                "job_id": 1,
                "exit_code": 0,
                "thumbnail": {"mime": "image/png", "data": "x" * 200000},
            },
            400,
            "at most",
        ),
        ("GET", "/json/addjob?title=x&priority=abc", None, 400, "priority must be an integer"),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_changes_nothing(
    api: ServerProcess, method: str, path: str, body: Any, status: int, message: str
) -> None:
    before = api.api("GET", "/api/jobs?parent=all&limit=1")["total"]
    if isinstance(body, str) or body is None:
        r = api.request(
            method,
            path,
            data=body.encode() if isinstance(body, str) else None,
            headers={"Content-Type": "application/json"},
        )
    else:
        r = api.request(method, path, body)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert message in r.json()["error"]
    assert api.api("GET", "/api/jobs?parent=all&limit=1")["total"] == before


def test_oversized_body_is_refused(make_server: Any) -> None:
    server = make_server(maxbodysize=1)
    r = server.request(
        "PUT",
        "/api/jobs",
        data=b'{"title": "' + b"x" * (2 * 1024 * 1024) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413 and "too large" in r.json()["error"]
    assert server.api("GET", "/api/jobs") == []


def test_worker_token(make_server: Any) -> None:
    server = make_server(workertoken="s3cret")
    r = server.request("POST", "/workers/pickjob", {"name": "w"})
    assert r.status_code == 401 and "token" in r.json()["error"]
    r = server.request("POST", "/workers/pickjob", {"name": "w"}, headers={"X-Coalition-Token": "wrong"})
    assert r.status_code == 401
    r = server.request("POST", "/workers/pickjob", {"name": "w"}, headers={"X-Coalition-Token": "s3cret"})
    assert r.status_code == 200 and r.json() == {"job": None}
    r = server.request("POST", "/workers/pickjob", data={"hostname": "old", "token": "s3cret"})
    assert r.status_code == 200


def test_chunked_bodies_are_read_by_both_http_fronts(api: Any) -> None:
    """The CherryPy routes and the worker protocol's WSGI app share one body reader."""

    def chunks(payload: bytes) -> Any:
        yield payload[:5]
        yield payload[5:]

    json_type = {"Content-Type": "application/json"}
    pick = json.dumps({"name": "chunky"}).encode()
    r = api.request("POST", "/workers/pickjob", data=chunks(pick), headers=json_type)
    assert r.status_code == 200 and "job" in r.json(), r.text
    job = json.dumps({"title": "chunked", "command": "true"}).encode()
    r = api.request("PUT", "/api/jobs", data=chunks(job), headers=json_type)
    assert r.status_code == 200, r.text
    assert api.job(int(r.json()))["title"] == "chunked"
    r = api.request("POST", "/workers/pickjob", data=chunks(b"{not json"), headers=json_type)
    assert r.status_code == 400 and "error" in r.json()


def test_idempotency_key_makes_a_resent_submission_return_the_same_jobs(api: Any) -> None:
    jobs = [{"title": "key-a", "command": "true"}, {"title": "key-b", "command": "true"}]
    first = api.api("PUT", "/api/jobs", jobs, headers={"Idempotency-Key": "render-42"})
    again = api.api("PUT", "/api/jobs", jobs, headers={"Idempotency-Key": "render-42"})
    assert again == first and len(first) == 2
    other = api.api("PUT", "/api/jobs", jobs, headers={"Idempotency-Key": "render-43"})
    assert set(other).isdisjoint(first)
    listed = api.api("GET", "/api/jobs?text=key-a&limit=100")
    titles = [j["title"] for j in (listed["jobs"] if isinstance(listed, dict) else listed)]
    assert titles.count("key-a") == 2
    api.api("PUT", "/api/jobs", jobs[0], headers={"Idempotency-Key": "x" * 300}, expect=400)


def test_boot_back_off_routes_are_for_cloud_mode(api: Any) -> None:
    assert "cloud mode" in api.api("GET", "/api/cloud/backoff", expect=404)["error"]
    assert "cloud mode" in api.api("POST", "/api/cloud/clearbackoff", expect=404)["error"]
