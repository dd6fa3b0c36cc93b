"""Failure handling through the API and the worker protocol, against a real server process
(issue 16): bad input gets a 400 that says what is wrong (never a 500), unknown ids a 404, a
log rule kills through the heartbeat, a SICK worker hears it in the sync answer, and a mail
is queued for the wranglers."""

from __future__ import annotations

import base64
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("logrules", "lic explode licence", "logrules: line 1: unknown action 'explode'"),
        ("logrules", "ok fail (unclosed", "bad regex"),
        ("logrules", "@nosuchpreset", "unknown preset"),
        ("logrules", ["fine fail x", "lonely"], "line 2: expected NAME ACTION REGEX"),
        ("stalltimeout", "soon", "stalltimeout"),
        ("stalltimeout", -2, "stalltimeout"),
        ("minruntime", 1.5, "minruntime"),
        ("hostfails", True, "hostfails"),
    ],
)
def test_bad_failure_settings_are_a_clear_400(server: Any, field: str, value: Any, message: str) -> None:
    r = server.request("PUT", "/api/jobs", {"command": "true", field: value})
    assert r.status_code == 400 and message in r.json()["error"], r.text
    job_id = server.submit(command="true", paused=True)
    r = server.request("POST", "/api/jobs", {str(job_id): {field: value}})
    assert r.status_code == 400 and message in r.json()["error"], r.text


def test_good_failure_settings_are_kept_and_editable(server: Any) -> None:
    job_id = server.submit(
        command="true", paused=True, stalltimeout=30, minruntime=2, hostfails=-1, logrules="@nuke"
    )
    job = server.job(job_id)
    assert (job["stalltimeout"], job["minruntime"], job["hostfails"], job["logrules"]) == (30, 2, -1, "@nuke")
    server.api("POST", "/api/jobs", {str(job_id): {"logrules": ["a requeue x", "@disk"], "stalltimeout": 0}})
    job = server.job(job_id)
    assert (job["logrules"], job["stalltimeout"], job["reason"]) == ("a requeue x\n@disk", 0, "")


def test_unknown_ids_and_bad_block_requests(server: Any) -> None:
    job_id = server.submit(command="true", paused=True)
    for method, path, body, status in [
        ("GET", "/api/jobs/abc/blocks", None, 400),
        ("GET", "/api/jobs/0/blocks", None, 400),
        ("GET", "/api/jobs/999999/blocks", None, 404),
        ("DELETE", "/api/jobs/999999/blocks", None, 404),
        ("GET", f"/api/jobs/{2**63}/blocks", None, 404),  # past a BIGINT (found by the fuzz suite)
        ("DELETE", f"/api/jobs/{2**64 + 1}/blocks", None, 404),
        ("GET", f"/api/blocks?job={2**63}", None, 404),
        ("DELETE", f"/api/jobs/{job_id}/blocks", "w1", 400),
        ("DELETE", f"/api/jobs/{job_id}/blocks", [3], 400),
        ("GET", "/api/blocks?bogus=1", None, 400),
        ("GET", "/api/blocks?job=abc", None, 400),
        ("POST", "/api/clearsickworkers", "w1", 400),
        ("POST", "/api/clearsickworkers", ["nosuch"], 404),
    ]:
        r = server.request(method, path, body)
        assert r.status_code == status and r.json()["error"], (method, path, r.status_code, r.text)
    assert server.api("GET", f"/api/jobs/{job_id}/blocks") == []
    assert server.api("DELETE", f"/api/jobs/{job_id}/blocks", ["w1"]) == {"lifted": 0}
    assert server.api("GET", "/api/blocks") == []


def test_bad_worker_reports(server: Any) -> None:
    server.worker_call("pickjob", {"name": "w1"})
    for route, body, message in [
        ("checked", {"name": "w1", "passed": "yes"}, "passed must be true or false"),
        ("checked", {"name": "w1", "passed": True, "detail": 3}, "detail must be a string"),
        ("endjob", {"name": "w1", "job_id": 1, "exit_code": 0, "reason": 5}, "reason must be a string"),
        ("endjob", {"name": "w1", "job_id": 1, "exit_code": 0, "elapsed": -1}, "elapsed must be"),
    ]:
        r = server.request("POST", f"/workers/{route}", body)
        assert r.status_code == 400 and message in r.json()["error"], r.text
    # A worker that is not SICK is told so.
    assert server.worker_call("checked", {"name": "w1", "passed": False}) == {"ok": True, "sick": False}


