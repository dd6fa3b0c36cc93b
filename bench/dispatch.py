"""Dispatch benchmark: a real server process, a farm-shaped queue, simulated workers.

Prints JSON lines. The queue: groups of 100 frames, 5 affinity tags (inherited from the
group, some frames add one), mixed priorities, and every 10th group depending on the one
before. N simulated workers loop `endjob(pick=true)` over keep-alive HTTP, running nothing.
Baseline, in the same run and with the same client: the server's trivial route
(`GET /api/ping`). Also measured: pick latency with 1,000 vs 100,000 jobs queued.

    python bench/dispatch.py [--jobs 100000] [--workers 8] [--seconds 10] [--mysql]
                             [--mysql-driver pymysql|mysqlclient] [--skip-sqlite] [--blocked N]
                             [--studio]

With `--blocked N` each simulated worker first fails N frames (hostfails = 1, blockscope =
group), so it is blocked from the N groups first in dispatch order and every later pick
skips them (docs/failures.md): the cost of a blocklist on the pick.

With --studio the queue also has studio scheduling (docs/scheduling.md): the frames of every
4th group need `nuke:1` of a limit of 4 (so the limit is full most of the time and the pick
passes those frames over), every 10th group waits for the one before frame by frame instead
of as a whole, and fair share is on (seven users, one of weight 3); and resource requests
(docs/scheduling.md): every 3rd group asks for 2 cores and 4,000 MB, the gpu-tagged frames
for a GPU, one group in 50 for a whole host; the simulated workers offer 8 cores and
32,000 MB, a third of them a GPU too, so a GPU frame fits only there.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

TAGS = ["linux", "maya", "nuke", "houdini", "gpu"]
# Each simulated worker offers two rule lines; together they cover every tag set we make.
RULES = [
    "maya,linux,gpu\nlinux,nuke,houdini,gpu,maya",
    "nuke,linux\nlinux,maya,houdini,gpu,nuke",
    "houdini,gpu,linux\nlinux,maya,nuke,houdini,gpu",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A coalition-server process in a temporary directory."""

    def __init__(self, keys: dict[str, Any], extra_ini: str = ""):
        self.dir = tempfile.mkdtemp(prefix="coal-bench-")
        self.port = free_port()
        ini = os.path.join(self.dir, "coalition.ini")
        conf = {
            "listen": "127.0.0.1",
            "port": self.port,
            "datadir": self.dir,
            "discovery": 0,
            "timeout": 60,
            **keys,
        }
        with open(ini, "w") as f:
            f.write("[server]\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()) + extra_ini)
        if keys.get("db_type") == "mysql":  # one database for the whole run: each phase starts empty
            for flag in ("--init-if-needed", "--reset"):
                subprocess.run(
                    [sys.executable, "-m", "coalition.server.main", "-c", ini, flag, "--yes"],
                    check=True,
                    capture_output=True,
                )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "coalition.server.main", "-c", ini],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if call(self.conn(), "GET", "/api/ping")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def cpu(self) -> float:
        """CPU seconds the server process has used so far (user + system)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def call(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    return resp.status, json.loads(raw) if raw else None


STUDIO_INI = "[limits]\nnuke = 4\n[fairshare]\nartist0 = 3\n"
STUDIO_KEYS = {"fairshare": "user"}


def fill(server: Server, jobs: int, rng: random.Random, studio: bool = False) -> float:
    """Queue `jobs` frames in groups of 100; returns the seconds it took."""
    conn = server.conn()
    start = time.perf_counter()
    previous = None
    for g in range(max(1, jobs // 100)):
        tag = TAGS[g % 4]  # gpu only ever comes as an extra per-frame tag
        group = {
            "title": f"shot{g:05d}",
            "command": "",
            "priority": rng.choice([500, 1000, 1000, 2000]),
            "affinity": tag,
            "user": f"artist{g % 7}",
        }
        if studio and g % 3 == 1:
            group.update(cores=2, memory=4000)
        if studio and g % 50 == 7:
            group["exclusive"] = True
        if previous is not None and g % 10 == 9:
            if studio:
                group["frame_dep"] = previous  # frame i waits for frame i of the group before
            else:
                group["dependencies"] = [previous]
        status, gid = call(conn, "PUT", "/api/jobs", group)
        assert status == 200, gid
        frames = [
            {
                "title": f"frame {i}",
                "command": f"render -f {i}",
                "parent": gid,
                "priority": rng.randint(0, 2000),
                "affinity": "gpu" if i % 10 == 0 else "",
                **({"gpus": 1} if studio and i % 10 == 0 else {}),
                **({"first_frame": i, "last_frame": i} if studio else {}),
                **({"limits": "nuke:1"} if studio and g % 4 == 2 else {}),
            }
            for i in range(min(100, jobs - g * 100))
        ]
        status, ids = call(conn, "PUT", "/api/jobs", frames)
        assert status == 200, ids
        previous = gid
    return time.perf_counter() - start


def trivial_rate(server: Server, workers: int, seconds: float) -> float:
    """Requests per second on GET /api/ping with `workers` keep-alive clients."""
    counts = [0] * workers
    stop = time.monotonic() + seconds

    def loop(i: int) -> None:
        conn = server.conn()
        while time.monotonic() < stop:
            call(conn, "GET", "/api/ping")
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(workers)]
    begin = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - begin)


def offer(i: int) -> dict[str, Any]:
    """What simulated worker i offers (--studio): a host running one job at a time."""
    gpus = 1 if i % 3 == 0 else 0
    return {
        "resources": {"cores": 8, "memory": 32000, "gpus": gpus},
        "free": {"cores": 8, "memory": 32000, "gpus": gpus, "bare": True, "whole": True},
        "gpureserve": "off",
    }


def dispatch(
    server: Server, workers: int, seconds: float, max_jobs: int | None = None, studio: bool = False
) -> dict[str, Any]:
    """Simulated workers doing pick -> endjob(pick) for `seconds`; completed jobs/s and latencies."""
    latencies: list[list[float]] = [[] for _ in range(workers)]
    done = [0] * workers
    stop = time.monotonic() + seconds
    budget = [max_jobs if max_jobs is not None else 10**12]
    lock = threading.Lock()

    def loop(i: int) -> None:
        conn = server.conn()
        name = f"bench-{i}"
        host = offer(i) if studio else {}
        t0 = time.perf_counter()
        status, out = call(
            conn, "POST", "/workers/pickjob", {"name": name, "affinity": RULES[i % len(RULES)], **host}
        )
        latencies[i].append(time.perf_counter() - t0)
        job = out["job"]
        while job is not None:
            with lock:
                if time.monotonic() >= stop or budget[0] <= 0:
                    break
                budget[0] -= 1
            t0 = time.perf_counter()
            status, out = call(
                conn,
                "POST",
                "/workers/endjob",
                {
                    "name": name,
                    "job_id": job["id"],
                    "event": job["event"],
                    "exit_code": 0,
                    "pick": True,
                    **host,
                },
            )
            latencies[i].append(time.perf_counter() - t0)
            assert status == 200, out
            done[i] += 1
            job = out["job"]

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(workers)]
    begin = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - begin
    lat = sorted(x for per in latencies for x in per)
    return {
        "completed": sum(done),
        "seconds": round(elapsed, 2),
        "jobs_per_s": round(sum(done) / elapsed, 1),
        "pick_p50_ms": round(statistics.median(lat) * 1000, 2),
        "pick_p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 2),
    }


def block(server: Server, workers: int, groups: int) -> None:
    """Each simulated worker fails `groups` frames, one per group (hostfails = 1)."""

    def loop(i: int) -> None:
        conn = server.conn()
        name = f"bench-{i}"
        for _ in range(groups):
            status, out = call(
                conn, "POST", "/workers/pickjob", {"name": name, "affinity": RULES[i % len(RULES)]}
            )
            job = out["job"]
            if job is None:
                return
            body = {"name": name, "job_id": job["id"], "event": job["event"], "exit_code": 1}
            status, out = call(conn, "POST", "/workers/endjob", body)
            assert status == 200, out

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run(label: str, keys: dict[str, Any], args: argparse.Namespace) -> None:
    rng = random.Random(7)
    if args.blocked:
        keys = {**keys, "hostfails": 1, "blockscope": "group", "sickjobs": 0}
    extra = STUDIO_INI if args.studio else ""
    keys = {**keys, **(STUDIO_KEYS if args.studio else {})}
    small = Server(keys, extra)
    try:
        fill(small, 1000, rng, args.studio)
        small_run = dispatch(small, args.workers, seconds=60, max_jobs=600, studio=args.studio)
    finally:
        small.stop()
    big = Server(keys, extra)
    try:
        fill_s = fill(big, args.jobs, rng, args.studio)
        print(
            json.dumps(
                {
                    "bench": "dispatch",
                    "db": label,
                    "phase": "fill",
                    "jobs": args.jobs,
                    "seconds": round(fill_s, 1),
                    "jobs_per_s": round(args.jobs / fill_s),
                }
            ),
            flush=True,
        )
        if args.blocked:
            block(big, args.workers, args.blocked)
        cpu0 = big.cpu()
        baseline = trivial_rate(big, args.workers, 3.0)
        cpu1 = big.cpu()
        big_probe = dispatch(big, args.workers, seconds=60, max_jobs=600, studio=args.studio)
        cpu2 = big.cpu()
        steady = dispatch(big, args.workers, seconds=args.seconds, studio=args.studio)
        cpu3 = big.cpu()
        baseline_after = trivial_rate(big, args.workers, 3.0)
        # Server CPU per request: immune to the client (same machine) being the bottleneck.
        trivial_cpu_ms = (cpu1 - cpu0) / max(1, baseline * 3.0) * 1000
        dispatch_cpu_ms = (cpu3 - cpu2) / max(1, steady["completed"]) * 1000
    finally:
        big.stop()
    trivial = (baseline + baseline_after) / 2
    print(
        json.dumps(
            {
                "bench": "dispatch",
                "db": label,
                "studio": args.studio,
                "workers": args.workers,
                "queued": args.jobs,
                "blocked_groups_per_worker": args.blocked,
                "completed_jobs_per_s": steady["jobs_per_s"],
                "pick_p50_ms": steady["pick_p50_ms"],
                "pick_p99_ms": steady["pick_p99_ms"],
                "trivial_route_per_s": round(trivial, 1),
                "dispatch_vs_trivial": round(steady["jobs_per_s"] / trivial, 3),
                "server_cpu_ms_per_trivial_request": round(trivial_cpu_ms, 3),
                "server_cpu_ms_per_dispatched_job": round(dispatch_cpu_ms, 3),
                "cpu_ratio_trivial_vs_dispatch": round(trivial_cpu_ms / dispatch_cpu_ms, 3)
                if dispatch_cpu_ms
                else None,
                "pick_p50_ms_1k_queued": small_run["pick_p50_ms"],
                "pick_p50_ms_100k_queued": big_probe["pick_p50_ms"],
                "pick_p99_ms_1k_queued": small_run["pick_p99_ms"],
                "pick_p99_ms_100k_queued": big_probe["pick_p99_ms"],
                "latency_ratio_100k_vs_1k": round(big_probe["pick_p50_ms"] / small_run["pick_p50_ms"], 2),
                "targets": {
                    "jobs_per_s": 500,
                    "dispatch_vs_trivial": 0.7,
                    "pick_p99_ms": 50,
                    "latency_ratio": 1.5,
                },
            }
        ),
        flush=True,
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=100000)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--blocked", type=int, default=0, help="groups each worker is blocked from first")
    p.add_argument("--mysql", action="store_true", help="also run on a private MariaDB (needs mariadbd)")
    p.add_argument(
        "--mysql-driver",
        choices=["pymysql", "mysqlclient"],
        default="pymysql",
        help="db_mysql_driver of the MariaDB run (mysqlclient: the optional C client)",
    )
    p.add_argument("--skip-sqlite", action="store_true", help="only the MariaDB run")
    p.add_argument(
        "--studio",
        action="store_true",
        help="limits, frame dependencies, fair share and resource requests too",
    )
    args = p.parse_args()
    if not args.skip_sqlite:
        run("sqlite", {}, args)
    if args.mysql:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from tests.support import private_mariadb

        with private_mariadb("512M") as server:
            server.root_sql(
                "CREATE DATABASE coalition CHARACTER SET utf8mb4",
                "CREATE USER 'coal'@'127.0.0.1' IDENTIFIED BY 'coalpw'",
                "GRANT ALL ON coalition.* TO 'coal'@'127.0.0.1'",
            )
            db = {
                "db_type": "mysql",
                "db_mysql_host": server.host,
                "db_mysql_port": server.port,
                "db_mysql_user": "coal",
                "db_mysql_password": "coalpw",
                "db_mysql_base": "coalition",
                "db_mysql_driver": args.mysql_driver,
            }
            run("mysql" if args.mysql_driver == "pymysql" else "mysql+mysqlclient", db, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
