"""The outbox table's background senders, shared by mail (notify.py) and webhooks.

A message is queued inside the transaction of the change it reports (`queued()` gives the
row); a sender on the one server holding its lease claims what is due (holding it against a
resend by another server), delivers it outside any transaction, and records each outcome:
sent, retried later with a growing delay, or given up. Old sent and abandoned rows go after
KEEP_SECONDS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .store.base import Row, Store, Tx

log = logging.getLogger("coalition.outbox")

MAX_ATTEMPTS = 10
KEEP_SECONDS = 7 * 86400  # sent and abandoned messages stay this long (for diagnostics)

# Delivers claimed rows; returns the outcome fields of each row id it got to.
Deliver = Callable[[list[Row]], dict[int, dict[str, Any]]]


class Outbox:
    """One channel ("mail", "webhook") of the outbox: queue rows, drain them, retry them."""

    def __init__(
        self, store: Store, clock: Callable[[], float], channel: str, interval: float, timeout: float
    ):
        self.store = store
        self.clock = clock
        self.channel = channel
        self.interval = interval  # the first retry's delay; it doubles at each attempt
        self.timeout = timeout  # one delivery's; a claim is held for three of them
        self._last_purge = 0.0

    def queued(self, recipient: str, subject: str, body: str, dedupe: str | None = None) -> dict[str, Any]:
        """The row of a new message (for tx.enqueue_mail, inside the change's transaction)."""
        now = self.clock()
        return {
            "created_at": now,
            "dedupe": dedupe,
            "channel": self.channel,
            "recipient": recipient,
            "subject": subject,
            "body": body,
            "status": "queued",
            "attempts": 0,
            "next_try": now,
            "last_error": "",
            "sent_at": 0.0,
        }

    def drain(self, deliver: Deliver, batch: int = 50) -> int:
        """Deliver what is due; returns how many messages were sent."""
        now = self.clock()
        hold = max(60.0, self.timeout * 3)  # another server must not resend meanwhile
        channel = self.channel

        def claim(tx: Tx) -> list[Row]:
            rows = tx.due_mail(now, batch, channel)
            for row in rows:
                tx.update_mail(row["id"], {"next_try": now + hold, "attempts": row["attempts"] + 1})
            return rows

        rows = self.store.write(claim)
        outcomes = deliver(rows) if rows else {}
        if outcomes:

            def record(tx: Tx) -> None:
                for row_id, fields in outcomes.items():
                    tx.update_mail(row_id, fields)

            self.store.write(record)
        if now - self._last_purge > 3600:
            self._last_purge = now
            self.store.write(lambda tx: tx.purge_mail(now - KEEP_SECONDS))
        return sum(1 for f in outcomes.values() if f.get("status") == "sent")

    def sent(self) -> dict[str, Any]:
        """The outcome of a delivered message."""
        return {"status": "sent", "sent_at": self.clock(), "last_error": ""}

    def failed(self, row: Row, error: str, permanent: bool = False) -> dict[str, Any]:
        """The outcome of a failed attempt: a later retry, or given up (permanent, or too many)."""
        attempts = row["attempts"] + 1
        if permanent or attempts >= MAX_ATTEMPTS:
            log.error(
                "giving up %s %d (%s) to %s: %s",
                self.channel,
                row["id"],
                row["subject"],
                row["recipient"],
                error,
            )
            return {"status": "failed", "last_error": error[:1000]}
        delay = min(self.interval * 2**attempts, 3600.0)
        return {"next_try": self.clock() + delay, "last_error": error[:1000]}
