"""The SQL of studio scheduling: farm-wide limits (`farm_limits`) and the lookups of
frame-to-frame dependencies.

A mixin of SqlTx (store/sql.py), kept apart to keep each module small; same rules: `?`
placeholders, values as parameters, no name from a request in the statement text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .base import Row

# A unit of a frame-dependency matches a span when it covers no known frame (last < first:
# taken to cover them all) or when the spans share a frame.
_OVERLAPS = "(last_frame < first_frame OR (last_frame >= ? AND first_frame <= ?))"
_ALL = (-(2**62), 2**62)  # the span of a unit that covers no known frame


class SchedulingSql:
    """Limits and frame dependencies (mixed into SqlTx)."""

    cur: Any
    _mysql: bool

    if TYPE_CHECKING:  # SqlTx's plumbing, which these methods use

        def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
        def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
        def _one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
        def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    # -- limits -----------------------------------------------------------------------------
    def limits(self) -> list[Row]:
        """Every limit (name, capacity, in_use, external, updated_at), by name."""
        return self._all("SELECT * FROM farm_limits ORDER BY name")

    def limit(self, name: str) -> Row | None:
        """One limit, or None."""
        return self._one("SELECT * FROM farm_limits WHERE name = ?", (name,))

    def put_limit(self, name: str, capacity: int, now: float, create_only: bool = False) -> None:
        """Create a limit, or set its capacity (with `create_only`, an existing one is kept)."""
        if self._mysql:
            tail = (
                "name = name"
                if create_only
                else "capacity = VALUES(capacity), updated_at = VALUES(updated_at)"
            )
            upsert = f"ON DUPLICATE KEY UPDATE {tail}"
        else:
            tail = (
                "NOTHING"
                if create_only
                else "UPDATE SET capacity = excluded.capacity, updated_at = excluded.updated_at"
            )
            upsert = f"ON CONFLICT (name) DO {tail}"
        self.execute(
            "INSERT INTO farm_limits (name, capacity, in_use, external, updated_at) "
            f"VALUES (?, ?, 0, 0, ?) {upsert}",
            (name, capacity, now),
        )

    def delete_limit(self, name: str) -> int:
        """Remove a limit; returns 1 if it existed. Jobs that need it wait until it exists."""
        return self.execute("DELETE FROM farm_limits WHERE name = ?", (name,))

    def acquire_limit(self, name: str, amount: int, now: float) -> bool:
        """Take `amount` of a limit if it has room, atomically: a compare-and-set on the row
        (on MySQL the update reads the newest committed row and locks it until commit, so
        two servers never both take the last licence). Licences a log rule found missing
        count as used until their time is up."""
        return (
            self.execute(
                "UPDATE farm_limits SET in_use = in_use + ? WHERE name = ? AND in_use + external "
                "+ CASE WHEN lowered_until > ? THEN lowered ELSE 0 END + ? <= capacity",
                (amount, name, now, amount),
            )
            == 1
        )

    def lower_limit(self, name: str, now: float, until: float) -> int:
        """Count one more licence of a limit as used outside the farm until `until` (a log
        rule saw the licence server refuse one); returns 1 if the limit exists."""
        return self.execute(
            "UPDATE farm_limits SET lowered = CASE WHEN lowered_until > ? THEN lowered + 1 ELSE 1 END, "
            "lowered_until = ? WHERE name = ?",
            (now, until, name),
        )

    def release_limit(self, name: str, amount: int) -> None:
        """Give back `amount` of a limit (never below zero); a negative amount takes without
        checking the room (a run re-adopted after a silence already holds its licence)."""
        self.execute(
            "UPDATE farm_limits SET in_use = CASE WHEN in_use > ? THEN in_use - ? ELSE 0 END WHERE name = ?",
            (amount, amount, name),
        )

    def set_limit_external(self, name: str, external: int, now: float) -> None:
        """What the limit's command counted in use outside the farm."""
        self.execute(
            "UPDATE farm_limits SET external = ?, updated_at = ? WHERE name = ?", (external, now, name)
        )

    def limit_users(self, name: str, limit: int = 100) -> list[Row]:
        """Running jobs holding a limit (id, limits_held), for `why`."""
        rows = self._all(
            "SELECT id, limits_held FROM jobs WHERE state = 'WORKING' AND leaf = 1 AND limits_held <> '' "
            "ORDER BY id"
        )
        held = [r for r in rows if any(p.split(":")[0] == name for p in str(r["limits_held"]).split(","))]
        return held[:limit]

    # -- fair share -----------------------------------------------------------------------
    def ready_users(self) -> list[str]:
        """The users who own dispatchable leaves (a scan of the queue: callers cache it)."""
        rows = self._all(
            "SELECT DISTINCT user FROM jobs WHERE state = 'WAITING' AND h_blocked = 0 AND leaf = 1"
        )
        return sorted(str(r["user"]) for r in rows)

    def running_by_user(self) -> dict[str, int]:
        """Running leaves counted by owner."""
        rows = self._all(
            "SELECT user, COUNT(*) AS n FROM jobs WHERE state = 'WORKING' AND leaf = 1 GROUP BY user"
        )
        return {str(r["user"]): int(r["n"]) for r in rows}

    def first_ready_of(
        self, tagsets: Sequence[int], user: str, skip_limits: Sequence[str] = ()
    ) -> tuple[int, str, str, str] | None:
        """first_ready among one user's leaves (an index seek per tag set on c5_jobs_share)."""
        sql = (
            "SELECT id, h_key, title, limits FROM jobs WHERE state = 'WAITING' AND h_blocked = 0 "
            "AND leaf = 1 AND tagset = ? AND user = ?"
        )
        skip = list(dict.fromkeys(skip_limits))
        if skip:
            sql += f" AND limits NOT IN ({','.join('?' * len(skip))})"
        sql += " ORDER BY h_key LIMIT 1" + (" FOR UPDATE SKIP LOCKED" if self._mysql else "")
        best = None
        for tagset in tagsets:
            row = self._one(sql, (tagset, user, *skip))
            if row is not None and (best is None or row["h_key"] < best["h_key"]):
                best = row
        if best is None:
            return None
        return (int(best["id"]), str(best["h_key"]), str(best["title"]), str(best["limits"]))

    # -- frame-to-frame dependencies -------------------------------------------------------
    def frame_dependents(self, job_id: int) -> list[int]:
        """Jobs that wait for `job_id` frame by frame."""
        rows = self._all("SELECT id FROM jobs WHERE frame_dep = ? ORDER BY id", (job_id,))
        return [int(r["id"]) for r in rows]

    def frame_units(self, job_id: int, span: tuple[int, int] | None) -> list[Row]:
        """The children of `job_id` whose frames overlap `span` (None: every child), with the
        columns tree upkeep reads."""
        lo, hi = span or _ALL
        return self._all(
            f"SELECT * FROM jobs WHERE parent = ? AND {_OVERLAPS} ORDER BY first_frame, id", (job_id, lo, hi)
        )

    def unfinished_frame_units(self, job_id: int, span: tuple[int, int] | None, limit: int = 1) -> list[Row]:
        """Children of `job_id` overlapping `span` that are not FINISHED (the first `limit`)."""
        lo, hi = span or _ALL
        return self._all(
            f"SELECT id, first_frame, last_frame, state FROM jobs WHERE parent = ? AND state <> 'FINISHED' "
            f"AND {_OVERLAPS} ORDER BY first_frame, id LIMIT {int(limit)}",
            (job_id, lo, hi),
        )

    def mark_has_dependents(self, job_id: int) -> None:
        """Flag a job and its children: their state changes may release frame dependents."""
        self.execute(
            "UPDATE jobs SET has_dependents = 1 WHERE (id = ? OR parent = ?) AND has_dependents = 0",
            (job_id, job_id),
        )
