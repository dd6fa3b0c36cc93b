"""The state several servers share, on SQLite and on a private MariaDB: job logs in the
database, failed-login counters, affinity registrations that never collide, and the schema
step (version 4) that brings an existing database there."""

from __future__ import annotations

import threading
from typing import Any

from coalition.joblogs import TRUNCATED, DbLogs, JobLogs
from coalition.store import MysqlStore, SqliteStore
from coalition.store.sqlshared import CHUNK
from tests.store.test_tx import covers


def _other(store: Any) -> Any:
    """A second connection pool on the same database: what another server process has."""
    if isinstance(store, SqliteStore):
        return SqliteStore(store.path)
    p = store._params
    return MysqlStore(p["host"], p["port"], p["user"], p["password"], p["database"], store.driver)


@covers("log_size", "log_append", "log_read", "log_delete")
def test_job_log_rows(store: Any) -> None:
    assert store.read(lambda tx: tx.log_size(1)) == 0
    assert store.read(lambda tx: tx.log_read(1)) == b""
    assert store.write(lambda tx: tx.log_append(1, b"hello ", 1000)) == 6
    assert store.write(lambda tx: tx.log_append(1, b"world\n", 1000)) == 6
    assert store.write(lambda tx: tx.log_append(1, b"", 1000)) == 0
    store.write(lambda tx: tx.log_append(2, b"other job", 1000))
    assert store.read(lambda tx: tx.log_size(1)) == 12
    assert store.read(lambda tx: tx.log_read(1)) == b"hello world\n"
    # Byte ranges across chunk boundaries, past the end, empty.
    assert store.read(lambda tx: tx.log_read(1, 3, 6)) == b"lo wor"
    assert store.read(lambda tx: tx.log_read(1, 6)) == b"world\n"
    assert store.read(lambda tx: tx.log_read(1, 11, 100)) == b"\n"
    assert store.read(lambda tx: tx.log_read(1, 12)) == b""
    assert store.read(lambda tx: tx.log_read(1, 0, 0)) == b""
    assert store.read(lambda tx: tx.log_read(1, -5, 2)) == b"he"
    store.write(lambda tx: tx.log_delete([1, 999]))
    assert store.read(lambda tx: tx.log_read(1)) == b""
    assert store.read(lambda tx: tx.log_read(2)) == b"other job"


