"""Numbered schema migrations, the Coalition 4 upgrade included.

Versions 0 and 1 are Coalition 4's (tables `Jobs`, `Dependencies`, `Workers`,
`WorkerAffinities`, `Affinities`, `Events`, `Migrations`). Version 2 is the first Coalition 5
schema. A later change adds an entry to `STEPS` (version, description, function) and bumps
`schema.SCHEMA_VERSION`; each step records its own version, so a failed run resumes where it
stopped.
"""

from __future__ import annotations

import datetime
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .. import columns
from .base import SchemaError
from .schema import MYSQL_TYPES, SCHEMA_VERSION, SQLITE_TYPES, TABLES, ddl

if TYPE_CHECKING:  # pragma: no cover
    from .engine import _SqlStore
    from .sql import SqlTx

log = logging.getLogger("coalition.store")

_C4_TABLES = ("jobs", "dependencies", "workers", "workeraffinities", "affinities", "events", "migrations")


def migrate(store: _SqlStore) -> list[str]:
    """Bring the database to SCHEMA_VERSION; returns one line per step done."""
    version = store.version()
    if version is None:
        raise SchemaError("the database is empty: run `coalition-server --init` to create it")
    if version > SCHEMA_VERSION:
        raise SchemaError(f"the database schema ({version}) is newer than this Coalition ({SCHEMA_VERSION})")
    done: list[str] = []
    for target, description, step in STEPS:
        if version < target:
            log.info("migrating the database to version %d: %s", target, description)
            step(store)
            done.append(f"version {target}: {description}")
            version = target
    missing = missing_tables(store)
    if missing:
        _create_tables(store, missing)
        done.append(f"created missing table(s) {', '.join(missing)}")
    return done


def _table_of(stmt: str) -> str:
    m = re.match(r"\s*CREATE\s+(?:TABLE\s+(\w+)|INDEX\s+\w+\s+ON\s+(\w+))", stmt, re.I)
    return (m.group(1) or m.group(2)).lower() if m else ""


def missing_tables(store: _SqlStore) -> list[str]:
    """Tables of the current schema that the database lacks (a database made by an
    earlier build of this same schema version)."""
    have = store.table_names()
    return [t for t in TABLES if t.lower() not in have]


def _create_tables(store: _SqlStore, tables: list[str]) -> None:
    wanted = {t.lower() for t in tables}

    def create(tx: SqlTx) -> None:
        for stmt in ddl(store.dialect):
            if _table_of(stmt) in wanted:
                tx.execute(stmt)

    store.write(create)


def _coalition4_to_2(store: _SqlStore) -> None:
    """Coalition 4 (schema 0/1) -> Coalition 5 (schema 2), in place, resumable.

    1. the old tables move aside as c4_* (one transaction; skipped when already done);
    2. the new tables are created (those missing);
    3. each new table is filled from its old one in its own transaction, rows streamed in
       pages; a table already filled by an interrupted run is left as it is;
    4. the old tables are dropped and version 2 recorded.
    Derived fields (ordering keys, tag sets, group counters) are not the store's business:
    jobs come out with an empty `h_key`, and the server rebuilds them (usecases.upkeep
    Upkeep.rebuild_tree) before it serves.
    """
    names = store.table_names()
    if "c4_jobs" not in names:
        missing = [t for t in ("jobs", "workers") if t not in names]
        if missing:
            raise SchemaError(f"not a Coalition 4 database: missing table(s) {', '.join(missing)}")
        real = {t: store.real_name(t) for t in _C4_TABLES if t in names}
        if store.dialect == "mysql":
            sql = "RENAME TABLE " + ", ".join(f"{name} TO c4_{t}" for t, name in real.items())
            store.write(lambda tx: tx.execute(sql))
        else:

            def rename(tx: SqlTx) -> None:
                for t, name in real.items():
                    tx.execute(f"ALTER TABLE {name} RENAME TO c4_{t}")

            store.write(rename)
        names = store.table_names()
    old = {t for t in _C4_TABLES if f"c4_{t}" in names}
    missing_new = [t for t in TABLES if t.lower() not in names]
    if missing_new:
        _create_tables(store, missing_new)
    affinity_names = store.read(
        lambda tx: (
            {int(r["id"]): (r["name"] or "").strip() for r in tx._all("SELECT id, name FROM c4_affinities")}
            if "affinities" in old
            else {}
        )
    )
    now = time.time()
    for table, fill in (
        ("affinities", _fill_affinities),
        ("jobs", _fill_jobs),
        ("job_deps", _fill_deps),
        ("workers", _fill_workers),
        ("events", _fill_events),
    ):

        def step(tx: SqlTx, table: str = table, fill: Callable[..., None] = fill) -> None:
            if tx._scalar(f"SELECT COUNT(*) FROM {table}"):
                return  # filled by an earlier, interrupted run
            fill(tx, old, affinity_names, now)

        store.write(step)

    def finish(tx: SqlTx) -> None:
        for t in sorted(old):
            tx.execute(f"DROP TABLE c4_{t}")
        tx.execute("INSERT INTO Migrations (database_version) VALUES (?)", (2,))

    store.write(finish)


