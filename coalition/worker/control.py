"""Process-wide state the slots of a worker obey: stop, hand-back, a spot interruption notice.

One `Control` per worker process, shared by its slots (agent.py), its courier (courier.py),
the signal handlers and the interruption watchers (main.py), and the wake listener. Every
change wakes every waiting slot, through a condition variable and through each slot's wake
pipe (a slot running a job waits on the pipe beside its job's output).

Kept apart from the slots: it holds no job and speaks to no server; it is the one thing the
rest of the process changes to tell the slots what to do.
"""

from __future__ import annotations

import os
import threading


class Control:
    """Process-wide state the slots obey; every change wakes every waiting slot."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0
        self._wakers: list[int] = []  # write ends of the slots' wake pipes
        self.stopping = False  # no new jobs (SIGTERM, SIGINT)
        self.handback = False  # running jobs go back to the server now
        self.interruption = ""  # the spot/preemption notice, if one came

    @property
    def generation(self) -> int:
        """A counter that changes on every event; pass it to wait() to miss none."""
        with self._cond:
            return self._generation

    def _changed(self) -> None:
        self._generation += 1
        self._cond.notify_all()
        for fd in self._wakers:
            try:
                os.write(fd, b"!")
            except BlockingIOError:
                pass  # the pipe is full of wake-ups already: one more adds nothing

    def poke(self) -> None:
        """Wake everything that waits on this control (no state changes)."""
        with self._cond:
            self._changed()

    def wake_pipe(self) -> tuple[int, int]:
        """A pipe whose read end becomes readable on every event (a slot waits on it beside
        its job's output; others may write to the write end to wake that slot alone); read it
        empty with `drain_wake()`."""
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        with self._cond:
            self._wakers.append(write_end)
        return read_end, write_end

    @staticmethod
    def drain_wake(fd: int) -> None:
        """Take every pending wake-up out of a `wake_pipe()`."""
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass

    def request_stop(self, handback: bool) -> None:
        """Stop taking jobs; with `handback`, also give running jobs back now."""
        with self._cond:
            self.stopping = True
            self.handback = self.handback or handback
            self._changed()

    def interrupt(self, reason: str) -> None:
        """The host is going away (spot/preemption notice): stop and hand jobs back."""
        with self._cond:
            self.interruption = reason
            self._changed()

    @property
    def draining(self) -> bool:
        """Whether slots must stop taking jobs."""
        return self.stopping or bool(self.interruption)

    @property
    def must_hand_back(self) -> bool:
        """Whether running jobs must be killed and handed back as interrupted."""
        return self.handback or bool(self.interruption)

    def wait(self, seconds: float, since: int | None = None) -> None:
        """Sleep up to `seconds`, or until an event after generation `since` (default: now)."""
        with self._cond:
            start = self._generation if since is None else since
            self._cond.wait_for(lambda: self._generation != start, timeout=max(0.0, seconds))