def test_a_log_rule_kills_through_the_heartbeat(server: Any) -> None:
    job_id = server.submit(command="render", logrules="@nuke", retry=0)
    job = server.worker_call("pickjob", {"name": "w1"})["job"]
    assert job["id"] == job_id and job["stalltimeout"] == 0
    beat = server.worker_call(
        "heartbeat", {"name": "w1", "job_id": job_id, "event": job["event"], "log": b64("loading\n")}
    )
    assert beat["kill"] is False
    beat = server.worker_call(
        "heartbeat",
        {"name": "w1", "job_id": job_id, "event": job["event"], "log": b64("nuke: no license available\n")},
    )
    assert beat["kill"] is True
    # Every later beat of the run says kill too (the first answer may be lost).
    again = server.worker_call("heartbeat", {"name": "w1", "job_id": job_id, "event": job["event"]})
    assert again["kill"] is True
    end = server.worker_call(
        "endjob", {"name": "w1", "job_id": job_id, "event": job["event"], "exit_code": -15, "elapsed": 1.5}
    )
    assert end["ok"] and "ignored" not in end
    job = server.job(job_id)
    assert (job["state"], job["errors"], job["requeues"]) == ("WAITING", 0, 1)
    assert job["reason"] == "log rule nuke-nolicence: requeue"
    [event] = server.api("GET", f"/api/events?job={job_id}")
    assert (event["state"], event["reason"]) == ("REQUEUED", "log rule nuke-nolicence: requeue")
    # The next run starts with no verdict: it finishes.
    job = server.worker_call("pickjob", {"name": "w1"})["job"]
    server.worker_call("endjob", {"name": "w1", "job_id": job_id, "event": job["event"], "exit_code": 0})
    assert server.job(job_id)["state"] == "FINISHED" and server.job(job_id)["reason"] == ""


def test_a_sick_worker_hears_it_and_a_mail_is_queued(make_server: Any) -> None:
    server = make_server(
        sickjobs=2, smtphost="127.0.0.1", smtpport=free_port(), sickmail="wranglers@example.com"
    )
    a = server.submit(command="a", title="a")
    b = server.submit(command="b", title="b")
    for job_id in (a, b):
        job = server.worker_call("pickjob", {"name": "w1"})["job"]
        assert job["id"] == job_id
        end = server.worker_call(
            "endjob", {"name": "w1", "job_id": job_id, "event": job["event"], "exit_code": 2, "pick": True}
        )
    assert end == {"ok": True, "job": None, "held": [], "hold_max": 8, "sick": True}
    sync = server.worker_call("sync", {"slots": [{"name": "w1", "pick": True}]})
    assert sync["slots"][0]["sick"] is True and "job" not in sync["slots"][0]
    worker = server.api("GET", "/api/workers/w1")
    assert worker["state"] == "SICK" and "runs of 2 different jobs failed" in worker["reason"]
    db = sqlite3.connect(server.datadir / "coalition.db")
    rows = db.execute("SELECT recipient, subject, body FROM outbox").fetchall()
    db.close()
    assert [(r[0], r[1]) for r in rows] == [("wranglers@example.com", "[coalition] worker w1 is SICK")]
    assert "coalition workers clearsick w1" in rows[0][2]
    # A failed check keeps it SICK, a passed one clears it; the CLEARED event says how.
    assert server.worker_call("checked", {"name": "w1", "passed": False})["sick"] is True
    assert (
        server.worker_call("checked", {"name": "w1", "passed": True, "detail": "exit code 0"})["sick"]
        is False
    )
    events = server.api("GET", "/api/events?worker=w1")
    assert [(e["state"], e["job_id"]) for e in events if e["job_id"] == 0] == [("CLEARED", 0), ("SICK", 0)]
    assert server.api("GET", "/api/workers/w1")["state"] == "WAITING"


