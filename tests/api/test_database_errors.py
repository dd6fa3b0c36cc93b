"""A database error is a 503 that says only that the database is unavailable (issue 12: on
MariaDB, a 503's text exposed the SQL error); the detail goes to the server log, for the
operator, and the server recovers by itself once the database is back.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.conftest import ServerProcess
from tests.support import wait_for

pytestmark = pytest.mark.mysql


def root_sql(mariadb: Any, *statements: str) -> list[tuple[Any, ...]]:
    """Run statements as MariaDB's root; returns the last one's rows."""

    conn = pymysql.connect(unix_socket=mariadb.socket, user="root", autocommit=True)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
            return list(cur.fetchall())
    finally:
        conn.close()


def test_a_database_error_is_a_503_whose_detail_stays_in_the_log(mariadb: Any, tmp_path: Path) -> None:
    # The server's own account (not the session's shared one), so that taking its rights
    # away touches no other test.
    user, database = "u" + uuid.uuid4().hex[:10], mariadb.new_database()
    account = f"'{user}'@'127.0.0.1'"
    root_sql(
        mariadb, f"CREATE USER {account} IDENTIFIED BY 'pw503'", f"GRANT ALL ON {database}.* TO {account}"
    )
    keys = {
        "db_type": "mysql",
        "db_mysql_host": mariadb.host,
        "db_mysql_port": mariadb.port,
        "db_mysql_user": user,
        "db_mysql_password": "pw503",
        "db_mysql_base": database,
    }
    server = ServerProcess(tmp_path, **keys)
    server.start()
    try:
        job_id = server.submit(command="true", title="before")
        # A DBA's mistake: the account loses its rights. Open connections keep a database's
        # rights until they reconnect, so end them too (as a restart of MariaDB would).
        root_sql(mariadb, f"REVOKE ALL ON {database}.* FROM {account}")
        for (pid,) in root_sql(
            mariadb, f"SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{user}'"
        ):
            try:
                root_sql(mariadb, f"KILL CONNECTION {int(pid)}")
            except pymysql.err.OperationalError as exc:
                if exc.args[0] != 1094:  # "Unknown thread id": it ended by itself meanwhile
                    raise
        for method, path, body in (
            ("GET", f"/api/jobs/{job_id}", None),
            ("PUT", "/api/jobs", {"command": "true", "title": "during"}),
            ("POST", "/workers/heartbeat", {"name": "w503"}),  # the worker protocol's own front
        ):
            r = server.request(method, path, body)
            assert r.status_code == 503, (path, r.status_code, r.text[:300])
            assert r.json() == {"error": "database unavailable (see the server log)"}, r.text[:300]
            for detail in ("denied", user, database, "1044", "SELECT", "jobs"):
                assert detail.lower() not in r.text.lower(), (detail, r.text)
        log = server.log_path.read_text(errors="replace")
        assert f"database error on GET /api/jobs/{job_id}: " in log
        assert "database error on POST /workers/heartbeat: " in log
        assert f"Access denied for user '{user}'" in log and database in log
        assert "Traceback" not in log  # an outage, not a bug
        root_sql(mariadb, f"GRANT ALL ON {database}.* TO {account}")
        wait_for(lambda: server.request("GET", f"/api/jobs/{job_id}").status_code == 200, what="recovery")
        assert server.submit(command="true", title="after") > job_id
    finally:
        server.stop()
        root_sql(mariadb, f"DROP USER {account}")
