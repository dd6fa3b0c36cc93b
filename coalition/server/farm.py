"""The farm as the cloud autoscaler sees it (coalition.cloud.base.Farm), over the database."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..model import W_STARTING
from ..service import Service


class DbFarm:
    """Implements the autoscaler's Farm protocol with the service's store."""

    def __init__(self, service: Service, clock: Callable[[], float] = time.time):
        self.service = service
        self.clock = clock

    def ready_jobs_by_tags(self) -> dict[frozenset[str], int]:
        """Pickable leaves (WAITING, not blocked) counted by effective tag set."""

        def fn(tx: Any) -> dict[frozenset[str], int]:
            counts = tx.ready_counts()
            tags = self.service.tags.refresh(tx) if counts else {}
            out: dict[frozenset[str], int] = {}
            for tagset, n in counts.items():
                key = tags.get(tagset, frozenset())
                out[key] = out.get(key, 0) + n
            return out

        return self.service.store.read(fn)

    def workers(self) -> list[dict[str, Any]]:
        """Every worker with the fields the policy reads."""
        rows = self.service.store.read(lambda tx: tx.workers())
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

        def fn(tx: Any) -> None:
            if tx.worker(name) is None:
                tx.insert_worker(
                    {
                        "name": name,
                        "ip": "",
                        "affinity": "",
                        "state": state,
                        "cpu": "[]",
                        "active": 1,
                        "start_time": now,
                        "ping_time": 0.0,
                    }
                )
            else:
                tx.update_worker(name, {"state": state, "start_time": now, "current_job": 0})

        self.service.store.write(fn)

    def set_worker_state(self, name: str, state: str) -> None:
        """Mark a worker (TERMINATED releases its job back to the queue)."""
        self.service.mark_workers([name], state)

    def record_event(self, message: str) -> None:
        """One autoscaler decision as an event (worker "autoscaler", state CLOUD)."""
        now = self.clock()
        self.service.store.write(
            lambda tx: tx.insert_event(
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
