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
