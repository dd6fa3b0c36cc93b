"""One job's process group: start it, collect its output, kill it (TERM, grace, KILL).

Each job runs in a new session (hence its own process group), so everything it spawns can be
signalled at once; stdin is /dev/null (Coalition 4 left a pipe open, and a program that read
stdin hung for ever) and stdout/stderr share one pipe.

A worker killed with -9 cannot end its jobs, and a new session survives it: a replacement
worker of the same name then started a second copy of the job next to the first. So the
running groups are written down (GroupLedger, a small file per worker name), and a worker
starting under that name first ends the groups its predecessor left.

No thread per job: the slot that runs the job waits in `pump()`, which sleeps on the output
pipe, the leader's pidfd and the slot's wake pipe at once, and takes in whatever output came.
Starting a reader thread and handing the job's exit back from it cost more wall time per job
than the job's own process start (bench/e2e.py). The pipe is enlarged so that a job keeps
writing while its slot waits on a slow server answer.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import resource
import select
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from .spool import RunLog
from .usage import Usage, UsageMeter, read_proc

log = logging.getLogger("coalition.worker")

READ_SIZE = 65536
PIPE_SIZE = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size for unprivileged processes
EXIT_POLL = 0.01  # seconds between exit checks where there is no pidfd (not Linux >= 5.3)


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits (Linux >= 5.3), else None."""
    try:
        return os.pidfd_open(pid)  # type: ignore[attr-defined,unused-ignore]
    except (AttributeError, OSError):
        return None


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except OSError:
        pass  # a smaller limit on this host: the default 64 KB still works, with back-pressure