_PAGE = 2000


def _pages(tx: SqlTx, sql: str, key: str = "id") -> Iterator[list[dict[str, Any]]]:
    """Rows of `SELECT ... FROM t` in pages ordered by `key` (an integer column)."""
    last: Any = None
    while True:
        where = f" WHERE {key} > ?" if last is not None else ""
        rows = tx._all(f"{sql}{where} ORDER BY {key} LIMIT {_PAGE}", () if last is None else (last,))
        if not rows:
            return
        yield rows
        last = rows[-1][key]
        if len(rows) < _PAGE:
            return


def _fill_affinities(tx: SqlTx, old: set[str], names: dict[int, str], now: float) -> None:
    seen: set[str] = set()
    for num, name in sorted(names.items()):
        if name and name not in seen:  # a name Coalition 4 numbered twice keeps its first number
            seen.add(name)
            tx.execute("INSERT INTO affinities (id, name) VALUES (?, ?)", (num, name))


def _fill_jobs(tx: SqlTx, old: set[str], names: dict[int, str], now: float) -> None:
    # Small aggregates first (group sizes, jobs waiting for unfinished dependencies); the
    # jobs themselves are streamed.
    children = {
        int(r["parent"]): int(r["n"])
        for r in tx._all("SELECT parent, COUNT(*) AS n FROM c4_jobs WHERE parent > 0 GROUP BY parent")
    }
    pending: set[int] = set()
    if "dependencies" in old:
        pending = {
            int(r["job_id"])
            for r in tx._all(
                "SELECT DISTINCT d.job_id FROM c4_dependencies d JOIN c4_jobs j ON j.id = d.dependency "
                "WHERE d.job_id <> d.dependency AND (j.state IS NULL OR j.state <> 'FINISHED')"
            )
        }
    ids: set[int] = {int(r["id"]) for r in tx._all("SELECT id FROM c4_jobs")}
    for page in _pages(tx, "SELECT * FROM c4_jobs"):
        for j in page:
            tx.insert_job(_c4_job(j, ids, children, pending, names, now))


def _c4_job(
    j: dict[str, Any],
    ids: set[int],
    children: dict[int, int],
    pending_ids: set[int],
    names: dict[int, str],
    now: float,
) -> dict[str, Any]:
    jid = int(j["id"])
    parent = int(j["parent"] or 0)
    if parent not in ids:
        parent = 0
    command = j["command"] or ""
    state = (j["state"] or "WAITING").upper()
    paused = int(bool(j["paused"]) or state == "PAUSED")
    if state in ("PAUSED", "WORKING", "PENDING") or state not in ("WAITING", "FINISHED", "ERROR"):
        state = "WAITING"  # a C4 run cannot be resumed by a C5 worker: it runs again
    pending = jid in pending_ids
    if pending and state == "WAITING":
        state = "PENDING"
    env = j["environment"] or ""
    kids = children.get(jid, 0)
    return {
        **columns.new_job_row(),  # what Coalition 4 did not have starts at its default
        "id": jid,
        "parent": parent,
        "title": j["title"] or "",
        "command": command,
        "dir": j["dir"] or ".",
        "environment": "" if env == "None" else env,
        "state": state,
        "paused": paused,
        "worker": j["worker"] or "",
        "start_time": float(j["start_time"] or 0),
        "duration": float(j["duration"] or 0),
        "run_done": int(j["run_done"] or 0),
        "timeout": int(j["timeout"] or 0),
        "priority": c4_priority(j["priority"]),
        "affinity": _c4_affinity(j["affinity"] or "", names),
        "user": j["user"] or "",
        "url": j["url"] or "",
        "progress": float(j["progress"] or 0),
        "progress_pattern": j["progress_pattern"] or "PROGRESS:%percent",
        "local_progress_pattern": "",
        "children": kids,
        "pending": int(pending),
        "leaf": int(kids == 0 and command != ""),
        "h_key": "",  # rebuilt by the server (Upkeep.rebuild_tree)
        "created_at": float(j["start_time"] or 0) or now,
        "updated_at": now,
    }


