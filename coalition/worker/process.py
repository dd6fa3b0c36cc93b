"""One job's process group: start it, collect its output, kill it (TERM, grace, KILL).

Each job runs in a new session (hence its own process group), so everything it spawns can be
signalled at once; stdin is /dev/null (Coalition 4 left a pipe open, and a program that read
stdin hung for ever) and stdout/stderr share one pipe that a reader thread drains into the
run's RunLog.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping

from .spool import RunLog

log = logging.getLogger("coalition.worker")

READ_SIZE = 65536


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
    """A started job. `on_exit` is called (from a helper thread) when the output ends and the
    leader has exited."""

    def __init__(
        self,
        command: str,
        cwd: str | None,
        env: Mapping[str, str],
        output: RunLog,
        on_exit: Callable[[], None] = lambda: None,
    ) -> None:
        self.output = output
        self._on_exit = on_exit
        self._eof = threading.Event()
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
        # One helper thread per job: it drains the output, then reaps the leader. A leader
        # that exits while a leftover still holds the pipe is noticed by the caller's next
        # returncode poll instead (at its heartbeat): rare, and a thread per job is saved.
        threading.Thread(target=self._read, name=f"job-{self.pgid}", daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                data = os.read(self._fd, READ_SIZE)
                if not data:
                    break
                self.output.write(data)
        except OSError:
            pass
        finally:
            self._eof.set()
        self.proc.wait()
        self._on_exit()

    @property
    def returncode(self) -> int | None:
        """The leader's exit status (negative: killed by that signal), None while it runs."""
        return self.proc.poll()

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
        if self._eof.wait(1.0) and not group_alive(self.pgid):
            return False
        if not group_alive(self.pgid):
            self._eof.wait(1.0)
            return False
        self.terminate(clock())
        deadline = clock() + grace
        while group_alive(self.pgid) and clock() < deadline:
            time.sleep(0.05)  # polling: there is no portable way to wait on a process group
        if group_alive(self.pgid):
            self.signal(signal.SIGKILL)
        self._eof.wait(1.0)
        return True

    def close(self) -> None:
        """Close our end of the output pipe once the reader is done with it.

        While a process that escaped the group still holds the pipe, the reader keeps the fd:
        closing an fd another thread is reading from could close a reused number instead.
        """
        if self.proc.stdout is not None and self._eof.is_set():
            try:
                self.proc.stdout.close()
            except OSError:
                pass
