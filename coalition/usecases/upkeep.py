"""Periodic upkeep of the farm, run by whichever server holds its lease: silent workers,
jobs past their timeout, old events and submission keys.
"""

from __future__ import annotations

from typing import Any

from .. import scheduling
from ..model import ERROR, PENDING, W_TIMEOUT, W_WAITING, W_WORKING, WAITING, WORKING
from ..store.base import Row, Tx
from .context import Context, Effects


class Upkeep:
    """The reaper and the purges, each one write transaction."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.started = ctx.clock()  # silence is measured from here at the earliest

    def _requeue_silent(
        self, tx: Tx, tree: Any, fx: Effects, job: Row, name: str, now: float, done: dict[str, int]
    ) -> None:
        """The job of a worker gone silent goes back to the queue (at most requeuelimit times)."""
        settings = self.ctx.settings
        requeue = scheduling.should_requeue_silent(job["requeues"], settings.requeue_limit)
        fields: dict[str, Any] = {
            "requeues": job["requeues"] + 1,
            "duration": max(0.0, now - job["start_time"]),
        }
        if requeue:
            # Keep run_event: a late endjob or heartbeat of this run is still accepted.
            target = PENDING if job["pending"] else WAITING
            done["requeued"] += 1
            note = (
                f"\n[coalition] worker {name} went silent for more than "
                f"{settings.worker_timeout:g}s: job requeued\n"
            )
        else:
            target = ERROR
            fields.update(fail_count=job["fail_count"] + 1, run_event=0)
            note = (
                f"\n[coalition] worker {name} went silent; the job was requeued "
                f"{job['requeues']} times already: ERROR\n"
            )
        if job["run_event"]:
            why = f"lost worker (silent for more than {settings.worker_timeout:g} s)"
            tx.update_event(
                job["run_event"], {"state": W_TIMEOUT, "duration": fields["duration"], "reason": why}
            )
            fields["reason"] = why
        tree.set_leaf_state(job, target, fields)
        fx.append_log(job["id"], note.encode())

    def _due(self, tx: Tx, now: float) -> bool:
        """Whether the reaper has anything to do (read-only: the write transaction, which
        holds SQLite's one write lock while it scans every worker, runs only then)."""
        # In SQL (it runs every `reaperinterval`: reading 5,000 workers and their running jobs
        # into Python each time was a tenth of a busy server's CPU). A worker is silent when
        # neither its ping nor the reaper's start is within the timeout (worker_silent).
        timeout = self.ctx.settings.worker_timeout
        silent_before = now - timeout if now - self.started > timeout else None
        return tx.reaping_due(silent_before, now, timeout)

    def reap(self) -> dict[str, int]:
        """Handle silent workers and jobs past their timeout. Returns what was done."""
        now = self.ctx.clock()
        settings = self.ctx.settings
        if not self.ctx.read(lambda tx: self._due(tx, now)):
            return {"silent_workers": 0, "requeued": 0, "timed_out": 0}

        def fn(tx: Tx, fx: Effects) -> dict[str, int]:
            done = {"silent_workers": 0, "requeued": 0, "timed_out": 0}
            tree = self.ctx.tree(tx, fx, now)
            for worker in tx.workers():
                if worker["state"] not in (W_WAITING, W_WORKING):
                    continue
                if not scheduling.worker_silent(
                    worker["ping_time"], self.started, settings.worker_timeout, now
                ):
                    continue
                done["silent_workers"] += 1
                tx.update_worker(worker["name"], {"state": W_TIMEOUT, "current_job": 0})
                for hook in self.ctx.on_worker_lost:
                    hook(tx, worker)
                job = tx.job(worker["current_job"]) if worker["current_job"] else None
                if job is None or job["state"] != WORKING or job["worker"] != worker["name"]:
                    continue
                self._requeue_silent(tx, tree, fx, job, worker["name"], now, done)
            known = {w["name"] for w in tx.workers()}
            for job in tx.working_jobs():
                if scheduling.worker_silent(job["ping_time"], self.started, settings.worker_timeout, now):
                    # Nobody heartbeats this run: its worker was deleted while busy (Coalition
                    # 4 let the job finish: the worker's next heartbeat brings its row back),
                    # or it is a held job the worker never got (the answer that handed it out
                    # was lost) or never started (killed holding it). Requeue.
                    row = tx.job(job["id"])
                    if row is not None and row["state"] == WORKING:
                        if job["worker"] not in known:
                            done["silent_workers"] += 1
                        self._requeue_silent(tx, tree, fx, row, job["worker"], now, done)
                        continue
                if not scheduling.job_timed_out(
                    job["start_time"], job["timeout"], now, settings.worker_timeout
                ):
                    continue
                row = tx.job(job["id"])
                if row is None:
                    continue
                done["timed_out"] += 1
                duration = max(0.0, now - row["start_time"])
                fails = row["fail_count"] + 1
                target = WAITING if scheduling.should_retry(fails, row["retry"]) else ERROR
                if target == WAITING and row["pending"]:
                    target = PENDING
                if row["run_event"]:
                    tx.update_event(
                        row["run_event"],
                        {
                            "state": ERROR,
                            "duration": duration,
                            "reason": f"timeout ({row['timeout']} s, by the server)",
                        },
                    )
                w = tx.worker(row["worker"]) if row["worker"] else None
                if w is not None and w["current_job"] == row["id"]:
                    tx.update_worker(w["name"], {"current_job": 0, "state": W_WAITING})
                    tx.bump_worker(w["name"], {"error": 1})
                tree.set_leaf_state(
                    row,
                    target,
                    {
                        "fail_count": fails,
                        "run_event": 0,
                        "duration": duration,
                        "run_done": row["run_done"] + 1,
                        "reason": f"timeout ({row['timeout']} s, by the server)",
                    },
                    duration_delta=duration,
                )
                tree.child_failed(row["parent"])
                fx.append_log(
                    row["id"], f"\n[coalition] job exceeded its timeout of {row['timeout']}s\n".encode()
                )
            if any(done.values()):
                fx.note(f"reaper: {done}")
            return done

        return self.ctx.write(fn)

    def purge(self) -> dict[str, int]:
        """Delete closed events past the retention period and expired submission keys."""
        now = self.ctx.clock()
        days = self.ctx.settings.event_retention_days
        keys_before = now - self.ctx.settings.submission_key_days * 86400

        def fn(tx: Tx, fx: Effects) -> dict[str, int]:
            events = tx.purge_events(now - days * 86400) if days > 0 else 0
            # Host-failure counts a day past their forgive time count for nothing any more.
            policy = self.ctx.settings.failures
            stale = now - max(policy.forgive, policy.sickwindow) - 86400
            return {
                "events": events,
                "submissions": tx.purge_submissions(keys_before),
                "host_failures": tx.purge_host_failures(stale),
            }

        return self.ctx.write(fn)

    def rebuild_tree(self) -> int:
        """Compute the derived fields (ordering keys, tag sets, group counters) of jobs that
        lack them: a database just upgraded from Coalition 4. Returns how many jobs lacked
        them (0: nothing to do, the usual case, one cheap query)."""
        if not self.ctx.read(lambda tx: tx.unkeyed_jobs()):
            return 0
        now = self.ctx.clock()

        def fn(tx: Tx, fx: Effects) -> int:
            count = tx.unkeyed_jobs()
            tree = self.ctx.tree(tx, fx, now)
            for root in tx.children(0, ("id",)):
                tree.rederive(root["id"])
            # Counters bottom-up: the deepest groups first, one level each.
            for group in sorted(tx.groups(), key=lambda g: -g["h_depth"]):
                tree.recount(group["id"], up=False)
            fx.note(f"rebuilt the ordering keys and counters of {count} job(s)")
            return count

        return self.ctx.write(fn)

    def lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew a named lease for periodic work shared by server replicas."""
        now = self.ctx.clock()
        return self.ctx.write(lambda tx, fx: tx.acquire_lease(name, holder, now, ttl))
