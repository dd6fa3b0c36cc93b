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
                shape = tags.get(tagset)
                key = shape.tags if shape is not None else frozenset()
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
        """One autoscaler decision as an event (worker "autoscaler", state CLOUD), told to
        the context's event hooks (webhooks: `autoscaler.decision`)."""
        now = self.clock()
        hooks = self.ctx.on_event

        def fn(tx: Tx, fx: Effects) -> None:
            tx.insert_event(
                {
                    "worker": "autoscaler",
                    "job_id": 0,
                    "job_title": message[:2000],
                    "state": "CLOUD",
                    "start": now,
                    "duration": 0.0,
                }
            )
            for hook in hooks:
                hook(tx, "autoscaler.decision", {"decision": message[:2000]})

        self.ctx.write(fn)

    # -- failed boots (issue 14): events of the pseudo-worker "autoscaler-boot" ----------------
    # No new table: the boot record is the event log itself, read back newest first down to
    # the last BOOT_OK or BOOT_CLEARED. Every replica reads the same rows, so the back-off holds
    # across restarts and lease hand-overs.

    def _boot_event(self, state: str, title: str) -> None:
        now = self.clock()
        self.ctx.write(
            lambda tx, fx: tx.insert_event(
                {
                    "worker": BOOT_EVENTS,
                    "job_id": 0,
                    "job_title": title[:2000],
                    "state": state,
                    "start": now,
                    "duration": 0.0,
                }
            )
        )

    def boot_failures(self) -> list[tuple[float, str, str]]:
        """The failed boots since the last boot that worked or the last clear, oldest first."""
        rows = self.ctx.read(lambda tx: tx.events(job=None, worker=BOOT_EVENTS, since=None, limit=BOOT_SCAN))
        out = []
        for r in rows:  # newest first
            if r["state"] != BOOT_FAILED:
                break
            name, _, reason = str(r["job_title"]).partition(": ")
            out.append((float(r["start"]), name, reason))
        return out[::-1]

    def record_boot_failure(self, name: str, reason: str) -> None:
        """One failed boot: the event reads "NAME: REASON"."""
        self._boot_event(BOOT_FAILED, f"{name}: {reason}")

    def record_boot_ok(self, name: str) -> None:
        """A boot worked again: the failures before it no longer count."""
        self._boot_event(BOOT_OK, f"{name}: registered; boot back-off reset")

    def clear_boot_backoff(self, by: str) -> int:
        """The operator's clear (CLI now; the web page's button and REST route later)."""
        n = len(self.boot_failures())
        self._boot_event(BOOT_CLEARED, f"{by}: boot back-off cleared ({n} failed boot(s) forgotten)")
        return n


BOOT_EVENTS = "autoscaler-boot"  # the events' worker column: not a real worker's name
BOOT_FAILED, BOOT_OK, BOOT_CLEARED = "BOOT_FAILED", "BOOT_OK", "BOOT_CLEARED"
# The failures in a row never exceed the stop limit by much (launching stops there), so a short
# scan reaches the last reset; beyond it the oldest failures simply stop counting.
BOOT_SCAN = 200
