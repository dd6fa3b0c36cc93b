"""Scale-out: two server processes on one MariaDB never hand out the same job, and only one
of them runs the periodic work at a time."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from tests.support import wait_for


@pytest.mark.mysql
def test_two_servers_one_database_concurrent_pickers(make_server: Any, mariadb: Any) -> None:
    db = mariadb.server_keys()
    base = db["db_mysql_base"]
    first = make_server(start=False, **db)
    first.init_database()
    first.start()
    second = make_server(**db)
    ids = first.api("PUT", "/api/jobs", [{"title": f"f{i}", "command": "true"} for i in range(300)])

    handed: list[int] = []
    lock = threading.Lock()
    failures: list[str] = []

    def picker(server: Any, name: str) -> None:
        try:
            job = server.worker_call("pickjob", {"name": name})["job"]
            while job is not None:
                with lock:
                    handed.append(job["id"])
                job = server.worker_call(
                    "endjob",
                    {"name": name, "job_id": job["id"], "event": job["event"], "exit_code": 0, "pick": True},
                )["job"]
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(f"{name}: {exc!r}")

    threads = [
        threading.Thread(target=picker, args=((first if n % 2 else second).view(), f"picker-{n}"))
        for n in range(12)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    dupes = [job for job, count in Counter(handed).items() if count > 1]
    assert not dupes, f"jobs handed out twice: {dupes[:10]}"
    assert sorted(handed) == sorted(ids)
    page = first.api("GET", "/api/jobs?state=FINISHED&limit=1")
    assert page["total"] == 300

    # The periodic work is leased: exactly one of the two servers holds the reaper lease.
    import pymysql

    conn = pymysql.connect(
        host=mariadb.host, port=mariadb.port, user=mariadb.user, password=mariadb.password, database=base
    )

    def holders() -> list[str]:
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("SELECT holder FROM leases WHERE name = 'reaper'")
            return [r[0] for r in cur.fetchall()]

    assert len(wait_for(holders, timeout=10, what="a reaper lease")) == 1
    conn.close()
