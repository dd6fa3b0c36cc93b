"""Scale-out benchmark: one, then two server processes on one private MariaDB.

Prints JSON lines. Phases:

1. **dispatch**, with 1 then 2 servers: a queue of `--jobs` frames, `--workers` simulated
   workers looping `endjob(pick=true)` (running nothing). Each worker has a home server
   (spread evenly); every 4th alternates between the servers on each request, as behind a
   round-robin balancer. Reported: completed jobs/s, the two-server speed-up, and the CPU
   seconds each process used (servers, mariadbd, this client), because on a machine without
   the cores for two servers the speed-up is capped by the cores, not by Coalition: the CPU
   per job says what more cores would give.
2. **heartbeats**: `--hb-workers` simulated workers (5,000 by default), each holding a job,
   heartbeating every `--interval` s with a log chunk, spread over both servers. Reported:
   latency p50/p99, errors, and how late the client was (if the client cannot keep up, the
   figures are the client's, not the servers').
3. **kill**: two servers, dispatch as in 1, and one server is killed with SIGKILL halfway;
   its workers move to the survivor (as a balancer's health check would move them).

Every phase counts double dispatches (a job handed out twice) and lost jobs (not FINISHED
at the end): both must be 0.

The simulated heartbeats speak `--protocol per-host` by default: one POST /workers/sync per
worker process of `--per-host` slots, as the Coalition 5 worker does; `per-slot` is the
per-slot heartbeat of Coalition 4 workers (and of Coalition 5 before the sync).

    python bench/scaleout.py [--jobs 3000] [--workers 16] [--hb-workers 5000] [--hb-seconds 10]
                             [--driver pymysql|mysqlclient] [--skip-heartbeats]
                             [--protocol per-host|per-slot] [--per-host 4]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests.support import free_port, private_mariadb  # noqa: E402 - bench scripts run as files


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Server:
    """A coalition-server process on one shared database."""

    def __init__(self, db: dict[str, Any], threads: int = 32):
        self.dir = tempfile.mkdtemp(prefix="coal-scaleout-")
        self.port = free_port()
        self.ini = os.path.join(self.dir, "coalition.ini")
        conf = {
            "listen": "127.0.0.1",
            "port": self.port,
            "datadir": self.dir,
            "discovery": 0,
            "timeout": 30,
            "threads": threads,
            **db,
        }
        with open(self.ini, "w") as f:
            f.write("[server]\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))
        self.proc: subprocess.Popen[bytes] | None = None

    def admin(self, *flags: str) -> None:
        cmd = [sys.executable, "-m", "coalition.server.main", "-c", self.ini, *flags, "--yes"]
        subprocess.run(cmd, check=True, capture_output=True)

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "coalition.server.main", "-c", self.ini],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if call(self.conn(), "GET", "/api/ping")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def cpu(self) -> float:
        assert self.proc is not None
        try:
            return cpu_of(self.proc.pid)
        except FileNotFoundError:
            return float("nan")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def call(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    return resp.status, json.loads(raw) if raw else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] if ordered else float("nan")


def fill(server: Server, jobs: int) -> tuple[list[int], list[int]]:
    """`jobs` frames in groups of 100; returns the frame ids and the group ids."""
    conn = server.conn()
    ids: list[int] = []
    groups: list[int] = []
    for g in range(max(1, jobs // 100)):
        status, gid = call(conn, "PUT", "/api/jobs", {"title": f"shot{g:04d}", "command": ""})
        assert status == 200, gid
        groups.append(gid)
        frames = [
            {"title": f"f{i}", "command": "true", "parent": gid} for i in range(min(100, jobs - g * 100))
        ]
        status, out = call(conn, "PUT", "/api/jobs", frames)
        assert status == 200, out
        ids += out
    return ids, groups


class Dispatch:
    """Simulated workers draining the queue through `servers` (a list that may lose one)."""

    def __init__(self, servers: list[Server], workers: int):
        self.servers = servers
        self.workers = workers
        self.handed: Counter[int] = Counter()
        self.done = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.dead: set[int] = set()  # indexes of killed servers

    def _server(self, i: int, k: int) -> int:
        n = len(self.servers)
        home = (i + k) % n if i % 4 == 3 else i % n  # every 4th worker alternates
        while home in self.dead:
            home = (home + 1) % n
        return home

    def loop(self, i: int) -> None:
        name = f"sim-{i:03d}"
        conns: dict[int, http.client.HTTPConnection] = {}
        job: dict[str, Any] | None = None
        k = 0
        while True:
            s = self._server(i, k)
            k += 1
            conn = conns.get(s) or self.servers[s].conn()
            conns[s] = conn
            if job is None:
                body: dict[str, Any] = {"name": name}
                route = "/workers/pickjob"
            else:
                body = {
                    "name": name,
                    "job_id": job["id"],
                    "event": job["event"],
                    "exit_code": 0,
                    "pick": True,
                }
                route = "/workers/endjob"
            try:
                status, out = call(conn, "POST", route, body)
            except (OSError, http.client.HTTPException):
                conns.pop(s, None)  # a dead server: the next try goes elsewhere (same request)
                time.sleep(0.05)
                k -= 1
                continue
            if status != 200:
                with self.lock:
                    self.errors.append(f"{route} {status} {out}")
                return
            with self.lock:
                if job is not None:
                    self.done += 1
                nxt = out["job"]
                if nxt is not None:
                    self.handed[nxt["id"]] += 1
            if nxt is None:
                return
            job = nxt

    def run(self, on_half: Callable[[], None] | None = None, total: int = 0) -> float:
        threads = [threading.Thread(target=self.loop, args=(i,)) for i in range(self.workers)]
        begin = time.perf_counter()
        for t in threads:
            t.start()
        if on_half is not None:
            while self.done < total // 2 and any(t.is_alive() for t in threads):
                time.sleep(0.01)
            on_half()
        for t in threads:
            t.join()
        return time.perf_counter() - begin


def finished(server: Server, groups: list[int]) -> int:
    """Frames FINISHED, from their groups' counters."""
    conn = server.conn()
    return sum(int(call(conn, "GET", f"/api/jobs/{g}")[1]["total_finished"]) for g in groups)


