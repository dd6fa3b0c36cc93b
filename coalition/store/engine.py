"""The two database engines: connections, transactions, schema management.

SQLite (WAL) is the embedded default for one machine: one connection per thread, write
transactions serialised by a process lock (SQLite allows one writer; queueing on a Python
lock is far cheaper than SQLite's sleeping busy handler) and BEGIN IMMEDIATE against other
processes. MySQL/MariaDB is the scale-out path: one connection per thread, READ COMMITTED,
claims with FOR UPDATE SKIP LOCKED, deadlocks retried.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from . import migrations
from .base import SchemaError, StoreError
from .schema import SCHEMA_VERSION, TABLES, ddl
from .sql import SqlTx

T = TypeVar("T")
log = logging.getLogger("coalition.store")


class _SqlStore:
    """What both engines share: schema management over `write`/`read`."""

    dialect = ""
    # Result column names by statement (SqlTx._one): this database's, cleared when its
    # schema changes (migrate, init).
    names: dict[str, tuple[str, ...]]

    def write(self, fn: Callable[[SqlTx], T]) -> T:  # pragma: no cover - overridden
        raise NotImplementedError

    def read(self, fn: Callable[[SqlTx], T]) -> T:  # pragma: no cover - overridden
        raise NotImplementedError

    def table_names(self) -> set[str]:
        """Lower-cased names of the tables in the database."""
        raise NotImplementedError

    def version(self) -> int | None:
        """None for an empty database, 0/1 for Coalition 4 (or an interrupted upgrade of
        one: its tables moved aside as c4_*), 2+ for Coalition 5."""
        tables = self.table_names()
        if not tables:
            return None
        if "migrations" not in tables:
            return 0 if "jobs" in tables or "c4_jobs" in tables else None

        def get(tx: SqlTx) -> int:
            return int(tx._scalar("SELECT MAX(database_version) FROM Migrations") or 0)

        return self.read(get)

    def check_schema(self) -> None:
        """Raise SchemaError unless the schema is exactly the current one."""
        version = self.version()
        if version is None:
            raise SchemaError("the database is empty: run `coalition-server --init` first")
        if version < SCHEMA_VERSION:
            raise SchemaError(
                f"the database schema is version {version}, this server needs {SCHEMA_VERSION}: "
                "back it up, then run `coalition-server --migrate`"
            )
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"the database schema is version {version}, newer than this server ({SCHEMA_VERSION}): "
                "upgrade Coalition"
            )
        missing = migrations.missing_tables(self)
        if missing:
            raise SchemaError(
                f"the database lacks table(s) {', '.join(missing)}: run `coalition-server --migrate`"
            )

    def init(self) -> None:
        """Create the current schema in an empty database."""
        if self.version() is not None:
            raise SchemaError("the database is not empty: use --migrate to upgrade it or --reset to wipe it")

        def create(tx: SqlTx) -> None:
            for stmt in ddl(self.dialect):
                tx.execute(stmt)
            tx.execute("INSERT INTO Migrations (database_version) VALUES (?)", (SCHEMA_VERSION,))

        self.write(create)

    def migrate(self) -> list[str]:
        """Upgrade to the current schema, Coalition 4 databases included."""
        try:
            return migrations.migrate(self)
        finally:
            self.names.clear()

    def reset(self) -> None:
        """Delete every row of every table; the schema and its version stay."""
        self.check_schema()

        def wipe(tx: SqlTx) -> None:
            for table in TABLES:
                if table != "Migrations":
                    tx.execute(f"DELETE FROM {table}")

        self.write(wipe)

    def drop_all(self) -> None:
        """Drop every table (tests only)."""
        names = self.table_names()

        def drop(tx: SqlTx) -> None:
            for table in sorted(names):
                tx.execute(f"DROP TABLE IF EXISTS {self.real_name(table)}")

        self.write(drop)

    def real_name(self, lower: str) -> str:
        """The table's name as spelled in the database (MySQL names are case-sensitive)."""
        return lower


