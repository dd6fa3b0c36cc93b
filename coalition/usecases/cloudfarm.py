"""The cloud autoscaler's use cases: the farm as it sees it (coalition.cloud.base.Farm)."""

from __future__ import annotations

from typing import Any

from .. import columns
from ..model import W_STARTING, W_TERMINATED
from ..store.base import Tx
from .context import Context, Effects
from .runs import release_worker_job


class CloudFarm:
    """Implements the autoscaler's Farm protocol over the database."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.clock = ctx.clock

    def ready_jobs_by_tags(self) -> dict[frozenset[str], int]:
        """Pickable leaves (WAITING, not blocked) counted by effective tag set."""

        def fn(tx: Tx) -> dict[frozenset[str], int]:
            counts = tx.ready_counts()
            tags = self.ctx.tags.load(tx) if counts else {}
            out: dict[frozenset[str], int] = {}
            for tagset, n in counts.items():
                key = tags.get(tagset, frozenset())
                out[key] = out.get(key, 0) + n
            return out

        return self.ctx.read(fn)

    def workers(self) -> list[dict[str, Any]]:
        """Every worker with the fields the policy reads."""
        rows = self.ctx.read(lambda tx: tx.workers())
        return [
            {
                "name": r["name"],
                "state": r["state"],
                "ping_time": r["ping_time"] or None,
                "start_time": r["start_time"],
                "current_job": r["current_job"] or None,
                "active": bool(r["active"]),
            }
            for r in rows
        ]

    def create_worker(self, name: str, state: str = W_STARTING) -> None:
        """Create (or reset) the row of an instance just launched."""
        now = self.clock()

        def fn(tx: Tx, fx: Effects) -> None:
            if tx.worker(name) is None:
                tx.insert_worker({**columns.new_worker_row(name), "state": state, "start_time": now})
            else:
                tx.update_worker(name, {"state": state, "start_time": now, "current_job": 0})

        self.ctx.write(fn)

    def set_worker_state(self, name: str, state: str) -> None:
        """Mark a worker (TERMINATED releases its job back to the queue)."""
        now = self.clock()

        def fn(tx: Tx, fx: Effects) -> None:
            tree = self.ctx.tree(tx, fx, now)
            for row in tx.workers([name]):
                if state == W_TERMINATED:
                    release_worker_job(tx, tree, fx, row, "TERMINATED", now)
                tx.update_worker(row["name"], {"state": state})

        self.ctx.write(fn)

    def record_event(self, message: str) -> None:
        """One autoscaler decision as an event (worker "autoscaler", state CLOUD)."""
        now = self.clock()
        self.ctx.write(
            lambda tx, fx: tx.insert_event(
                {
                    "worker": "autoscaler",
                    "job_id": 0,
                    "job_title": message[:2000],
                    "state": "CLOUD",
                    "start": now,
                    "duration": 0.0,
                }
            )
        )
