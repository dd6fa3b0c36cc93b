"""Real worker processes against a real server: the scenarios of issue 3.

Every wait is on an observable condition (tests.support.wait_for), never a fixed sleep.
"""

from __future__ import annotations

import io
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_for
from tests.worker.helpers import pid_alive, wait_state


def log_of(server: Any, job_id: int) -> str:
    return server.api("GET", f"/api/jobs/{job_id}/log")


def test_run_and_log(server: Any, make_worker: Any) -> None:
    make_worker(server.url)
    job_id = server.submit(command="echo hello; echo 'to stderr' >&2; echo PROGRESS:50", title="hi")
    job = wait_state(server, job_id, "FINISHED")
    assert job["worker"] == "w0"
    text = log_of(server, job_id)
    assert "hello\n" in text and "to stderr\n" in text


def test_big_output_arrives_whole(server: Any, make_worker: Any) -> None:
    # ~2.3 MB: several heartbeat chunks and a spill of the in-memory buffer to the spool file.
    make_worker(server.url)
    job_id = server.submit(command="seq 1 350000")
    wait_state(server, job_id, "FINISHED", timeout=60)
    expected = "".join(f"{i}\n" for i in range(1, 350001))
    assert log_of(server, job_id) == expected


def test_environment_and_expansion(server: Any, make_worker: Any, tmp_path: Path) -> None:
    drive = tmp_path / "drive"
    (drive / "shots").mkdir(parents=True)
    make_worker(server.url)
    env = f"A=1\\nB=two words\\nGREETING=hi\\nX_DRIVE={drive}"
    job_id = server.submit(
        command='echo "$A-$B" && echo "$(GREETING) $(UNDEFINED_VAR)!" && pwd && echo "job=$COALITION_JOB_ID"',
        dir="X:/shots",
        environment=env,
    )
    wait_state(server, job_id, "FINISHED")
    text = log_of(server, job_id)
    assert "1-two words\n" in text
    assert "hi !\n" in text  # $(VAR) expanded by the worker, an unknown one to ""
    assert "$(UNDEFINED_VAR)" in text and "undefined variable" in text  # ...and said so in the log
    assert f"{drive}/shots\n" in text  # X: -> $(X_DRIVE)
    assert f"job={job_id}\n" in text


def test_dir_and_stdin_closed(server: Any, make_worker: Any, tmp_path: Path) -> None:
    workdir = tmp_path / "a dir with spaces"
    workdir.mkdir()
    make_worker(server.url)
    # `cat` would hang for ever on an open stdin (Coalition 4's bug #3); /dev/null ends it.
    job_id = server.submit(command="pwd; cat; echo read-done", dir=str(workdir))
    wait_state(server, job_id, "FINISHED")
    assert log_of(server, job_id).splitlines()[:2] == [str(workdir), "read-done"]


def test_missing_dir_is_an_error(server: Any, make_worker: Any, tmp_path: Path) -> None:
    make_worker(server.url)
    job_id = server.submit(command="echo should-not-run", dir=str(tmp_path / "nope"))
    wait_state(server, job_id, "ERROR")
    text = log_of(server, job_id)
    assert "directory not found" in text and "should-not-run" not in text


def test_error_and_retry(server: Any, make_worker: Any, tmp_path: Path) -> None:
    make_worker(server.url)
    failing = server.submit(command="echo failing; exit 3", retry=0)
    marker = tmp_path / "marker"
    # Fails on its first run, succeeds on the retry.
    flaky = server.submit(
        command=f"if [ -e '{marker}' ]; then echo second; else touch '{marker}'; exit 1; fi", retry=1
    )
    job = wait_state(server, failing, "ERROR")
    assert job["fail_count"] == 1
    job = wait_state(server, flaky, "FINISHED")
    assert job["fail_count"] == 1
    assert "second" in log_of(server, flaky)


def test_timeout_kills_the_group(server: Any, make_worker: Any, tmp_path: Path) -> None:
    make_worker(server.url)
    pidfile = tmp_path / "child.pid"
    job_id = server.submit(command=f"sleep 60 & echo $! > '{pidfile}'; wait", timeout=1, retry=0)
    job = wait_state(server, job_id, "ERROR", timeout=15)
    assert "timeout (1s) exceeded" in log_of(server, job_id)
    assert job["fail_count"] == 1
    child = int(pidfile.read_text())
    wait_for(lambda: not pid_alive(child), timeout=5, what="the job's background child to be killed")