def dispatch_phase(
    db: dict[str, Any], n: int, args: argparse.Namespace, kill: bool = False
) -> dict[str, Any]:
    servers = [Server(db) for _ in range(n)]
    servers[0].admin("--init-if-needed")
    servers[0].admin("--reset")
    try:
        for s in servers:
            s.start()
        ids, groups = fill(servers[0], args.jobs)
        mariadbd = args.mariadbd_pid
        cpu0 = [s.cpu() for s in servers] + [cpu_of(mariadbd), self_cpu()]
        d = Dispatch(servers, args.workers)

        killed_cpu: list[float] = []

        def half() -> None:
            d.dead.add(1)
            killed_cpu.append(servers[1].cpu())  # what it used until its death
            servers[1].kill()

        seconds = d.run(half if kill else None, len(ids))
        cpu1 = [s.cpu() for s in servers] + [cpu_of(mariadbd), self_cpu()]
        if killed_cpu:
            cpu1[1] = killed_cpu[0]
        live = servers[0]
        deadline = time.monotonic() + 60
        while finished(live, groups) < len(ids) and time.monotonic() < deadline:
            # Jobs claimed by the killed server's last answers are reaped back (timeout 30 s).
            Dispatch([live], 4).run()
            time.sleep(0.5)
        done = finished(live, groups)
        used = [round(b - a, 2) for a, b in zip(cpu0, cpu1, strict=True)]
        return {
            "bench": "scaleout",
            "phase": "kill" if kill else "dispatch",
            "servers": n,
            "workers": args.workers,
            "jobs": len(ids),
            "seconds": round(seconds, 2),
            "completed_jobs_per_s": round(d.done / seconds, 1),
            "double_dispatches": sum(c - 1 for c in d.handed.values() if c > 1),
            "lost_jobs": len(ids) - done,
            "errors": len(d.errors),
            "cpu_s": {
                **{f"server{i}": used[i] for i in range(n)},
                "mariadbd": used[n],
                "client": used[n + 1],
            },
            "server_cpu_ms_per_job": round(sum(used[:n]) / max(1, d.done) * 1000, 3),
        }
    finally:
        for s in servers:
            s.stop()


