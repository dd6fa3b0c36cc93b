"""Held jobs with real worker and server processes: a slot whose runs are short holds the next
job and starts it the moment its run ends; a held job behind a long run, or of a worker that
stops, goes back to the queue unstarted (docs/protocol.md, "Held jobs"). Only workers with
fixed slots (`workers = N`) hold jobs; a packing host (the default) does not."""

from __future__ import annotations

import signal
from typing import Any

from coalition import scheduling
from tests.support import wait_for
from tests.worker.helpers import wait_state


def events(server: Any, job_id: int) -> list[dict[str, Any]]:
    """A job's runs, oldest first."""
    return sorted(server.api("GET", f"/api/jobs/{job_id}/events"), key=lambda e: e["id"])


def test_short_jobs_run_back_to_back_from_hold_and_each_runs_once(server: Any, make_worker: Any) -> None:
    ids = [server.submit(command="true", title=f"short {i}") for i in range(40)]
    worker = make_worker(server.url, workers=2)
    for job_id in ids:
        wait_state(server, job_id, "FINISHED", timeout=60)
    for job_id in ids:
        assert [e["state"] for e in events(server, job_id)] == ["FINISHED"], job_id
    assert " started (held): " in worker.log()  # the look-ahead was used, not just allowed
    workers = {w["name"]: w for w in server.api("GET", "/api/workers")}
    assert {w["state"] for w in workers.values()} == {"WAITING"}  # nothing left assigned
    assert sum(w["finished"] for w in workers.values()) == len(ids)


def test_a_held_job_goes_back_unstarted_when_the_run_before_it_is_long(server: Any, make_worker: Any) -> None:
    first = server.submit(command="true", title="short")
    long = server.submit(command="sleep 3", title="long")
    last = server.submit(command="echo ran", title="after")
    make_worker(server.url, workers=1)  # fixed slots hold; a packing host does not (yet)
    assert scheduling.HOLD_MAX < 3  # the long run outlasts what a job is held
    wait_state(server, last, "FINISHED", timeout=30)
    assert [e["state"] for e in events(server, first)] == ["FINISHED"]
    assert [e["state"] for e in events(server, long)] == ["FINISHED"]
    runs = events(server, last)
    assert [e["state"] for e in runs] == ["INTERRUPTED", "FINISHED"]
    assert "unstarted" in runs[0]["reason"] and "held" in runs[0]["reason"]
    job = server.job(last)
    assert job["fail_count"] == 0 and job["errors"] == 0  # handing back spends no retry


def test_a_stopping_worker_finishes_its_run_and_gives_its_held_job_back(
    server: Any, make_worker: Any
) -> None:
    server.submit(command="true", title="short")
    long = server.submit(command="sleep 1.5", title="long")
    last = server.submit(command="echo ran", title="after")
    worker = make_worker(server.url, workers=1, shutdown="finish")
    wait_for(lambda: server.job(last)["state"] == "WORKING", timeout=20, what="the job held")
    assert server.job(long)["state"] == "WORKING"
    worker.signal(signal.SIGTERM)  # stop: finish what runs, take nothing more
    assert worker.wait(30) == 0
    assert server.job(long)["state"] == "FINISHED"
    assert server.job(last)["state"] == "WAITING"
    assert [e["state"] for e in events(server, last)] == ["INTERRUPTED"]
    assert "ran" not in server.api("GET", f"/api/jobs/{last}/log")


def test_a_packing_worker_holds_nothing(server: Any, make_worker: Any) -> None:
    ids = [server.submit(command="true", title=f"short {i}") for i in range(6)]
    worker = make_worker(server.url)  # workers = auto: packing
    for job_id in ids:
        wait_state(server, job_id, "FINISHED", timeout=30)
    assert " started: " in worker.log() and " started (held): " not in worker.log()