class SqliteStore(_SqlStore):
    """SQLite in WAL mode."""

    dialect = "sqlite"

    def __init__(self, path: str, busy_timeout_ms: int = 10000):
        self.names = {}
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._busy_ms = busy_timeout_ms
        self._local = threading.local()
        self._qlock = threading.Lock()
        self._queue: list[_Pending] = []
        self._leader = False
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the SQLite database {self.path}: {exc}") from exc
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL loses no committed data on a process crash, only (possibly)
            # the last transactions on a power cut; it saves an fsync per commit.
            conn.execute("PRAGMA synchronous = NORMAL")
            # Memory-mapped reads spare a system call per page read (the OS page cache is
            # shared by every connection, unlike cache_size, which is per connection).
            conn.execute("PRAGMA mmap_size = 268435456")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _begin(self, cur: sqlite3.Cursor, begin: str) -> None:
        for attempt in range(50):
            try:
                cur.execute(begin)
                return
            except sqlite3.OperationalError as exc:  # another process holds the write lock
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise StoreError(f"SQLite: {exc}") from exc
                time.sleep(0.05 * (attempt + 1))
        raise StoreError("SQLite database is locked by another process")

    def _run(self, fn: Callable[[SqlTx], T], begin: str) -> T:
        conn = self._conn()
        cur = conn.cursor()
        self._begin(cur, begin)
        try:
            result = fn(SqlTx(cur, "sqlite", self.names))
            cur.execute("COMMIT")
            return result
        except BaseException:
            if conn.in_transaction:
                cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    def write(self, fn: Callable[[SqlTx], T]) -> T:
        """Group commit: concurrent writers queue their functions; one of them (the leader)
        runs the queue in one transaction, each function in its own savepoint, and commits
        once. SQLite allows one writer anyway; this turns N commits and N lock hand-overs
        into one, which is most of a dispatch's cost under load. Each waiter sleeps on its
        own event, so a commit wakes only the threads it served (and the next leader)."""
        item = _Pending(fn)
        with self._qlock:
            self._queue.append(item)
            lead = not self._leader
            self._leader = True
        if not lead:
            item.wake.wait()
            if item.done:
                return item.outcome()
            # Promoted: the previous leader handed the queue over to us.
        while True:
            with self._qlock:
                batch, self._queue = self._queue[:_MAX_BATCH], self._queue[_MAX_BATCH:]
            try:
                self._run_batch(batch)
            finally:
                for other in batch:
                    if other is not item:
                        other.wake.set()
            if item.done:
                with self._qlock:
                    if self._queue:
                        self._queue[0].wake.set()  # hand leadership to the next waiter
                    else:
                        self._leader = False
                return item.outcome()

    def _run_batch(self, batch: list[_Pending]) -> None:
        """Run a batch in one transaction. Optimistic: no savepoint per function (two
        statements each); if one raises, the batch is rolled back, that function gets its
        error, and the others are run again one transaction each (write functions have no
        effect outside their transaction, so running one again is safe)."""
        conn = self._conn()
        cur = conn.cursor()
        failed: _Pending | None = None
        try:
            self._begin(cur, "BEGIN IMMEDIATE")
            tx = SqlTx(cur, "sqlite", self.names)
            for item in batch:
                if not _call(item, tx):
                    failed = item
                    break
            if failed is None:
                cur.execute("COMMIT")
            else:
                cur.execute("ROLLBACK")
        except BaseException as exc:
            if conn.in_transaction:
                cur.execute("ROLLBACK")
            for item in batch:
                item.error = item.error or exc
                item.result = None
            failed = None
        finally:
            cur.close()
        if failed is not None:
            for item in batch:
                if item is failed:
                    continue
                item.error = None
                try:
                    item.result = self._run(item.fn, "BEGIN IMMEDIATE")
                except BaseException as exc:  # handed to that item's caller
                    item.error, item.result = exc, None
        for item in batch:
            item.done = True

    def read(self, fn: Callable[[SqlTx], T]) -> T:
        return self._run(fn, "BEGIN")

    def queued_writes(self) -> int:
        """Write functions waiting for the current group commit (diagnostics, tests)."""
        with self._qlock:
            return len(self._queue)

    def table_names(self) -> set[str]:
        rows = self._conn().execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {r[0].lower() for r in rows if not r[0].startswith("sqlite_")}

    def real_name(self, lower: str) -> str:
        return lower  # SQLite table names are case-insensitive

    def close(self) -> None:
        """Close every connection this store opened."""
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()