def heartbeat_phase(db: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    servers = [Server(db, threads=64) for _ in range(2)]
    servers[0].admin("--reset")
    try:
        for s in servers:
            s.start()
        n = args.hb_workers
        conn = servers[0].conn()
        for i in range(0, n, 1000):
            status, out = call(
                conn,
                "PUT",
                "/api/jobs",
                [{"title": f"h{j}", "command": "sleep 1000"} for j in range(i, min(n, i + 1000))],
            )
            assert status == 200, out
        runs: list[tuple[int, int]] = []
        conns = [s.conn() for s in servers]
        for i in range(n):
            status, out = call(conns[i % 2], "POST", "/workers/pickjob", {"name": f"hb{i:05d}"})
            job = out["job"]
            runs.append((job["id"], job["event"]))
        request = REQUESTS[args.protocol]
        units: list[Any] = list(runs)
        if args.protocol == "per-host":
            # Hosts of --per-host slots: one sync per host carries every slot's heartbeat.
            step = max(1, args.per_host)
            units = [[(j, *runs[j]) for j in range(h, min(h + step, n))] for h in range(0, n, step)]
        figures = fixed_cadence(servers, units, request, args)
        return {
            "bench": "scaleout",
            "phase": "heartbeats",
            "servers": 2,
            "slots": n,
            "per_host": args.per_host if args.protocol == "per-host" else 1,
            **figures,
        }
    finally:
        for s in servers:
            s.stop()


def per_slot_heartbeat(i: int, k: int, run: Any, offset: Any) -> tuple[str, dict[str, Any], Any]:
    """Today's protocol: one heartbeat per slot, with its job, a log chunk and metrics."""
    chunk = f"frame {k} tile {i}\nPROGRESS:{k % 100}\n".encode()
    body = {
        "name": f"hb{i:05d}",
        "job_id": run[0],
        "event": run[1],
        "log_offset": offset,
        "log": base64.b64encode(chunk).decode(),
        "cpu": [12.5] * 8,
        "free_memory": 8000,
        "total_memory": 16000,
    }
    return "/workers/heartbeat", body, offset + len(chunk)


def per_host_sync(i: int, k: int, host: Any, offset: Any) -> tuple[str, dict[str, Any], Any]:
    """The Coalition 5 worker's protocol: one POST /workers/sync per worker process, carrying
    every slot's heartbeat (`host` is its slots' (index, job, event); `offset` their log
    offsets, kept in a dict by slot index)."""
    offsets = offset if isinstance(offset, dict) else {}
    slots = []
    for j, job_id, event in host:
        chunk = f"frame {k} tile {j}\nPROGRESS:{k % 100}\n".encode()
        slots.append({"name": f"hb{j:05d}", "job_id": job_id, "event": event,
                      "log_offset": offsets.get(j, 0), "log": base64.b64encode(chunk).decode()})  # fmt: skip
        offsets[j] = offsets.get(j, 0) + len(chunk)
    body = {"slots": slots, "interval": 2.0, "cpu": [12.5] * 8, "free_memory": 8000, "total_memory": 16000}
    return "/workers/sync", body, offsets


# A function (unit index, round, unit, log offset state) -> (route, body, new offset state):
# a unit is one slot (per-slot) or one worker process's slots (per-host).
REQUESTS: dict[str, Callable[[int, int, Any, Any], tuple[str, dict[str, Any], Any]]] = {
    "per-slot": per_slot_heartbeat,
    "per-host": per_host_sync,
}


def fixed_cadence(
    servers: list[Server], runs: list[Any], request: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """Each worker heartbeats every `interval` s on its server (half on each), evenly spread."""
    import queue

    n, interval = len(runs), args.interval
    rounds = max(1, int(args.hb_seconds / interval))
    due: queue.Queue[tuple[float, int, int] | None] = queue.Queue()
    latencies: list[float] = []
    lateness: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    offsets: list[Any] = [0] * n
    start = time.perf_counter() + 0.5

    def sender() -> None:
        conns = [s.conn() for s in servers]
        while (item := due.get()) is not None:
            at, i, k = item
            route, body, offsets[i] = request(i, k, runs[i], offsets[i])
            t0 = time.perf_counter()
            try:
                status, _ = call(conns[i % 2], "POST", route, body)
            except (OSError, http.client.HTTPException) as exc:
                conns[i % 2] = servers[i % 2].conn()
                status = str(exc)  # type: ignore[assignment]
            t1 = time.perf_counter()
            with lock:
                latencies.append(t1 - t0)
                lateness.append(t0 - at)
                if status != 200:
                    errors.append(str(status))

    threads = [threading.Thread(target=sender) for _ in range(args.hb_threads)]
    for t in threads:
        t.start()
    cpu0 = [s.cpu() for s in servers]
    began = time.perf_counter()
    for k in range(rounds):
        for i in range(n):
            at = start + k * interval + i * interval / n
            delay = at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            due.put((at, i, k))
    for _ in threads:
        due.put(None)
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    cpu1 = [s.cpu() for s in servers]
    ms = [x * 1000 for x in latencies]
    return {
        "protocol": args.protocol,
        "workers": n,
        "interval_s": interval,
        "requests": len(ms),
        "errors": len(errors),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "client_late_p99_ms": round(percentile([x * 1000 for x in lateness], 0.99), 2),
        # What the servers really answered per second (behind schedule, it is less than asked).
        "achieved_rate_per_s": round(len(ms) / wall, 1),
        "target_rate_per_s": round(n / interval, 1),
        "wall_s": round(wall, 1),
        "server_cpu_s": [round(b - a, 2) for a, b in zip(cpu0, cpu1, strict=True)],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=3000)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--driver", choices=["pymysql", "mysqlclient"], default="pymysql")
    p.add_argument("--hb-workers", type=int, default=5000)
    p.add_argument("--hb-seconds", type=float, default=10.0)
    p.add_argument("--hb-threads", type=int, default=64)
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--protocol", choices=sorted(REQUESTS), default="per-host")
    p.add_argument("--per-host", type=int, default=4, help="slots per worker process (per-host)")
    p.add_argument("--skip-heartbeats", action="store_true")
    args = p.parse_args(argv)
    with private_mariadb("512M") as server:
        server.root_sql(
            "CREATE DATABASE coalition CHARACTER SET utf8mb4",
            "CREATE USER 'coal'@'127.0.0.1' IDENTIFIED BY 'coalpw'",
            "GRANT ALL ON coalition.* TO 'coal'@'127.0.0.1'",
        )
        with open(os.path.join(os.path.dirname(server.socket), "mysqld.pid")) as f:
            args.mariadbd_pid = int(f.read().strip())
        db = {
            "db_type": "mysql",
            "db_mysql_host": server.host,
            "db_mysql_port": server.port,
            "db_mysql_user": "coal",
            "db_mysql_password": "coalpw",
            "db_mysql_base": "coalition",
            "db_mysql_driver": args.driver,
        }
        one = dispatch_phase(db, 1, args)
        print(json.dumps({**one, "driver": args.driver}), flush=True)
        two = dispatch_phase(db, 2, args)
        print(json.dumps({**two, "driver": args.driver}), flush=True)
        speedup = two["completed_jobs_per_s"] / one["completed_jobs_per_s"]
        per_job = [one["server_cpu_ms_per_job"], two["server_cpu_ms_per_job"]]
        print(
            json.dumps(
                {
                    "bench": "scaleout",
                    "phase": "speedup",
                    "two_vs_one": round(speedup, 2),
                    "cores": os.cpu_count(),
                    "server_cpu_ms_per_job_one_vs_two": per_job,
                    "target_with_the_cores": 1.6,
                }
            ),
            flush=True,
        )
        killed = dispatch_phase(db, 2, args, kill=True)
        print(json.dumps({**killed, "driver": args.driver}), flush=True)
        if not args.skip_heartbeats:
            print(json.dumps({**heartbeat_phase(db, args), "driver": args.driver}), flush=True)
    bad = [r for r in (one, two, killed) if r["double_dispatches"] or r["lost_jobs"] or r["errors"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