def _fill_deps(tx: SqlTx, old: set[str], names: dict[int, str], now: float) -> None:
    if "dependencies" not in old:
        return
    tx.execute(
        "INSERT INTO job_deps (job_id, dependency) SELECT DISTINCT d.job_id, d.dependency "
        "FROM c4_dependencies d JOIN jobs a ON a.id = d.job_id JOIN jobs b ON b.id = d.dependency "
        "WHERE d.job_id <> d.dependency"
    )
    tx.execute("UPDATE jobs SET has_dependents = 1 WHERE id IN (SELECT dependency FROM job_deps)")


def _fill_workers(tx: SqlTx, old: set[str], names: dict[int, str], now: float) -> None:
    rules: dict[str, list[tuple[int, int]]] = {}
    if "workeraffinities" in old:
        for r in tx._all("SELECT worker_name, affinity, ordering FROM c4_workeraffinities"):
            rules.setdefault(r["worker_name"], []).append((int(r["ordering"] or 0), int(r["affinity"] or 0)))
    for w in tx._all("SELECT * FROM c4_workers"):
        lines = []
        for _, mask in sorted(rules.get(w["name"], [])):
            tags = [names.get(bit + 1, "") for bit in range(63) if mask >> bit & 1]
            tags = [n for n in tags if n]
            if tags:
                lines.append(",".join(tags))
        state = (w["state"] or "WAITING").upper()
        if state == "WORKING":
            state = "WAITING"
        tx.insert_worker(
            {
                **columns.new_worker_row(w["name"]),
                "ip": w.get("ip") or "",
                "affinity": "\n".join(lines),
                "affinity_set": int(bool(lines)),
                "state": state,
                "finished": int(w.get("finished") or 0),
                "error": int(w.get("error") or 0),
                "last_job": int(w.get("last_job") or 0),
                "current_event": int(w.get("current_event") or 0),
                "cpu": w.get("cpu") or "[]",
                "free_memory": int(w.get("free_memory") or 0),
                "total_memory": int(w.get("total_memory") or 0),
                "active": int(w["active"]) if w.get("active") is not None else 1,
                "start_time": _epoch(w.get("start_time")),
            }
        )


def _fill_events(tx: SqlTx, old: set[str], names: dict[int, str], now: float) -> None:
    if "events" not in old:
        return
    for page in _pages(tx, "SELECT * FROM c4_events"):
        for e in page:
            state = e["state"] or "ERROR"
            tx.execute(
                "INSERT INTO events (id, worker, job_id, job_title, state, start, duration) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    int(e["id"]),
                    e["worker"] or "",
                    int(e["job_id"] or 0),
                    e["job_title"] or "",
                    "INTERRUPTED" if state == "WORKING" else state,
                    float(e["start"] or 0),
                    float(e["duration"] or 0),
                ),
            )


C4_DEFAULT_PRIORITY = 255  # Coalition 4 clamped priorities to 0..255: its default 1000 became 255


def c4_priority(value: Any) -> int:
    """A Coalition 4 priority on our scale: shifted so that its default (255) is our default
    (the column's default, 1000) and the old order is kept. Unshifted, the migrated
    backlog sat below every new default-priority job."""
    try:
        number = max(0, int(value or 0))
    except (TypeError, ValueError):
        number = 0
    default = int(next(c.default for c in columns.JOBS if c.name == "priority"))
    return min(number + default - C4_DEFAULT_PRIORITY, 2**31 - 1)


