"""`coalition-server --migrate` upgrades a Coalition 4 database (schema version 1) in place,
on SQLite and on MariaDB, and an outdated schema stops the server with advice."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.conftest import ServerProcess

C4_DDL = [
    """CREATE TABLE Jobs (id INTEGER PRIMARY KEY {autoinc}, parent INT DEFAULT 0, title TEXT, command TEXT,
    dir TEXT, environment TEXT, state TEXT, paused BOOLEAN DEFAULT 0, worker TEXT, start_time INT DEFAULT 0,
    duration INT DEFAULT 0, run_done INT DEFAULT 0, timeout INT DEFAULT 0, priority INT UNSIGNED DEFAULT 8,
    affinity TEXT, affinity_bits BIGINT DEFAULT 0, user TEXT, finished INT DEFAULT 0, errors INT DEFAULT 0,
    working INT DEFAULT 0, total INT DEFAULT 0, total_finished INT DEFAULT 0, total_errors INT DEFAULT 0,
    total_working INT DEFAULT 0, url TEXT, progress FLOAT, progress_pattern TEXT, h_affinity BIGINT DEFAULT 0,
    h_priority BIGINT UNSIGNED DEFAULT 0, h_paused BOOLEAN DEFAULT 0, h_depth INT DEFAULT 0)""",
    "CREATE TABLE Dependencies (job_id INT, dependency INT)",
    """CREATE TABLE Workers (name VARCHAR(255), start_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP, ip TEXT,
    affinity TEXT, state TEXT, finished INT, error INT, last_job INT, current_event INT, cpu TEXT,
    free_memory INT, total_memory INT, active BOOLEAN)""",
    "CREATE TABLE WorkerAffinities (id INTEGER PRIMARY KEY {autoinc}, worker_name VARCHAR(255), "
    "affinity BIGINT, ordering INT)",
    "CREATE TABLE Affinities (id INT, name TEXT)",
    "CREATE TABLE Events (id INTEGER PRIMARY KEY {autoinc}, worker VARCHAR(255), job_id INT, job_title TEXT, "
    "state TEXT, start INT, duration INT)",
    "CREATE TABLE Migrations (database_version INT)",
    "CREATE INDEX Jobs_parent ON Jobs (parent)",
    "CREATE INDEX Events_job ON Events (job_id)",
]

JOBS = [
    # id, parent, title, command, state, paused, worker, priority, affinity, environment
    (1, 0, "shot", "", "WORKING", 0, "", 200, "", ""),
    (2, 1, "frame 1", "render 1", "FINISHED", 0, "w1", 255, "#1", "A=1\\nB=2"),
    (3, 1, "frame 2", "render 2", "WORKING", 0, "w1", 255, "linux,#2", "None"),
    (4, 0, "comp", "comp", "PENDING", 0, "", 100, "", ""),
    (5, 0, "paused", "sleep 1", "PAUSED", 1, "", 100, "", ""),
    (6, 0, "broken", "false", "ERROR", 0, "w2", 100, "", ""),
]


def fill_c4(execute: Any, autoinc: str, mark: str) -> None:
    for stmt in C4_DDL:
        execute(stmt.format(autoinc=autoinc))
    for row in JOBS:
        execute(
            "INSERT INTO Jobs (id, parent, title, command, state, paused, worker, priority, affinity, "
            "environment, dir, start_time, duration, run_done, url, user, progress, progress_pattern) VALUES "
            f"({','.join([mark] * 18)})",
            (*row, ".", 1000, 5, 1, "", "alice", 0.0, "PROGRESS:%percent"),
        )
    execute(f"INSERT INTO Dependencies (job_id, dependency) VALUES ({mark}, {mark})", (4, 3))
    for i in range(1, 64):
        execute(
            f"INSERT INTO Affinities (id, name) VALUES ({mark}, {mark})",
            (i, {1: "linux", 2: "win"}.get(i, "")),
        )
    for name, state in (("w1", "WORKING"), ("w2", "WAITING")):
        execute(
            "INSERT INTO Workers (name, ip, affinity, state, finished, error, last_job, current_event, cpu, "
            f"free_memory, total_memory, active) VALUES ({','.join([mark] * 12)})",
            (name, "", "", state, 3, 1, 3, 2, "[10]", 100, 200, 1),
        )
    execute(
        f"INSERT INTO WorkerAffinities (worker_name, affinity, ordering) VALUES ({mark}, {mark}, {mark})",
        ("w2", 0b11, 1),
    )
    execute(
        f"INSERT INTO WorkerAffinities (worker_name, affinity, ordering) VALUES ({mark}, {mark}, {mark})",
        ("w2", 0b01, 2),
    )
    execute(
        f"INSERT INTO Events (worker, job_id, job_title, state, start, duration) VALUES "
        f"({','.join([mark] * 6)})",
        ("w1", 2, "frame 1", "FINISHED", int(time.time()) - 100, 5),
    )
    execute(
        f"INSERT INTO Events (worker, job_id, job_title, state, start, duration) VALUES "
        f"({','.join([mark] * 6)})",
        ("w1", 3, "frame 2", "WORKING", int(time.time()) - 90, 0),
    )
    execute("INSERT INTO Migrations (database_version) VALUES (1)", ())


def run_server_cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coalition.server.main", "-c", str(server.ini_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_migrated(server: ServerProcess) -> None:
    out = run_server_cli(server)
    assert out.returncode == 2 and "--migrate" in out.stderr, out.stderr  # outdated: refuses to start
    out = run_server_cli(server, "--migrate", "--yes")
    assert out.returncode == 0 and "Migration was successful" in out.stdout, out.stdout + out.stderr
    server.start()
    shot = server.job(1)
    assert (shot["total"], shot["total_finished"], shot["state"], shot["children"]) == (2, 1, "WAITING", 2)
    f1, f2 = server.job(2), server.job(3)
    # Coalition 4's 255 is its clamped default (1000): equal to a new default-priority job.
    assert (f2["priority"], server.job(4)["priority"]) == (1000, 845)
    assert server.job(server.submit(title="new", command="true"))["priority"] == 1000
    assert (f1["state"], f1["affinity"], f1["environment"]) == ("FINISHED", "linux", "A=1\\nB=2")
    assert (f2["state"], f2["affinity"], f2["environment"]) == ("WAITING", "linux,win", "")
    assert server.job(4)["state"] == "PENDING" and server.job(4)["dependencies"] == [3]
    assert server.job(5)["state"] == "PAUSED" and server.job(6)["state"] == "ERROR"
    workers = {w["name"]: w for w in server.api("GET", "/api/workers")}
    assert workers["w2"]["affinity"] == "linux,win\nlinux" and workers["w1"]["state"] == "WAITING"
    assert workers["w2"]["start_time"] > 0
    assert server.api("GET", "/api/affinities") == {
        "1": "linux",
        "2": "win",
        **{str(n): "" for n in range(3, 64)},
    }
    events = server.api("GET", "/api/events")
    assert sorted(e["state"] for e in events) == ["FINISHED", "INTERRUPTED"]
    # The migrated queue runs: w2 ("linux,win" first) takes frame 2, then comp is released.
    job = server.worker_call("pickjob", {"name": "w2"})["job"]
    assert job["id"] == 3
    server.worker_call("endjob", {"name": "w2", "job_id": 3, "event": job["event"], "exit_code": 0})
    assert server.job(1)["state"] == "FINISHED" and server.job(4)["state"] == "WAITING"
    out = run_server_cli(server, "--migrate", "--yes")
    assert "up to date" in out.stdout


def test_migrate_coalition4_sqlite(make_server: Any) -> None:
    server = make_server(start=False)
    server.datadir.mkdir()
    conn = sqlite3.connect(server.datadir / "coalition.db")
    fill_c4(conn.execute, "AUTOINCREMENT", "?")
    conn.commit()
    conn.close()
    check_migrated(server)


def test_interrupted_coalition4_upgrade_resumes(make_server: Any) -> None:
    """An upgrade stopped after the old tables were moved aside and the jobs table was filled
    (a crash, a kill) is finished by running --migrate again: nothing lost, nothing twice."""
    server = make_server(start=False)
    server.datadir.mkdir()
    path = server.datadir / "coalition.db"
    conn = sqlite3.connect(path)
    fill_c4(conn.execute, "AUTOINCREMENT", "?")
    conn.commit()
    conn.close()
    from coalition.store import SqliteStore
    from coalition.store.migrations import migrate

    store = SqliteStore(str(path))

    class Stop(Exception):
        pass

    real_write = store.write
    calls = {"n": 0}

    def write_until_jobs(fn: Any) -> Any:
        # Let the rename, the table creation, the affinities and the jobs commit; stop before
        # the dependencies, as a crash there would.
        calls["n"] += 1
        if calls["n"] > 4:
            raise Stop()
        return real_write(fn)

    store.write = write_until_jobs  # type: ignore[method-assign]
    with pytest.raises(Stop):
        migrate(store)
    store.close()
    conn = sqlite3.connect(path)
    tables = {r[0].lower() for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"c4_jobs", "c4_dependencies", "jobs"} <= tables
    assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == len(JOBS)
    conn.close()
    check_migrated(server)


@pytest.mark.mysql
def test_migrate_coalition4_mysql(make_server: Any, mariadb: Any) -> None:
    import pymysql

    base = mariadb.new_database()
    server = make_server(
        start=False,
        db_type="mysql",
        db_mysql_host=mariadb.host,
        db_mysql_port=mariadb.port,
        db_mysql_user=mariadb.user,
        db_mysql_password=mariadb.password,
        db_mysql_base=base,
    )
    conn = pymysql.connect(
        host=mariadb.host, port=mariadb.port, user=mariadb.user, password=mariadb.password, database=base
    )
    with conn.cursor() as cur:
        fill_c4(lambda sql, params=(): cur.execute(sql, params or None), "AUTO_INCREMENT", "%s")
    conn.commit()
    conn.close()
    check_migrated(server)


def test_init_refuses_a_non_empty_database_and_reset_wipes(make_server: Any) -> None:
    server = make_server()
    jid = server.submit(title="keep me", command="true")
    out = run_server_cli(server, "--init")
    assert out.returncode == 2 and "not empty" in out.stderr
    assert server.job(jid)["title"] == "keep me"
    out = run_server_cli(server, "--reset")  # no terminal and no --yes: refuses
    assert out.returncode == 1 and server.job(jid)
    out = run_server_cli(server, "--reset", "--yes")
    assert out.returncode == 0
    assert server.api("GET", "/api/jobs") == []


def test_bad_config_value_stops_with_one_line_naming_the_key(make_server: Any) -> None:
    server = make_server(start=False, timeout="soon", colour="blue")
    out = run_server_cli(server)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "[server] timeout" in out.stderr and "soon" in out.stderr


def test_unknown_key_is_a_warning(make_server: Any) -> None:
    server = make_server(start=False, colour="blue")
    out = run_server_cli(server, "--init")
    assert out.returncode == 0 and "colour: unknown key" in out.stderr


def test_migrated_priorities_meet_new_jobs_on_one_scale() -> None:
    # Coalition 4 clamped priorities to 0..255, so its default (1000) was stored as 255: a
    # migrated default-priority job and a new one (1000) must be equals, the old order kept.
    from coalition.model import DEFAULT_PRIORITY
    from coalition.store.migrations import c4_priority

    assert c4_priority(255) == DEFAULT_PRIORITY
    assert c4_priority(0) < c4_priority(100) < c4_priority(200) < c4_priority(255)
    assert c4_priority(None) == c4_priority(0) >= 0