_MAX_BATCH = 64


class _Pending:
    """A write function waiting for (or done by) a group commit."""

    __slots__ = ("fn", "done", "result", "error", "wake")

    def __init__(self, fn: Callable[[SqlTx], Any]):
        self.fn = fn
        self.wake = threading.Event()
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None

    def finish(self, error: BaseException | None = None) -> None:
        self.error = error
        self.done = True

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


def _call(item: _Pending, tx: SqlTx) -> bool:
    try:
        item.result = item.fn(tx)
        return True
    except BaseException as exc:  # handed to the caller of write(), in its own thread
        item.error = exc
        return False


_MYSQL_RETRY = {1213, 1205}  # deadlock, lock wait timeout: the transaction can simply rerun
_MYSQL_GONE = {2006, 2013, 2003, 2055}


class MysqlStore(_SqlStore):
    """MySQL/MariaDB through PyMySQL (pure Python, the default) or mysqlclient (`MySQLdb`,
    the C client: `db_mysql_driver = mysqlclient`, several times less CPU per statement)."""

    dialect = "mysql"

    def __init__(
        self, host: str, port: int, user: str, password: str, database: str, driver: str = "pymysql"
    ):
        # Optional dependencies: only a MySQL farm needs one. Both speak DB-API 2 with the
        # `%s` parameter style and MySQL's error numbers in args[0].
        if driver == "mysqlclient":
            import MySQLdb as module
        else:
            import pymysql as module
        self.names = {}
        self.driver = driver
        self._db = module
        self._params = dict(
            host=host,
            port=port,
            user=user,
            password=password,
            database=database,
            charset="utf8mb4",
            autocommit=False,
            connect_timeout=10,
            init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        )
        self._local = threading.local()
        self._all: list[Any] = []
        self._all_lock = threading.Lock()

    def _conn(self, fresh: bool = False) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or fresh:
            try:
                conn = self._db.connect(**self._params)
            except self._db.MySQLError as exc:
                raise StoreError(f"cannot connect to MySQL at {self._params['host']}: {exc}") from exc
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _run(self, fn: Callable[[SqlTx], T]) -> T:
        err = self._db
        last: Exception | None = None
        for attempt in range(8):
            conn = self._conn(fresh=attempt > 0 and isinstance(last, err.OperationalError) and _gone(last))
            try:
                if self.driver == "pymysql":
                    conn.begin()  # (MySQLdb: autocommit is off, the first statement begins)
                cur = conn.cursor()
                try:
                    result = fn(SqlTx(cur, "mysql", self.names))
                finally:
                    cur.close()
                conn.commit()
                return result
            except (err.OperationalError, err.InternalError) as exc:
                _rollback(conn)
                code = exc.args[0] if exc.args else 0
                if code in _MYSQL_RETRY or code in _MYSQL_GONE:
                    last = exc
                    time.sleep(0.01 * (attempt + 1))
                    continue
                raise StoreError(f"MySQL: {exc}") from exc
            except BaseException:
                _rollback(conn)
                raise
        raise StoreError(f"MySQL: giving up after retries: {last}")

    def write(self, fn: Callable[[SqlTx], T]) -> T:
        return self._run(fn)

    def read(self, fn: Callable[[SqlTx], T]) -> T:
        return self._run(fn)

    def table_names(self) -> set[str]:
        return {name.lower() for name in self._tables()}

    def _tables(self) -> list[str]:
        def show(tx: SqlTx) -> list[str]:
            tx.cur.execute("SHOW TABLES")
            return [r[0].decode() if isinstance(r[0], bytes) else r[0] for r in tx.cur.fetchall()]

        return self.read(show)

    def real_name(self, lower: str) -> str:
        for name in self._tables():
            if name.lower() == lower:
                return name
        return lower

    def close(self) -> None:
        """Close every connection this store opened."""
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - already closed or broken: nothing to do
                    pass
            self._all.clear()
        self._local = threading.local()


def _gone(exc: Exception) -> bool:
    return bool(exc.args) and exc.args[0] in _MYSQL_GONE


def _rollback(conn: Any) -> None:
    try:
        conn.rollback()
    except Exception:  # noqa: BLE001 - the connection is broken; the next attempt reconnects
        pass
