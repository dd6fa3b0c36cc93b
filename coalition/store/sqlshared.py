"""The SQL of the state several servers share besides jobs and workers: job logs kept in the
database (`job_logs`) and failed-login counters (`login_failures`).

A mixin of SqlTx (store/sql.py), kept apart to keep each module small; same rules: `?`
placeholders, values as parameters, no name from a request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .base import Row

# Rows are kept modest (MySQL's max_allowed_packet, InnoDB's off-page blobs): a bigger append
# is stored as several chunks.
CHUNK = 1 << 20
_DUPLICATE = 1062  # MySQL: duplicate key


class SharedStateSql:
    """Job logs and login failures (mixed into SqlTx)."""

    cur: Any
    _mysql: bool

    if TYPE_CHECKING:  # SqlTx's plumbing, which these methods use

        def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
        def _sql(self, sql: str) -> str: ...
        def _one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
        def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
        @staticmethod
        def _marks(n: int) -> str: ...

    # -- job logs -------------------------------------------------------------------------
    def log_size(self, job_id: int) -> int:
        """Bytes stored for a job's log (0 without one)."""
        row = self._one(
            "SELECT pos, bytes FROM job_logs WHERE job_id = ? ORDER BY pos DESC LIMIT 1", (job_id,)
        )
        return 0 if row is None else int(row["pos"]) + int(row["bytes"])

    def log_append(self, job_id: int, data: bytes, max_bytes: int, marker: bytes = b"") -> int:
        """Append to a job's log, keeping at most `max_bytes` (past the cap the rest is dropped,
        `marker` written once); returns the bytes stored."""
        if not data:
            return 0
        for _ in range(100):
            size = self.log_size(job_id)
            if size >= max_bytes:
                return 0
            room = max_bytes - size
            out = data if len(data) <= room else data[:room] + marker
            try:
                self._log_insert(job_id, size, out)
                return len(out)
            except Exception as exc:  # noqa: BLE001 - only a lost race on the offset is retried
                # Another server appended to the same log at the same offset and committed
                # first (MySQL waits for it, then refuses the duplicate; the statement alone
                # is undone): measure again and append after its chunk.
                if not (self._mysql and exc.args and exc.args[0] == _DUPLICATE):
                    raise
        raise RuntimeError(f"could not append to the log of job {job_id}")  # pragma: no cover

    def _log_insert(self, job_id: int, pos: int, data: bytes) -> None:
        rows = [
            (job_id, pos + i, len(data[i : i + CHUNK]), data[i : i + CHUNK])
            for i in range(0, len(data), CHUNK)
        ]
        sql = "INSERT INTO job_logs (job_id, pos, bytes, data) VALUES (?, ?, ?, ?)"
        if len(rows) == 1:
            self.execute(sql, rows[0])
        else:
            self.cur.executemany(self._sql(sql), rows)

    def log_read(self, job_id: int, offset: int = 0, limit: int | None = None) -> bytes:
        """A byte range of a job's log (empty past its end or without a log)."""
        offset = max(0, offset)
        end = None if limit is None else offset + max(0, limit)
        if end is not None and end <= offset:
            return b""
        # The chunk holding `offset` starts at or before it: the latest such start bounds the
        # scan, so a range of a big log reads only the chunks it needs (index seeks on the key).
        first = self._scalar(
            "SELECT pos FROM job_logs WHERE job_id = ? AND pos <= ? ORDER BY pos DESC LIMIT 1",
            (job_id, offset),
        )
        where, params = "job_id = ? AND pos >= ?", [job_id, first or 0]
        if end is not None:
            where += " AND pos < ?"
            params.append(end)
        self.cur.execute(self._sql(f"SELECT pos, data FROM job_logs WHERE {where} ORDER BY pos"), params)
        parts: list[bytes] = []
        for pos, data in self.cur.fetchall():
            chunk = bytes(data)
            lo = max(0, offset - int(pos))
            hi = len(chunk) if end is None else min(len(chunk), end - int(pos))
            if hi > lo:
                parts.append(chunk[lo:hi])
        return b"".join(parts)

    def log_delete(self, job_ids: Sequence[int]) -> None:
        """Delete the logs of these jobs."""
        ids = list(job_ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            self.execute(f"DELETE FROM job_logs WHERE job_id IN ({self._marks(len(chunk))})", chunk)

    # -- failed logins ----------------------------------------------------------------------
    def login_failures(self, key: str, now: float) -> int:
        """Failed logins counted under `key` in its window (0 once the window is over)."""
        row = self._one("SELECT failures, expires FROM login_failures WHERE id = ?", (key,))
        return 0 if row is None or row["expires"] <= now else int(row["failures"])

    def add_login_failure(self, key: str, now: float, window: float) -> int:
        """Count one more failed login under `key`; the count starts again once `window`
        seconds have passed since its first failure. Returns the count."""
        if self._mysql:
            # One statement, atomic across servers: an upsert on the key.
            self.execute(
                "INSERT INTO login_failures (id, failures, expires) VALUES (?, 1, ?) "
                "ON DUPLICATE KEY UPDATE failures = IF(expires <= ?, 1, failures + 1), "
                "expires = IF(expires <= ?, VALUES(expires), expires)",
                (key, now + window, now, now),
            )
        else:
            self.execute(
                "INSERT INTO login_failures (id, failures, expires) VALUES (?, 1, ?) "
                "ON CONFLICT (id) DO UPDATE SET "
                "failures = CASE WHEN expires <= ? THEN 1 ELSE failures + 1 END, "
                "expires = CASE WHEN expires <= ? THEN excluded.expires ELSE expires END",
                (key, now + window, now, now),
            )
        return self.login_failures(key, now)

    def purge_login_failures(self, now: float) -> int:
        """Forget counters whose window is over."""
        return self.execute("DELETE FROM login_failures WHERE expires <= ?", (now,))