def test_bad_farm_rules_stop_the_server_with_one_line(tmp_path: Path) -> None:
    ini = tmp_path / "coalition.ini"
    ini.write_text(
        f"[server]\nlisten=127.0.0.1\nport={free_port()}\ndatadir={tmp_path}\nlogrules=\n    ok fail (\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "coalition.server.main", "-c", str(ini)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "[server] logrules: line 2: rule ok: bad regex" in done.stderr, done.stderr


def run_once(server: Any, worker: str, job_id: int, exit_code: int = 1, log: str = "") -> dict[str, Any]:
    """Pick `job_id` as `worker` and end the run; returns the endjob answer."""
    job = server.worker_call("pickjob", {"name": worker})["job"]
    assert job is not None and job["id"] == job_id, job
    body = {"name": worker, "job_id": job_id, "event": job["event"], "exit_code": exit_code}
    if log:
        body["log"] = b64(log)
    return server.worker_call("endjob", body)


def test_a_jobs_own_hostfails_and_the_forgive_time(make_server: Any) -> None:
    from tests.support import wait_for

    server = make_server(forgive=1, sickjobs=0)
    strict = server.submit(command="x", retry=9, hostfails=1)
    run_once(server, "w1", strict)
    [block] = server.api("GET", f"/api/jobs/{strict}/blocks")
    assert (block["worker"], block["failures"]) == ("w1", 1)
    assert server.worker_call("pickjob", {"name": "w1"})["job"] is None  # blocked
    # The block lifts by itself a forgive time (1 s) after the failure: w1 may take it again.
    wait_for(lambda: server.api("GET", f"/api/jobs/{strict}/blocks") == [], timeout=10, what="forgiven")
    run_once(server, "w1", strict, exit_code=0)
    never = server.submit(command="y", retry=9, hostfails=-1)
    for _ in range(4):
        run_once(server, "w1", never)
    assert server.api("GET", f"/api/jobs/{never}/blocks") == []


def test_one_failing_job_or_a_job_failing_everywhere_makes_no_host_sick(make_server: Any) -> None:
    server = make_server(sickjobs=2, hostfails=0)
    same = server.submit(command="x", retry=2, title="one job")  # three runs, then ERROR
    for _ in range(3):
        run_once(server, "w1", same)
    assert server.api("GET", "/api/workers/w1")["state"] == "WAITING"
    broken = server.submit(command="x", retry=1, title="fails everywhere")
    run_once(server, "w2", broken)
    run_once(server, "w1", broken)
    # w1 failed two different jobs, but "fails everywhere" failed on w2 too: not w1's fault.
    assert server.api("GET", "/api/workers/w1")["state"] == "WAITING"
    mine = server.submit(command="x", title="fails only on w1")
    assert run_once(server, "w1", mine)["ok"]
    assert server.api("GET", "/api/workers/w1")["state"] == "SICK"


def test_sick_and_limit_rules(server: Any) -> None:
    gpu = server.submit(command="x", logrules="gpu sick (?i)GPU has fallen off the bus")
    end = run_once(server, "w1", gpu, exit_code=-15, log="frame 1\nNVRM: GPU has fallen off the bus\n")
    assert end["sick"] is True
    assert server.job(gpu)["state"] == "WAITING" and server.job(gpu)["reason"] == "log rule gpu: sick"
    assert server.api("GET", "/api/workers/w1")["reason"] == "sick: log rule gpu: sick"
    seats = server.submit(command="x", logrules=["seats limit:nuke:600 out of seats"], priority=2000)
    run_once(server, "w2", seats, exit_code=1, log="error: out of seats\n")
    job = server.job(seats)
    assert (job["state"], job["errors"], job["reason"]) == ("WAITING", 0, "log rule seats: limit:nuke:600")


def test_lost_worker_paused_and_server_timeout_reasons(server: Any) -> None:
    from tests.support import wait_for

    lost = server.submit(command="x")
    server.worker_call("pickjob", {"name": "gone"})  # and never heard from again
    wait_for(lambda: server.job(lost)["reason"], timeout=20, what="the reaper")
    assert server.job(lost)["reason"] == "lost worker (silent for more than 3 s)"
    [event] = server.api("GET", f"/api/events?job={lost}")
    assert (event["state"], event["reason"]) == ("TIMEOUT", "lost worker (silent for more than 3 s)")
    server.api("DELETE", "/api/jobs", [lost])
    restarted = server.submit(command="x")
    server.worker_call("pickjob", {"name": "w3"})
    server.worker_call("pickjob", {"name": "w3"})  # asks again: it lost the run (a restart)
    first = min(server.api("GET", f"/api/events?job={restarted}"), key=lambda e: e["id"])
    assert (first["state"], first["reason"]) == (
        "LOST",
        "lost worker (it asked for work while it was running this job)",
    )
    server.api("DELETE", "/api/jobs", [restarted])
    paused = server.submit(command="x")
    job = server.worker_call("pickjob", {"name": "w1"})["job"]
    server.api("POST", "/api/pausejobs", [paused])
    assert server.job(paused)["reason"] == "paused by an operator"
    server.worker_call("endjob", {"name": "w1", "job_id": paused, "event": job["event"], "exit_code": -15})
    server.api("DELETE", "/api/jobs", [paused])
    slow = server.submit(command="x", timeout=1)
    job = server.worker_call("pickjob", {"name": "w2"})["job"]

    def timed_out() -> bool:  # w2 keeps beating (not lost) but never reports the end
        server.worker_call("heartbeat", {"name": "w2", "job_id": slow, "event": job["event"]})
        return server.job(slow)["state"] == "ERROR"

    wait_for(timed_out, timeout=20, interval=0.3, what="the server's timeout")
    assert server.job(slow)["reason"] == "timeout (1 s, by the server)"