def _c4_affinity(text: str, names: dict[int, str]) -> str:
    out = []
    for token in text.split(","):
        token = token.strip()
        m = re.fullmatch(r"#(\d+)", token)
        if m:
            token = names.get(int(m.group(1)), "")
        if token and token not in out:
            out.append(token)
    return ",".join(out)


def _epoch(value: Any) -> float:
    if value is None or value == "":
        return 0.0
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=value.tzinfo or datetime.UTC).timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    try:  # SQLite keeps CURRENT_TIMESTAMP as UTC text
        parsed = datetime.datetime.strptime(str(value)[:19], "%Y-%m-%d %H:%M:%S")
        return parsed.replace(tzinfo=datetime.UTC).timestamp()
    except ValueError:
        return 0.0


def _add_submissions(store: _SqlStore) -> None:
    """Version 3: the submissions table (idempotency keys)."""

    exists = "submissions" in store.table_names()

    def step(tx: SqlTx) -> None:
        if not exists:
            for stmt in ddl(store.dialect):
                if _table_of(stmt) == "submissions":
                    tx.execute(stmt)
        tx.execute("INSERT INTO Migrations (database_version) VALUES (?)", (3,))

    store.write(step)


def _has_index(tx: SqlTx, dialect: str, name: str) -> bool:
    if dialect == "mysql":
        sql = (
            "SELECT COUNT(*) FROM information_schema.statistics "
            "WHERE table_schema = DATABASE() AND index_name = ?"
        )
    else:
        sql = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?"
    return bool(tx._scalar(sql, (name,)))


def _shared_state(store: _SqlStore) -> None:
    """Version 4: one number per affinity name (duplicates a race once made are merged into
    the lowest number), job logs in the database, login failures in the database."""
    names = store.table_names()

    def step(tx: SqlTx) -> None:
        tx.execute(
            "DELETE FROM affinities WHERE id NOT IN "
            "(SELECT keep FROM (SELECT MIN(id) AS keep FROM affinities GROUP BY name) AS firsts)"
        )
        for stmt in ddl(store.dialect):
            table = _table_of(stmt)
            if table in ("job_logs", "login_failures") and table not in names:
                tx.execute(stmt)
            elif "c5_affinities_name" in stmt and not _has_index(tx, store.dialect, "c5_affinities_name"):
                tx.execute(stmt)
        tx.execute("INSERT INTO Migrations (database_version) VALUES (?)", (4,))

    store.write(step)


def _column_names(tx: SqlTx, dialect: str, table: str) -> set[str]:
    if dialect == "mysql":
        tx.cur.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND LOWER(table_name) = %s",
            (table,),
        )
        return {str(r[0]).lower() for r in tx.cur.fetchall()}
    tx.cur.execute(f"PRAGMA table_info({table})")
    return {str(r[1]).lower() for r in tx.cur.fetchall()}


def _run_usage(store: _SqlStore) -> None:
    """Version 5: what each run used (CPU seconds, peak memory in MB) on its event; the
    outbox's channel (mail, webhook); jobs' output and their thumbnails."""
    tables = store.table_names()

    def step(tx: SqlTx) -> None:
        table = store.real_name("events")
        have = _column_names(tx, store.dialect, table)
        big = "BIGINT" if store.dialect == "mysql" else "INTEGER"
        if "cpu_time" not in have:
            tx.execute(f"ALTER TABLE {table} ADD COLUMN cpu_time DOUBLE NOT NULL DEFAULT 0")
        if "peak_memory" not in have:
            tx.execute(f"ALTER TABLE {table} ADD COLUMN peak_memory {big} NOT NULL DEFAULT 0")
        outbox = store.real_name("outbox")
        if "channel" not in _column_names(tx, store.dialect, outbox):
            tx.execute(f"ALTER TABLE {outbox} ADD COLUMN channel VARCHAR(16) NOT NULL DEFAULT 'mail'")
        jobs = store.real_name("jobs")
        if "output" not in _column_names(tx, store.dialect, jobs):
            # MySQL gives a new NOT NULL text column '' in existing rows; SQLite needs it said.
            text = "MEDIUMTEXT NOT NULL" if store.dialect == "mysql" else "TEXT NOT NULL DEFAULT ''"
            tx.execute(f"ALTER TABLE {jobs} ADD COLUMN output {text}")
        if "thumbnails" not in tables:
            for stmt in ddl(store.dialect):
                if _table_of(stmt) == "thumbnails":
                    tx.execute(stmt)
        tx.execute("INSERT INTO Migrations (database_version) VALUES (?)", (5,))

    store.write(step)


