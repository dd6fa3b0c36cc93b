"""Web login sessions, kept in the database so that every server process behind a load
balancer recognises them (the servers keep no state of their own).

The cookie carries 256 random bits; the database keeps only their SHA-256, so a copy of the
database (a backup, a read-only replica) does not hand out live sessions. A session ends at
logout or after `sessionlifetime` seconds, whichever comes first.
"""

from __future__ import annotations

import hashlib
import secrets

from ..audit import Actor, record_audit
from ..store.base import Tx
from .context import Context, Effects


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """Log in, check and log out web sessions (the login is audited in the same commit)."""

    def __init__(self, ctx: Context, lifetime: float):
        self.ctx = ctx
        self.lifetime = lifetime

    def login(self, user: str, address: str = "") -> str:
        """Open a session for `user` (who proved their password); returns the cookie value."""
        token = secrets.token_urlsafe(32)
        now = self.ctx.clock()

        def fn(tx: Tx, fx: Effects) -> None:
            tx.insert_session(_key(token), user, now, now + self.lifetime)
            record_audit(tx, Actor(user, address), "login", user, [], now)

        self.ctx.write(fn)
        return token

    def user(self, token: str) -> str | None:
        """The user of a live session, or None (unknown, ended or expired)."""
        row = self.ctx.read(lambda tx: tx.session(_key(token)))
        if row is None or row["expires"] <= self.ctx.clock():
            return None
        return str(row["user"])

    def logout(self, token: str, address: str = "") -> str | None:
        """End a session; returns its user, or None if it was not live."""
        now = self.ctx.clock()

        def fn(tx: Tx, fx: Effects) -> str | None:
            row = tx.session(_key(token))
            if row is None:
                return None
            tx.delete_session(_key(token))
            user = str(row["user"])
            record_audit(tx, Actor(user, address), "logout", user, [], now)
            return user if row["expires"] > now else None

        return self.ctx.write(fn)

    def purge(self) -> int:
        """Delete expired sessions (a periodic task)."""
        now = self.ctx.clock()
        return self.ctx.write(lambda tx, fx: tx.purge_sessions(now))


class LoginFailures:
    """Failed passwords counted per (client address, login) in the database, so that every
    server behind a load balancer sees the same count: password guessing spread over the
    servers is slowed just as much as against one. Keyed by a SHA-256 of the pair."""

    def __init__(self, ctx: Context, window: float = 300.0):
        self.ctx = ctx
        self.window = window

    @staticmethod
    def _key(address: str, login: str) -> str:
        return hashlib.sha256(f"{address}\0{login}".encode()).hexdigest()

    def count(self, address: str, login: str) -> int:
        """Failures of this pair in the current window."""
        key, now = self._key(address, login), self.ctx.clock()
        return self.ctx.read(lambda tx: tx.login_failures(key, now))

    def add(self, address: str, login: str) -> int:
        """Count one more failure (atomic across servers); returns the count."""
        key, now = self._key(address, login), self.ctx.clock()
        return self.ctx.write(lambda tx, fx: tx.add_login_failure(key, now, self.window))

    def purge(self) -> int:
        """Forget counters whose window is over (a periodic task)."""
        now = self.ctx.clock()
        return self.ctx.write(lambda tx, fx: tx.purge_login_failures(now))
