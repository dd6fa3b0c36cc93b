"""All of Coalition's SQL: one transaction class shared by SQLite and MySQL/MariaDB.

Statements are written with `?` placeholders; the MySQL dialect turns them into `%s`. Values
always travel as parameters. Column names only ever come from the fixed lists in schema.py,
never from a request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .base import SORTABLE, Row, StoreError
from .blocks import HostFailuresSql
from .schema import JOB_COLUMNS, WORKER_COLUMNS, check_columns
from .sqlopenjd import OpenJDSql
from .sqlruns import RunsSql
from .sqlsched import SchedulingSql
from .sqlshared import SharedStateSql

_JOB_COLS = frozenset(JOB_COLUMNS)
_WORKER_COLS = frozenset(WORKER_COLUMNS)
_AUDIT_COLS = frozenset("at actor address action owner target detail".split())
_OUTBOX_COLS = frozenset(
    "created_at dedupe channel recipient subject body status attempts next_try last_error sent_at".split()
)


# The columns of a group that tree upkeep reads after bumping its counters (Tx.bump_job).
_BUMPED = tuple(
    "id parent children total total_finished total_errors total_working pending state start_time "
    "has_dependents".split()
)

_STATEMENTS: dict[tuple[str, tuple[str, ...]], str] = {}


def _statement(template: str, cols: tuple[str, ...], allowed: frozenset[str], each: str) -> str:
    """A statement over some columns, built once per column set (the hot path repeats a few
    shapes thousands of times a second)."""
    key = (template + each, cols)
    sql = _STATEMENTS.get(key)
    if sql is None:
        check_columns(cols, allowed)
        sql = template.format(",".join(each.format(c=c) for c in cols))
        if len(_STATEMENTS) < 10000:
            _STATEMENTS[key] = sql
    return sql


class SqlTx(SharedStateSql, HostFailuresSql, SchedulingSql, OpenJDSql, RunsSql):
    """One transaction over a DB-API cursor."""

    def __init__(self, cursor: Any, dialect: str, names: dict[str, tuple[str, ...]] | None = None):
        self.cur = cursor
        self.dialect = dialect
        self._mysql = dialect == "mysql"
        # Result column names by statement text, shared by the transactions of one store:
        # `SELECT *` columns are in the database's own order, which a migrated database (its
        # columns added at the end) does not share with a fresh one.
        self._names: dict[str, tuple[str, ...]] = {} if names is None else names

    # -- plumbing -------------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._mysql else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the affected row count."""
        self.cur.execute(self._sql(sql), tuple(params))
        return self.cur.rowcount

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self.cur.execute(self._sql(sql), tuple(params))
        names = [d[0] for d in self.cur.description]
        return [dict(zip(names, row, strict=True)) for row in self.cur.fetchall()]

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self.cur.execute(self._sql(sql), tuple(params))
        row = self.cur.fetchone()
        if row is None:
            return None
        names = self._names.get(sql)
        if names is None:  # a statement's result columns are fixed: read them once
            names = tuple(d[0] for d in self.cur.description)
            if len(self._names) < 1000:
                self._names[sql] = names
        if self.cur.fetchone() is not None:  # drain (RETURNING statements finish when drained)
            self.cur.fetchall()
        return dict(zip(names, row, strict=False))  # same statement, same columns

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self.cur.execute(self._sql(sql), tuple(params))
        row = self.cur.fetchone()
        return row[0] if row else None

    def _last_id(self) -> int:
        return int(self.cur.lastrowid)

    @staticmethod
    def _marks(n: int) -> str:
        return ",".join("?" * n)

    # -- jobs -------------------------------------------------------------------------------
    def job(self, job_id: int) -> Row | None:
        return self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    def jobs(self, ids: Sequence[int], columns: Sequence[str] | None = None) -> list[Row]:
        out: list[Row] = []
        ids = list(ids)
        cols = "*"
        if columns:
            check_columns(columns, _JOB_COLS)
            cols = ",".join(dict.fromkeys(("id", *columns)))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            out += self._all(f"SELECT {cols} FROM jobs WHERE id IN ({self._marks(len(chunk))})", chunk)
        out.sort(key=lambda r: r["id"])
        return out

    def insert_job(self, fields: Mapping[str, Any]) -> int:
        check_columns(fields, _JOB_COLS)
        cols = list(fields)
        self.execute(
            f"INSERT INTO jobs ({','.join(cols)}) VALUES ({self._marks(len(cols))})",
            [fields[c] for c in cols],
        )
        return self._last_id()

    def update_job(self, job_id: int, fields: Mapping[str, Any]) -> int:
        if not fields:
            return 0
        sql = _statement("UPDATE jobs SET {} WHERE id = ?", tuple(fields), _JOB_COLS, "{c} = ?")
        self.cur.execute(self._sql(sql), (*fields.values(), job_id))
        return self.cur.rowcount

    def update_jobs(self, rows: Iterable[tuple[int, Mapping[str, Any]]]) -> None:
        # Group rows by the set of columns they change so each shape is one executemany.
        shapes: dict[tuple[str, ...], list[list[Any]]] = {}
        for job_id, fields in rows:
            if fields:
                check_columns(fields, _JOB_COLS)
                shapes.setdefault(tuple(fields), []).append([*fields.values(), job_id])
        for cols, params in shapes.items():
            sets = ",".join(f"{c} = ?" for c in cols)
            self.cur.executemany(self._sql(f"UPDATE jobs SET {sets} WHERE id = ?"), params)

    def bump_job(
        self, job_id: int, deltas: Mapping[str, int | float], now: float, returning: bool = False
    ) -> Row | None:
        deltas = {k: v for k, v in deltas.items() if v}
        if not deltas:
            return self.job(job_id) if returning else None
        sql = _statement(
            "UPDATE jobs SET {}, updated_at = ? WHERE id = ?", tuple(deltas), _JOB_COLS, "{c} = {c} + ?"
        )
        params = [*deltas.values(), now, job_id]
        if returning and not self._mysql:
            # One round trip on SQLite (3.35+): the hot path bumps a group and reads it back.
            return self._one(sql + " RETURNING *", params)
        self.execute(sql, params)
        if not returning:
            return None
        # MySQL reads back only what tree upkeep uses and what was bumped: PyMySQL parses
        # every column's description of every result, and a whole job row is 45 of them.
        cols = tuple(dict.fromkeys((*_BUMPED, *deltas, "updated_at")))
        return self._one(_statement("SELECT {} FROM jobs WHERE id = ?", cols, _JOB_COLS, "{c}"), (job_id,))

    def children(self, parent: int, columns: Sequence[str] | None = None) -> list[Row]:
        cols = "*"
        if columns:
            check_columns(columns, _JOB_COLS)
            cols = ",".join(columns)
        return self._all(f"SELECT {cols} FROM jobs WHERE parent = ? ORDER BY h_key", (parent,))

    def child_ids_by_title(self, parent: int, title: str) -> list[int]:
        rows = self._all("SELECT id FROM jobs WHERE parent = ? AND title = ? ORDER BY id", (parent, title))
        return [r["id"] for r in rows]

    def list_jobs(
        self,
        filters: Mapping[str, Any],
        sort: str,
        descending: bool,
        offset: int,
        limit: int | None,
    ) -> tuple[list[Row], int]:
        where, params = ["1 = 1"], []
        if filters.get("parent") is not None:
            where.append("parent = ?")
            params.append(filters["parent"])
        states = list(filters.get("states") or ())
        state_sql = []
        if "PAUSED" in states:
            state_sql.append("paused = 1")
            states.remove("PAUSED")
        if states:
            state_sql.append(f"(paused = 0 AND state IN ({self._marks(len(states))}))")
            params.extend(states)
        if state_sql:
            where.append("(" + " OR ".join(state_sql) + ")")
        for col in ("user", "worker"):
            if filters.get(col):
                where.append(f"{col} = ?")
                params.append(filters[col])
        if filters.get("affinity"):
            where.append("affinity LIKE ? ESCAPE '!'")
            params.append("%" + _like_escape(filters["affinity"]) + "%")
        if filters.get("text"):
            # Case-insensitive on both dialects (the MySQL tables use a binary collation).
            where.append("(LOWER(title) LIKE ? ESCAPE '!' OR LOWER(command) LIKE ? ESCAPE '!')")
            pattern = "%" + _like_escape(filters["text"].lower()) + "%"
            params += [pattern, pattern]
        if filters.get("changed_since") is not None:
            where.append("updated_at >= ?")
            params.append(filters["changed_since"])
        clause = " AND ".join(where)
        total = int(self._scalar(f"SELECT COUNT(*) FROM jobs WHERE {clause}", params) or 0)
        if sort not in SORTABLE:
            raise ValueError(f"cannot sort by {sort!r}")
        direction = "DESC" if descending else "ASC"
        column = sort
        if sort == "progress":  # a group's progress is derived from its counters (views.py)
            column = (
                "(CASE WHEN children = 0 THEN progress "
                "WHEN total > 0 THEN total_finished * 1.0 / total ELSE 0 END)"
            )
        order = f"{column} {direction}, id {direction}" if sort != "id" else f"id {direction}"
        page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
        rows = self._all(f"SELECT * FROM jobs WHERE {clause} ORDER BY {order}{page}", params)
        return rows, total

    def delete_jobs(self, ids: Sequence[int]) -> None:
        ids = list(ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = self._marks(len(chunk))
            self.execute(f"DELETE FROM job_deps WHERE job_id IN ({marks})", chunk)
            self.execute(f"DELETE FROM job_deps WHERE dependency IN ({marks})", chunk)
            self.execute(f"DELETE FROM thumbnails WHERE job_id IN ({marks})", chunk)
            self.execute(f"DELETE FROM openjd_jobs WHERE job_id IN ({marks})", chunk)
            self.execute(f"DELETE FROM jobs WHERE id IN ({marks})", chunk)

    def put_thumbnail(self, job_ids: Sequence[int], source: int, mime: str, data: bytes, now: float) -> None:
        # One row per job, replaced in place (an upsert: no read-then-write race between servers).
        if self._mysql:
            upsert = (
                "ON DUPLICATE KEY UPDATE source = VALUES(source), mime = VALUES(mime), "
                "data = VALUES(data), updated_at = VALUES(updated_at)"
            )
        else:
            upsert = (
                "ON CONFLICT (job_id) DO UPDATE SET source = excluded.source, mime = excluded.mime, "
                "data = excluded.data, updated_at = excluded.updated_at"
            )
        for job_id in job_ids:
            self.execute(
                "INSERT INTO thumbnails (job_id, source, mime, data, updated_at) "
                f"VALUES (?, ?, ?, ?, ?) {upsert}",
                (job_id, source, mime, data, now),
            )

    def thumbnail(self, job_id: int) -> Row | None:
        return self._one("SELECT * FROM thumbnails WHERE job_id = ?", (job_id,))

    def count_jobs_by_state(self) -> dict[str, int]:
        rows = self._all(
            "SELECT CASE WHEN paused = 1 THEN 'PAUSED' ELSE state END AS s, COUNT(*) AS n "
            "FROM jobs WHERE leaf = 1 GROUP BY CASE WHEN paused = 1 THEN 'PAUSED' ELSE state END"
        )
        return {r["s"]: int(r["n"]) for r in rows}

    # -- dependencies -----------------------------------------------------------------------
    def deps(self, job_id: int) -> list[int]:
        rows = self._all("SELECT dependency FROM job_deps WHERE job_id = ? ORDER BY dependency", (job_id,))
        return [r["dependency"] for r in rows]

    def deps_of(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        ids = list(ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self._all(
                f"SELECT job_id, dependency FROM job_deps WHERE job_id IN ({self._marks(len(chunk))}) "
                "ORDER BY job_id, dependency",
                chunk,
            )
            out += [(r["job_id"], r["dependency"]) for r in rows]
        return out

    def set_deps(self, job_id: int, deps: Sequence[int]) -> None:
        self.execute("DELETE FROM job_deps WHERE job_id = ?", (job_id,))
        if deps:
            self.cur.executemany(
                self._sql("INSERT INTO job_deps (job_id, dependency) VALUES (?, ?)"),
                [(job_id, d) for d in deps],
            )
            # Lets a finishing job skip looking for dependents it never had (the flag is
            # never cleared: a stale 1 costs one query, never a missed release).
            self.execute(
                f"UPDATE jobs SET has_dependents = 1 WHERE id IN ({self._marks(len(deps))})", list(deps)
            )

    def dependents(self, job_id: int) -> list[int]:
        rows = self._all("SELECT job_id FROM job_deps WHERE dependency = ? ORDER BY job_id", (job_id,))
        return [r["job_id"] for r in rows]

    def unfinished_deps(self, job_id: int) -> int:
        return int(
            self._scalar(
                "SELECT COUNT(*) FROM job_deps d JOIN jobs j ON j.id = d.dependency "
                "WHERE d.job_id = ? AND j.state <> 'FINISHED'",
                (job_id,),
            )
            or 0
        )

    # -- tags -------------------------------------------------------------------------------
    def tagsets(self) -> dict[int, str]:
        return {r["id"]: r["tags"] for r in self._all("SELECT id, tags FROM tagsets")}

    def tagset_id(self, text: str) -> int:
        found = self._scalar("SELECT id FROM tagsets WHERE tags = ?", (text,))
        if found is not None:
            return int(found)
        ignore = "INSERT IGNORE" if self._mysql else "INSERT OR IGNORE"
        self.execute(f"{ignore} INTO tagsets (tags) VALUES (?)", (text,))
        return int(self._scalar("SELECT id FROM tagsets WHERE tags = ?", (text,)))

    def affinities(self) -> dict[int, str]:
        return {r["id"]: r["name"] for r in self._all("SELECT id, name FROM affinities ORDER BY id")}

    def set_affinities(self, names: Mapping[int, str]) -> None:
        for num, name in names.items():
            # A name has one number: naming a number moves the name there.
            self.execute("DELETE FROM affinities WHERE id = ? OR name = ?", (num, name))
            if name:
                self.execute("INSERT INTO affinities (id, name) VALUES (?, ?)", (num, name))

    def register_affinities(self, names: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(n for n in names if n))
        have: set[str] = set()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            rows = self._all(f"SELECT name FROM affinities WHERE name IN ({self._marks(len(chunk))})", chunk)
            have.update(r["name"] for r in rows)
        # Another server may register the same name, or take the number computed here, at the
        # same moment: the insert is an upsert that does nothing on either conflict (after
        # waiting for the other transaction), and the read-back says whether the name has a
        # number now; if not, the number was taken and the next one is tried.
        upsert = (
            "INSERT INTO affinities (id, name) VALUES (?, ?) ON DUPLICATE KEY UPDATE id = id"
            if self._mysql
            else "INSERT OR IGNORE INTO affinities (id, name) VALUES (?, ?)"
        )
        for name in wanted:
            if name in have:
                continue
            for _ in range(1000):
                nxt = int(self._scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM affinities"))
                self.execute(upsert, (nxt, name))
                if self._scalar("SELECT id FROM affinities WHERE name = ?", (name,)) is not None:
                    break
            else:  # pragma: no cover - a thousand servers racing for one number
                raise StoreError(f"could not number the affinity {name!r}: try again")

    # -- workers ----------------------------------------------------------------------------
    def worker(self, name: str) -> Row | None:
        return self._one("SELECT * FROM workers WHERE name = ?", (name,))

    def insert_worker(self, fields: Mapping[str, Any]) -> None:
        check_columns(fields, _WORKER_COLS)
        cols = list(fields)
        ignore = "INSERT IGNORE" if self._mysql else "INSERT OR IGNORE"
        self.execute(
            f"{ignore} INTO workers ({','.join(cols)}) VALUES ({self._marks(len(cols))})",
            [fields[c] for c in cols],
        )

    def update_worker(
        self, name: str, fields: Mapping[str, Any], deltas: Mapping[str, int] | None = None
    ) -> int:
        deltas = {k: v for k, v in (deltas or {}).items() if v}
        if not fields and not deltas:
            return 0
        check_columns(fields, _WORKER_COLS)
        check_columns(deltas, _WORKER_COLS)
        sets = [f"{c} = ?" for c in fields] + [f"{c} = {c} + ?" for c in deltas]
        return self.execute(
            f"UPDATE workers SET {','.join(sets)} WHERE name = ?", [*fields.values(), *deltas.values(), name]
        )

    def update_workers(self, names: Sequence[str], fields: Mapping[str, Any]) -> int:
        if not names or not fields:
            return 0
        check_columns(fields, _WORKER_COLS)
        sets = ",".join(f"{c} = ?" for c in fields)
        return self.execute(
            f"UPDATE workers SET {sets} WHERE name IN ({self._marks(len(names))})", [*fields.values(), *names]
        )

    def bump_worker(self, name: str, deltas: Mapping[str, int]) -> None:
        deltas = {k: v for k, v in deltas.items() if v}
        if deltas:
            check_columns(deltas, _WORKER_COLS)
            sets = ",".join(f"{c} = {c} + ?" for c in deltas)
            self.execute(f"UPDATE workers SET {sets} WHERE name = ?", [*deltas.values(), name])

    def host_workers(self, host: str) -> list[Row]:
        return self._all("SELECT * FROM workers WHERE host = ? ORDER BY name", (host,))

    def cpu_hosts_alive(self, since: float) -> bool:
        return (
            self._scalar(
                "SELECT name FROM workers WHERE gpus = 0 AND active = 1 AND ping_time >= ? "
                "AND state IN ('WAITING', 'WORKING') LIMIT 1",
                (since,),
            )
            is not None
        )

    def idle_hosts(self, since: float, limit: int) -> list[str]:
        sql = (
            "SELECT DISTINCT host FROM workers WHERE state = 'WAITING' AND active = 1 "
            "AND ping_time >= ? LIMIT ?"
        )
        return [str(row["host"] or "") for row in self._all(sql, (since, max(0, int(limit))))]

    def hosts_alive(self, since: float) -> int:
        sql = "SELECT COUNT(DISTINCT host) FROM workers WHERE host <> '' AND ping_time >= ?"
        return int(self._scalar(sql, (since,)) or 0)

    def workers(self, names: Sequence[str] | None = None) -> list[Row]:
        if names is None:
            return self._all("SELECT * FROM workers ORDER BY name")
        names = list(names)
        if not names:
            return []
        return self._all(
            f"SELECT * FROM workers WHERE name IN ({self._marks(len(names))}) ORDER BY name", names
        )

    def delete_workers(self, names: Sequence[str]) -> None:
        names = list(names)
        if names:
            self.execute(f"DELETE FROM workers WHERE name IN ({self._marks(len(names))})", names)

    # -- audit ------------------------------------------------------------------------------
    def insert_audit(self, fields: Mapping[str, Any]) -> int:
        check_columns(fields, _AUDIT_COLS)
        cols = list(fields)
        self.execute(
            f"INSERT INTO audit ({','.join(cols)}) VALUES ({self._marks(len(cols))})",
            [fields[c] for c in cols],
        )
        return self._last_id()

    def audit(self, filters: Mapping[str, Any], limit: int) -> list[Row]:
        where, params = ["1 = 1"], []
        if filters.get("since") is not None:
            where.append("at >= ?")
            params.append(filters["since"])
        for col in ("actor", "action"):
            if filters.get(col):
                where.append(f"{col} = ?")
                params.append(filters[col])
        if filters.get("target"):
            where.append("target LIKE ? ESCAPE '!'")
            params.append("%," + _like_escape(str(filters["target"])) + ",%")
        if filters.get("viewer") is not None:  # what one user did, or what was done to their jobs
            where.append("(actor = ? OR owner = ?)")
            params += [filters["viewer"], filters["viewer"]]
        return self._all(
            f"SELECT * FROM audit WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT {int(limit)}", params
        )

    # -- login sessions -----------------------------------------------------------------------
    def insert_session(self, key: str, user: str, created_at: float, expires: float) -> None:
        self.execute(
            "INSERT INTO sessions (id, user, created_at, expires) VALUES (?, ?, ?, ?)",
            (key, user, created_at, expires),
        )

    def session(self, key: str) -> Row | None:
        return self._one("SELECT * FROM sessions WHERE id = ?", (key,))

    def delete_session(self, key: str) -> int:
        return self.execute("DELETE FROM sessions WHERE id = ?", (key,))

    def purge_sessions(self, now: float) -> int:
        return self.execute("DELETE FROM sessions WHERE expires < ?", (now,))

    # -- mail outbox --------------------------------------------------------------------------
    def enqueue_mail(self, fields: Mapping[str, Any]) -> bool:
        check_columns(fields, _OUTBOX_COLS)
        cols = list(fields)
        ignore = "INSERT IGNORE" if self._mysql else "INSERT OR IGNORE"
        return (
            self.execute(
                f"{ignore} INTO outbox ({','.join(cols)}) VALUES ({self._marks(len(cols))})",
                [fields[c] for c in cols],
            )
            == 1
        )

    def due_mail(self, now: float, limit: int, channel: str = "mail") -> list[Row]:
        lock = " FOR UPDATE SKIP LOCKED" if self._mysql else ""
        return self._all(
            "SELECT * FROM outbox WHERE status = 'queued' AND channel = ? AND next_try <= ? "
            f"ORDER BY next_try, id LIMIT {int(limit)}{lock}",
            (channel, now),
        )

    def update_mail(self, mail_id: int, fields: Mapping[str, Any]) -> None:
        sql = _statement("UPDATE outbox SET {} WHERE id = ?", tuple(fields), _OUTBOX_COLS, "{c} = ?")
        self.execute(sql, (*fields.values(), mail_id))

    def outbox(self, limit: int = 1000, channel: str | None = None) -> list[Row]:
        if channel is None:
            return self._all(f"SELECT * FROM outbox ORDER BY id LIMIT {int(limit)}")
        return self._all(
            f"SELECT * FROM outbox WHERE channel = ? ORDER BY id DESC LIMIT {int(limit)}", (channel,)
        )

    def purge_mail(self, before: float) -> int:
        return self.execute("DELETE FROM outbox WHERE status <> 'queued' AND created_at < ?", (before,))

    def unkeyed_jobs(self) -> int:
        return int(self._scalar("SELECT COUNT(*) FROM jobs WHERE h_key = ''") or 0)

    def groups(self) -> list[Row]:
        return self._all("SELECT id, parent, h_depth FROM jobs WHERE children > 0")

    # -- submissions --------------------------------------------------------------------------
    def submission(self, key: str) -> list[int] | None:
        text = self._scalar("SELECT job_ids FROM submissions WHERE id = ?", (key,))
        return None if text is None else [int(i) for i in str(text).split(",") if i]

    def insert_submission(self, key: str, job_ids: Sequence[int], now: float) -> None:
        self.execute(
            "INSERT INTO submissions (id, job_ids, created_at) VALUES (?, ?, ?)",
            (key, ",".join(str(i) for i in job_ids), now),
        )

    def purge_submissions(self, before: float) -> int:
        return self.execute("DELETE FROM submissions WHERE created_at < ?", (before,))

    # -- coordination -----------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        changed = self.execute(
            "UPDATE leases SET holder = ?, expires = ? WHERE name = ? AND (holder = ? OR expires < ?)",
            (holder, now + ttl, name, holder, now),
        )
        if changed:
            return True
        ignore = "INSERT IGNORE" if self._mysql else "INSERT OR IGNORE"
        self.execute(
            f"{ignore} INTO leases (name, holder, expires) VALUES (?, ?, ?)", (name, holder, now + ttl)
        )
        return self._scalar("SELECT holder FROM leases WHERE name = ?", (name,)) == holder


def _like_escape(text: str) -> str:
    # LIKE wildcards in user text are literal. '!' is the escape character: a backslash would
    # be read differently by MySQL's string literals and SQLite's.
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
