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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .base import SchemaError
from .schema import SCHEMA_VERSION, TABLES, ddl

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
    """Coalition 4 (schema 0/1) -> Coalition 5 (schema 2), in place."""
    names = store.table_names()
    missing = [t for t in ("jobs", "workers") if t not in names]
    if missing:
        raise SchemaError(f"not a Coalition 4 database: missing table(s) {', '.join(missing)}")
    real = {t: store.real_name(t) for t in _C4_TABLES if t in names}

    def read(tx: SqlTx) -> dict[str, list[dict[str, Any]]]:
        return {t: tx._all(f"SELECT * FROM {name}") for t, name in real.items() if t != "migrations"}

    data = store.read(read)
    # Move the old tables aside first (SQLite names are case-insensitive: `Jobs` is `jobs`).
    if store.dialect == "mysql":
        store.write(
            lambda tx: tx.execute(
                "RENAME TABLE " + ", ".join(f"{name} TO c4_{t}" for t, name in real.items())
            )
        )
    else:

        def rename(tx: SqlTx) -> None:
            for t, name in real.items():
                tx.execute(f"ALTER TABLE {name} RENAME TO c4_{t}")

        store.write(rename)

    def create_and_copy(tx: SqlTx) -> None:
        for stmt in ddl(store.dialect):
            tx.execute(stmt)
        _copy(tx, data)
        tx.execute("INSERT INTO Migrations (database_version) VALUES (?)", (2,))

    store.write(create_and_copy)

    def drop(tx: SqlTx) -> None:
        for t in real:
            tx.execute(f"DROP TABLE c4_{t}")

    store.write(drop)


def _copy(tx: SqlTx, data: dict[str, list[dict[str, Any]]]) -> None:
    from ..hierarchy import TagCache, Tree  # the tree rules live outside the store

    now = time.time()
    affinity_names = {int(r["id"]): (r["name"] or "").strip() for r in data.get("affinities", [])}
    for num, name in sorted(affinity_names.items()):
        if name:
            tx.execute("INSERT INTO affinities (id, name) VALUES (?, ?)", (num, name))

    jobs = data.get("jobs", [])
    ids = {int(j["id"]) for j in jobs}
    children: dict[int, int] = {}
    for j in jobs:
        parent = int(j["parent"] or 0)
        if parent in ids:
            children[parent] = children.get(parent, 0) + 1
    deps: dict[int, list[int]] = {}
    for d in data.get("dependencies", []):
        a, b = int(d["job_id"]), int(d["dependency"])
        if a in ids and b in ids and a != b:
            deps.setdefault(a, []).append(b)
    state_of = {int(j["id"]): j["state"] for j in jobs}
    for j in jobs:
        jid = int(j["id"])
        parent = int(j["parent"] or 0)
        if parent not in ids:
            parent = 0
        command = j["command"] or ""
        state = (j["state"] or "WAITING").upper()
        paused = int(bool(j["paused"]) or state == "PAUSED")
        if state in ("PAUSED", "WORKING", "PENDING") or state not in ("WAITING", "FINISHED", "ERROR"):
            state = "WAITING"  # a C4 run cannot be resumed by a C5 worker: it runs again
        pending = any(state_of.get(d) != "FINISHED" for d in deps.get(jid, []))
        if pending and state == "WAITING":
            state = "PENDING"
        env = j["environment"] or ""
        row = {
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
            "priority": max(0, int(j["priority"] or 0)),
            "affinity": _c4_affinity(j["affinity"] or "", affinity_names),
            "user": j["user"] or "",
            "url": j["url"] or "",
            "progress": float(j["progress"] or 0),
            "progress_pattern": j["progress_pattern"] or "PROGRESS:%percent",
            "local_progress_pattern": "",
            "children": children.get(jid, 0),
            "pending": int(pending),
            "leaf": int(children.get(jid, 0) == 0 and command != ""),
            "h_key": "",
            "created_at": float(j["start_time"] or 0) or now,
            "updated_at": now,
        }
        tx.insert_job(row)
    for a, bs in deps.items():
        tx.set_deps(a, sorted(set(bs)))

    tree = Tree(tx, now, TagCache())
    for j in jobs:
        if int(j["parent"] or 0) not in ids:
            tree.rederive(int(j["id"]))
    # Counters bottom-up: deepest groups first, one level each.
    depth = {r["id"]: r["h_depth"] for r in tx._all("SELECT id, h_depth FROM jobs WHERE children > 0")}
    for gid in sorted(depth, key=lambda g: -depth[g]):
        tree.recount(gid, up=False)

    rules: dict[str, list[tuple[int, int]]] = {}
    for r in data.get("workeraffinities", []):
        rules.setdefault(r["worker_name"], []).append((int(r["ordering"] or 0), int(r["affinity"] or 0)))
    for w in data.get("workers", []):
        lines = []
        for _, mask in sorted(rules.get(w["name"], [])):
            names = [affinity_names.get(bit + 1, "") for bit in range(63) if mask >> bit & 1]
            names = [n for n in names if n]
            if names:
                lines.append(",".join(names))
        state = (w["state"] or "WAITING").upper()
        if state == "WORKING":
            state = "WAITING"
        tx.insert_worker(
            {
                "name": w["name"],
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
    for e in data.get("events", []):
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


STEPS: list[tuple[int, str, Callable[[Any], None]]] = [
    (2, "Coalition 4 to Coalition 5 (tags, hierarchical keys, retries, run events)", _coalition4_to_2),
]
