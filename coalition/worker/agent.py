"""The agent loop: each slot picks a job, runs it, heartbeats, reports, and picks again.

One thread per slot; a slot is one named worker for the server (docs/protocol.md). All slots
of a process share a `Control` (shutdown and interruption state) and a `Metrics` sampler.

A result is never given up because the server is away: the output waits in the run's RunLog
(memory, then disk) and the endjob is retried with capped backoff until the server answers.
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .link import Backoff, Refused, ServerLink, Unreachable, jittered
from .metrics import Metrics
from .process import JobProcess
from .runner import prepare
from .settings import WorkerSettings
from .spool import RunLog

log = logging.getLogger("coalition.worker")

CHUNK = 256 * 1024  # log bytes per request: a backlog is sent in several heartbeats


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

    def wake_pipe(self) -> int:
        """A descriptor that becomes readable on every event (a slot waits on it beside its
        job's output); read it empty with `drain_wake()`."""
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        with self._cond:
            self._wakers.append(write_end)
        return read_end

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


@dataclass
class Run:
    """One run of a job on a slot."""

    job: Mapping[str, Any]
    output: RunLog
    started: float
    timed_out: bool = False
    interrupted: bool = False
    killed_by_server: bool = False

    @property
    def job_id(self) -> int:
        return int(self.job["id"])


class Slot:
    """One named worker slot: its own server link and at most one running job."""

    def __init__(
        self,
        name: str,
        settings: WorkerSettings,
        link: ServerLink,
        metrics: Metrics,
        control: Control,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.link = link
        self.metrics = metrics
        self.control = control
        self.clock = clock
        self.sleep = sleep
        self.environ = dict(os.environ if environ is None else environ)
        parts = urlsplit(link.url)
        self._server = (parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        self._down = False
        self._wake = control.wake_pipe()
        self.runs = 0  # runs reported, for tests and logs

    # -- reachability logging: one line when the server goes away, one when it returns ---------
    def _unreachable(self, exc: Exception) -> None:
        if not self._down:
            log.warning("%s: server %s unreachable (%s); retrying", self.name, self.link.url, exc)
            self._down = True

    def _reachable(self) -> None:
        if self._down:
            log.info("%s: server %s is back", self.name, self.link.url)
            self._down = False

    def _ping(self) -> dict[str, Any]:
        return {"name": self.name, **self.metrics.snapshot(*self._server)}

    # -- main loop --------------------------------------------------------------------------
    def run(self) -> None:
        """Pick and run jobs until the control says stop (thread body)."""
        log.info("%s: working for %s", self.name, self.link.url)
        backoff = Backoff(cap=max(30.0, self.settings.sleep))
        job: dict[str, Any] | None = None
        while True:
            if job is None:
                if self.control.draining:
                    break
                body = self._ping()
                if self.settings.affinity:
                    body["affinity"] = self.settings.affinity
                try:
                    job = self.link.pickjob(body)
                except Unreachable as exc:
                    self._unreachable(exc)
                    self.control.wait(max(self.settings.sleep, backoff.next()))
                    continue
                except Refused as exc:
                    log.error("%s: the server refused pickjob: %s", self.name, exc)
                    self.control.wait(max(self.settings.sleep, backoff.next()))
                    continue
                backoff.reset()
                self._reachable()
                if job is None:
                    self.control.wait(jittered(self.settings.sleep))
                    continue
            if self.control.draining:
                self.give_back(job)
                job = None
                continue
            job = self.run_job(job)
        self.link.close()
        log.info("%s: stopped", self.name)

    def give_back(self, job: Mapping[str, Any]) -> None:
        """Return a job we were handed while stopping, without running it."""
        run = Run(job, RunLog(self.settings.spooldir or None), self.clock(), interrupted=True)
        log.info("%s: handing job %d back unstarted (stopping)", self.name, run.job_id)
        self._deliver(run, exit_code=-1)
        run.output.close()

    # -- one run ----------------------------------------------------------------------------
    def _note(self, run: Run, text: str) -> None:
        """A line of ours in the job's log (on a line of its own)."""
        start = "" if run.output.at_line_start else "\n"
        run.output.write(f"{start}[coalition] {text}\n".encode(), force=True)

    def run_job(self, job: Mapping[str, Any]) -> dict[str, Any] | None:
        """Run one job to its end and report it; returns the next job if the server gave one."""
        run = Run(job, RunLog(self.settings.spooldir or None), self.clock())
        extra = {
            "COALITION_JOB_ID": str(run.job_id),
            "COALITION_WORKER": self.name,
            "COALITION_SERVER": self.link.url,
        }
        prepared = prepare(job, self.environ, self.settings.runcommand, extra)
        log.info("%s: job %d started: %s", self.name, run.job_id, prepared.command)
        for note in prepared.notes:
            self._note(run, note)
        exit_code = -1
        if prepared.error:
            self._note(run, f"cannot run the job: {prepared.error}")
        else:
            try:
                proc = JobProcess(prepared.command, prepared.cwd, prepared.env, run.output)
            except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the env or command
                self._note(run, f"cannot start the job: {exc}")
            else:
                exit_code = self._supervise(run, proc)
        if run.output.dropped:
            self._note(run, f"{run.output.dropped} bytes of output dropped (the spool limit was reached)")
        log.info(
            "%s: job %d ended with exit code %d%s",
            self.name,
            run.job_id,
            exit_code,
            " (timed out)" if run.timed_out else " (interrupted)" if run.interrupted else "",
        )
        next_job = self._deliver(run, exit_code)
        run.output.close()
        self.runs += 1
        return next_job

    def _supervise(self, run: Run, proc: JobProcess) -> int:
        """Wait for the process while heartbeating, enforcing timeout, kills and hand-backs."""
        timeout = int(run.job.get("timeout") or 0)
        deadline = run.started + timeout if timeout > 0 else None
        grace = self.settings.killgrace
        next_beat = run.started + self.settings.sleep
        sigkill_sent = False
        while True:
            if proc.returncode is not None:
                break
            now = self.clock()
            if deadline is not None and now >= deadline and not proc.terminating:
                run.timed_out = True
                self._note(run, f"job timeout ({timeout}s) exceeded: killing its processes")
                proc.terminate(now)
            if self.control.must_hand_back and not proc.terminating:
                run.interrupted = True
                reason = self.control.interruption or "the worker is shutting down"
                self._note(run, f"handing the job back ({reason}): killing its processes")
                proc.terminate(now)
            due = proc.kill_due(grace)
            if due is not None and now >= due and not sigkill_sent:
                proc.signal(signal.SIGKILL)
                sigkill_sent = True
            if now >= next_beat:
                self._beat(run, proc)
                next_beat = self.clock() + jittered(self.settings.sleep)
            wake = [next_beat]
            if deadline is not None and not proc.terminating:
                wake.append(deadline)
            if due is not None and not sigkill_sent:
                wake.append(due)
            # An event after this point leaves a byte in the wake pipe: none is missed.
            proc.pump(min(wake) - self.clock(), self._wake)
            self.control.drain_wake(self._wake)
        if proc.reap_group(grace, self.clock):
            self._note(run, "processes left behind by the job were ended")
        proc.close()
        code = proc.returncode
        return -1 if code is None else code

    def _beat(self, run: Run, proc: JobProcess | None) -> bool:
        """One heartbeat with the next chunk of output; False if it did not get through."""
        offset, chunk = run.output.pending(CHUNK)
        body = self._ping()
        body.update(job_id=run.job_id, event=run.job.get("event"), log_offset=offset)
        if chunk:
            body["log"] = base64.b64encode(chunk).decode("ascii")
        try:
            answer = self.link.heartbeat(body)
        except Unreachable as exc:
            self._unreachable(exc)
            return False
        except Refused as exc:
            log.warning("%s: heartbeat for job %d refused: %s", self.name, run.job_id, exc)
            return False
        self._reachable()
        run.output.ack(offset + len(chunk))
        if answer.get("kill") and proc is not None and proc.returncode is None and not run.killed_by_server:
            run.killed_by_server = True
            log.info("%s: the server asks to kill job %d", self.name, run.job_id)
            self._note(run, "killed at the server's request (paused, reset, deleted, or worker stopped)")
            proc.terminate(self.clock())
        return True

    def _deliver(self, run: Run, exit_code: int) -> dict[str, Any] | None:
        """Send the rest of the output and the result, until the server has them."""
        backoff = Backoff(cap=max(30.0, self.settings.sleep))
        while run.output.size - run.output.acked > CHUNK:
            if self._beat(run, None):
                backoff.reset()
            else:
                self.sleep(backoff.next())
        while True:
            offset, chunk = run.output.pending(CHUNK)
            body = self._ping()
            body.update(
                job_id=run.job_id,
                event=run.job.get("event"),
                exit_code=exit_code,
                log=base64.b64encode(chunk).decode("ascii"),
                log_offset=offset,
                timed_out=run.timed_out,
                interrupted=run.interrupted,
                pick=not self.control.draining,
            )
            try:
                answer = self.link.endjob(body)
            except Unreachable as exc:
                self._unreachable(exc)
                self.sleep(backoff.next())
                continue
            except Refused as exc:
                if exc.status in (401, 403):  # a token being fixed: the result must still arrive
                    log.error("%s: the server refused the result of job %d: %s", self.name, run.job_id, exc)
                    self.sleep(backoff.next())
                    continue
                log.error("%s: the server rejected the result of job %d: %s", self.name, run.job_id, exc)
                return None
            self._reachable()
            run.output.ack(offset + len(chunk))
            if answer.get("ignored"):
                log.info(
                    "%s: result of job %d ignored by the server: %s", self.name, run.job_id, answer["ignored"]
                )
            job = answer.get("job")
            return job if isinstance(job, dict) else None
