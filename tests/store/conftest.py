"""The store contract runs on SQLite and on a private MariaDB: same behaviour, same tests."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

from coalition.joblogs import JobLogs
from coalition.store import MysqlStore, SqliteStore
from coalition.usecases import Context, Settings, UseCases
from tests.support import Clock, require


@pytest.fixture(params=["sqlite", "mysql", "mysqlclient"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """An empty store of each kind (not yet initialised): SQLite, MariaDB through PyMySQL (the
    default driver) and MariaDB through mysqlclient (the optional C driver)."""
    if request.param == "sqlite":
        store = SqliteStore(str(tmp_path / "coalition.db"))
    else:
        driver = "pymysql" if request.param == "mysql" else "mysqlclient"
        if driver == "mysqlclient":
            require(
                importlib.util.find_spec("MySQLdb") is not None,
                "mysqlclient not installed: apt-get install libmariadb-dev pkg-config, "
                "then pip install mysqlclient (Debian: python3-mysqldb)",
            )
        db = request.getfixturevalue("mariadb")
        store = MysqlStore(db.host, db.port, db.user, db.password, db.new_database(), driver)
    yield store
    store.close()


@pytest.fixture
def store(backend: Any) -> Any:
    """An initialised store of each kind."""
    backend.init()
    return backend


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def farm(store: Any, clock: Clock, tmp_path: Any) -> Any:
    """The use cases over the store, with a hand-moved clock."""

    class Farm:
        pass

    f = Farm()
    f.clock = clock
    f.store = store
    f.logs = JobLogs(str(tmp_path / "logs"), 1024 * 1024)
    f.ctx = Context(
        store, f.logs, Settings(worker_timeout=10, requeue_limit=2, decrease_priority_after=0), clock
    )
    f.uc = UseCases.over(f.ctx)
    return f
