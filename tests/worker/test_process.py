"""A job's process group: output, stdin, group kill, leftovers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coalition.worker.process import JobProcess, group_alive
from coalition.worker.spool import RunLog
from tests.support import wait_for
from tests.worker.helpers import pid_alive


def start(command: str, cwd: Path) -> tuple[JobProcess, RunLog]:
    out = RunLog()
    return JobProcess(command, str(cwd), dict(os.environ), out), out


def ended(proc: JobProcess, seconds: float) -> bool:
    """Pump until the leader has exited and the output is closed, or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while not (proc.returncode is not None and proc.eof):
        if time.monotonic() >= deadline:
            return False
        proc.pump(deadline - time.monotonic())
    return True


def pumped(proc: JobProcess, condition: Callable[[], object], what: str) -> None:
    """Pump the job's output until `condition` holds (or fail after 10 s)."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        proc.pump(0.1)


def text(out: RunLog) -> str:
    return out.pending(1 << 30)[1].decode()


def test_output_merged_stdin_closed_new_session(tmp_path: Path) -> None:
    proc, out = start("echo out; echo err >&2; cat; ps -o sid= -p $$", tmp_path)
    assert ended(proc, 10)
    assert proc.returncode == 0
    assert not proc.reap_group(1)
    lines = text(out).split()
    assert lines[:2] == ["out", "err"]
    assert int(lines[2]) == proc.pgid  # the job leads its own session (and group)
    proc.close()


def test_terminate_reaches_the_whole_group(tmp_path: Path) -> None:
    proc, out = start("sleep 60 & echo $!; wait", tmp_path)
    pumped(proc, lambda: text(out).strip(), what="the child's pid")
    child = int(text(out))
    proc.terminate(time.monotonic())
    assert ended(proc, 10)
    assert proc.returncode == -signal.SIGTERM or proc.returncode == 128 + signal.SIGTERM
    proc.reap_group(1)
    wait_for(lambda: not group_alive(proc.pgid), what="the group to be gone")
    wait_for(lambda: not pid_alive(child), what="the background child to die")


def test_kill_due_after_grace(tmp_path: Path) -> None:
    # A job that ignores SIGTERM: the caller sends SIGKILL once kill_due() has passed.
    proc, out = start("trap '' TERM; echo ready; while :; do sleep 0.05; done", tmp_path)
    pumped(proc, lambda: "ready" in text(out), what="the trap to be set")
    proc.terminate(100.0)
    assert proc.kill_due(5.0) == 105.0
    assert not ended(proc, 0.3)  # TERM was ignored
    proc.signal(signal.SIGKILL)
    assert ended(proc, 10)
    assert proc.returncode == -signal.SIGKILL


def test_leftovers_are_ended_after_the_leader_exits(tmp_path: Path) -> None:
    # The background child keeps the output pipe open after the shell exits.
    proc, out = start("sleep 60 & echo started", tmp_path)
    pumped(proc, lambda: proc.returncode is not None, what="the shell to exit")
    assert not proc.eof  # the output is still open...
    assert proc.reap_group(2)  # leftovers had to be signalled
    assert not group_alive(proc.pgid)
    assert proc.eof  # ...until the leftover is gone
    assert text(out) == "started\n"
    proc.close()


def test_a_job_writing_more_than_a_pipe_holds_is_read_whole(tmp_path: Path) -> None:
    # Nobody pumps while the job writes 3 MB: the pipe's buffer fills and the job waits (it is
    # not lost or killed); pumping then takes in every byte.
    proc, out = start("head -c 3000000 /dev/zero | tr '\\0' x; echo; echo done", tmp_path)
    assert ended(proc, 30)
    assert proc.returncode == 0
    data = text(out)
    assert data.endswith("x\ndone\n") and data.count("x") == 3000000


def test_pump_returns_on_a_wake_byte(tmp_path: Path) -> None:
    proc, _ = start("sleep 30", tmp_path)
    read_end, write_end = os.pipe()
    os.write(write_end, b"!")
    started = time.monotonic()
    proc.pump(20, read_end)
    assert time.monotonic() - started < 5  # woken by the byte, not by the 20 s timeout
    proc.signal(signal.SIGKILL)
    assert ended(proc, 10)
    proc.close()
    os.close(read_end)
    os.close(write_end)


def test_the_group_ledger_is_a_journal_that_survives_a_cut_line(tmp_path: Path) -> None:
    from coalition.worker.process import GroupLedger

    path = tmp_path / "ledger"
    ledger = GroupLedger(path)
    for pgid in range(1000, 1000 + 600):  # past COMPACT_AFTER: compacted on the way
        ledger.add(pgid)
        if pgid % 3:
            ledger.remove(pgid)
    alive = {pgid for pgid in range(1000, 1600) if pgid % 3 == 0}
    with open(path, "a") as f:
        f.write("17")  # a crash in the middle of a line: ignored
    assert set(GroupLedger.read(path.read_text())) == alive
    assert len(path.read_text().splitlines()) < 600 + 400  # not the whole history


def test_a_new_ledger_ends_the_groups_a_killed_worker_left(tmp_path: Path) -> None:
    from coalition.worker.process import GroupLedger

    path = tmp_path / "ledger"
    first = GroupLedger(path)
    proc, _ = start("sleep 60", tmp_path)
    first.add(proc.pgid)
    done, _ = start("true", tmp_path)
    first.add(done.pgid)
    assert ended(done, 10)
    done.reap_group(1)
    first.remove(done.pgid)
    # The worker dies without a word; its successor reads the journal.
    assert GroupLedger(path).end_leftovers(2.0) == [proc.pgid]
    assert ended(proc, 10) and proc.returncode == -signal.SIGTERM
    proc.close()
    done.close()


def test_a_job_starts_only_once_its_group_is_written_down(tmp_path: Path, monkeypatch: Any) -> None:
    # kill -9 between the start and the ledger's line must not leave a job nobody can find:
    # the job waits for the worker's word, written after the line (and dies without it).
    from coalition.worker import process
    from coalition.worker.process import GroupLedger

    seen: list[bool] = []

    class Watching(GroupLedger):
        def add(self, pgid: int) -> None:
            # The job may not have run a single command yet: its marker is not there.
            seen.append((tmp_path / "ran").exists())
            super().add(pgid)

    ledger = Watching(tmp_path / "ledger")
    monkeypatch.setattr(process, "LEDGER", ledger)
    proc, out = start(f"touch {tmp_path}/ran; cat; echo done", tmp_path)
    assert ended(proc, 10) and proc.returncode == 0
    assert seen == [False] and text(out) == "done\n"  # and stdin is empty, as always
    assert set(GroupLedger.read((tmp_path / "ledger").read_text())) == {proc.pgid}
    proc.close()
