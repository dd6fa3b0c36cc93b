"""The SQL of host failures and blocks (docs/failures.md), mixed into SqlTx.

A row of `host_failures` counts a worker's failed runs of one job (or group) and holds the
block they led to; the use cases decide (coalition/failures.py), this only reads and writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import Row


class HostFailuresSql:
    """Host-failure counting and blocks; needs SqlTx's plumbing."""

    _mysql: bool

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:  # pragma: no cover - SqlTx's
        raise NotImplementedError

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:  # pragma: no cover - SqlTx's
        raise NotImplementedError

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:  # pragma: no cover - SqlTx's
        raise NotImplementedError

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:  # pragma: no cover - SqlTx's
        raise NotImplementedError

    def count_host_failure(
        self, job_id: int, worker: str, grp: int, now: float, forgotten: float, reason: str
    ) -> Row:
        """Count one more failed run of `job_id` on `worker` (a count whose last failure is
        older than `forgotten` starts again at 1); returns the row after the count."""
        if self._mysql:
            sql = (
                "INSERT INTO host_failures (job_id, worker, grp, failures, last_at, blocked_until, reason) "
                "VALUES (?, ?, ?, 1, ?, 0, ?) ON DUPLICATE KEY UPDATE "
                "failures = IF(last_at < ?, 1, failures + 1), grp = VALUES(grp), "
                "last_at = VALUES(last_at), reason = VALUES(reason)"
            )
        else:
            sql = (
                "INSERT INTO host_failures (job_id, worker, grp, failures, last_at, blocked_until, reason) "
                "VALUES (?, ?, ?, 1, ?, 0, ?) ON CONFLICT (job_id, worker) DO UPDATE SET "
                "failures = CASE WHEN last_at < ? THEN 1 ELSE failures + 1 END, grp = excluded.grp, "
                "last_at = excluded.last_at, reason = excluded.reason"
            )
        self.execute(sql, (job_id, worker, grp, now, reason, forgotten))
        row = self._one("SELECT * FROM host_failures WHERE job_id = ? AND worker = ?", (job_id, worker))
        assert row is not None
        return row

    def block_host(self, job_id: int, worker: str, until: float) -> None:
        """Block `worker` from `job_id` until `until`."""
        self.execute(
            "UPDATE host_failures SET blocked_until = ? WHERE job_id = ? AND worker = ?",
            (until, job_id, worker),
        )

    def failed_jobs_on(self, worker: str, since: float) -> int:
        """How many different jobs (their `grp`) failed on `worker` since `since` and on no
        other worker since then (a job failing everywhere is the job's fault, not the host's)."""
        return int(
            self._scalar(
                "SELECT COUNT(DISTINCT a.grp) FROM host_failures a WHERE a.worker = ? AND a.last_at >= ? "
                "AND NOT EXISTS (SELECT 1 FROM host_failures b "
                "WHERE b.grp = a.grp AND b.worker <> a.worker AND b.last_at >= ?)",
                (worker, since, since),
            )
            or 0
        )

    def host_blocks(self, now: float, worker: str | None = None, job_id: int | None = None) -> list[Row]:
        """Blocks in force at `now`, for one worker and/or one job, newest first."""
        where: list[str] = ["blocked_until > ?"]
        params: list[Any] = [now]
        if worker is not None:
            where.append("worker = ?")
            params.append(worker)
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        return self._all(
            f"SELECT * FROM host_failures WHERE {' AND '.join(where)} ORDER BY last_at DESC LIMIT 10000",
            params,
        )

    def lift_host_blocks(self, job_id: int, worker: str | None = None) -> int:
        """Forget the failures (and so the blocks) of `job_id` on one worker or on all."""
        if worker is None:
            return self.execute("DELETE FROM host_failures WHERE job_id = ?", (job_id,))
        return self.execute("DELETE FROM host_failures WHERE job_id = ? AND worker = ?", (job_id, worker))

    def blocked_keys(self, worker: str, now: float) -> list[str]:
        """The ordering keys (h_key) of the jobs `worker` is blocked from at `now`, in one
        query (a key changes with priorities, so it is read at each pick, not stored)."""
        rows = self._all(
            "SELECT j.h_key FROM host_failures b JOIN jobs j ON j.id = b.job_id "
            "WHERE b.worker = ? AND b.blocked_until > ? ORDER BY j.h_key",
            (worker, now),
        )
        return [str(r["h_key"]) for r in rows]

    def purge_host_failures(self, before: float) -> int:
        """Forget counts whose last failure is older than `before` and that block nothing."""
        return self.execute(
            "DELETE FROM host_failures WHERE last_at < ? AND blocked_until < ?", (before, before)
        )
