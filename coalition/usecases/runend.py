"""A run's end, as its worker reports it (endjob, and the `earlier` runs reported with it),
inside the caller's transaction: the report checked against the job, the last of its log,
the verdict (finished, retried, requeued by a log rule, ERROR), the run's event, the worker's
counters, failure bookkeeping and the thumbnail.

Kept apart from workers.py because it is the protocol's largest single decision and reads as
one piece; `RunEnds` is a collaborator the protocol holds and calls, not a base class
(use-case classes do not inherit from each other).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import failures, scheduling
from ..hierarchy import Tree
from ..model import ERROR, FINISHED, PENDING, W_WAITING, WAITING, WORKING
from ..store.base import Row, Tx
from . import limits
from .context import Context, Effects
from .failing import Failures, Verdict
from .messages import RunReport, RunUsage
from .workerdraft import WorkerDraft


@dataclass(frozen=True)
class RunEnd:
    """How a run ended, as its worker reports it."""

    exit_code: int
    timed_out: bool = False
    interrupted: bool = False
    reason: str = ""  # the worker's own account (timeout, stall, handback)
    elapsed: float | None = None  # seconds by the worker's clock
    usage: RunUsage | None = None  # what the run used (usage.wall_s: its run time too)


class RunEnds:
    """Records reported ends of runs inside the caller's transaction (WorkerProtocol's endjob
    calls it)."""

    def __init__(self, ctx: Context, failing: Failures):
        self.ctx = ctx
        self.failing = failing

    def end_run(
        self, tx: Tx, fx: Effects, tree: Tree, worker: WorkerDraft, report: RunReport, now: float
    ) -> str:
        """Record one reported run's end; the reason it was refused ("": recorded)."""
        job_id = report.job_id
        job = tx.job(job_id)
        refusal = self._end_refusal(job, worker["name"], report.event)
        if refusal:
            if worker["current_job"] == job_id:
                worker.set(current_job=0, state=W_WAITING)
            return refusal
        assert job is not None
        if report.chunk:
            start = job["log_offset"] if report.offset is None else report.offset
            data, received = scheduling.log_slice(job["log_offset"], start, report.chunk)
            fx.append_run_output(job_id, job["run_event"], start, report.chunk, job["log_offset"])
            job["log_offset"] = received
            hit = self.failing.match(job, data.decode("utf-8", "replace"))
            if hit:
                job["rule_hit"] = hit
        run = RunEnd(
            report.exit_code,
            report.timed_out,
            report.interrupted,
            report.reason,
            report.elapsed,
            report.usage,
        )
        self._finish_run(tx, fx, tree, job, worker, run, now)
        if report.thumbnail is not None:
            # The newest image of the job is also its groups' newest, up to the root.
            kind, data_ = report.thumbnail
            tx.put_thumbnail(_lineage(tx, job), job_id, kind, data_, now)
        return ""

    @staticmethod
    def _end_refusal(job: Row | None, name: str, event: int | None) -> str:
        if job is None:
            return "the job was deleted"
        if job["worker"] != name:
            return "the job is no longer assigned to this worker"
        if event is not None and job["run_event"] != event:
            return "this run was cancelled (paused, reset or handed to another worker)"
        if job["state"] == WORKING:
            return ""
        if job["state"] == WAITING and event is not None and job["run_event"] == event:
            return ""  # requeued while the worker was silent and not picked since: accept the result
        return f"the job is {job['state']}, not running"

    def _finish_run(
        self, tx: Tx, fx: Effects, tree: Tree, job: Row, worker: WorkerDraft, run: RunEnd, now: float
    ) -> None:
        duration = max(0.0, now - job["start_time"]) if job["start_time"] else 0.0
        fields: dict[str, Any] = {
            "run_event": 0,
            "duration": duration,
            "log_offset": job["log_offset"],
            "ping_time": now,
            "rule_hit": "",
        }
        verdict = Verdict.of(job)
        failed = False  # a failure of this host's run (counted towards blocks and sickness)
        requeued_by_rule = verdict is not None and verdict.kind in (
            failures.REQUEUE,
            failures.SICK,
            failures.LIMIT,
        )
        if run.interrupted:
            # A hand-back (systemctl stop, a restart, a spot interruption) is the worker's own
            # doing, not the job's: back to the queue, no retry spent, and not counted against
            # `requeuelimit` either, which is for silent workers (a job that kills its host).
            # Hand-backs are counted apart, as the job's INTERRUPTED runs (its events).
            outcome, event_state = WAITING, "INTERRUPTED"
            why = run.reason or "handed back"
        elif requeued_by_rule:
            # A log rule says the run could not work here or now (licence, disk): back to the
            # queue without spending a retry, bounded like silent requeues.
            assert verdict is not None
            requeue = scheduling.should_requeue_silent(job["requeues"], self.ctx.settings.requeue_limit)
            fields["requeues"] = job["requeues"] + 1
            outcome, event_state = (WAITING, "REQUEUED") if requeue else (ERROR, ERROR)
            why = verdict.reason
            if not requeue:
                fields["fail_count"] = job["fail_count"] + 1
                why += f"; requeued {job['requeues']} times already"
            if verdict.kind == failures.LIMIT:
                # The licence server refused one: count it as used outside the farm for a
                # while, so the farm stops starting runs that would be refused too.
                name, _, seconds = verdict.action[6:].partition(":")
                if limits.lower(tx, name.lower(), now, int(seconds or 0)):
                    fx.note(f"job {job['id']}: log rule {verdict.name} lowered limit {name}")
                else:
                    fx.note(f"job {job['id']}: log rule {verdict.name}: the farm has no limit {name}")
        else:
            elapsed = run.elapsed
            if elapsed is None:
                elapsed = run.usage.wall_s if run.usage is not None and run.usage.wall_s > 0 else duration
            ok = run.exit_code == 0 and not run.timed_out and not run.reason
            if verdict is not None and verdict.kind == failures.SUCCEED:
                ok, why = True, verdict.reason  # e.g. "render complete" from a renderer that then hangs
            elif verdict is not None and verdict.kind == failures.FAIL:
                ok, why = False, verdict.reason
            elif ok and failures.too_fast(run.exit_code, elapsed, self.failing.minruntime(job)):
                ok, why = False, failures.too_fast_reason(elapsed, self.failing.minruntime(job))
            elif ok:
                why = ""
            elif run.reason:
                why = run.reason
            elif run.timed_out:
                why = failures.timeout_reason(job["timeout"])
            else:
                why = failures.exit_reason(run.exit_code)
            if ok:
                outcome, event_state = FINISHED, FINISHED
                fields.update(progress=1.0, run_done=job["run_done"] + 1)
            else:
                failed = True
                fails = job["fail_count"] + 1
                fields.update(fail_count=fails, run_done=job["run_done"] + 1)
                retry = scheduling.should_retry(fails, job["retry"])
                # "fail": a fatal message a retry would print again: ERROR now.
                outcome = WAITING if retry and not (verdict and verdict.kind == failures.FAIL) else ERROR
                event_state = ERROR
        why = failures.clip(why)
        fields["reason"] = why
        if outcome == WAITING and job["pending"]:
            outcome = PENDING
        if job["run_event"]:
            fields_of_event: dict[str, Any] = {"state": event_state, "duration": duration, "reason": why}
            if run.usage is not None:
                fields_of_event.update(cpu_time=run.usage.cpu_s, peak_memory=run.usage.peak_memory_mb)
            tx.update_event(job["run_event"], fields_of_event)
        counter = "finished" if event_state == FINISHED else "error" if event_state == ERROR else ""
        if counter:
            worker.bump(counter, 1)
        if worker["current_job"] == job["id"]:
            worker.set(current_job=0, state=W_WAITING)
        was_running = job["state"] == WORKING
        tree.set_leaf_state(
            job, outcome, fields, duration_delta=duration if was_running or outcome != WAITING else 0.0
        )
        if event_state == ERROR:
            tree.child_failed(job["parent"])
        if failed:
            self.failing.count(tx, fx, job, worker, why, now)
        if verdict is not None and verdict.kind == failures.SICK:
            self.failing.mark_sick(tx, fx, worker, verdict.reason, now)
        self.failing.catch_sickness(tx, worker)  # its host may have turned SICK meanwhile


def _lineage(tx: Tx, job: Row) -> list[int]:
    """A job's id and its ancestors' ids, the job first."""
    ids = [job["id"]]
    parent = job["parent"]
    while parent and parent not in ids and len(ids) <= 128:
        ids.append(parent)
        row = tx.job(parent)
        parent = row["parent"] if row is not None else 0
    return ids
