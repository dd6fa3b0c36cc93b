"""How a slot's runs reach the server: heartbeats with their output backlog, the endjob that
reports a run (retried with capped backoff until the server has it) and what its answer says
to the slot (SICK, the next job, jobs to hold), and results delivered behind the next run by
the outbox of a slot that holds jobs (docs/protocol.md, "Held jobs").

Here too: `Run`, one run of a job on a slot and how it ended (what its report says), and the
slot states the courier and these reports read.

Kept apart from agent.py, which runs the jobs: this module only says what became of them.
It is a mixin of `agent.Slot` rather than a collaborator the slot holds because the reports
read and change the slot's own state under the slot's lock (its run and state, its held jobs,
its SICK flag, a held job to kill) and share its link, pool and control: a collaborator
would need the whole slot back. The Slot attributes and methods it uses are declared below,
so mypy checks them against Slot.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import scheduling
from .control import Control
from .link import Backoff, Refused, ServerLink, Unreachable
from .outbox import Outbox
from .process import JobProcess
from .resources import Pool
from .settings import WorkerSettings
from .spool import RunLog

log = logging.getLogger("coalition.worker")

CHUNK = 256 * 1024  # log bytes per request: a backlog is sent in several heartbeats


@dataclass
class Run:
    """One run of a job on a slot."""

    job: Mapping[str, Any]
    output: RunLog
    started: float
    timed_out: bool = False
    interrupted: bool = False
    killed_by_server: bool = False
    kill_requested: bool = False  # the server said kill (set by the courier's thread)
    reason: str = ""  # why the run was ended on this side (timeout, stall, handback), if it was
    elapsed: float = 0.0  # seconds the job's process ran (the server's minruntime check)
    # How it ended, for a result delivered later (the outbox of a slot that holds jobs):
    exit_code: int = -1
    usage: dict[str, Any] | None = None
    thumbnail: dict[str, str] | None = None

    @property
    def job_id(self) -> int:
        return int(self.job["id"])


# A slot's states, as the courier sees them: only "idle" and "running" slots are reported.
IDLE, STARTING, RUNNING, ENDING, STOPPED = "idle", "starting", "running", "ending", "stopped"


class RunReporting:
    """A slot's reports of its runs to the server (mixed into agent.Slot)."""

    # The Slot's state these methods use (set in Slot.__init__; `_lock` guards the ones the
    # courier's and the outbox's threads share).
    name: str
    settings: WorkerSettings
    link: ServerLink
    pool: Pool
    control: Control
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    runs: int
    _down: bool
    _lock: threading.Lock
    _state: str
    _run: Run | None
    _sick: bool
    _held: deque[dict[str, Any]]
    _hold_max: int  # the most the server takes in `hold` (its answers' `hold_max`)
    _doomed: int
    _outbox: Outbox[Run] | None
    _outbox_link: ServerLink | None

    if TYPE_CHECKING:  # Slot's own methods, which these use

        def _ping(self) -> dict[str, Any]: ...
        def _poke(self) -> None: ...
        def _set(self, state: str, run: Run | None = None) -> None: ...
        def _note(self, run: Run, text: str) -> None: ...

    # -- reachability logging: one line when the server goes away, one when it returns ------
    def _unreachable(self, exc: Exception) -> None:
        if not self._down:
            log.warning("%s: server %s unreachable (%s); retrying", self.name, self.link.url, exc)
            self._down = True

    def _reachable(self) -> None:
        if self._down:
            log.info("%s: server %s is back", self.name, self.link.url)
            self._down = False

    # -- a run's result, reported now: the endjob, retried until the server has it ----------
    def _deliver(
        self,
        run: Run,
        exit_code: int,
        usage: dict[str, Any] | None = None,
        thumbnail: dict[str, str] | None = None,
        *,
        report_only: bool = False,
        link: ServerLink | None = None,
    ) -> dict[str, Any] | None:
        """Send the rest of the output and the result, until the server has them; the answer
        brings the next job to start, when the pool lets this slot ask now, and jobs to hold
        if the run was short. With `report_only` (a job handed back unstarted), it asks for
        nothing."""
        link = link or self.link
        if not report_only:
            self._set(ENDING, run)
            self.pool.release(self.name)
        backoff = Backoff(cap=max(30.0, self.settings.sleep))
        self._flush_backlog([run], link, backoff)
        draining = self.control.draining
        free = None if report_only or draining else self.pool.ask(self.name)
        hold = None
        if free is not None and scheduling.should_hold(run.elapsed, self.pool.packing, draining):
            hold = self.pool.hold_offer(self.name)
        run.exit_code, run.usage, run.thumbnail = exit_code, usage, thumbnail

        def body() -> dict[str, Any]:
            out = {**self._ping(), **self._end_body(run), "pick": free is not None}
            if free is not None:
                out["free"] = free
            if hold is not None:
                out["hold"] = scheduling.hold_wanted(self._hold_max)
            return out

        sent = self._send_end(link, body, backoff, f"the result of job {run.job_id}")
        if sent is None:
            if free is not None:
                self.pool.settle(self.name, None)
            return None
        run.output.ack(run.output.size)  # the run is over: its output is all there is
        answer = sent[1]
        self._answered(answer, run, hold is not None)
        job = answer.get("job")
        job = job if isinstance(job, dict) else None
        if free is not None:
            self.pool.settle(self.name, job)
        return job

    def _flush_backlog(self, runs: list[Run], link: ServerLink, backoff: Backoff) -> None:
        """Send what an endjob cannot carry first (output past one chunk), in heartbeats."""
        for run in runs:
            while run.output.size - run.output.acked > CHUNK:
                if self._beat(run, None, link):
                    backoff.reset()
                else:
                    self.sleep(backoff.next())

    def _beat(self, run: Run, proc: JobProcess | None, link: ServerLink | None = None) -> bool:
        """One heartbeat with the next chunk of output; False if it did not get through."""
        offset, chunk = run.output.pending(CHUNK)
        body = self._ping()
        body.update(job_id=run.job_id, event=run.job.get("event"), log_offset=offset)
        if chunk:
            body["log"] = base64.b64encode(chunk).decode("ascii")
        try:
            answer = (link or self.link).heartbeat(body)
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

    def _send_end(
        self, link: ServerLink, body: Callable[[], dict[str, Any]], backoff: Backoff, what: str
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """POST an endjob (its body made anew at each attempt) until the server has it: the
        body sent and the answer, or None if the server rejected it (a 4xx other than a
        token being fixed, 401/403, which is retried: results must still arrive)."""
        while True:
            sent = body()
            try:
                answer = link.endjob(sent)
            except Unreachable as exc:
                self._unreachable(exc)
                self.sleep(backoff.next())
                continue
            except Refused as exc:
                if exc.status in (401, 403):
                    log.error("%s: the server refused %s: %s", self.name, what, exc)
                    self.sleep(backoff.next())
                    continue
                if exc.status == 400 and "hold" in sent and self._hold_max > scheduling.HOLD_FIRST:
                    # A server of before `hold_max` behind the same address (a rolling
                    # upgrade of several servers): ask what every server took, and send again.
                    self._hold_max = scheduling.HOLD_FIRST
                    continue
                log.error("%s: the server rejected %s: %s", self.name, what, exc)
                return None
            self._reachable()
            return sent, answer

    def _end_body(self, run: Run) -> dict[str, Any]:
        """One run's report in an endjob (its output's last chunk included)."""
        offset, chunk = run.output.pending(CHUNK)
        body: dict[str, Any] = {
            "job_id": run.job_id,
            "event": run.job.get("event"),
            "exit_code": run.exit_code,
            "log": base64.b64encode(chunk).decode("ascii"),
            "log_offset": offset,
            "timed_out": run.timed_out,
            "interrupted": run.interrupted,
            "reason": run.reason,
            "elapsed": round(run.elapsed, 3),
        }
        if run.usage:
            body["usage"] = run.usage
        if run.thumbnail:
            body["thumbnail"] = run.thumbnail
        return body

    def _answered(self, answer: Mapping[str, Any], run: Run, held_asked: bool) -> None:
        """What every endjob answer may say to the slot: SICK, ignored, jobs to hold."""
        if answer.get("sick"):
            with self._lock:
                self._sick = True
        if answer.get("ignored"):
            log.info(
                "%s: result of job %d ignored by the server: %s", self.name, run.job_id, answer["ignored"]
            )
        most = answer.get("hold_max")
        if isinstance(most, int) and not isinstance(most, bool):
            self._hold_max = most  # a server before `hold_max` took HOLD_FIRST
        held = answer.get("held")
        if held_asked and isinstance(held, list):
            jobs = [job for job in held if isinstance(job, dict)]
            if jobs:
                with self._lock:
                    self._held.extend(jobs)
                self._poke()

    # -- results delivered behind the next run (the outbox of a slot that holds jobs) -------
    def _behind(self, run: Run) -> None:
        """Leave `run`'s result to the outbox (delivered in the background, with others)."""
        if self._outbox is None:
            self._outbox_link = self.link.twin()
            self._outbox = Outbox(self._deliver_behind, self.name, self._report_now, scheduling.REPORT_LINGER)
        self._outbox.put(run)

    def _report_now(self, queued: int) -> bool:
        # Asked by the outbox's thread, under its lock: len() of a deque needs no lock of ours.
        return scheduling.report_now(queued, len(self._held))

    def _settle_behind(self) -> None:
        """Wait until the outbox has delivered everything (its answers may bring held jobs)."""
        if self._outbox is not None:
            self._outbox.settle()

    def _deliver_behind(self, batch: list[Run]) -> None:
        """The outbox's thread: report `batch` in one endjob (the last run as its own, the
        others as `earlier`), holding more jobs if the runs were short, until it arrives."""
        link = self._outbox_link
        assert link is not None
        backoff = Backoff(cap=max(30.0, self.settings.sleep))
        self._flush_backlog(batch, link, backoff)
        last = batch[-1]
        draining = self.control.draining
        short = all(
            not r.interrupted and scheduling.should_hold(r.elapsed, self.pool.packing, draining)
            for r in batch
        )

        def body() -> dict[str, Any]:
            with self._lock:  # read at each attempt: the slot may have started its next job
                want = scheduling.hold_wanted(self._hold_max) - len(self._held) if short else 0
                running = self._run.job_id if self._state == RUNNING and self._run is not None else None
            hold = self.pool.hold_offer(self.name) if want > 0 else None
            parts = [self._end_body(run) for run in batch]
            out = {**self._ping(), **parts[-1], "pick": False}
            if len(parts) > 1:
                out["earlier"] = parts[:-1]
            if hold is not None:
                out.update(free=hold, hold=want)
            if running is not None and running != last.job_id:
                out["running"] = running
            return out

        sent = self._send_end(link, body, backoff, f"{len(batch)} result(s)")
        if sent is not None:
            sent_body, answer = sent
            self._answered(answer, last, "hold" in sent_body)
            for run_id, why in (answer.get("earlier_ignored") or {}).items():
                log.info("%s: result of job %s ignored by the server: %s", self.name, run_id, why)
            if "running" in sent_body and answer.get("kill"):
                self._kill_started(int(sent_body["running"]))
        for run in batch:
            run.output.ack(run.output.size)  # the run is over: its output is all there is
            run.output.close()
            self.runs += 1

    def _kill_started(self, job_id: int) -> None:
        """The held job this slot started is not its own any more (paused, deleted, or its
        worker stopped before it started): kill its run, or the run about to begin."""
        with self._lock:
            if self._run is not None and self._run.job_id == job_id and self._state == RUNNING:
                self._run.kill_requested = True
            else:
                self._doomed = job_id
        self._poke()
