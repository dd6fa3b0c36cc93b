"""The agent loop: each slot takes a job, runs it, reports it, and takes the next.

One thread per slot; a slot is one named worker for the server (docs/protocol.md). All slots
of a process share a `Control` (shutdown and interruption state), a `Metrics` sampler and a
`Courier`, which carries every slot's heartbeat and pick in one request per sync. A slot ends
its own runs (its endjob brings the next job: a busy farm does not wait for a sync).

A result is never given up because the server is away: the output waits in the run's RunLog
(memory, then disk) and the endjob is retried with capped backoff until the server answers.

Beside this module: control.py (the `Control` the slots obey) and reporting.py (how a slot
reports its runs: heartbeats, endjobs, results delivered behind the next run, and `Run`).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import failures, scheduling
from . import thumbs
from .control import Control
from .courier import Report
from .link import Refused, ServerLink, Unreachable
from .metrics import Metrics
from .outbox import Outbox
from .process import JobProcess
from .reporting import ENDING, IDLE, RUNNING, STARTING, STOPPED, Run, RunReporting
from .resources import Capacity, Pool
from .runner import prepare
from .settings import WorkerSettings
from .spool import RunLog
from .thumbs import ScanningLog

if TYPE_CHECKING:  # worker/openjd.py imports openjd-sessions: loaded only where it is installed
    from .openjd import SlotSession, TaskRun

log = logging.getLogger("coalition.worker")


class Slot(RunReporting):
    """One named worker slot: at most one running job, its own link for ending runs (its
    reports to the server: RunReporting, reporting.py)."""

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
        pool: Pool | None = None,
        openjd: bool = False,
    ) -> None:
        self.name = name
        # What the host offers and holds; a slot made alone is one slot of a host of 1 core.
        self.pool = pool if pool is not None else Pool(Capacity(cores=1, memory=0), [name], packing=False)
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
        self._wake, self._wake_write = control.wake_pipe()
        self.runs = 0  # runs reported, for tests and logs
        # Shared with the courier's thread, under _lock:
        self._lock = threading.Lock()
        self._state = STARTING
        self._run: Run | None = None
        self._offer: dict[str, Any] | None = None  # a job the courier brought
        self._asking = False  # a sync asking a job for this slot is on its way
        self._sick = False  # the server says this slot is SICK: run the check command
        self._next_check = 0.0
        # Look-ahead (docs/protocol.md, "Held jobs"): a job handed out to start the moment the
        # current run ends, while that run's result travels in the background on a link of
        # its own; and a held job the server said is not ours to run any more (by its id).
        self._held: deque[dict[str, Any]] = deque()
        self._doomed = 0
        self._outbox: Outbox[Run] | None = None  # made with its link at the first held job
        self._outbox_link: ServerLink | None = None
        self._from_hold = False  # the job run_job is given was held (for its log line)
        self._hold_max = scheduling.HOLD_FIRST  # until the server's answers say `hold_max`
        # The OpenJD session this slot keeps between tasks (docs/openjd.md); None on a worker
        # that does not take OpenJD tasks.
        self.openjd: SlotSession | None = None
        if openjd:
            from .openjd import SlotSession

            self.openjd = SlotSession(
                name, self._fetch_openjd, settings.path_rules(), settings.openjd_linger, clock
            )

    # -- what the courier reads and brings (its thread) -------------------------------------
    def report(self, limit: int) -> Report | None:
        """This slot's part of the next sync (None: nothing to say, its own request speaks)."""
        with self._lock:
            if self._state == IDLE:
                self._asking = self._offer is None and not self.control.draining
                return Report.idle(self.name, self._asking)
            if self._state == RUNNING and self._run is not None:
                return Report.running(self.name, self._run, limit)
            return None

    def withdraw(self) -> None:
        """The pool says this idle slot does not ask in this sync (courier's thread)."""
        with self._lock:
            self._asking = False

    def synced(self, report: Report, answer: Mapping[str, Any] | None) -> None:
        """Apply this slot's part of a sync's answer (None: the sync failed)."""
        with self._lock:
            if answer is not None and report.run is None:
                self._sick = bool(answer.get("sick"))
            if report.body.get("pick"):
                self._asking = False
                job = answer.get("job") if answer else None
                self.pool.settle(self.name, job if isinstance(job, dict) else None)
                if isinstance(job, dict):
                    self._offer = job
            run = report.run
            if answer and run is self._run and run is not None:
                run.output.ack(report.acked_to)
                if answer.get("kill") and answer.get("job_id") == run.job_id:
                    run.kill_requested = True
        self._poke()

    def _poke(self) -> None:
        try:
            os.write(self._wake_write, b"!")
        except BlockingIOError:
            pass  # already awake

    def _set(self, state: str, run: Run | None = None) -> None:
        with self._lock:
            self._state, self._run = state, run

    def _ping(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.metrics.snapshot(*self._server),
            "resources": self.pool.resources(self.name),
            "gpureserve": self.settings.gpureserve,
            "host": self.settings.name,
        }

    # -- main loop --------------------------------------------------------------------------
    def run(self) -> None:
        """Run the jobs the courier and the server hand us until the control says stop
        (thread body)."""
        log.info("%s: working for %s", self.name, self.link.url)
        job: dict[str, Any] | None = None
        while True:
            if job is None:
                job = self.wait_for_job()
                if job is None:
                    break
            if self.control.draining:
                self.give_back(job)
                job = None
                continue
            job = self.run_job(job)
        if self._outbox is not None:
            self._outbox.close()  # its last answers may still bring held jobs: then back they go
        for held in self._take_held():
            self.give_back(held, release=False)
        if self._outbox_link is not None:
            self._outbox_link.close()
        if self.openjd is not None:
            self.openjd.close()  # exit its environments before the worker goes
        self.link.close()
        log.info("%s: stopped", self.name)

    def wait_for_job(self) -> dict[str, Any] | None:
        """Wait idle until the courier brings a job; None once the worker stops."""
        while True:
            with self._lock:
                if self._offer is not None:
                    job, self._offer = self._offer, None
                    self._state = STARTING  # not reported idle again: the job is ours
                    return job
                if self.control.draining and not self._asking:
                    self._state = STOPPED
                    return None
                self._state = IDLE
                check = self._sick and bool(self.settings.checkcommand)
            wait = 5.0
            if check:
                wait = self._next_check - self.clock()
                if wait <= 0:
                    self.check()
                    wait = self.settings.checkinterval
            if self.openjd is not None and self.openjd.session is not None:
                self.openjd.idle(self.clock())  # closes the session past its linger time
                if self.openjd.session is not None:
                    wait = min(wait, self.openjd.idle_since + self.openjd.linger - self.clock())
            select.select([self._wake], [], [], min(5.0, max(0.0, wait)))
            self.control.drain_wake(self._wake)

    def check(self) -> None:
        """Run the check command of a SICK slot and tell the server (a pass clears it)."""
        self._next_check = self.clock() + self.settings.checkinterval
        try:
            done = subprocess.run(
                self.settings.checkcommand,
                shell=True,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=max(1.0, min(300.0, self.settings.checkinterval)),
                check=False,
            )
            passed, detail = done.returncode == 0, f"exit code {done.returncode}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            passed, detail = False, f"{type(exc).__name__}: {exc}"[:200]
        log.info("%s: SICK; check command %s (%s)", self.name, "passed" if passed else "failed", detail)
        try:
            answer = self.link.call("checked", {**self._ping(), "passed": passed, "detail": detail})
        except (Unreachable, Refused) as exc:
            log.warning("%s: could not report the check: %s", self.name, exc)
            return
        with self._lock:
            self._sick = bool(answer.get("sick"))

    def give_back(
        self,
        job: Mapping[str, Any],
        why: str = "the worker is stopping",
        link: ServerLink | None = None,
        release: bool = True,
    ) -> None:
        """Return a job we were handed without running it (`release`: it holds its share of
        the host, as a job the courier brought does; a held job holds nothing yet)."""
        run = Run(job, RunLog(self.settings.spooldir or None), self.clock(), interrupted=True)
        run.reason = f"handed back unstarted ({why})"
        log.info("%s: handing job %d back unstarted (%s)", self.name, run.job_id, why)
        if release:
            self.pool.release(self.name)
        self._deliver(run, exit_code=-1, report_only=True, link=link)
        run.output.close()

    # -- look-ahead: held jobs (their results go behind the next run: reporting.py) ---------
    def _next_held(self) -> dict[str, Any] | None:
        """The next held job: at once if one is here, else once the outbox's answers are in."""
        with self._lock:
            if self._held:
                return self._held.popleft()
        if self._outbox is None or not self._outbox.pending():
            return None
        # Until an answer brings one, or the outbox has nothing more on its way.
        self._outbox.settle(until=lambda: bool(self._held))
        with self._lock:
            return self._held.popleft() if self._held else None

    def _take_held(self) -> list[dict[str, Any]]:
        with self._lock:
            held = list(self._held)
            self._held.clear()
            return held

    def _expire_held(self, run: Run, now: float) -> float | None:
        """Give the held jobs back if the run before them is long (other slots should have
        them); else when to look again (None: nothing is held)."""
        with self._lock:
            if not self._held:
                return None
            if not scheduling.held_expired(run.started, now):
                return run.started + scheduling.HOLD_MAX
        why = f"held while the run before it went on past {scheduling.HOLD_MAX:g} s"
        for held in self._take_held():
            back = Run(held, RunLog(self.settings.spooldir or None), now, interrupted=True)
            back.reason = f"handed back unstarted ({why})"
            log.info("%s: handing job %d back unstarted (%s)", self.name, back.job_id, why)
            self._behind(back)
        return None

    # -- one run ----------------------------------------------------------------------------
    def _note(self, run: Run, text: str) -> None:
        """A line of ours in the job's log (on a line of its own)."""
        start = "" if run.output.at_line_start else "\n"
        run.output.write(f"{start}[coalition] {text}\n".encode(), force=True)

    def run_job(self, job: Mapping[str, Any]) -> dict[str, Any] | None:
        """Run one job to its end and report it; returns the next job if the server gave one."""
        run = Run(job, ScanningLog(self.settings.spooldir or None), self.clock())
        started_wall = time.time()  # file times are wall-clock times
        self._set(RUNNING, run)
        with self._lock:
            if self._doomed == run.job_id:  # a held job the server took back meanwhile
                run.kill_requested, self._doomed = True, 0
        extra = {
            "COALITION_JOB_ID": str(run.job_id),
            "COALITION_WORKER": self.name,
            "COALITION_SERVER": self.link.url,
        }
        grant = self.pool.held(self.name)
        if grant is not None:
            extra.update(grant.env)  # its cores, memory and pinned GPUs (resources.py)
        exit_code = -1
        usage: dict[str, Any] | None = None
        thumbnail: dict[str, str] | None = None
        proc = self._start(run, extra)
        self._from_hold = False
        if proc is not None:
            exit_code = self._supervise(run, proc)
            run.elapsed = max(0.0, self.clock() - run.started)
            usage = proc.usage().as_dict()
            run.reason = run.reason or getattr(proc, "reason", "")  # an OpenJD task's own account
            saved = run.output.saved if isinstance(run.output, ScanningLog) else ""
            # 2 s of slack: file times on a network share may lag the worker's clock.
            thumbnail = thumbs.for_run(str(job.get("output") or ""), saved, started_wall - 2.0)
        if run.output.dropped:
            self._note(run, f"{run.output.dropped} bytes of output dropped (the spool limit was reached)")
        log.info(
            "%s: job %d ended with exit code %d%s",
            self.name,
            run.job_id,
            exit_code,
            " (timed out)" if run.timed_out else " (interrupted)" if run.interrupted else "",
        )
        run.exit_code, run.usage, run.thumbnail = exit_code, usage, thumbnail
        held = None if self.control.draining else self._next_held()
        if held is not None:
            # Start the held job now; this run's result travels meanwhile, in the outbox.
            self._set(ENDING)
            self.pool.release(self.name)
            self.pool.start_held(self.name, held)
            self._behind(run)
            self._from_hold = True
            return held
        self._settle_behind()
        for held in self._take_held():  # stopping: what is held goes back unstarted
            self.give_back(held, release=False)
        next_job = self._deliver(run, exit_code, usage, thumbnail)
        self._set(ENDING)
        run.output.close()
        self.runs += 1
        return next_job

    def _start(self, run: Run, extra: Mapping[str, str]) -> JobProcess | TaskRun | None:
        """Start the run's process (an OpenJD task: its action in the slot's session); None,
        with a note in its log (and a reason), if it cannot start."""
        job = run.job
        if job.get("openjd"):
            return self._start_openjd(run, extra)
        if self.openjd is not None:
            self.openjd.close()  # a plain job: the OpenJD session's environments end first
        prepared = prepare(job, self.environ, self.settings.runcommand, extra)
        held, self._from_hold = self._from_hold, False
        log.info("%s: job %d started%s: %s", self.name, run.job_id, " (held)" * held, prepared.command)
        for note in prepared.notes:
            self._note(run, note)
        if prepared.error:
            self._note(run, f"cannot run the job: {prepared.error}")
            return None
        try:
            return JobProcess(prepared.command, prepared.cwd, prepared.env, run.output)
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the env or command
            self._note(run, f"cannot start the job: {exc}")
            return None

    def _start_openjd(self, run: Run, extra: Mapping[str, str]) -> TaskRun | None:
        if self.openjd is None:
            # Only an edited affinity (one offering `openjd`) hands such a task to this worker.
            run.reason = "this worker does not run Open Job Description tasks (see its log)"
            self._note(run, f"cannot run the job: {run.reason}")
            return None
        from .openjd import TaskError, start_task

        log.info("%s: job %d started: OpenJD task %s", self.name, run.job_id, run.job.get("command"))
        try:
            return start_task(self.openjd, run.job, run.output, extra)
        except TaskError as exc:
            run.reason = f"cannot run the OpenJD task: {exc}"[:255]
        except (Unreachable, Refused) as exc:
            # The task never started: back to the queue without spending a retry.
            run.interrupted = True
            run.reason = f"handed back (its OpenJD template could not be fetched: {exc})"[:255]
        self._note(run, run.reason)
        return None

    def _fetch_openjd(self, job_id: int) -> dict[str, Any]:
        """The template and parameter values of OpenJD job `job_id`, from the server."""
        from .openjd import TaskError

        try:
            return self.link.call("openjd", {"name": self.name, "job": job_id})
        except Refused as exc:
            if exc.status in (401, 403):
                raise
            raise TaskError(str(exc)) from None

    def _supervise(self, run: Run, proc: JobProcess | TaskRun) -> int:
        """Wait for the process, enforcing timeout, kills and hand-backs (the courier carries
        its heartbeats and brings the server's kill)."""
        timeout = int(run.job.get("timeout") or 0)
        deadline = run.started + timeout if timeout > 0 else None
        # Stall: no output for `stalltimeout` seconds (the server sends the job's own value or
        # the farm's). Output is counted where it arrives, so dropped bytes count too.
        stall = float(run.job.get("stalltimeout") or 0)
        seen, last_output = run.output.size + run.output.dropped, run.started
        grace = self.settings.killgrace
        sigkill_sent = False
        while True:
            if proc.returncode is not None:
                break
            now = self.clock()
            if run.output.size + run.output.dropped != seen:
                seen, last_output = run.output.size + run.output.dropped, now
            if deadline is not None and now >= deadline and not proc.terminating:
                run.timed_out = True
                run.reason = failures.timeout_reason(timeout)
                self._note(run, f"job timeout ({timeout}s) exceeded: killing its processes")
                proc.terminate(now)
            if failures.stalled(last_output, stall, now) and not proc.terminating:
                run.reason = failures.stall_reason(stall)
                self._note(run, f"{run.reason}: killing its processes")
                proc.terminate(now)
            if self.control.must_hand_back and not proc.terminating:
                run.interrupted = True
                reason = self.control.interruption or "the worker is shutting down"
                run.reason = f"handed back ({reason})"
                self._note(run, f"handing the job back ({reason}): killing its processes")
                proc.terminate(now)
            due = proc.kill_due(grace)
            if due is not None and now >= due and not sigkill_sent:
                proc.signal(signal.SIGKILL)
                sigkill_sent = True
            if run.kill_requested and not run.killed_by_server and not proc.terminating:
                run.killed_by_server = True
                log.info("%s: the server asks to kill job %d", self.name, run.job_id)
                self._note(
                    run,
                    "killed at the server's request (paused, reset, deleted, worker stopped, or a log rule)",
                )
                proc.terminate(now)
            proc.meter.sample(now)
            # The pipe, the pidfd and the wake pipe bring every event sooner.
            wake = [now + 5.0, proc.meter.next_sample]
            held_until = self._expire_held(run, now)
            if held_until is not None:
                wake.append(held_until)
            if deadline is not None and not proc.terminating:
                wake.append(deadline)
            if stall > 0 and not proc.terminating:
                wake.append(last_output + stall)
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
