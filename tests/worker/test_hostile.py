"""Hostile jobs on real worker processes (issue 12): a job's environment must not choose or
load the wrapper that a root worker runs it through.

Every wait is on an observable condition (tests.support.wait_for), never a fixed sleep.
"""

from __future__ import annotations

import base64
import socket
import time
from pathlib import Path
from typing import Any

import requests

from tests.support import wait_for
from tests.worker.helpers import pid_alive, wait_state


def test_job_path_and_ld_preload_do_not_reach_the_wrapper(
    server: Any, make_worker: Any, tmp_path: Path
) -> None:
    # The wrapper (`env` here, `sudo` on a real farm) is looked up in the worker's PATH and
    # started without the job's LD_PRELOAD; the job's own shell still gets both.
    evil = tmp_path / "evil"
    evil.mkdir()
    for name in ("env", "sh", "sudo"):
        fake = evil / name
        fake.write_text(f'#!/bin/sh\ntouch {tmp_path}/PWNED-{name}\nexec /usr/bin/{name} "$@"\n')
        fake.chmod(0o755)
    workdir = tmp_path / "work"
    workdir.mkdir()
    make_worker(server.url, runcommand="env COALITION_USER=__user__ sh -c __cmd__")
    job_id = server.submit(
        command='echo "$MARK|$PATH|$LD_PRELOAD|$COALITION_USER|$COALITION_JOB_ID" > out.txt',
        dir=str(workdir),
        user="bob",
        environment=f"PATH={evil}:/usr/bin:/bin\\nLD_PRELOAD={evil}/evil.so\\nMARK=hi",
    )
    wait_state(server, job_id, "FINISHED")
    assert list(tmp_path.glob("PWNED*")) == []
    assert (workdir / "out.txt").read_text() == f"hi|{evil}:/usr/bin:/bin|{evil}/evil.so|bob|{job_id}\n"
    # ld.so complains in the log of every program started with a missing LD_PRELOAD: none was.
    assert "LD_PRELOAD" not in server.api("GET", f"/api/jobs/{job_id}/log")


def test_300_slowloris_connections_starve_neither_the_api_nor_the_workers(
    server: Any, make_worker: Any
) -> None:
    # 300 connections trickling header lines (more than the 32 threads), held for longer
    # than the heartbeat timeout (3 s here): a real request still gets its answer within 1 s,
    # and the worker, heartbeating all along, never turns TIMEOUT (its job is not requeued).
    make_worker(server.url)
    job_id = server.submit(command="sleep 60")
    wait_state(server, job_id, "WORKING")
    attackers = []
    for _ in range(300):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"GET /api/ping HTTP/1.1\r\nHost: victim\r\n")
        attackers.append(sock)
    worst = 0.0
    probes = 0
    try:
        end = time.monotonic() + 8
        while time.monotonic() < end:
            for sock in attackers:
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass  # the server cut it off: fine
            for method, path, body in (
                ("GET", "/api/ping", None),
                ("POST", "/workers/heartbeat", {"name": "probe"}),
            ):
                started = time.monotonic()
                r = requests.request(method, server.url + path, json=body, timeout=10)
                worst = max(worst, time.monotonic() - started)
                assert r.status_code == 200, r.text[:200]
            probes += 1
            states = {w["name"]: w["state"] for w in server.api("GET", "/api/workers")}
            assert states["w0"] != "TIMEOUT", states
            time.sleep(0.25)  # the attacker's pace (a header line every 1/4 s), not a wait
    finally:
        for sock in attackers:
            sock.close()
    assert worst < 1.0, f"a request waited {worst:.2f} s"
    assert probes > 10
    job = server.job(job_id)
    assert job["state"] == "WORKING" and job["requeues"] == 0


def test_the_worker_token_is_refused_in_a_url(make_server: Any) -> None:
    # A URL ends up in proxy and access logs; the header (or a POST body) is where it goes.
    server = make_server(workertoken="s3cret-token-for-tests")
    url = server.url + "/workers/heartbeat"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    in_query = requests.post(url + "?token=s3cret-token-for-tests", data="name=w1", headers=form, timeout=10)
    assert in_query.status_code == 401 and "URL" in in_query.json()["error"]
    as_get = requests.get(url + "?name=w1&token=s3cret-token-for-tests", timeout=10)
    assert as_get.status_code == 401
    in_header = requests.post(
        url, json={"name": "w1"}, headers={"X-Coalition-Token": "s3cret-token-for-tests"}, timeout=10
    )
    assert in_header.status_code == 200
    in_body = requests.post(url, data="name=w1&token=s3cret-token-for-tests", headers=form, timeout=10)
    assert in_body.status_code == 200


