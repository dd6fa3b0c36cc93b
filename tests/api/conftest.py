"""One real server process shared by the API tests of a module (each test makes its own jobs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.authfarm import ldap_farm, slapd  # noqa: F401 - fixtures (LDAP access tests), re-exported
from tests.conftest import ServerProcess
from tests.worker.conftest import make_worker  # noqa: F401 - a fixture, re-exported


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A started SQLite server for the whole module."""
    root: Path = tmp_path_factory.mktemp("api")
    server = ServerProcess(root)
    server.start()
    yield server
    server.stop()


def scripted_worker(server: ServerProcess, name: str, affinity: str | None = None) -> dict[str, Any] | None:
    """One pickjob as a scripted worker speaking the JSON protocol."""
    body: dict[str, Any] = {"name": name, "cpu": [10.0, 20.0], "free_memory": 100, "total_memory": 200}
    if affinity is not None:
        body["affinity"] = affinity
    return server.worker_call("pickjob", body)["job"]