# Version 6's new columns: (table, column definition with dialect placeholders).
_FAILURE_COLUMNS: list[tuple[str, columns.Column]] = [
    *(
        ("jobs", c)
        for c in columns.JOBS
        if c.name in ("stalltimeout", "minruntime", "hostfails", "logrules", "reason", "rule_hit")
    ),
    *(("workers", c) for c in columns.WORKERS if c.name in ("reason", "blocked_until")),
    ("events", columns.Column("reason", "VARCHAR(255) NOT NULL DEFAULT {default}", "")),
]


def _add_failure_handling(store: _SqlStore) -> None:
    """Version 6: failure handling (docs/failures.md): the jobs' stall, minimum run time,
    host-failure and log-rule settings, run reasons, and the host_failures table.

    Additive and idempotent (what exists is left alone), so that it does not depend on the
    steps numbered before it and can be renumbered when branches merge."""
    types = SQLITE_TYPES if store.dialect == "sqlite" else MYSQL_TYPES
    tables = store.table_names()

    def step(tx: SqlTx) -> None:
        tables_ = ("jobs", "workers", "events")
        have = {t: _column_names(tx, store.dialect, store.real_name(t)) for t in tables_}
        for table, column in _FAILURE_COLUMNS:
            if column.name not in have[table]:
                definition = column.ddl().format(**types)
                if store.dialect == "sqlite" and column.sql == columns.TEXT:
                    # MySQL gives a new NOT NULL text column '' in existing rows; SQLite needs it said.
                    definition += " DEFAULT ''"
                tx.execute(f"ALTER TABLE {store.real_name(table)} ADD COLUMN {definition}")
        if "host_failures" not in tables:
            for stmt in ddl(store.dialect):
                if _table_of(stmt) == "host_failures":
                    tx.execute(stmt)
        tx.execute("INSERT INTO Migrations (database_version) VALUES (?)", (6,))

    store.write(step)


def _studio_scheduling(store: _SqlStore) -> None:
    """Version 7: farm-wide limits (the farm_limits table, jobs' `limits` and `limits_held`)
    and frame-to-frame dependencies (jobs' `first_frame`, `last_frame`, `frame_dep` and
    their index); the fair-share index. Additive and idempotent: only what is missing is created."""
    tables = store.table_names()

    def step(tx: SqlTx) -> None:
        jobs = store.real_name("jobs")
        have = _column_names(tx, store.dialect, jobs)
        text = "MEDIUMTEXT NOT NULL" if store.dialect == "mysql" else "TEXT NOT NULL DEFAULT ''"
        big = "BIGINT" if store.dialect == "mysql" else "INTEGER"
        added = {
            "limits": text,
            "first_frame": f"{big} NOT NULL DEFAULT 0",
            "last_frame": f"{big} NOT NULL DEFAULT -1",
            "frame_dep": f"{big} NOT NULL DEFAULT 0",
            "limits_held": text,
        }
        for name, sql in added.items():
            if name not in have:
                tx.execute(f"ALTER TABLE {jobs} ADD COLUMN {name} {sql}")
        for stmt in ddl(store.dialect):
            if _table_of(stmt) == "farm_limits" and "farm_limits" not in tables:
                tx.execute(stmt)
            elif "c5_jobs_frame_dep" in stmt and not _has_index(tx, store.dialect, "c5_jobs_frame_dep"):
                tx.execute(stmt)
            elif "c5_jobs_share" in stmt and not _has_index(tx, store.dialect, "c5_jobs_share"):
                tx.execute(stmt)
        limits = store.real_name("farm_limits")
        have_limits = _column_names(tx, store.dialect, limits)
        for name, sql in (
            ("lowered", "INTEGER NOT NULL DEFAULT 0"),
            ("lowered_until", "DOUBLE NOT NULL DEFAULT 0"),
        ):
            if name not in have_limits:
                tx.execute(f"ALTER TABLE {limits} ADD COLUMN {name} {sql}")
        tx.execute("INSERT INTO Migrations (database_version) VALUES (?)", (7,))

    store.write(step)


