"""Schema management on both engines: versions, missing tables, refusal to run outdated."""

from __future__ import annotations

from typing import Any

import pytest

from coalition import columns
from coalition.store import SchemaError
from coalition.store.schema import SCHEMA_VERSION


def test_empty_init_and_version(backend: Any) -> None:
    assert backend.version() is None
    with pytest.raises(SchemaError, match="empty"):
        backend.check_schema()
    backend.init()
    assert backend.version() == SCHEMA_VERSION
    backend.check_schema()
    with pytest.raises(SchemaError, match="not empty"):
        backend.init()
    assert backend.migrate() == []


def test_a_missing_table_is_refused_then_repaired_by_migrate(store: Any) -> None:
    store.write(lambda tx: tx.execute("DROP TABLE outbox"))
    with pytest.raises(SchemaError, match="outbox.*--migrate"):
        store.check_schema()
    assert store.migrate() == ["created missing table(s) outbox"]
    store.check_schema()


def test_a_newer_schema_is_refused(store: Any) -> None:
    store.write(lambda tx: tx.execute("UPDATE Migrations SET database_version = ?", (SCHEMA_VERSION + 1,)))
    with pytest.raises(SchemaError, match="newer"):
        store.check_schema()


def test_version_5_adds_the_run_usage_columns_and_keeps_the_events(store: Any, tmp_path: Any) -> None:
    # A fresh database read first in this process: its column order must not be taken for
    # the migrated one's (whose added columns come last).
    from coalition.store import SqliteStore

    fresh = SqliteStore(str(tmp_path / "fresh.db"))
    fresh.init()
    new = fresh.write(lambda tx: tx.insert_job({**columns.new_job_row(), "title": "f", "h_key": "k"}))
    assert fresh.read(lambda tx: tx.job(new))["output"] == ""
    # A version 4 database: events without cpu_time and peak_memory, one old run in it.
    table = store.real_name("events")
    for column in ("cpu_time", "peak_memory"):
        store.write(lambda tx, c=column: tx.execute(f"ALTER TABLE {table} DROP COLUMN {c}"))
    outbox = store.real_name("outbox")
    store.write(lambda tx: tx.execute(f"ALTER TABLE {outbox} DROP COLUMN channel"))
    store.write(lambda tx: tx.execute(f"ALTER TABLE {store.real_name('jobs')} DROP COLUMN output"))
    store.write(lambda tx: tx.execute("DROP TABLE thumbnails"))
    old_job = {k: v for k, v in columns.new_job_row().items() if k != "output"}
    old = store.write(lambda tx: tx.insert_job({**old_job, "title": "old", "command": "x", "h_key": "k"}))
    store.write(
        lambda tx: tx.execute(
            f"INSERT INTO {table} (worker, job_id, job_title, state, start, duration) "
            "VALUES ('old', 1, 't', 'FINISHED', 1, 2)"
        )
    )
    store.write(lambda tx: tx.execute("UPDATE Migrations SET database_version = 4"))
    assert store.version() == 4
    assert store.migrate() == [
        "version 5: CPU time and peak memory of each run; webhook deliveries; output thumbnails",
        "version 6: failure handling: stall and log-rule settings, run reasons, host blocklists",
        "version 7: studio scheduling: farm-wide limits, frame-to-frame dependencies",
        "version 8: resource requests: cores, memory, GPUs, exclusive hosts",
        "version 9: Open Job Description: submitted templates, the jobs' OpenJD tasks",
    ]
    assert store.migrate() == []
    store.check_schema()
    [event] = store.read(lambda tx: tx.events(None, None, None, 10))
    assert (event["worker"], event["cpu_time"], event["peak_memory"]) == ("old", 0, 0)
    store.write(lambda tx: tx.update_event(event["id"], {"cpu_time": 1.5, "peak_memory": 2**33}))
    [event] = store.read(lambda tx: tx.events(None, None, None, 10))
    assert (event["cpu_time"], event["peak_memory"]) == (1.5, 2**33)
    assert store.read(lambda tx: tx.job(old))["output"] == ""  # a job from before has no output
    # Mail queued before the upgrade stays mail.
    assert store.read(lambda tx: tx.due_mail(1e12, 10, "webhook")) == []


