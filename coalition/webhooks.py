"""Webhooks: signed JSON POSTs to configured URLs when jobs, groups and workers change.

Like mail (notify.py), a delivery is queued in the `outbox` table (channel "webhook") inside
the transaction that made the change, so a committed change always has its delivery and a
rolled-back one never does; `WebhookSender.drain`, a periodic task on the one server holding
the `webhooks` lease, sends what is due and retries with a growing delay. Each POST carries

    X-Coalition-Event: job.finished
    X-Coalition-Delivery: <outbox id>
    X-Coalition-Timestamp: <unix seconds>
    X-Coalition-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under webhooksecret>

so a receiver checks that the body came from the farm and is recent (docs/webhooks.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .hierarchy import Transition
from .model import ERROR, FINISHED
from .outbox import Outbox
from .store.base import Row, Store, Tx

log = logging.getLogger("coalition.webhooks")

EVENTS = (
    "job.finished",
    "job.failed",
    "group.finished",
    "worker.lost",
    "worker.sick",
    "autoscaler.decision",
)


@dataclass(frozen=True)
class WebhookSettings:
    """`[server] webhooks` and `webhooksecret`; deliveries are drained every `interval` s."""

    urls: tuple[str, ...] = ()
    secret: str = ""
    interval: float = 5.0
    timeout: float = 10.0

    @property
    def enabled(self) -> bool:
        """Whether any URL is configured."""
        return bool(self.urls)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Coalition-Signature value of a body sent at `timestamp`."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _job(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "parent": row["parent"],
        "title": row["title"],
        "user": row["user"],
        "state": row["state"],
        "total": row["total"],
        "total_finished": row["total_finished"],
        "total_errors": row["total_errors"],
        "run_done": row["run_done"],
        "fail_count": row["fail_count"],
    }


def events_for(t: Transition, job: Row | None) -> list[tuple[str, dict[str, Any]]]:
    """The webhook events a job state change calls for (pure): `job.finished` and
    `job.failed` for a top-level job or group, `group.finished` for any group; never one per
    frame of a group."""
    if job is None or t.new == t.old or t.new not in (FINISHED, ERROR):
        return []
    out: list[tuple[str, dict[str, Any]]] = []
    if t.parent == 0:
        out.append(("job.finished" if t.new == FINISHED else "job.failed", {"job": _job(job)}))
    if job["children"] and t.new == FINISHED:
        out.append(("group.finished", {"job": _job(job)}))
    return out


class WebhookSender:
    """Queues deliveries inside transactions; sends them in the background."""

    def __init__(
        self,
        settings: WebhookSettings,
        store: Store,
        clock: Callable[[], float] = time.time,
        opener: Callable[..., Any] = urllib.request.urlopen,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self._open = opener
        self.outbox = Outbox(store, clock, "webhook", settings.interval, settings.timeout)

    # -- inside a transaction ---------------------------------------------------------------------
    def on_transition(self, tx: Tx, t: Transition) -> None:
        """Queue the deliveries a job state change calls for (inside its transaction)."""
        if t.new == t.old or t.new not in (FINISHED, ERROR):
            return
        for event, data in events_for(t, tx.job(t.job_id)):
            self.queue(tx, event, data)

    def on_worker_lost(self, tx: Tx, worker: Row) -> None:
        """A worker fell silent and was marked TIMEOUT (inside the reaper's transaction)."""
        data = {"worker": {"name": worker["name"], "ip": worker["ip"], "last_job": worker["last_job"]}}
        self.queue(tx, "worker.lost", data)

    def queue(self, tx: Tx, event: str, data: dict[str, Any]) -> None:
        """Queue one event for every configured URL."""
        now = self.clock()
        body = json.dumps({"event": event, "at": now, **data}, separators=(",", ":"), sort_keys=True)
        for url in self.settings.urls:
            tx.enqueue_mail(self.outbox.queued(url, event, body))

    # -- the background sender ----------------------------------------------------------------------
    def drain(self, batch: int = 50) -> int:
        """Send the deliveries that are due; returns how many were accepted."""
        return self.outbox.drain(lambda rows: {row["id"]: self._deliver(row) for row in rows}, batch)

    def _deliver(self, row: Row) -> dict[str, Any]:
        body = str(row["body"]).encode()
        stamp = int(self.clock())
        request = urllib.request.Request(
            str(row["recipient"]),
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "Coalition-Webhooks",
                "X-Coalition-Event": str(row["subject"]),
                "X-Coalition-Delivery": str(row["id"]),
                "X-Coalition-Timestamp": str(stamp),
                "X-Coalition-Signature": sign(self.settings.secret, stamp, body),
            },
        )
        try:
            with self._open(request, timeout=self.settings.timeout) as answer:
                answer.read(65536)
            return self.outbox.sent()
        except urllib.error.HTTPError as exc:
            # A receiver that says no (4xx) will say it again; 408, 429 and 5xx may pass later.
            permanent = 400 <= exc.code < 500 and exc.code not in (408, 429)
            return self.outbox.failed(row, f"HTTP {exc.code} {exc.reason}", permanent)
        except (OSError, ValueError) as exc:  # refused, timed out, unreachable, a bad URL
            return self.outbox.failed(row, f"{type(exc).__name__}: {exc}", isinstance(exc, ValueError))


def delivery_view(row: Row) -> dict[str, Any]:
    """One delivery as GET /api/webhooks shows it (no body: it may be large)."""
    return {
        "id": row["id"],
        "event": row["subject"],
        "url": row["recipient"],
        "status": row["status"],
        "attempts": row["attempts"],
        "created_at": row["created_at"],
        "sent_at": row["sent_at"],
        "next_try": row["next_try"],
        "last_error": row["last_error"],
    }
