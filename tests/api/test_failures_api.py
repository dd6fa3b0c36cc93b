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
    assert end == {"ok": True, "job": None, "sick": True}
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
