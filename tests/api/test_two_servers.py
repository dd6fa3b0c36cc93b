"""Two server processes on one private MariaDB, as behind a load balancer: every piece of
state is shared. A worker whose requests alternate between the servers has one complete log,
readable (whole, by range, by tail, followed live) from either; deleting a job deletes its
log everywhere; `maxlogsize` holds across servers; 2,000 registrations at once through both
servers all succeed; the periodic work's lease moves to the survivor when a server dies."""

from __future__ import annotations

import base64
import importlib.util
import threading
from collections import Counter
from typing import Any

import pytest

from tests.support import require, wait_for

pytestmark = [pytest.mark.mysql, pytest.mark.slow]


def two_servers(make_server: Any, mariadb: Any, **keys: Any) -> tuple[Any, Any, dict[str, Any]]:
    """Two started servers on one fresh database (initialised by the first)."""
    db = {**mariadb.server_keys(), **keys}
    first = make_server(start=False, **db)
    first.init_database()
    first.start()
    return first, make_server(**db), db


def _sql(mariadb: Any, base: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import pymysql

    conn = pymysql.connect(
        host=mariadb.host, port=mariadb.port, user=mariadb.user, password=mariadb.password, database=base
    )
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def _beat(server: Any, name: str, job: dict[str, Any], offset: int, data: bytes) -> dict[str, Any]:
    body = {
        "name": name,
        "job_id": job["id"],
        "event": job["event"],
        "log": base64.b64encode(data).decode(),
        "log_offset": offset,
    }
    return server.worker_call("heartbeat", body)


@pytest.mark.parametrize("driver", ["pymysql", "mysqlclient"])
def test_log_from_either_server_while_the_worker_alternates(
    make_server: Any, mariadb: Any, driver: str
) -> None:
    if driver == "mysqlclient":
        require(
            importlib.util.find_spec("MySQLdb") is not None,
            "mysqlclient not installed: apt-get install libmariadb-dev pkg-config; pip install mysqlclient",
        )
    a, b, _ = two_servers(make_server, mariadb, db_mysql_driver=driver)
    job_id = a.submit(title="frame", command="render")
    job = a.worker_call("pickjob", {"name": "w1"})["job"]
    assert job["id"] == job_id
    expected = b""
    followed = b""  # what a reader following the log live through the *other* server saw
    next_offset = 0
    for i in range(40):
        writer, reader = (a, b) if i % 2 == 0 else (b, a)
        chunk = f"line {i:03d} é\n".encode()
        beat = _beat(writer, "w1", job, len(expected), chunk)
        assert beat["kill"] is False
        expected += chunk
        # Live follow: the other server has the bytes at once (no per-server state).
        page = reader.api("GET", f"/api/jobs/{job_id}/log?offset={next_offset}&limit=100000")
        assert page["size"] == len(expected)
        followed += page["data"].encode()
        next_offset = page["next"]
        # A chunk sent again (a retried heartbeat, to the other server) is not written twice.
        if i % 7 == 3:
            _beat(reader, "w1", job, len(expected) - len(chunk), chunk)
    assert followed == expected
    for server in (a, b):
        assert server.api("GET", f"/api/jobs/{job_id}/log") == expected.decode()
        page = server.api("GET", f"/api/jobs/{job_id}/log?offset=12&limit=24")  # lines 1 and 2
        assert (page["offset"], page["next"], page["data"].encode()) == (12, 36, expected[12:36])
        tail = server.api("GET", f"/api/jobs/{job_id}/log?tail=30")
        assert tail["size"] == len(expected) and expected.endswith(tail["data"].encode())
    end = {
        "name": "w1",
        "job_id": job_id,
        "event": job["event"],
        "exit_code": 0,
        "log": base64.b64encode(b"done\n").decode(),
        "log_offset": len(expected),
    }
    b.worker_call("endjob", end)
    expected += b"done\n"
    assert a.job(job_id)["state"] == "FINISHED"
    assert a.api("GET", f"/api/jobs/{job_id}/log") == b.api("GET", f"/api/jobs/{job_id}/log")
    assert a.api("GET", f"/api/jobs/{job_id}/log").encode().startswith(expected)
    # No server wrote a local log file: the log lives in the database.
    assert not list(a.datadir.glob("logs/*.log")) and not list(b.datadir.glob("logs/*.log"))


def test_deleting_a_job_deletes_its_log_everywhere(make_server: Any, mariadb: Any) -> None:
    a, b, db = two_servers(make_server, mariadb)
    job_id = a.submit(title="frame", command="render")
    job = a.worker_call("pickjob", {"name": "w1"})["job"]
    _beat(a, "w1", job, 0, b"some output\n")
    assert b.api("GET", f"/api/jobs/{job_id}/log").startswith("some output")
    a.worker_call("endjob", {"name": "w1", "job_id": job_id, "event": job["event"], "exit_code": 0})
    b.api("DELETE", "/api/jobs", [job_id])
    for server in (a, b):
        server.api("GET", f"/api/jobs/{job_id}/log", expect=404)
    assert _sql(
        mariadb, db["db_mysql_base"], "SELECT COUNT(*) FROM job_logs WHERE job_id = %s", (job_id,)
    ) == [(0,)]


def test_maxlogsize_holds_across_servers(make_server: Any, mariadb: Any) -> None:
    a, b, _ = two_servers(make_server, mariadb, maxlogsize=1)
    job_id = a.submit(title="chatty", command="yes")
    job = a.worker_call("pickjob", {"name": "w1"})["job"]
    chunk = b"y" * 200_000
    sent = 0
    for i in range(8):  # 1.6 MB through both servers, the cap is 1 MB
        _beat(a if i % 2 else b, "w1", job, sent, chunk)
        sent += len(chunk)
    for server in (a, b):
        page = server.api("GET", f"/api/jobs/{job_id}/log?tail=200")
        assert "log truncated" in page["data"]
        assert 1024 * 1024 < page["size"] < 1024 * 1024 + 200
        head = server.api("GET", f"/api/jobs/{job_id}/log?offset=0&limit={1024 * 1024}")
        assert head["data"] == "y" * (1024 * 1024)


def test_registration_storm_through_two_servers(make_server: Any, mariadb: Any) -> None:
    """2,000 new workers (each with a tag of its own and shared new ones) and 400 submissions
    with new tags, all at once through both servers: not one error, one number per name."""
    a, b, db = two_servers(make_server, mariadb, threads=32)
    errors: list[str] = []
    lock = threading.Lock()
    names = [f"storm-{i:04d}" for i in range(2000)]

    def register(chunk: list[str], k: int) -> None:
        servers = [a.view(), b.view()]
        for j, name in enumerate(chunk):
            server = servers[(j + k) % 2]  # consecutive registrations alternate servers
            body = {"name": name, "affinity": f"own-{name},pool-{j % 7},gpu"}
            r = server.request("POST", "/workers/pickjob", body)
            if r.status_code != 200:
                with lock:
                    errors.append(f"{name}: {r.status_code} {r.text[:200]}")

    def submit(k: int) -> None:
        servers = [a.view(), b.view()]
        for j in range(10):
            job = {"title": f"s{k}-{j}", "command": "true", "affinity": f"sub-{k}-{j},shared-{j % 3},gpu"}
            r = servers[(j + k) % 2].request("PUT", "/api/jobs", job)
            if r.status_code != 200:
                with lock:
                    errors.append(f"submit {k}/{j}: {r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=register, args=(names[k::40], k)) for k in range(40)]
    threads += [threading.Thread(target=submit, args=(k,)) for k in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, f"{len(errors)} errors, first: {errors[:5]}"
    workers = a.api("GET", "/api/workers")
    assert sum(1 for w in workers if w["name"].startswith("storm-")) == 2000
    assert a.api("GET", "/api/jobs?limit=1")["total"] == 400
    registry = b.api("GET", "/api/affinities")
    counts = Counter(registry.values())
    assert max(counts.values()) == 1, [n for n, c in counts.items() if c > 1][:10]
    wanted = {f"own-{n}" for n in names} | {f"pool-{i}" for i in range(7)} | {"gpu"}
    wanted |= {f"sub-{k}-{j}" for k in range(40) for j in range(10)} | {f"shared-{j}" for j in range(3)}
    assert wanted <= set(counts)
    rows = _sql(mariadb, db["db_mysql_base"], "SELECT COUNT(*), COUNT(DISTINCT name) FROM affinities")
    assert rows[0][0] == rows[0][1]


def test_leases_move_to_the_survivor_when_a_server_dies(make_server: Any, mariadb: Any) -> None:
    """kill -9 of the server holding the reaper lease: the other takes the lease over and reaps
    the silent worker's job back to WAITING; nothing is lost, nothing dispatched twice."""
    a, b, db = two_servers(make_server, mariadb)
    base = db["db_mysql_base"]
    ids = a.api("PUT", "/api/jobs", [{"title": f"f{i}", "command": "true"} for i in range(20)])

    def holder() -> str:
        rows = _sql(mariadb, base, "SELECT holder FROM leases WHERE name = 'reaper'")
        return str(rows[0][0]) if rows else ""

    first = wait_for(holder, timeout=15, what="a reaper lease")
    pid_of = {a: a.proc.pid, b: b.proc.pid}
    dying, survivor = (a, b) if f":{pid_of[a]}:" in first else (b, a)
    assert f":{pid_of[dying]}:" in first
    # A worker takes a job through the server about to die, then goes silent with it.
    lost = dying.worker_call("pickjob", {"name": "silent"})["job"]
    dying.stop()  # SIGKILL
    taken = wait_for(lambda: (h := holder()) and f":{pid_of[survivor]}:" in h, timeout=30, what="the lease")
    assert taken
    # The survivor's reaper times the silent worker out and puts its job back.
    wait_for(lambda: survivor.job(lost["id"])["state"] == "WAITING", timeout=30, what="the job requeued")
    handed: list[int] = []
    job = survivor.worker_call("pickjob", {"name": "alive"})["job"]
    while job is not None:
        handed.append(job["id"])
        job = survivor.worker_call(
            "endjob",
            {"name": "alive", "job_id": job["id"], "event": job["event"], "exit_code": 0, "pick": True},
        )["job"]
    assert sorted(handed) == sorted(ids)  # the lost job included, none twice
    assert survivor.api("GET", "/api/jobs?state=FINISHED&limit=1")["total"] == 20


def test_a_limit_is_never_oversubscribed_by_two_servers(make_server: Any, mariadb: Any) -> None:
    """40 scripted workers alternate between the two servers, picking jobs that need `nuke:1`
    of a limit of 3 and ending them: never more than 3 such jobs run at once (seen by the
    workers and by a sampler reading the database), every job runs once, nothing is left held."""
    a, b, db = two_servers(make_server, mariadb, threads=32)
    base = db["db_mysql_base"]
    a.api("POST", "/api/limits", {"nuke": 3})
    ids = a.api(
        "PUT", "/api/jobs", [{"title": f"n{i}", "command": "true", "limits": "nuke:1"} for i in range(120)]
    )
    holding = 0
    peak = 0
    sampled = 0
    lock = threading.Lock()
    errors: list[str] = []
    ran: list[int] = []
    done = threading.Event()

    def work(k: int) -> None:
        nonlocal holding, peak
        servers = [a.view(), b.view()]
        name = f"lw-{k}"
        for j in range(400):
            if done.is_set():
                return
            server = servers[(j + k) % 2]
            r = server.request("POST", "/workers/pickjob", {"name": name})
            if r.status_code != 200:
                errors.append(f"pick {r.status_code} {r.text[:200]}")
                return
            job = r.json()["job"]
            if job is None:
                if len(ran) >= len(ids):
                    return
                continue
            with lock:
                holding += 1  # after the grant: never above what the servers have granted
                peak = max(peak, holding)
                ran.append(job["id"])
            other = servers[(j + k + 1) % 2]
            other.request(
                "POST", "/workers/heartbeat", {"name": name, "job_id": job["id"], "event": job["event"]}
            )
            with lock:
                holding -= 1  # before the release: never below what is held
            body = {"name": name, "job_id": job["id"], "event": job["event"], "exit_code": 0}
            r = other.request("POST", "/workers/endjob", body)
            if r.status_code != 200:
                errors.append(f"end {r.status_code} {r.text[:200]}")

    def sample() -> None:
        nonlocal sampled
        while not done.is_set():
            rows = _sql(mariadb, base, "SELECT COUNT(*) FROM jobs WHERE state = 'WORKING' AND limits <> ''")
            sampled = max(sampled, int(rows[0][0]))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(40)]
    sampler = threading.Thread(target=sample)
    sampler.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    done.set()
    sampler.join(30)
    assert not errors, errors[:5]
    assert sorted(ran) == sorted(ids)  # each job ran once
    assert peak <= 3 and sampled <= 3, (peak, sampled)
    assert peak == 3  # the limit was actually reached: the test did contend
    assert a.api("GET", "/api/limits")[0]["in_use"] == 0