# Version 8's new columns.
_RESOURCE_COLUMNS: list[tuple[str, columns.Column]] = [
    *(("jobs", c) for c in columns.JOBS if c.name in ("cores", "memory", "gpus", "exclusive")),
    *(
        ("workers", c)
        for c in columns.WORKERS
        if c.name in ("cores", "memory", "gpus", "used_cores", "used_memory", "used_gpus", "host")
    ),
]


def _add_columns(
    store: _SqlStore,
    version: int,
    added: list[tuple[str, columns.Column]],
    indexes: tuple[str, ...] = (),
) -> None:
    """An additive, idempotent step: the registry columns and the schema's `indexes` a
    database lacks, then `version`."""
    types = SQLITE_TYPES if store.dialect == "sqlite" else MYSQL_TYPES

    def step(tx: SqlTx) -> None:
        have: dict[str, set[str]] = {}
        for table, column in added:
            if table not in have:
                have[table] = _column_names(tx, store.dialect, store.real_name(table))
            if column.name not in have[table]:
                definition = column.ddl().format(**types)
                if store.dialect == "sqlite" and column.sql == columns.TEXT:
                    definition += " DEFAULT ''"  # see _add_failure_handling
                tx.execute(f"ALTER TABLE {store.real_name(table)} ADD COLUMN {definition}")
        for name in indexes:
            if not _has_index(tx, store.dialect, name):
                tx.execute(next(stmt for stmt in ddl(store.dialect) if f" {name} " in stmt))
        tx.execute("INSERT INTO Migrations (database_version) VALUES (?)", (version,))

    store.write(step)


def _resources(store: _SqlStore) -> None:
    """Version 8: resource requests (jobs' cores, memory, gpus, exclusive), what each
    worker's host offers and holds, and the host each slot belongs to (with its index)."""
    _add_columns(store, 8, _RESOURCE_COLUMNS, indexes=("c5_workers_host",))


def _openjd(store: _SqlStore) -> None:
    """Version 9: Open Job Description jobs (docs/openjd.md): the `openjd_jobs` table (each
    submission's template and parameter values), the jobs' `openjd` column (a task's step
    and parameters) and the workers' `offers` (the tags a worker offers itself: `openjd`,
    its OS family and CPU architecture). Additive and idempotent: only what is missing is
    created."""
    tables = store.table_names()

    def step(tx: SqlTx) -> None:
        text = "MEDIUMTEXT NOT NULL" if store.dialect == "mysql" else "TEXT NOT NULL DEFAULT ''"
        added = (("jobs", "openjd", text), ("workers", "offers", "VARCHAR(255) NOT NULL DEFAULT ''"))
        for table, column, sql in added:
            if column not in _column_names(tx, store.dialect, store.real_name(table)):
                tx.execute(f"ALTER TABLE {store.real_name(table)} ADD COLUMN {column} {sql}")
        if "openjd_jobs" not in tables:
            for stmt in ddl(store.dialect):
                if _table_of(stmt) == "openjd_jobs":
                    tx.execute(stmt)
        tx.execute("INSERT INTO Migrations (database_version) VALUES (?)", (9,))

    store.write(step)


STEPS: list[tuple[int, str, Callable[[Any], None]]] = [
    (2, "Coalition 4 to Coalition 5 (tags, hierarchical keys, retries, run events)", _coalition4_to_2),
    (3, "idempotency keys of submissions", _add_submissions),
    (4, "shared state of several servers: unique affinity names, job logs, login failures", _shared_state),
    (5, "CPU time and peak memory of each run; webhook deliveries; output thumbnails", _run_usage),
    (6, "failure handling: stall and log-rule settings, run reasons, host blocklists", _add_failure_handling),
    (7, "studio scheduling: farm-wide limits, frame-to-frame dependencies", _studio_scheduling),
    (8, "resource requests: cores, memory, GPUs, exclusive hosts", _resources),
    (9, "Open Job Description: submitted templates, the jobs' OpenJD tasks", _openjd),
]
