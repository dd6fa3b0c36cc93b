"""The store: the only place with SQL. `open_store` picks the engine from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import SchemaError, Store, StoreError, Tx
from .engine import MysqlStore, SqliteStore

__all__ = [
    "MysqlStore",
    "SchemaError",
    "SqliteStore",
    "Store",
    "StoreError",
    "Tx",
    "open_sqlite",
    "open_mysql",
]


def open_sqlite(path: str) -> SqliteStore:
    """An SQLite store on a file (created with its directory if missing)."""
    return SqliteStore(path)


def open_mysql(
    host: str, port: int, user: str, password: str, database: str, driver: str = "pymysql"
) -> MysqlStore:
    """A MySQL/MariaDB store (needs PyMySQL: the `mysql` extra, or python3-pymysql; or, with
    driver="mysqlclient", mysqlclient: python3-mysqldb)."""
    return MysqlStore(host, port, user, password, database, driver)


if TYPE_CHECKING:  # the type checker holds the engines to the interfaces (make lint)
    from .sql import SqlTx

    _sqlite: type[Store] = SqliteStore
    _mysql: type[Store] = MysqlStore
    _tx: type[Tx] = SqlTx