def test_pause_kills_the_running_job(server: Any, make_worker: Any, tmp_path: Path) -> None:
    make_worker(server.url)
    pidfile = tmp_path / "pids"
    job_id = server.submit(command=f"sleep 60 & echo $$ $! > '{pidfile}'; wait")
    wait_state(server, job_id, "WORKING")
    wait_for(lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2, what="the job to start")
    pids = [int(p) for p in pidfile.read_text().split()]
    server.api("POST", "/api/pausejobs", [job_id])
    wait_for(
        lambda: not any(pid_alive(p) for p in pids), timeout=10, what="the paused job's processes to die"
    )
    assert server.job(job_id)["state"] == "PAUSED"


def test_worker_killed_mid_job_is_requeued_elsewhere(server: Any, make_worker: Any, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    first = make_worker(server.url, name="first")
    job_id = server.submit(command=f"echo $$ >> '{pidfile}'; sleep 2; echo run-ended")
    job = wait_state(server, job_id, "WORKING")
    assert job["worker"] == "first"
    # WORKING is set when the job is handed out: wait for its process to be running.
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the first run to start")
    first.kill()  # the host dies: no endjob, no more heartbeats
    orphan = int(pidfile.read_text().split()[0])
    os.killpg(orphan, signal.SIGKILL)  # ...and its job with it
    make_worker(server.url, name="second")
    job = wait_state(server, job_id, "FINISHED", timeout=30)  # after the server's 3 s silence timeout
    assert job["worker"] == "second"
    assert job["requeues"] >= 1 and job["fail_count"] == 0


def test_server_killed_and_restarted_mid_job(server: Any, make_worker: Any, tmp_path: Path) -> None:
    done = tmp_path / "done"
    worker = make_worker(server.url)
    job_id = server.submit(command=f"echo before; sleep 1; echo after; touch '{done}'")
    wait_state(server, job_id, "WORKING")
    server.stop()  # SIGKILL: no goodbye
    wait_for(done.exists, timeout=15, what="the job to end while the server is down")
    wait_for(lambda: "unreachable" in worker.log(), what="the worker to notice the server is gone")
    server.start()
    wait_state(server, job_id, "FINISHED", timeout=30)
    text = log_of(server, job_id)
    assert "before\n" in text and "after\n" in text


def test_discovery_on_loopback_broadcast(make_server: Any, make_worker: Any) -> None:
    # The discovery responder must receive broadcasts, so it listens on every address; the
    # worker broadcasts on the loopback network only: nothing leaves this machine.
    server = make_server(listen="0.0.0.0")
    make_worker(None, broadcast="127.255.255.255", port=server.port)
    job_id = server.submit(command="echo found")
    wait_state(server, job_id, "FINISHED", timeout=30)
    assert "found" in log_of(server, job_id)


# No `$(...)` and no backslash: the worker expands $(VAR) in dirs and turns backslashes into
# slashes (Coalition 4's rules); everything else a shell would interpret is in.
HOSTILE_DIR = 'it\'s a "dir" `touch PWNED2`; touch PWNED3 # $HOME ${IFS}x && !!'


@pytest.mark.parametrize(
    "runcommand",
    [
        "env COALITION_USER=__user__ sh -c 'cd __dir__ && __cmd__'",  # the documented sudo style
        'env COALITION_USER=__user__ sh -c "cd __dir__ && __cmd__"',
        "cd __dir__ && env COALITION_USER=__user__ sh -c __cmd__",
    ],
)
def test_runcommand_quotes_hostile_values(
    server: Any, make_worker: Any, tmp_path: Path, runcommand: str
) -> None:
    workdir = tmp_path / HOSTILE_DIR
    workdir.mkdir()
    make_worker(server.url, runcommand=runcommand)
    job_id = server.submit(
        command='pwd > out.txt; echo "$COALITION_USER" >> out.txt',
        dir=str(workdir),
        user="bob'; touch PWNED4 # $(touch PWNED1)",
        title="$(touch PWNED5) `touch PWNED6`",
    )
    wait_state(server, job_id, "FINISHED")
    assert (workdir / "out.txt").read_text().splitlines() == [
        str(workdir),
        "bob'; touch PWNED4 # $(touch PWNED1)",
    ]
    assert [f for d in (tmp_path, workdir, tmp_path / "worker0") for f in d.glob("PWNED*")] == []


@pytest.mark.parametrize("provider", ["aws", "gce"])
def test_interruption_notice_hands_the_job_back(
    server: Any, make_worker: Any, metadata: Any, provider: str
) -> None:
    keys = {"interruptions": provider, "interruption_poll": 0.2, f"{provider}_metadata": metadata.url}
    worker = make_worker(server.url, **keys)
    job_id = server.submit(command="sleep 60")
    wait_state(server, job_id, "WORKING")
    if provider == "aws":
        metadata.aws_notice = True
    else:
        metadata.gce_preempted = True
    job = wait_state(server, job_id, "WAITING", timeout=15)
    assert job["requeues"] == 0 and job["fail_count"] == 0  # no retry spent, no silent requeue
    assert worker.wait(15) == 0  # and the worker takes no more jobs: it exits
    assert "interruption notice" in worker.log()


def test_sigterm_hands_the_job_back(server: Any, make_worker: Any) -> None:
    worker = make_worker(server.url)
    job_id = server.submit(command="sleep 60")
    wait_state(server, job_id, "WORKING")
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    job = server.job(job_id)
    assert job["state"] == "WAITING" and job["requeues"] == 0 and job["fail_count"] == 0


def test_sigterm_with_shutdown_finish_completes_the_job(
    server: Any, make_worker: Any, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    worker = make_worker(server.url, shutdown="finish")
    job_id = server.submit(command=f"while [ ! -e '{go}' ]; do sleep 0.05; done; echo finished-anyway")
    second = server.submit(command="echo never")
    wait_state(server, job_id, "WORKING")
    worker.signal(signal.SIGTERM)
    wait_for(lambda: "finishing running jobs" in worker.log(), what="the worker to get the signal")
    go.touch()
    assert worker.wait(15) == 0
    assert server.job(job_id)["state"] == "FINISHED"
    assert server.job(second)["state"] == "WAITING"  # nothing new was taken while stopping


def test_slots_token_and_affinity(make_server: Any, make_worker: Any) -> None:
    server = make_server(workertoken="s3cret")
    make_worker(server.url, "-w", "2", name="node", token="s3cret", affinity="linux,gpu")
    ids = [server.submit(command="sleep 0.3", affinity="gpu") for _ in range(4)]
    for job_id in ids:
        wait_state(server, job_id, "FINISHED")
    workers = {w["name"]: w for w in server.api("GET", "/api/workers")}
    assert set(workers) == {"node-1", "node-2"}
    assert all(w["affinity"] == "linux,gpu" and w["ip"] == "127.0.0.1" for w in workers.values())
    assert all(isinstance(w["total_memory"], int) and w["total_memory"] > 0 for w in workers.values())
    assert {server.job(i)["worker"] for i in ids} <= {"node-1", "node-2"}


def test_one_request_carries_every_slot(server: Any, make_worker: Any, tmp_path: Path) -> None:
    # Three slots, one running a job, two idle: every sync touches the three worker rows in one
    # transaction (one server time for all), where per-slot heartbeats each had their own.
    make_worker(server.url, "-w", "3", name="box")
    pidfile = tmp_path / "pid"
    job_id = server.submit(command=f"echo $$ > '{pidfile}'; exec sleep 30")
    wait_state(server, job_id, "WORKING")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the job to start")
    pid = int(pidfile.read_text())

    def pings() -> set[float]:
        return {w["ping_time"] for w in server.api("GET", "/api/workers") if w["name"].startswith("box-")}

    def one_time(other_than: float | None = None) -> float | None:
        times = pings()
        return next(iter(times)) if len(times) == 1 and other_than not in times else None

    first = wait_for(one_time, what="one ping time for all three slots")
    wait_for(lambda: one_time(first), what="the next sync, again one time for all three")
    # A pause reaches the running slot through the same request: its process is killed.
    server.api("POST", "/api/pausejobs", [job_id])
    wait_for(lambda: not pid_alive(pid), timeout=10, what="the paused job's process to die")


def test_wrong_token_takes_no_job(make_server: Any, make_worker: Any) -> None:
    server = make_server(workertoken="s3cret")
    worker = make_worker(server.url, token="wrong")
    job_id = server.submit(command="echo no")
    wait_for(lambda: "the server refused a sync" in worker.log(), what="the worker to be refused")
    assert server.job(job_id)["state"] == "WAITING"


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coalition.worker.main", "--check", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check(make_server: Any, tmp_path: Path) -> None:
    server = make_server(workertoken="s3cret")
    ini = tmp_path / "w.ini"
    ini.write_text("[worker]\ntoken = s3cret\ninterruptions = off\n")
    ok = _check("-c", str(ini), server.url)
    assert ok.returncode == 0, ok.stderr
    ini.write_text("[worker]\ntoken = wrong\n")
    refused = _check("-c", str(ini), server.url)
    assert refused.returncode == 1 and "401" in refused.stderr
    server.stop()
    down = _check("-c", str(ini), server.url)
    assert down.returncode == 1 and down.stderr.count("\n") == 1


def test_bad_setting_is_one_clear_line(tmp_path: Path) -> None:
    ini = tmp_path / "w.ini"
    ini.write_text("[worker]\nsleep = soon\n")
    bad = _check("-c", str(ini), "http://127.0.0.1:9")
    assert bad.returncode == 2
    assert (
        bad.stderr.strip()
        == "coalition-worker: error: [worker] sleep: expected a number of seconds, got 'soon'"
    )


def test_each_run_reports_its_cpu_time_and_peak_memory(server: Any, make_worker: Any, tmp_path: Path) -> None:
    # Two processes of the job hold 80 MB each at the same time (a renderer and its helper):
    # the run's peak counts both. The job also spends about half a second of CPU.
    hold = tmp_path / "hold.py"
    hold.write_text(
        "import sys, time\n"
        "block = bytearray(80 * 2**20)\n"
        "for i in range(0, len(block), 4096): block[i] = 1\n"  # resident, not just reserved
        "open(sys.argv[1], 'w').close()\n"
        "time.sleep(4)\n"
    )
    py = shlex.quote(sys.executable)
    command = (
        f"{py} {hold} {tmp_path}/a & {py} {hold} {tmp_path}/b & "
        f"{py} -c 'import time; t = time.process_time()\nwhile time.process_time() - t < 0.5: pass'; wait"
    )
    make_worker(server.url)
    job_id = server.submit(command=command)
    wait_state(server, job_id, "FINISHED", timeout=60)
    [event] = server.api("GET", f"/api/events?job={job_id}&howlong=3600")
    assert event["cpu_time"] >= 0.4, event
    assert 160 <= event["peak_memory"] < 2000
    # A run too short to sample reports 0 (not measured), not the worker's own size, which a
    # vforked child shares until its exec and the kernel then counts as the child's peak.
    quick = server.submit(command="true")
    wait_state(server, quick, "FINISHED")
    [event] = server.api("GET", f"/api/events?job={quick}&howlong=3600")
    assert event["peak_memory"] == 0, event


def test_the_newest_output_becomes_the_job_and_group_thumbnail(
    server: Any, make_worker: Any, tmp_path: Path
) -> None:
    from PIL import Image

    out = tmp_path / "out"
    out.mkdir()
    stale = out / "f_0099.png"
    Image.new("RGB", (640, 360), "blue").save(stale)
    os.utime(stale, (1, 1))  # an old render's frame: not this run's
    # The job "renders" frames 1 and 2 (red, then green) as a renderer would.
    script = tmp_path / "render.py"
    script.write_text(
        "import sys, time\nfrom PIL import Image\n"
        "for n, colour in ((1, 'red'), (2, 'green')):\n"
        f"    Image.new('RGB', (640, 360), colour).save('{out}/f_%04d.png' % n)\n"
        "    time.sleep(0.05)\n"
    )
    make_worker(server.url)
    group = server.submit(title="shot", command="", paused=True)
    job_id = server.submit(
        command=f"{shlex.quote(sys.executable)} {script}", output=f"{out}/f_####.png", parent=group
    )
    server.api("POST", "/api/startjobs", [group])
    wait_state(server, job_id, "FINISHED")
    for target in (job_id, group):
        r = server.request("GET", f"/api/jobs/{target}/thumbnail")
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
        with Image.open(io.BytesIO(r.content)) as thumb:
            assert max(thumb.size) == 256 and thumb.size == (256, 144)
            red, green, blue = thumb.convert("RGB").getpixel((128, 72))
            assert green > 100 and red < 60 and blue < 60  # frame 2, the newest of this run
    stats = server.api("GET", f"/api/jobs/{group}/stats")
    assert stats["thumbnail"]["source"] == job_id
    none = server.submit(command="true")
    wait_state(server, none, "FINISHED")
    missing = server.request("GET", f"/api/jobs/{none}/thumbnail")
    assert missing.status_code == 404 and "no thumbnail" in missing.json()["error"]
