"""The SQL of runs: the ready leaves a worker picks from (`first_ready`, `ready_counts`), the
claim that starts a run, the runs in progress the reaper looks at (`working_jobs`,
`reaping_due`), and the run records (`events`, where the farm also notes SICK workers and the
autoscaler's decisions).

A mixin of SqlTx (store/sql.py), kept apart to keep each module small; same rules: `?`
placeholders, values as parameters, column names only from fixed lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .base import Row
from .schema import JOB_PICK, check_columns

_EVENT_COLS = frozenset("worker job_id job_title state start duration cpu_time peak_memory reason".split())

# What a claim on MySQL reads back: the pick payload and what tree upkeep reads (Tx.claim).
_CLAIMED = "SELECT {} FROM jobs WHERE id = ?".format(
    ",".join(
        dict.fromkeys(
            (
                *JOB_PICK,
                "parent",
                "state",
                "worker",
                "run_event",
                "start_time",
                "has_dependents",
                "paused",
                "leaf",
                "tagset",
            )
        )
    )
)


class RunsSql:
    """Picking, claiming and reaping leaves, and the events table (mixed into SqlTx)."""

    cur: Any
    _mysql: bool

    if TYPE_CHECKING:  # SqlTx's plumbing, which these methods use

        def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
        def _sql(self, sql: str) -> str: ...
        def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
        def _one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
        def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
        def _last_id(self) -> int: ...
        @staticmethod
        def _marks(n: int) -> str: ...

    # -- the hand-out and the reaper --------------------------------------------------------
    def reaping_due(self, silent_before: float | None, now: float, grace: float) -> bool:
        probes: list[tuple[str, Sequence[Any]]] = [
            (
                "SELECT j.id FROM jobs j WHERE j.state = 'WORKING' AND j.leaf = 1 AND NOT EXISTS "
                "(SELECT 1 FROM workers w WHERE w.name = j.worker) LIMIT 1",
                (),
            ),
            (
                "SELECT id FROM jobs WHERE state = 'WORKING' AND leaf = 1 AND timeout > 0 "
                "AND start_time > 0 AND start_time + timeout + ? < ? LIMIT 1",
                (grace, now),
            ),
        ]
        if silent_before is not None:
            probes[:0] = [
                (
                    "SELECT name FROM workers WHERE state IN ('WAITING', 'WORKING') "
                    "AND ping_time < ? LIMIT 1",
                    (silent_before,),
                ),
                (
                    # A run nobody heartbeats though its worker is alive (a held job whose
                    # hand-out answer was lost on the way).
                    "SELECT id FROM jobs WHERE state = 'WORKING' AND leaf = 1 AND ping_time < ? LIMIT 1",
                    (silent_before,),
                ),
            ]
        return any(self._scalar(sql, params) is not None for sql, params in probes)

    def working_jobs(self) -> list[Row]:
        return self._all(
            "SELECT id, worker, start_time, timeout, run_event, ping_time FROM jobs "
            "WHERE state = 'WORKING' AND leaf = 1 ORDER BY id"
        )

    def first_ready(
        self,
        tagsets: Sequence[int],
        skip: Sequence[tuple[str, str]] = (),
        skip_limits: Sequence[str] = (),
    ) -> tuple[int, str, str, str] | None:
        one = (
            "SELECT id, h_key, title, limits FROM jobs "
            "WHERE state = 'WAITING' AND h_blocked = 0 AND leaf = 1 AND tagset = ?"
        )
        if not tagsets:
            return None
        full = list(dict.fromkeys(skip_limits))
        if full:
            # Jobs whose limits are full are passed over (scanned in the index, not picked).
            one += f" AND limits NOT IN ({self._marks(len(full))})"
        one += " ORDER BY h_key LIMIT 1"
        # Each probe is an index seek on (state, h_blocked, leaf, tagset, h_key). (A UNION of
        # the probes is much slower on SQLite: it sorts every matching row.) On MySQL each
        # probe also locks the row it returns and skips rows other servers hold, so two
        # servers never wait on, nor take, the same job.
        lock = " FOR UPDATE SKIP LOCKED" if self._mysql else ""
        sql = self._sql(one + lock)
        after = self._sql(one.replace("tagset = ?", "tagset = ? AND h_key >= ?") + lock)
        best = None
        for tagset in tagsets:
            self.cur.execute(sql, (tagset, *full))
            row = self.cur.fetchone()
            # A key in a skipped range (a job or group this worker is blocked from): seek past
            # the range, one probe per blocked job ahead, however many frames it holds.
            while row is not None and skip:
                end = next((hi for lo, hi in skip if lo <= row[1] < hi), None)
                if end is None:
                    break
                self.cur.execute(after, (tagset, end, *full))
                row = self.cur.fetchone()
            if row is not None and (best is None or row[1] < best[1]):
                best = row
        return (int(best[0]), best[1], best[2], best[3]) if best is not None else None

    def claim(self, job_id: int, worker: str, event: int, now: float) -> Row | None:
        sql = (
            "UPDATE jobs SET state = 'WORKING', worker = ?, run_event = ?, start_time = ?, "
            "ping_time = ?, duration = 0, progress = 0, local_progress = 0, log_offset = 0, rule_hit = '', "
            "updated_at = ? "
            "WHERE id = ? AND state = 'WAITING' AND h_blocked = 0 AND leaf = 1"
        )
        params = (worker, event, now, now, now, job_id)
        if not self._mysql:
            return self._one(sql + " RETURNING *", params)  # the claimed row, in one round trip
        if self.execute(sql, params) != 1:
            return None
        # The pick payload and what tree upkeep reads, not the whole row (see sql._BUMPED).
        return self._one(_CLAIMED, (job_id,))

    def ready_counts(self) -> dict[int, int]:
        """Dispatchable leaves counted by tag set (what the cloud autoscaler scales on)."""
        rows = self._all(
            "SELECT tagset, COUNT(*) AS n FROM jobs WHERE state = 'WAITING' AND h_blocked = 0 AND leaf = 1 "
            "GROUP BY tagset"
        )
        return {int(r["tagset"]): int(r["n"]) for r in rows}

    # -- events -----------------------------------------------------------------------------
    def insert_event(self, fields: Mapping[str, Any]) -> int:
        check_columns(fields, _EVENT_COLS)
        cols = list(fields)
        self.execute(
            f"INSERT INTO events ({','.join(cols)}) VALUES ({self._marks(len(cols))})",
            [fields[c] for c in cols],
        )
        return self._last_id()

    def update_event(self, event_id: int, fields: Mapping[str, Any]) -> None:
        check_columns(fields, _EVENT_COLS)
        sets = ",".join(f"{c} = ?" for c in fields)
        self.execute(f"UPDATE events SET {sets} WHERE id = ?", [*fields.values(), event_id])

    def delete_event(self, event_id: int) -> None:
        """Remove an event (a run that did not start after all)."""
        self.execute("DELETE FROM events WHERE id = ?", (event_id,))

    def events(
        self,
        job: int | None,
        worker: str | None,
        since: float | None,
        limit: int,
        user: str | None = None,
    ) -> list[Row]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if job is not None:
            where.append("job_id = ?")
            params.append(job)
        if user is not None:  # only the runs of this user's jobs (a user who may not view all)
            where.append("job_id IN (SELECT id FROM jobs WHERE user = ?)")
            params.append(user)
        if worker:
            where.append("worker = ?")
            params.append(worker)
        if since is not None:
            where.append("start > ?")
            params.append(since)
        return self._all(
            f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT {int(limit)}", params
        )

    def finished_runs(self, parent: int) -> list[Row]:
        return self._all(
            "SELECT e.job_id, e.duration, e.cpu_time, e.peak_memory FROM events e "
            "JOIN jobs j ON j.id = e.job_id WHERE j.parent = ? AND e.state = 'FINISHED' ORDER BY e.id",
            (parent,),
        )

    def purge_events(self, before: float) -> int:
        """Delete closed events that started before `before`."""
        return self.execute("DELETE FROM events WHERE start < ? AND state <> 'WORKING'", (before,))