def test_a_replacement_worker_ends_the_jobs_of_one_killed_with_9(
    server: Any, make_worker: Any, tmp_path: Path
) -> None:
    # kill -9 leaves the job's session running; the next worker of that name and config ends
    # it before taking work, so that the job does not run twice side by side.
    from tests.worker.conftest import WorkerProcess

    first = make_worker(server.url)
    marker = tmp_path / "child.pid"
    job_id = server.submit(command=f"sleep 300 & echo $! > {marker}; wait", dir=str(tmp_path))
    wait_state(server, job_id, "WORKING")
    child = int(wait_for(lambda: marker.exists() and marker.read_text().strip(), what="the job's child"))
    first.kill()
    assert pid_alive(child)  # orphaned, still running: the bug's first half
    keys = {"sleep": 0.2, "interruptions": "off", "killgrace": 2, "name": "w0"}
    second = WorkerProcess(first.root, [server.url], keys)
    try:
        wait_for(lambda: not pid_alive(child), timeout=30, what="the orphaned job to be ended")
        wait_for(lambda: "left by a previous worker" in second.log(), what="the worker to say so")
    finally:
        second.stop()


def test_a_log_cut_on_a_chunk_boundary_still_gets_its_marker(make_server: Any) -> None:
    server = make_server(maxlogsize=1)
    cap = 1024 * 1024
    job_id = server.submit(command="true")
    job = server.worker_call("pickjob", {"name": "lw"})["job"]
    assert job["id"] == job_id
    sent = 0
    for size in (cap // 2, cap - cap // 2, 1000):  # the first two end exactly on the cap
        chunk = base64.b64encode(b"x" * size).decode()
        beat = {"name": "lw", "job_id": job_id, "event": job["event"], "log": chunk, "log_offset": sent}
        server.worker_call("heartbeat", beat)
        sent += size
    text = server.api("GET", f"/api/jobs/{job_id}/log")
    assert text.startswith("x" * cap) and "log truncated" in text[cap:]


def test_a_coalition_4_worker_refused_for_want_of_a_token_is_logged_once(make_server: Any) -> None:
    server = make_server(workertoken="s3cret-token-for-tests", verbose=0)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for _ in range(3):  # Coalition 4's worker: form fields, `hostname`, no token; it retries
        r = requests.post(
            server.url + "/workers/heartbeat", data="hostname=c4box&jobId=-1", headers=form, timeout=10
        )
        assert r.status_code == 401
    wait_for(lambda: "refused Coalition 4 worker c4box" in server.log_path.read_text(), what="the warning")
    assert server.log_path.read_text().count("refused Coalition 4 worker c4box") == 1


def test_deleting_a_busy_worker_lets_its_job_finish(server: Any, make_worker: Any, tmp_path: Path) -> None:
    # Coalition 4's DELETE /api/workers forgot the worker and let its job run to its end.
    make_worker(server.url)
    go = tmp_path / "go"
    job_id = server.submit(command=f"while [ ! -e {go} ]; do sleep 0.05; done; echo finished-here")
    wait_state(server, job_id, "WORKING")
    assert server.api("DELETE", "/api/workers", ["w0"]) == 1
    # The worker's next heartbeat brings it back, still on its job.
    wait_for(lambda: server.request("GET", "/api/workers/w0").status_code == 200, what="w0 to come back")
    assert server.job(job_id)["state"] == "WORKING"
    go.touch()
    job = wait_state(server, job_id, "FINISHED")
    assert (job["requeues"], job["fail_count"]) == (0, 0)
    assert "finished-here" in server.api("GET", f"/api/jobs/{job_id}/log")


def test_the_job_of_a_deleted_worker_that_never_returns_is_requeued(server: Any) -> None:
    job_id = server.submit(command="sleep 60")
    assert server.worker_call("pickjob", {"name": "ghost"})["job"]["id"] == job_id
    assert server.api("DELETE", "/api/workers", ["ghost"]) == 1
    job = wait_state(server, job_id, "WAITING", timeout=20)  # after the 3 s worker timeout
    assert job["requeues"] == 1
