"""One request per worker process carries every slot's heartbeat and pick (POST /workers/sync).

A farm's request rate used to grow with its slot count: every slot heartbeat every `sleep`
seconds, and every idle slot asked for a job as often. The courier speaks for all the slots of
the process at once, at the cadence the server sets in its answer (scheduling.next_sync:
longer for idle workers and long frames, shorter after a job was handed out or a kill ordered).

What stays with each slot: the end of a run (its endjob also brings the next job, so a busy
farm dispatches without waiting for a sync) and the delivery of a large output backlog.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from .link import Backoff, Refused, Unreachable, jittered
from .metrics import Metrics
from .resources import Pool

log = logging.getLogger("coalition.worker")

SYNC_CHUNK_TOTAL = 1 << 20  # log bytes in one sync, shared by the running slots
MIN_NEXT, MAX_NEXT = 0.2, 60.0  # bounds on the server's `next` (a broken answer cannot stall us)


class SyncLink(Protocol):
    """The part of ServerLink the courier uses."""

    url: str

    def sync(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def close(self) -> None: ...


class Courier:
    """Syncs every slot of this process with the server, from its own thread."""

    def __init__(
        self,
        link: SyncLink,
        metrics: Metrics,
        control: Any,  # control.Control
        sleep: float,
        affinity: str = "",
        wait: Callable[[float], None] | None = None,
        pool: Pool | None = None,
        offers: str = "",
        wake: Any = None,  # wake.WakeListener, or None: no wake-ups
    ) -> None:
        self.link = link
        self.wake = wake
        self.offers = offers  # tags offered on every rule line (OpenJD: docs/openjd.md)
        self.pool = pool
        self.metrics = metrics
        self.control = control
        self.sleep = sleep
        self.affinity = affinity
        self._wait = wait or control.wait
        self.slots: list[Any] = []  # agent.Slot
        self._stop = threading.Event()
        self._down = False
        parts = urlsplit(link.url)
        self._server = (parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        self.syncs = 0  # requests answered, for tests and logs

    def add(self, slots: Sequence[Any]) -> None:
        """The slots this courier speaks for (before run())."""
        self.slots.extend(slots)

    def stop(self) -> None:
        """End run() after the current sync."""
        self._stop.set()
        self.control.poke()

    def run(self) -> None:
        """Sync until stopped (thread body)."""
        backoff = Backoff(cap=max(30.0, self.sleep))
        interval = 0.0  # the first sync at once: idle slots want jobs
        while not self._stop.is_set():
            if interval > 0:
                self._wait(interval)
            if self._stop.is_set():
                break
            interval = self.sleep
            limit = max(16384, SYNC_CHUNK_TOTAL // max(1, len(self.slots)))
            reports = [(slot, slot.report(limit)) for slot in self.slots]
            reports = [(slot, report) for slot, report in reports if report is not None]
            budget = self._plan(reports)
            reports = [
                (slot, r) for slot, r in reports if r.run is not None or r.body["pick"] or self._shown(slot)
            ]
            if not reports:
                if not self.syncs:
                    interval = MIN_NEXT  # the slots are still starting: the first sync soon
                continue  # every slot is ending a run or stopped: their own requests speak
            body: dict[str, Any] = {
                **self.metrics.snapshot(*self._server),
                "slots": [report.body for _, report in reports],
                "interval": self.sleep,
            }
            if self.pool is not None:
                body["resources"] = self.pool.resources()
                body["gpureserve"] = self.pool.gpureserve
                body["host"] = self.pool.host
                if not self.pool.packing:  # each fixed slot is its own share
                    for slot, report in reports:
                        report.body["resources"] = self.pool.resources(slot.name)
            if budget is not None:
                body["free"] = budget
            if self.wake is not None and any(r.body.get("pick") for _, r in reports):
                body["wake"] = self.wake.describe()  # idle: the server may wake us early
            if self.affinity:
                body["affinity"] = self.affinity
            if self.offers:
                body["offers"] = self.offers
            try:
                answer = self.link.sync(body)
            except (Unreachable, Refused) as exc:
                for slot, report in reports:
                    slot.synced(report, None)
                self._unreachable(exc)
                interval = max(self.sleep, backoff.next())
                continue
            backoff.reset()
            self._reachable()
            self.syncs += 1
            answers = {a.get("name"): a for a in answer.get("slots") or [] if isinstance(a, dict)}
            for slot, report in reports:
                slot.synced(report, answers.get(slot.name))
            interval = jittered(_bounded(answer.get("next"), self.sleep))
        self.link.close()

    def _plan(self, reports: Sequence[tuple[Any, Report]]) -> dict[str, Any] | None:
        """Which idle slots ask for a job in this sync, and with what (the pool decides:
        asks that share the host's capacity are serialised). Returns a packing host's
        budget, which the asking slots share."""
        if self.pool is None:
            return None
        wanting = [slot.name for slot, report in reports if report.body.get("pick")]
        if not wanting:
            return None
        budget, asks = self.pool.plan(wanting)
        for slot, report in reports:
            if not report.body.get("pick"):
                continue
            if slot.name not in asks:
                report.body["pick"] = False
                slot.withdraw()
            else:
                if asks[slot.name] is not None:
                    report.body["free"] = asks[slot.name]
                if not self.pool.visible(slot.name):
                    report.body["spare"] = True  # the server lists it only once it gets a job
        return budget

    def _shown(self, slot: Any) -> bool:
        # A packing host's spare slots stay unknown to the server until they first run a job.
        return self.pool is None or self.pool.visible(slot.name)

    def _unreachable(self, exc: Exception) -> None:
        if isinstance(exc, Refused):
            log.error("the server refused a sync: %s", exc)
        elif not self._down:
            log.warning("server %s unreachable (%s); retrying", self.link.url, exc)
            self._down = True

    def _reachable(self) -> None:
        if self._down:
            log.info("server %s is back", self.link.url)
            self._down = False


def _bounded(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return default
    return min(MAX_NEXT, max(MIN_NEXT, float(value)))


class Report:
    """One slot's part of a sync body, and what it must remember to apply the answer."""

    def __init__(self, body: dict[str, Any], run: Any = None, acked_to: int = 0) -> None:
        self.body = body
        self.run = run  # reporting.Run reported (None: the slot is idle)
        self.acked_to = acked_to  # the output offset the answer acknowledges

    @classmethod
    def idle(cls, name: str, pick: bool) -> Report:
        """An idle slot, asking for a job or not."""
        return cls({"name": name, "pick": pick})

    @classmethod
    def running(cls, name: str, run: Any, limit: int) -> Report:
        """A slot with a run: its heartbeat and the next `limit` bytes of its output."""
        offset, chunk = run.output.pending(limit)
        body = {"name": name, "job_id": run.job_id, "event": run.job.get("event"), "log_offset": offset}
        if chunk:
            body["log"] = base64.b64encode(chunk).decode("ascii")
        return cls(body, run, offset + len(chunk))
