"""Failure handling with real server and worker processes (issue 16, docs/failures.md): a
command that fails only on one named host, a command that hangs, a command that prints a
licence error, and the reason every run's event gives. Every wait is on a condition."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_for
from tests.worker.helpers import wait_state

FAILS_ON_BADHOST = 'echo "on $COALITION_WORKER"; test "$COALITION_WORKER" != badhost'


def events(server: Any, job_id: int) -> list[dict[str, Any]]:
    """A job's runs, oldest first."""
    return sorted(server.api("GET", f"/api/events?job={job_id}"), key=lambda e: e["id"])


def reasons(server: Any, job_id: int) -> list[tuple[str, str, str]]:
    return [(e["worker"], e["state"], e["reason"]) for e in events(server, job_id)]


def worker_state(server: Any, name: str) -> str:
    """A worker's state ("" until it registered)."""
    r = server.request("GET", f"/api/workers/{name}")
    return r.json()["state"] if r.status_code == 200 else ""


def mysql_server(make_server: Any, mariadb: Any, **keys: Any) -> Any:
    """A server process on a fresh private MariaDB database."""
    db = mariadb.server_keys()
    server = make_server(start=False, **db, **keys)
    server.init_database()
    return server.start()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def blocking_server(request: pytest.FixtureRequest, make_server: Any) -> Any:
    """A server that blocks a host from a job after 2 failures, on each store."""
    if request.param == "sqlite":
        return make_server(hostfails=2)
    return mysql_server(make_server, request.getfixturevalue("mariadb"), hostfails=2)


def test_a_host_that_fails_a_job_is_blocked_from_it(blocking_server: Any, make_worker: Any) -> None:
    server = blocking_server
    make_worker(server.url, name="badhost")
    job_id = server.submit(command=FAILS_ON_BADHOST, retry=5, title="shot010")
    blocks = wait_for(
        lambda: server.api("GET", f"/api/jobs/{job_id}/blocks"), timeout=30, what="badhost to be blocked"
    )
    assert [(b["worker"], b["failures"], b["reason"]) for b in blocks] == [("badhost", 2, "exit code 1")]
    assert blocks[0]["blocked_until"] > blocks[0]["last_failure"] + 3500  # forgive: 1 hour
    assert server.api("GET", "/api/blocks?worker=badhost") == blocks
    # Another host takes the job; badhost never ran it a third time.
    make_worker(server.url, name="goodhost")
    job = wait_state(server, job_id, "FINISHED", timeout=30)
    assert job["worker"] == "goodhost" and job["reason"] == ""
    assert reasons(server, job_id) == [
        ("badhost", "ERROR", "exit code 1"),
        ("badhost", "ERROR", "exit code 1"),
        ("goodhost", "FINISHED", ""),
    ]
    # Lifted by hand (the web page and `coalition unblock` call this): badhost may take it again.
    assert server.api("DELETE", f"/api/jobs/{job_id}/blocks") == {"lifted": 1}
    assert server.api("GET", f"/api/jobs/{job_id}/blocks") == []


def test_group_scope_blocks_every_frame_of_the_job(make_server: Any, make_worker: Any) -> None:
    server = make_server(hostfails=1, blockscope="group")
    make_worker(server.url, name="badhost")
    group = server.submit(title="shot020", command="")
    frames = [server.submit(parent=group, title=f"f{i}", command=FAILS_ON_BADHOST, retry=3) for i in range(4)]
    wait_for(lambda: server.api("GET", f"/api/jobs/{group}/blocks"), timeout=30, what="the group block")
    # A frame's own view of blocks includes its group's.
    assert [b["job_id"] for b in server.api("GET", f"/api/jobs/{frames[2]}/blocks")] == [group]
    make_worker(server.url, name="goodhost")
    for frame in frames:
        wait_state(server, frame, "FINISHED", timeout=30)
    runs_on_bad = [e for f in frames for e in events(server, f) if e["worker"] == "badhost"]
    assert len(runs_on_bad) == 1  # one failure blocked the host from the whole group


def test_a_hanging_command_is_killed_as_stalled(make_server: Any, make_worker: Any) -> None:
    server = make_server(stalltimeout=1)  # the farm default
    make_worker(server.url)
    hang = server.submit(command="echo started; exec sleep 60", title="hangs")
    job = wait_state(server, hang, "ERROR", timeout=30)
    assert job["reason"] == "stalled (no output for 1 s)"
    assert reasons(server, hang) == [("w0", "ERROR", "stalled (no output for 1 s)")]
    log = server.api("GET", f"/api/jobs/{hang}/log")
    assert "started\n" in log and "stalled (no output for 1 s): killing its processes" in log
    assert events(server, hang)[0]["duration"] < 30
    # A job's own setting wins over the farm's; -1 turns stall detection off for it.
    chatty = server.submit(command="for i in 1 2 3 4; do echo $i; sleep 0.5; done", title="prints")
    quiet = server.submit(command="sleep 1.5; echo done", stalltimeout=-1, title="quiet")
    wait_state(server, chatty, "FINISHED", timeout=30)
    wait_state(server, quiet, "FINISHED", timeout=30)