def test_a_version_3_database_gets_failure_handling(store: Any) -> None:
    """Step 6 is additive: from a version-3 schema (no failure columns, no host_failures) it
    adds what is missing, keeps the rows, and running it again changes nothing."""
    from coalition.store.migrations import _FAILURE_COLUMNS

    added = {c.name for table, c in _FAILURE_COLUMNS if table == "jobs"}
    old_job = {k: v for k, v in columns.new_job_row().items() if k not in added}

    def downgrade(tx: Any) -> None:
        tx.execute("INSERT INTO workers (name, affinity, state, cpu) VALUES ('old', '', 'WAITING', '[]')")
        for table, column in _FAILURE_COLUMNS:
            tx.execute(f"ALTER TABLE {table} DROP COLUMN {column.name}")
        tx.execute("DROP TABLE host_failures")
        # A job row from before: SQLite adds a NOT NULL text column to a non-empty table
        # only with a default.
        row = {**old_job, "title": "old", "h_key": "k"}
        tx.execute(
            f"INSERT INTO jobs ({','.join(row)}) VALUES ({','.join('?' * len(row))})", list(row.values())
        )
        tx.execute("DELETE FROM Migrations")
        tx.execute("INSERT INTO Migrations (database_version) VALUES (3)")

    store.write(downgrade)
    with pytest.raises(SchemaError, match="version 3"):
        store.check_schema()
    done = store.migrate()
    assert [line.split(":")[0] for line in done] == [
        "version 4",
        "version 5",
        "version 6",
        "version 7",
        "version 8",
        "version 9",
    ]
    store.check_schema()
    # (Not tx.worker(): the added columns come last here, and a statement's column names are
    # cached per process, from the fresh databases of the other tests.)
    [row] = store.read(lambda tx: tx._all("SELECT reason, blocked_until FROM workers WHERE name = 'old'"))
    assert (row["reason"], row["blocked_until"]) == ("", 0.0)
    [job] = store.read(lambda tx: tx._all("SELECT logrules, reason, rule_hit, stalltimeout FROM jobs"))
    assert job == {"logrules": "", "reason": "", "rule_hit": "", "stalltimeout": 0}
    assert store.read(lambda tx: tx.host_blocks(0.0)) == []
    # Rerun (the lead renumbers the step at merge): nothing is added twice.
    store.write(lambda tx: tx.execute("DELETE FROM Migrations WHERE database_version >= 6"))
    assert store.migrate() == done[2:]
    store.check_schema()


def test_version_7_adds_limits_and_frame_columns_idempotently(store: Any) -> None:
    jobs = store.real_name("jobs")
    if store.dialect == "sqlite":  # (MariaDB drops the index with its column)
        store.write(lambda tx: tx.execute("DROP INDEX IF EXISTS c5_jobs_frame_dep"))
    for column in ("limits", "first_frame", "last_frame", "frame_dep", "limits_held"):
        store.write(lambda tx, c=column: tx.execute(f"ALTER TABLE {jobs} DROP COLUMN {c}"))
    store.write(lambda tx: tx.execute("DROP TABLE farm_limits"))
    old_job = {
        k: v
        for k, v in columns.new_job_row().items()
        if k not in ("limits", "first_frame", "last_frame", "frame_dep", "limits_held")
    }
    old = store.write(lambda tx: tx.insert_job({**old_job, "title": "old", "command": "x", "h_key": "k"}))
    store.write(lambda tx: tx.execute("UPDATE Migrations SET database_version = 6"))
    assert store.migrate() == [
        "version 7: studio scheduling: farm-wide limits, frame-to-frame dependencies",
        "version 8: resource requests: cores, memory, GPUs, exclusive hosts",
        "version 9: Open Job Description: submitted templates, the jobs' OpenJD tasks",
    ]
    assert store.migrate() == []
    store.check_schema()
    row = store.read(lambda tx: tx.job(old))
    assert (row["limits"], row["first_frame"], row["last_frame"], row["frame_dep"]) == ("", 0, -1, 0)
    store.write(lambda tx: tx.put_limit("nuke", 1, 1.0))
    assert store.write(lambda tx: tx.acquire_limit("nuke", 1, 0.0))


