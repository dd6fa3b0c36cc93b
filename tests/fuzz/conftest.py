"""The fuzz suite's servers: one real server per backend (SQLite, the private MariaDB).

COALITION_FUZZ_EXAMPLES sets how many examples each property and each API operation gets:
small by default, so that CI stays within a few minutes; `make fuzz` raises it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerProcess

EXAMPLES = int(os.environ.get("COALITION_FUZZ_EXAMPLES", "6"))


def start_server(root: Path, request: pytest.FixtureRequest, backend: str) -> ServerProcess:
    keys: dict[str, Any] = {"verbose": 0}
    if backend == "mysql":
        db = request.getfixturevalue("mariadb")
        keys.update(
            db_type="mysql",
            db_mysql_host=db.host,
            db_mysql_port=db.port,
            db_mysql_user=db.user,
            db_mysql_password=db.password,
            db_mysql_base=db.new_database(),
        )
    server = ServerProcess(root, **keys)
    server.start()
    return server


@pytest.fixture(scope="module", params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def fuzz_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A real server for the module, on each backend in turn."""
    server = start_server(tmp_path_factory.mktemp(f"fuzz-{request.param}"), request, request.param)
    yield server
    # The bar includes "the server answers afterwards", and no traceback in its log.
    assert server.answers(), "the server stopped answering"
    log = server.log_path.read_text(errors="replace")
    server.stop()
    assert "internal error on" not in log, log[-3000:]