def test_timeout_signal_and_minruntime_reasons(make_server: Any, make_worker: Any) -> None:
    server = make_server(sickjobs=0)  # four failing jobs on one host: not a sick host here
    make_worker(server.url)
    slow = server.submit(command="exec sleep 60", timeout=1)
    killed = server.submit(command="kill -9 $$")
    fast = server.submit(command="true", minruntime=30)
    failing = server.submit(command="exit 3")
    assert wait_state(server, slow, "ERROR", timeout=30)["reason"] == "timeout (1 s)"
    assert wait_state(server, killed, "ERROR", timeout=30)["reason"] == "killed by signal 9 (SIGKILL)"
    assert wait_state(server, fast, "ERROR", timeout=30)["reason"].startswith("too fast (")
    assert wait_state(server, failing, "ERROR", timeout=30)["reason"] == "exit code 3"
    assert [e["reason"] for e in events(server, fast)] == [events(server, fast)[0]["reason"]]
    assert "< minruntime 30 s)" in events(server, fast)[0]["reason"]


def test_a_licence_error_requeues_without_spending_a_retry(
    server: Any, make_worker: Any, tmp_path: Path
) -> None:
    make_worker(server.url)
    marker = tmp_path / "seat"
    # The first run finds no licence (and would wait for one for a minute); the next one has it.
    command = (
        f"if [ -e {marker} ]; then echo rendered; "
        f"else touch {marker}; echo 'nuke: no license available'; exec sleep 60; fi"
    )
    job_id = server.submit(command=command, retry=0, logrules="@nuke")
    job = wait_state(server, job_id, "FINISHED", timeout=30)
    assert (job["errors"], job["requeues"]) == (0, 1)
    runs = events(server, job_id)
    assert [(e["state"], e["reason"]) for e in runs] == [
        ("REQUEUED", "log rule nuke-nolicence: requeue"),
        ("FINISHED", ""),
    ]
    assert runs[0]["duration"] < 30  # killed when the line came, not after its minute


def test_farm_rules_fail_now_and_job_rules_succeed(make_server: Any, make_worker: Any) -> None:
    server = make_server(logrules="\n    fatal fail ^FATAL:\n    @disk")
    make_worker(server.url)
    fatal = server.submit(command="echo 'FATAL: scene not found'; exec sleep 60", retry=3)
    job = wait_state(server, fatal, "ERROR", timeout=30)
    assert job["reason"] == "log rule fatal: fail"
    assert len(events(server, fatal)) == 1  # "fail" spends no more retries: a retry prints the same
    done = server.submit(command="echo 'render complete'; exit 3", logrules=["ok succeed ^render complete$"])
    job = wait_state(server, done, "FINISHED", timeout=30)
    assert job["reason"] == "log rule ok: succeed"


def test_a_host_failing_several_jobs_turns_sick_until_its_check_passes(
    make_server: Any, make_worker: Any, tmp_path: Path
) -> None:
    server = make_server(sickjobs=2, sickwindow=600)
    healthy = tmp_path / "healthy"
    make_worker(server.url, name="sickhost", checkcommand=f"test -e {healthy}", checkinterval=0.3)
    first = server.submit(command="exit 1", title="a")
    second = server.submit(command="exit 1", title="b")
    wait_for(lambda: worker_state(server, "sickhost") == "SICK", timeout=30, what="sickhost to be SICK")
    worker = server.api("GET", "/api/workers/sickhost")
    assert worker["reason"].startswith("sick: runs of 2 different jobs failed within 600 s")
    sick = [e for e in server.api("GET", "/api/events?worker=sickhost") if e["state"] == "SICK"]
    assert len(sick) == 1 and sick[0]["reason"] == worker["reason"]
    assert {server.job(first)["state"], server.job(second)["state"]} == {"ERROR"}
    third = server.submit(command="echo fine", title="c")
    healthy.write_text("ok")  # the check command passes from now on
    wait_state(server, third, "FINISHED", timeout=30)
    cleared = [e for e in server.api("GET", "/api/events?worker=sickhost") if e["state"] == "CLEARED"]
    assert [e["reason"] for e in cleared] == ["check command passed: exit code 0"]
    # The third job ran only once the host was cleared.
    assert events(server, third)[0]["start"] >= cleared[0]["start"]
    assert server.api("GET", "/api/workers/sickhost")["state"] in ("WAITING", "WORKING")