def group_alive(pgid: int) -> bool:
    """Whether any process (zombies included) is left in process group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member runs as another user (runcommand with sudo): still alive
    return True


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot, /proc/<pid>/stat field 22), or None."""
    try:
        return read_proc(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()[19].decode("ascii")
    except (OSError, IndexError, UnicodeDecodeError):
        return None


def _session_members(sid: int) -> list[int]:
    """The pids of session `sid` (each job is a session of its own)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if len(fields) > 3 and fields[3] == str(sid):
                members.append(int(entry))
    return members


class GroupLedger:
    """The process groups of a worker's running jobs, kept in a file (one per worker name).

    An append-only journal (`PGID START` when a group starts, `-PGID` when it is gone),
    flushed at each line and compacted now and then: a job start costs one small write, not
    a file rewrite (rewriting it twice per job was a third of a busy worker's CPU). A line cut
    short by a crash is ignored when the journal is read back.
    """

    COMPACT_AFTER = 256  # lines written since the last compaction

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._groups: dict[int, str] = {}
        self._fd: int | None = None  # the journal, opened O_APPEND: one write(2) per line
        self._lines = 0

    def _save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(f"{pgid} {start}\n" for pgid, start in self._groups.items()))
        os.replace(tmp, self.path)  # never a half-written file for the next worker to read
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._lines = len(self._groups)

    def _note(self, line: str) -> None:
        if self._fd is None or self._lines >= max(self.COMPACT_AFTER, 4 * len(self._groups)):
            self._save()  # the state so far (which includes this change), then a fresh journal
            return
        # Straight to the kernel: a worker killed -9 right after loses nothing.
        os.write(self._fd, line.encode("ascii"))
        self._lines += 1

    def add(self, pgid: int) -> None:
        """A job's group started."""
        with self._lock:
            start = self._groups[pgid] = _start_time(pgid) or "?"
            with contextlib.suppress(OSError):
                self._note(f"{pgid} {start}\n")

    def remove(self, pgid: int) -> None:
        """A job's group is gone."""
        with self._lock:
            if self._groups.pop(pgid, None) is not None:
                with contextlib.suppress(OSError):
                    self._note(f"-{pgid}\n")

    @staticmethod
    def read(text: str) -> dict[int, str]:
        """The groups a journal says are running (later lines win)."""
        groups: dict[int, str] = {}
        for line in text.split("\n"):
            parts = line.split()
            if len(parts) == 1 and parts[0].startswith("-") and parts[0][1:].isdigit():
                groups.pop(int(parts[0][1:]), None)
            elif len(parts) == 2 and parts[0].isdigit():
                groups[int(parts[0])] = parts[1]
        return groups

    def end_leftovers(self, grace: float, clock: Callable[[], float] = time.monotonic) -> list[int]:
        """End the groups a previous worker of this name left running; returns their ids.

        A group whose leader still runs is ours only if its start time matches what was
        written (pids are reused); a leaderless group is recognised by its session (a job's
        session id is its group id, and no one else starts a session with that number)."""
        try:
            left = self.read(self.path.read_text())
        except OSError:
            return []
        ended = []
        for pgid, start in left.items():
            now_start = _start_time(pgid)
            if now_start is not None and now_start != start:
                continue  # the number was reused by an unrelated process
            if now_start is None and not _session_members(pgid):
                continue
            if group_alive(pgid):
                ended.append(pgid)
                with contextlib.suppress(OSError):
                    os.killpg(pgid, signal.SIGTERM)
        deadline = clock() + grace
        while any(group_alive(g) for g in ended) and clock() < deadline:
            time.sleep(0.05)  # polling: there is no portable way to wait on a process group
        for pgid in ended:
            if group_alive(pgid):
                with contextlib.suppress(OSError):
                    os.killpg(pgid, signal.SIGKILL)
        with self._lock, contextlib.suppress(OSError):
            self._save()  # what we run now (nothing yet): the leftovers are dealt with
        return ended


LEDGER: GroupLedger | None = None  # set by the worker's main before its slots start


def open_ledger(base: str, key: str) -> GroupLedger | None:
    """The ledger of the worker identified by `key` (its name and config file), in a private
    directory under `base`; None (with a warning) if that directory is not safely ours: a root
    worker must not signal process groups named in a file someone else could write."""
    uid = os.geteuid()
    folder = Path(base) / f"coalition-worker-{uid}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
    except OSError as exc:
        log.warning("cannot keep the job ledger in %s: %s", folder, exc)
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o022:
        log.warning("not keeping the job ledger in %s: not a private directory of ours", folder)
        return None
    digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:16]
    return GroupLedger(folder / f"{digest}.jobs")


class JobProcess:
    """A started job. Call `pump()` to wait for it and take in its output."""

    def __init__(
        self,
        command: str,
        cwd: str | None,
        env: Mapping[str, str],
        output: RunLog,
    ) -> None:
        self.output = output
        self._term_sent_at: float | None = None
        gate: tuple[int, int] | None = None
        if LEDGER is not None:
            # The job waits until its group is written down: a worker killed -9 right after
            # the start must not leave a job its replacement cannot find. The shell reads one
            # line from the gate, its stdin (EOF: the worker died first, so the job never
            # runs), then takes /dev/null as stdin, as a job always has.
            gate = os.pipe()
            command = f"read _ || exit 99; exec </dev/null; {command}"
        try:
            self.proc = subprocess.Popen(
                command,
                shell=True,
                cwd=cwd,
                env=dict(env),
                stdin=gate[0] if gate else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                umask=0o002,  # as Coalition 4: frames written by a job stay group-writable
            )
        except BaseException:
            if gate:
                os.close(gate[0])
                os.close(gate[1])
            raise
        self.pgid = self.proc.pid  # the session leader's pid is its group id
        if gate is not None:
            os.close(gate[0])
            assert LEDGER is not None
            LEDGER.add(self.pgid)
            with contextlib.suppress(OSError):
                os.write(gate[1], b"go\n")
            os.close(gate[1])
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        _grow_pipe(self._fd)
        self._pidfd = _pidfd(self.proc.pid)
        self.eof = False  # the output pipe is closed at the other end (no process holds it)
        self.meter = UsageMeter(self.proc.pid, time.monotonic)
        self._rusage: resource.struct_rusage | None = None

    def pump(self, timeout: float, wake: int | None = None) -> None:
        """Wait up to `timeout` seconds for output, the leader's exit or a byte on `wake` (not
        read here), then take in the output that came."""
        poller = select.poll()
        if not self.eof:
            poller.register(self._fd, select.POLLIN)
        running = self.proc.returncode is None
        if running and self._pidfd is not None:
            poller.register(self._pidfd, select.POLLIN)
        elif running:
            timeout = min(timeout, EXIT_POLL)
        if wake is not None:
            poller.register(wake, select.POLLIN)
        try:
            poller.poll(max(0.0, timeout) * 1000)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for old kernels
            pass
        self._drain()
        if running:
            self._reap()

    def _reap(self) -> None:
        # wait4 instead of Popen.poll: the kernel's CPU and memory figures come with the exit.
        if self.proc.returncode is not None:
            return
        try:
            pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: the status is Popen's to find
            self.proc.poll()
            return
        if pid:
            self._rusage = rusage
            self.proc.returncode = os.waitstatus_to_exitcode(status)

    def usage(self) -> Usage:
        """Wall time, CPU time and peak memory of the run (after the leader exited)."""
        return self.meter.finish(self._rusage)

    def _drain(self) -> None:
        while not self.eof:
            try:
                data = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                self.eof = True
                return
            if not data:
                self.eof = True
                return
            self.output.write(data)

    @property
    def returncode(self) -> int | None:
        """The leader's exit status (negative: killed by that signal), None while it runs."""
        self._reap()
        return self.proc.returncode

    def signal(self, signum: int) -> None:
        """Send a signal to the whole group; a group already gone is not an error."""
        try:
            os.killpg(self.pgid, signum)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            log.warning("cannot signal job process group %d: %s", self.pgid, exc)

    def terminate(self, now: float) -> None:
        """Start a kill: SIGTERM to the group now; `kill_due` says when SIGKILL follows."""
        if self._term_sent_at is None:
            self._term_sent_at = now
            self.signal(signal.SIGTERM)

    @property
    def terminating(self) -> bool:
        """Whether terminate() was called."""
        return self._term_sent_at is not None

    def kill_due(self, grace: float) -> float | None:
        """When SIGKILL is due after terminate() (None if no kill was started)."""
        return None if self._term_sent_at is None else self._term_sent_at + grace

    def reap_group(self, grace: float, clock: Callable[[], float] = time.monotonic) -> bool:
        """After the leader exited: collect the output and end any leftover processes.

        Leftovers are what a job started in the background and left behind; ending them with
        the job (SIGTERM, then SIGKILL after `grace`) keeps one job's processes from running
        into the next. Returns whether leftovers had to be signalled.
        """
        try:
            self._pump_until(lambda: self.eof, clock() + 1.0, clock)
            if not group_alive(self.pgid):
                return False
            self.terminate(clock())
            # Polling: there is no portable way to wait on a process group.
            self._pump_until(lambda: not group_alive(self.pgid), clock() + grace, clock, step=0.05)
            if group_alive(self.pgid):
                self.signal(signal.SIGKILL)
            self._pump_until(lambda: self.eof, clock() + 1.0, clock)
            return True
        finally:
            if LEDGER is not None and not group_alive(self.pgid):
                LEDGER.remove(self.pgid)

    def _pump_until(
        self, done: Callable[[], bool], deadline: float, clock: Callable[[], float], step: float = 1.0
    ) -> None:
        while not done() and clock() < deadline:
            self.pump(min(step, deadline - clock()))

    def close(self) -> None:
        """Close our end of the output pipe and the pidfd."""
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self.proc.stdout is not None:
            try:
                self.proc.stdout.close()
            except OSError:
                pass