def test_version_8_adds_resource_requests_and_keeps_the_rows(store: Any) -> None:
    from coalition.store.migrations import _RESOURCE_COLUMNS

    added = {(t, c.name) for t, c in _RESOURCE_COLUMNS}
    old_job = {k: v for k, v in columns.new_job_row().items() if ("jobs", k) not in added}

    def downgrade(tx: Any) -> None:
        if store.dialect == "sqlite":  # (SQLite drops no indexed column; MariaDB drops the index too)
            tx.execute("DROP INDEX c5_workers_host")
        for table, name in sorted(added):
            tx.execute(f"ALTER TABLE {store.real_name(table)} DROP COLUMN {name}")
        row = {**old_job, "title": "old", "h_key": "k"}
        tx.execute(
            f"INSERT INTO jobs ({','.join(row)}) VALUES ({','.join('?' * len(row))})", list(row.values())
        )
        tx.execute("INSERT INTO workers (name, affinity, state, cpu) VALUES ('old', '', 'WAITING', '[]')")
        tx.execute("UPDATE Migrations SET database_version = 7")

    store.write(downgrade)
    with pytest.raises(SchemaError, match="version 7"):
        store.check_schema()
    assert store.migrate() == [
        "version 8: resource requests: cores, memory, GPUs, exclusive hosts",
        "version 9: Open Job Description: submitted templates, the jobs' OpenJD tasks",
    ]
    store.check_schema()
    [job] = store.read(lambda tx: tx._all("SELECT cores, memory, gpus, exclusive FROM jobs"))
    assert job == {"cores": 0, "memory": 0, "gpus": 0, "exclusive": 0}
    [worker] = store.read(
        lambda tx: tx._all("SELECT cores, gpus, used_memory FROM workers WHERE name = 'old'")
    )
    assert worker == {"cores": 0, "gpus": 0, "used_memory": 0}
    store.write(lambda tx: tx.execute("DELETE FROM Migrations WHERE database_version >= 8"))
    assert store.migrate() == [
        "version 8: resource requests: cores, memory, GPUs, exclusive hosts",
        "version 9: Open Job Description: submitted templates, the jobs' OpenJD tasks",
    ]


def test_version_9_adds_openjd_jobs_idempotently(store: Any) -> None:
    jobs = store.real_name("jobs")
    store.write(lambda tx: tx.execute(f"ALTER TABLE {jobs} DROP COLUMN openjd"))
    store.write(lambda tx: tx.execute(f"ALTER TABLE {store.real_name('workers')} DROP COLUMN offers"))
    store.write(
        lambda tx: tx.execute(
            "INSERT INTO workers (name, affinity, state, cpu) VALUES ('old', '', 'WAITING', '[]')"
        )
    )
    store.write(lambda tx: tx.execute(f"DROP TABLE {store.real_name('openjd_jobs')}"))
    old_job = {k: v for k, v in columns.new_job_row().items() if k != "openjd"}
    old = store.write(lambda tx: tx.insert_job({**old_job, "title": "old", "command": "x", "h_key": "k"}))
    store.write(lambda tx: tx.execute("UPDATE Migrations SET database_version = 8"))
    assert store.migrate() == ["version 9: Open Job Description: submitted templates, the jobs' OpenJD tasks"]
    assert store.migrate() == []
    store.check_schema()
    rows = store.read(lambda tx: tx._all(f"SELECT openjd FROM {jobs} WHERE id = ?", (old,)))
    assert rows == [{"openjd": ""}]
    store.write(lambda tx: tx.put_openjd_job(old, "{}", "{}", 1.0))
    assert store.read(lambda tx: tx.openjd_job(old))["template"] == "{}"
    rows = store.read(lambda tx: tx._all("SELECT offers FROM workers WHERE name = 'old'"))
    assert rows == [{"offers": ""}]
    # Run again (as after a renumbering at a merge): nothing is added twice.
    store.write(lambda tx: tx.execute("UPDATE Migrations SET database_version = 8"))
    assert store.migrate() == ["version 9: Open Job Description: submitted templates, the jobs' OpenJD tasks"]
    store.check_schema()