def test_an_operator_clears_a_sick_host(make_server: Any, make_worker: Any) -> None:
    server = make_server(sickjobs=2)
    make_worker(server.url, name="sickhost")  # no check command: only an operator clears it
    server.submit(command="exit 1")
    server.submit(command="exit 2")
    wait_for(lambda: worker_state(server, "sickhost") == "SICK", timeout=30, what="SICK")
    assert server.api("POST", "/api/clearsickworkers", ["sickhost"]) == {"cleared": ["sickhost"]}
    assert server.api("POST", "/api/clearsickworkers", ["sickhost"]) == {"cleared": []}
    job_id = server.submit(command="true")
    wait_state(server, job_id, "FINISHED", timeout=30)


def test_a_handback_says_so(server: Any, make_worker: Any) -> None:
    worker = make_worker(server.url, shutdown="handback")
    job_id = server.submit(command="echo running; exec sleep 60")
    wait_for(lambda: "running" in server.api("GET", f"/api/jobs/{job_id}/log"), timeout=30, what="the run")
    worker.signal(signal.SIGTERM)
    wait_for(lambda: events(server, job_id)[0]["state"] == "INTERRUPTED", timeout=30, what="the handback")
    assert events(server, job_id)[0]["reason"] == "handed back (the worker is shutting down)"


def test_a_log_rule_turns_the_host_sick_and_another_lowers_a_licence(
    make_server: Any, make_worker: Any, tmp_path: Path
) -> None:
    # Real worker output: a GPU fallen off the bus makes the host SICK at once (one job is
    # enough); a licence server's refusal counts a seat of `nuke` as used outside the farm.
    server = make_server()
    server.api("POST", "/api/limits", {"nuke": 2})
    make_worker(server.url, name="gpuhost")
    gpu = server.submit(
        command="echo 'NVRM: GPU has fallen off the bus'; exec sleep 60",
        logrules="gpu sick (?i)GPU has fallen off the bus",
    )
    wait_for(lambda: worker_state(server, "gpuhost") == "SICK", timeout=30, what="gpuhost to be SICK")
    assert server.job(gpu)["reason"] == "log rule gpu: sick"
    assert server.job(gpu)["state"] == "WAITING"  # not the job's fault: back to the queue
    assert server.api("GET", "/api/workers/gpuhost")["reason"] == "sick: log rule gpu: sick"
    server.api("DELETE", "/api/jobs", [gpu])
    server.api("POST", "/api/clearsickworkers", ["gpuhost"])
    seats = server.submit(
        command="echo 'error: out of seats'; exec sleep 60",
        limits="nuke",
        logrules=["seats limit:nuke:600 out of seats"],
        retry=0,
    )
    wait_for(
        lambda: server.job(seats)["reason"] == "log rule seats: limit:nuke:600",
        timeout=30,
        what="the licence rule",
    )

    # Each refusal counts one more seat outside: after two, the farm stops starting the job.
    def lowered() -> int:
        return int(server.api("GET", "/api/limits")[0]["lowered"])

    wait_for(lambda: lowered() == 2 and server.job(seats)["state"] == "WAITING", timeout=30, what="2 seats")
    why = [r["text"] for r in server.api("GET", f"/api/jobs/{seats}/why")["reasons"]]
    assert why == ["waiting for limit nuke (2/2 in use, needs 1)"]
    assert server.job(seats)["errors"] == 0  # no retry spent


def test_a_log_rule_requeue_is_bounded_by_requeuelimit(make_server: Any, make_worker: Any) -> None:
    server = make_server(requeuelimit=2)
    make_worker(server.url)
    job_id = server.submit(
        command="echo 'nuke: no license available'; exec sleep 60", logrules="@nuke", retry=5
    )
    job = wait_state(server, job_id, "ERROR", timeout=60)
    runs = [(e["state"], e["reason"]) for e in events(server, job_id)]
    assert runs[:2] == [("REQUEUED", "log rule nuke-nolicence: requeue")] * 2
    assert runs[2][0] == "ERROR" and "requeued 2 times already" in runs[2][1]
    assert job["requeues"] == 3 and len(runs) == 3


def test_operators_taking_runs_back_say_so(server: Any, make_worker: Any) -> None:
    worker = make_worker(server.url, name="opshost")
    long = "echo running; exec sleep 60"
    job_id = server.submit(command=long)
    running = lambda: "running" in server.api("GET", f"/api/jobs/{job_id}/log")  # noqa: E731
    wait_for(running, timeout=30, what="the run")
    server.api("POST", "/api/resetjobs", [job_id])
    wait_for(
        lambda: events(server, job_id)[-1]["state"] == "WORKING" and len(events(server, job_id)) == 2,
        timeout=30,
        what="the run after the reset",
    )
    server.api("POST", "/api/stopworkers", ["opshost"])
    wait_for(lambda: events(server, job_id)[1]["state"] != "WORKING", timeout=30, what="the stop")
    assert [(e["state"], e["reason"]) for e in events(server, job_id)] == [
        ("RESET", "reset by an operator"),
        ("STOPPED", "worker stopped by an operator"),
    ]
    assert worker.proc.poll() is None  # a stopped worker lives on, it only takes no job
