"""The server as a process: its periodic reaper, UDP discovery, restarts, and first start."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

from tests.support import wait_for


def test_reaper_requeues_a_silent_workers_job_and_times_out_jobs(make_server: Any) -> None:
    server = make_server(timeout=1, requeuelimit=3)
    silent = server.submit(title="silent", command="render")
    job = server.worker_call("pickjob", {"name": "ghost"})["job"]
    assert job["id"] == silent
    # The worker never comes back: within the heartbeat timeout plus a reaper pass the job
    # is WAITING again, without a retry spent, and the worker is TIMEOUT.
    wait_for(lambda: server.job(silent)["state"] == "WAITING", timeout=10, what="the job to be requeued")
    assert server.job(silent)["fail_count"] == 0 and server.job(silent)["requeues"] == 1
    assert server.api("GET", "/api/workers/ghost")["state"] == "TIMEOUT"
    assert "went silent" in server.api("GET", f"/api/jobs/{silent}/log")
    # A job past its own timeout is an error, even while its worker keeps heartbeating.
    slow = server.submit(title="slow", command="sleep 100", timeout=1, priority=5000)
    job = server.worker_call("pickjob", {"name": "busy"})["job"]
    assert job["id"] == slow

    def killed() -> bool:
        beat = server.worker_call("heartbeat", {"name": "busy", "job_id": slow, "event": job["event"]})
        return beat["kill"]

    wait_for(killed, timeout=10, interval=0.2, what="the server to time the job out")
    assert server.job(slow)["state"] == "ERROR"
    assert "exceeded its timeout" in server.api("GET", f"/api/jobs/{slow}/log")


def test_udp_discovery_answers_roxor(make_server: Any) -> None:
    server = make_server()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"coalition", ("127.0.0.1", server.port))
        data, peer = s.recvfrom(64)
        assert data == b"roxor" and peer[0] == "127.0.0.1"
        s.sendto(b"something else", ("127.0.0.1", server.port))
        s.settimeout(0.3)
        try:
            s.recvfrom(64)
            answered = True
        except TimeoutError:
            answered = False
        assert not answered  # only the discovery query gets an answer


def test_restart_keeps_the_queue(make_server: Any) -> None:
    server = make_server()
    jid = server.submit(title="persist", command="true")
    server.stop()  # SIGKILL: a crash
    server.start()
    assert server.job(jid)["title"] == "persist"
    assert server.terminate() == 0  # SIGTERM stops it cleanly


def test_init_if_needed_is_idempotent(make_server: Any) -> None:
    server = make_server(start=False)
    cmd = [sys.executable, "-m", "coalition.server.main", "-c", str(server.ini_path), "--init-if-needed"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and "created" in first.stdout
    assert second.returncode == 0 and "already" in second.stdout


def test_the_unit_brings_an_earlier_coalition5_schema_up_to_date(make_server: Any) -> None:
    """A package upgrade restarts the server over the previous release's database (schema 2,
    before the submissions table): the unit's --init-if-needed applies our own additive steps,
    keeps the jobs, and the server starts."""
    import sqlite3

    server = make_server(start=False)
    cmd = [sys.executable, "-m", "coalition.server.main", "-c", str(server.ini_path)]
    assert subprocess.run([*cmd, "--init"], capture_output=True, timeout=60).returncode == 0
    server.start()
    jid = server.submit(title="kept", command="true")
    server.terminate()
    db = sqlite3.connect(server.datadir / "coalition.db")
    db.execute("DROP TABLE submissions")
    for column in ("cpu_time", "peak_memory"):  # events before runs reported their usage
        db.execute(f"ALTER TABLE events DROP COLUMN {column}")
    db.execute("INSERT INTO events (worker, job_id, job_title, state, start, duration) "
               f"VALUES ('old', {jid}, 'kept', 'FINISHED', 1, 2)")  # fmt: skip
    db.execute("UPDATE Migrations SET database_version = 2")  # as the previous release made it
    db.commit()
    db.close()
    refused = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--migrate" in refused.stderr  # a plain start still asks
    unit = subprocess.run([*cmd, "--init-if-needed"], capture_output=True, text=True, timeout=60)
    assert unit.returncode == 0 and "migrated" in unit.stdout, unit.stdout + unit.stderr
    server.start()
    assert server.job(jid)["title"] == "kept"
    assert server.api("PUT", "/api/jobs", {"title": "new", "command": "true"}) > jid
    [old] = server.api("GET", f"/api/events?job={jid}")
    assert (old["worker"], old["duration"], old["cpu_time"], old["peak_memory"]) == ("old", 2, 0, 0)
