"""Schema management on both engines: versions, missing tables, refusal to run outdated."""

from __future__ import annotations

from typing import Any

import pytest

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


def test_a_version_3_database_gets_failure_handling(store: Any) -> None:
    """Step 6 is additive: from a version-3 schema (no failure columns, no host_failures) it
    adds what is missing, keeps the rows, and running it again changes nothing."""
    from coalition.store.migrations import _FAILURE_COLUMNS

    def downgrade(tx: Any) -> None:
        tx.execute("INSERT INTO workers (name, affinity, state, cpu) VALUES ('old', '', 'WAITING', '[]')")
        for table, column in _FAILURE_COLUMNS:
            tx.execute(f"ALTER TABLE {table} DROP COLUMN {column.name}")
        tx.execute("DROP TABLE host_failures")
        tx.execute("DELETE FROM Migrations")
        tx.execute("INSERT INTO Migrations (database_version) VALUES (3)")

    store.write(downgrade)
    with pytest.raises(SchemaError, match="version 3"):
        store.check_schema()
    done = store.migrate()
    assert [line.split(":")[0] for line in done] == ["version 4", "version 5", "version 6"]
    store.check_schema()
    # (Not tx.worker(): the added columns come last here, and a statement's column names are
    # cached per process, from the fresh databases of the other tests.)
    [row] = store.read(lambda tx: tx._all("SELECT reason, blocked_until FROM workers WHERE name = 'old'"))
    assert (row["reason"], row["blocked_until"]) == ("", 0.0)
    assert store.read(lambda tx: tx.host_blocks(0.0)) == []
    # Rerun (the lead renumbers the step at merge): nothing is added twice.
    store.write(lambda tx: tx.execute("DELETE FROM Migrations WHERE database_version = 6"))
    assert store.migrate() == ["version 6: " + done[2].split(": ", 1)[1]]
    store.check_schema()