def test_job_log_cap_and_big_appends(store: Any) -> None:
    marker = b"[cut]"
    assert store.write(lambda tx: tx.log_append(1, b"x" * 8, 10, marker)) == 8
    assert store.write(lambda tx: tx.log_append(1, b"y" * 8, 10, marker)) == 2 + len(marker)
    assert store.write(lambda tx: tx.log_append(1, b"z" * 8, 10, marker)) == 0  # full: dropped
    assert store.read(lambda tx: tx.log_read(1)) == b"x" * 8 + b"yy" + marker
    # An append bigger than one row is stored as several rows and read back whole.
    big = bytes(range(256)) * (CHUNK // 256) * 2 + b"tail"
    store.write(lambda tx: tx.log_append(2, big, 10 * CHUNK))
    assert store.read(lambda tx: tx.log_size(2)) == len(big)
    assert store.read(lambda tx: tx.log_read(2)) == big
    assert store.read(lambda tx: tx.log_read(2, CHUNK - 2, 6)) == big[CHUNK - 2 : CHUNK + 4]


def test_job_log_appends_from_two_servers_at_once(store: Any) -> None:
    """Two servers appending to one log at the same moment lose nothing and overlap nothing
    (on MySQL the loser of the offset race measures again)."""
    other = _other(store)
    try:
        errors: list[BaseException] = []

        def appender(s: Any, tag: bytes) -> None:
            try:
                for i in range(60):
                    s.write(lambda tx, i=i: tx.log_append(7, b"%s%03d;" % (tag, i), 1 << 20))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=appender, args=(s, t)) for s, t in ((store, b"a"), (other, b"b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        text = store.read(lambda tx: tx.log_read(7)).decode()
        parts = [p for p in text.split(";") if p]
        assert sorted(parts) == sorted([f"a{i:03d}" for i in range(60)] + [f"b{i:03d}" for i in range(60)])
        assert store.read(lambda tx: tx.log_size(7)) == len(text)
    finally:
        other.close()


@covers("login_failures", "add_login_failure", "purge_login_failures")
def test_login_failure_counters(store: Any) -> None:
    assert store.read(lambda tx: tx.login_failures("k", 100.0)) == 0
    assert store.write(lambda tx: tx.add_login_failure("k", 100.0, 60.0)) == 1
    assert store.write(lambda tx: tx.add_login_failure("k", 110.0, 60.0)) == 2
    assert store.write(lambda tx: tx.add_login_failure("other", 110.0, 60.0)) == 1
    assert store.read(lambda tx: tx.login_failures("k", 159.0)) == 2
    assert store.read(lambda tx: tx.login_failures("k", 160.0)) == 0  # the window is over
    assert store.write(lambda tx: tx.add_login_failure("k", 161.0, 60.0)) == 1  # a new window
    assert store.write(lambda tx: tx.purge_login_failures(200.0)) == 1  # "other" expired at 170
    assert store.read(lambda tx: tx.login_failures("k", 200.0)) == 1


def test_affinity_registrations_from_many_servers_never_collide(store: Any) -> None:
    """Threads over two connection pools register overlapping new names at once: no error,
    each name exactly one number, no number twice."""
    pools = [store, _other(store)]
    try:
        errors: list[BaseException] = []
        barrier = threading.Barrier(16)

        def register(n: int) -> None:
            try:
                barrier.wait(10)
                s = pools[n % 2]
                for k in range(5):
                    s.write(lambda tx, k=k: tx.register_affinities([f"t{n}-{k}", f"shared{k}", "common"]))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=register, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        names = store.read(lambda tx: tx.affinities())
        expected = {f"t{n}-{k}" for n in range(16) for k in range(5)} | {f"shared{k}" for k in range(5)}
        assert sorted(names.values()) == sorted(expected | {"common"})
    finally:
        pools[1].close()


def test_naming_a_number_moves_the_name(store: Any) -> None:
    store.write(lambda tx: tx.register_affinities(["gpu", "linux"]))
    store.write(lambda tx: tx.set_affinities({9: "gpu"}))
    names = store.read(lambda tx: tx.affinities())
    assert list(names.values()).count("gpu") == 1 and names[9] == "gpu"


def test_schema_step_4_upgrades_a_version_3_database(store: Any) -> None:
    """A version-3 database (no job_logs, no login_failures, no unique affinity names, and a
    name a race numbered twice) is brought to version 4 by --migrate."""

    def downgrade(tx: Any) -> None:
        tx.execute("DROP TABLE job_logs")
        tx.execute("DROP TABLE login_failures")
        if store.dialect == "mysql":
            tx.execute("DROP INDEX c5_affinities_name ON affinities")
        else:
            tx.execute("DROP INDEX c5_affinities_name")
        tx.execute("INSERT INTO affinities (id, name) VALUES (1, 'gpu'), (2, 'gpu'), (3, 'linux')")
        tx.execute("DELETE FROM Migrations")
        tx.execute("INSERT INTO Migrations (database_version) VALUES (3)")

    store.write(downgrade)
    assert store.version() == 3
    done = store.migrate()
    assert any("version 4" in line for line in done), done
    store.check_schema()
    assert store.read(lambda tx: tx.affinities()) == {1: "gpu", 3: "linux"}
    store.write(lambda tx: tx.log_append(1, b"ok", 100))
    store.write(lambda tx: tx.register_affinities(["gpu", "new"]))
    assert sorted(store.read(lambda tx: tx.affinities()).values()) == ["gpu", "linux", "new"]


def test_db_logs_fall_back_to_legacy_files(store: Any, tmp_path: Any) -> None:
    """Logs written to files before `logstore = database` stay readable, and deleting the job
    removes the file too."""
    files = JobLogs(str(tmp_path / "logs"), 1000)
    files.append(5, b"old log from a file\n")
    logs = DbLogs(store, 1000, legacy=files)
    assert logs.read(5) == b"old log from a file\n"
    assert logs.size(5) == 20
    assert logs.tail(5, 5) == (b"file\n", 15)
    logs.append(6, b"in the database")
    assert logs.read(6, 3, 5) == b"the d"
    assert logs.tail(6, 8) == (b"database", 7)
    logs.delete(5)
    assert logs.read(5) == b"" and logs.size(5) == 0 and logs.tail(5, 3) == (b"", 0)
    capped = DbLogs(store, 10)
    capped.append(8, b"0123456789abc")
    assert capped.read(8) == b"0123456789" + TRUNCATED % 10


def test_login_failures_are_counted_across_servers(store: Any, tmp_path: Any) -> None:
    """Two servers (two connection pools, two contexts) count one address's failed logins
    together: ten wrong passwords spread over both lock that pair out on both."""
    from coalition.usecases import Context
    from coalition.usecases.access import LoginFailures
    from tests.support import Clock

    other = _other(store)
    try:
        clock = Clock()
        logs = JobLogs(str(tmp_path / "logs"), 1000)
        a = LoginFailures(Context(store, logs, clock=clock), window=300)
        b = LoginFailures(Context(other, logs, clock=clock), window=300)
        for i in range(10):
            (a if i % 2 else b).add("10.0.0.9", "alice")
        assert a.count("10.0.0.9", "alice") == b.count("10.0.0.9", "alice") == 10
        assert a.count("10.0.0.8", "alice") == 0  # another address: its own count
        clock.advance(301)
        assert b.count("10.0.0.9", "alice") == 0
        assert a.purge() == 1
    finally:
        other.close()
