"""Web login sessions, kept in the database so that every server process behind a load
balancer recognises them (the servers keep no state of their own).

The cookie carries 256 random bits; the database keeps only their SHA-256, so a copy of the
database (a backup, a read-only replica) does not hand out live sessions. A session ends at
logout or after `sessionlifetime` seconds, whichever comes first.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any

from ..store.base import Store, Tx


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """Create, check and end login sessions."""

    def __init__(self, store: Store, lifetime: float, clock: Callable[[], float] = time.time):
        self.store = store
        self.lifetime = lifetime
        self.clock = clock

    def create(self, user: str, audit: Callable[[Tx, float], Any] | None = None) -> str:
        """Open a session for `user`; returns the cookie value. `audit` runs in the same
        transaction (to record the login)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()

        def fn(tx: Tx) -> None:
            tx.insert_session(_key(token), user, now, now + self.lifetime)
            if audit is not None:
                audit(tx, now)

        self.store.write(fn)
        return token

    def user(self, token: str) -> str | None:
        """The user of a live session, or None (unknown, ended or expired)."""
        row = self.store.read(lambda tx: tx.session(_key(token)))
        if row is None or row["expires"] <= self.clock():
            return None
        return str(row["user"])

    def end(self, token: str, audit: Callable[[Tx, str, float], Any] | None = None) -> str | None:
        """End a session (logout); returns its user, or None if it was not live."""
        now = self.clock()

        def fn(tx: Tx) -> str | None:
            row = tx.session(_key(token))
            if row is None:
                return None
            tx.delete_session(_key(token))
            if audit is not None:
                audit(tx, str(row["user"]), now)
            return str(row["user"]) if row["expires"] > now else None

        return self.store.write(fn)

    def purge(self) -> int:
        """Delete expired sessions (a periodic task)."""
        now = self.clock()
        return self.store.write(lambda tx: tx.purge_sessions(now))
