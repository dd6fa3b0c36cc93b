"""One job's process group: start it, collect its output, kill it (TERM, grace, KILL).

Each job runs in a new session (hence its own process group), so everything it spawns can be
signalled at once; stdin is /dev/null (Coalition 4 left a pipe open, and a program that read
stdin hung for ever) and stdout/stderr share one pipe.

No thread per job: the slot that runs the job waits in `pump()`, which sleeps on the output
pipe, the leader's pidfd and the slot's wake pipe at once, and takes in whatever output came.
Starting a reader thread and handing the job's exit back from it cost more wall time per job
than the job's own process start (bench/e2e.py). The pipe is enlarged so that a job keeps
writing while its slot waits on a slow server answer.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import resource
import select
import signal
import subprocess
import time
from collections.abc import Callable, Mapping

from .spool import RunLog
from .usage import Usage, UsageMeter

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
        self.proc = subprocess.Popen(
            command,
            shell=True,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=0o002,  # as Coalition 4: frames written by a job stay group-writable
        )
        self.pgid = self.proc.pid  # the session leader's pid is its group id
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
