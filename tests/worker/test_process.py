"""A job's process group: output, stdin, group kill, leftovers."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from coalition.worker.process import JobProcess, group_alive
from coalition.worker.spool import RunLog
from tests.support import wait_for
from tests.worker.helpers import pid_alive


def start(command: str, cwd: Path) -> tuple[JobProcess, RunLog, threading.Event]:
    out = RunLog()
    exited = threading.Event()
    proc = JobProcess(command, str(cwd), dict(os.environ), out, exited.set)
    return proc, out, exited


def text(out: RunLog) -> str:
    return out.pending(1 << 30)[1].decode()


def test_output_merged_stdin_closed_new_session(tmp_path: Path) -> None:
    proc, out, exited = start("echo out; echo err >&2; cat; ps -o sid= -p $$", tmp_path)
    assert exited.wait(10)
    assert proc.returncode == 0
    assert not proc.reap_group(1)
    lines = text(out).split()
    assert lines[:2] == ["out", "err"]
    assert int(lines[2]) == proc.pgid  # the job leads its own session (and group)
    proc.close()


def test_terminate_reaches_the_whole_group(tmp_path: Path) -> None:
    proc, out, exited = start("sleep 60 & echo $!; wait", tmp_path)
    wait_for(lambda: text(out).strip(), what="the child's pid")
    child = int(text(out))
    proc.terminate(time.monotonic())
    assert exited.wait(10)
    assert proc.returncode == -signal.SIGTERM or proc.returncode == 128 + signal.SIGTERM
    proc.reap_group(1)
    wait_for(lambda: not group_alive(proc.pgid), what="the group to be gone")
    wait_for(lambda: not pid_alive(child), what="the background child to die")


def test_kill_due_after_grace(tmp_path: Path) -> None:
    # A job that ignores SIGTERM: the caller sends SIGKILL once kill_due() has passed.
    proc, out, exited = start("trap '' TERM; echo ready; while :; do sleep 0.05; done", tmp_path)
    wait_for(lambda: "ready" in text(out), what="the trap to be set")
    proc.terminate(100.0)
    assert proc.kill_due(5.0) == 105.0
    assert not exited.wait(0.3)  # TERM was ignored
    proc.signal(signal.SIGKILL)
    assert exited.wait(10)
    assert proc.returncode == -signal.SIGKILL


def test_leftovers_are_ended_after_the_leader_exits(tmp_path: Path) -> None:
    # The background child keeps the output pipe open after the shell exits.
    proc, out, exited = start("sleep 60 & echo started", tmp_path)
    wait_for(lambda: proc.returncode is not None, what="the shell to exit")
    assert not exited.is_set()  # the output is still open...
    assert proc.reap_group(2)  # leftovers had to be signalled
    assert not group_alive(proc.pgid)
    assert exited.wait(10)  # ...until the leftover is gone
    proc.close()
