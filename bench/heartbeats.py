"""Heartbeat benchmark: many simulated worker slots heartbeating a real server.

Each simulated slot picks a job first (`sleep` jobs wait in the queue, never really run),
then heartbeats with its job, a log chunk (with a progress line) and its metrics, as a real
worker does: when the server's answer says (`--cadence server`, the default: the server sets
the cadence, `--interval` is the workers' own `sleep`), or every `--interval` seconds. With
`--route sync` (the default) the slots are grouped `--per-host` to a worker process, which
sends one POST /workers/sync for all of them, as the Coalition 5 worker does; `--route
heartbeat` sends one request per slot, as Coalition 4 workers do. Reported: request latency
p50/p99/max, errors, how late the client itself was (if it cannot keep the cadence, the
figures are not the server's), the cadence the server asked for, and, while the load runs,
the time from a pause to the death of a real worker's job process. Baseline, same client,
same run, at the cadence the server set: the server's trivial `GET /api/ping`.

    python bench/heartbeats.py [--workers 5000] [--per-host 4] [--route sync|heartbeat]
                               [--interval 2] [--cadence server|fixed] [--seconds 60] [--quick]

Targets: p99 under 100 ms with no errors for 5,000 slots; pause to kill under 5 s. JSON lines.
`HB_KEYS='{"reaperinterval": 3600}'` adds `[server]` keys, to see what a setting costs;
`HB_SPY=FILE` records the server's GIL holders with py-spy (on PATH) during the sync load.
"""

from __future__ import annotations

import argparse
import base64
import heapq
import http.client
import json
import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e import Farm, call, cpu_seconds  # noqa: E402 - bench scripts run as files, side by side

WARMUP = 15.0  # seconds of start storm left out of the steady figure


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class Load:
    """`workers` clients, each firing first at an even spread over `interval`, then again
    `interval` later, or, with `follow`, when the server's answer says (its `next`, with the
    worker's +-10% jitter, counted from the answer, as the worker's courier does), for
    `seconds` s."""

    def __init__(
        self, port: int, workers: int, interval: float, seconds: float, threads: int, follow: bool = False
    ) -> None:
        self.port = port
        self.workers = workers
        self.interval = interval
        self.seconds = seconds
        self.threads = threads
        self.follow = follow
        self.latencies: list[float] = []
        self.lateness: list[float] = []
        self.sent: list[float] = []  # seconds from the start, per request
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def run(self, request: Any) -> dict[str, Any]:
        """Fire `request(conn, worker_index, round)` on schedule; the figures. `request`
        returns the HTTP status, and with `follow` the seconds the server asked to wait."""
        due: queue.Queue[tuple[float, int, int] | None] = queue.Queue()
        start = time.perf_counter() + 0.5
        end = start + self.seconds
        heap = [(start + i * self.interval / self.workers, i, 0) for i in range(self.workers)]
        heapq.heapify(heap)
        wake = threading.Condition(self.lock)

        def schedule() -> None:
            while True:
                with wake:
                    while True:
                        at, i, k = heap[0] if heap else (end, -1, 0)
                        if at >= end:
                            break
                        delay = at - time.perf_counter()
                        if delay <= 0:
                            heapq.heappop(heap)
                            break
                        wake.wait(delay)
                if at >= end:
                    break
                due.put((at, i, k))
            for _ in range(self.threads):
                due.put(None)

        def sender() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            while True:
                item = due.get()
                if item is None:
                    return
                at, i, k = item
                t0 = time.perf_counter()
                wait = None
                try:
                    status = request(conn, i, k)
                    if isinstance(status, tuple):
                        status, wait = status
                    ok = status == 200
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    status, ok = str(exc), False
                t1 = time.perf_counter()
                if self.follow and wait is not None:
                    again = t1 + wait * (1 + 0.1 * (2 * random.random() - 1))
                else:
                    again = at + self.interval
                with wake:
                    self.latencies.append(t1 - t0)
                    self.lateness.append(t0 - at)
                    self.sent.append(t0 - start)
                    if not ok:
                        self.errors.append(str(status))
                    heapq.heappush(heap, (again, i, k + 1))
                    wake.notify()

        threads = [threading.Thread(target=sender) for _ in range(self.threads)]
        for t in threads:
            t.start()
        schedule()
        for t in threads:
            t.join()
        ms = [x * 1000 for x in self.latencies]
        # The first round fires every client within `interval` (2 s), faster than the cadence
        # the server then sets (4 s for 5,000 slots): a start storm no running farm has.
        # Steady: what was sent after WARMUP seconds.
        steady = [x * 1000 for x, t in zip(self.latencies, self.sent, strict=True) if t >= WARMUP] or [0.0]
        return {
            "requests": len(ms),
            "errors": len(self.errors),
            "p50_ms": round(statistics.median(ms), 2),
            "p99_ms": round(percentile(ms, 0.99), 2),
            "max_ms": round(max(ms), 2),
            "client_late_p99_ms": round(percentile([x * 1000 for x in self.lateness], 0.99), 2),
            "rate_per_s": round(len(ms) / self.seconds, 1),
            f"p99_after_{WARMUP:g}s_ms": round(percentile(steady, 0.99), 2),
        }


def post(conn: http.client.HTTPConnection, path: str, body: dict[str, Any]) -> int:
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status


def start_killable(farm: Farm) -> tuple[int, int]:
    """A real worker (1 slot, default settings) running a job, started before the load so
    that its own start-up does not weigh on the figures: (job id, the job's process id)."""
    pidfile = os.path.join(farm.dir, "job.pid")
    job_id = call(
        farm.port,
        "PUT",
        "/api/jobs",
        {"command": f"echo $$ > {pidfile}; exec sleep 1000", "affinity": "bench-kill", "title": "kill me"},
    )
    farm.procs.append(
        farm._spawn("coalition.worker.main", "-c", farm.ini, "-n", "killbench", "-a", "bench-kill", farm.url)
    )
    deadline = time.monotonic() + 60
    while not (os.path.exists(pidfile) and open(pidfile).read().strip()):
        if time.monotonic() > deadline:
            raise RuntimeError("the real worker did not start its job")
        time.sleep(0.01)
    return job_id, int(open(pidfile).read())


def pause_to_kill(farm: Farm, job_id: int, pid: int) -> float:
    """Seconds from pausing the job to the death of its process on the real worker."""
    start = time.perf_counter()
    call(farm.port, "POST", "/api/pausejobs", [job_id])
    while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split(") ", 1)[1][0] != "Z":
        if time.perf_counter() - start > 60:
            raise RuntimeError("the paused job's process is still alive after 60 s")
        time.sleep(0.005)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=5000, help="simulated worker slots")
    p.add_argument("--per-host", type=int, default=4, help="slots per worker process (sync route)")
    p.add_argument("--route", choices=("sync", "heartbeat"), default="sync")
    p.add_argument("--interval", type=float, default=2.0, help="the workers' own cadence ([worker] sleep)")
    p.add_argument(
        "--cadence",
        choices=("server", "fixed"),
        default="server",
        help="sync when the server's answer says (as workers do), or every --interval regardless",
    )
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=64, help="client threads")
    p.add_argument("--quick", action="store_true", help="a 10 s run (for a smoke test)")
    args = p.parse_args(argv)
    # Stopped by `timeout` or CI (SIGTERM): unwind through the cleanup, leave no server behind.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.quick:
        args.seconds = 10.0
    farm = Farm({"timeout": 120, "threads": 64, **json.loads(os.environ.get("HB_KEYS", "{}"))})
    try:
        # Every simulated worker takes a job, so its heartbeats carry a run (and a log).
        call(
            farm.port,
            "PUT",
            "/api/jobs",
            [{"command": "sleep 1000", "title": f"f{i}"} for i in range(args.workers)],
        )
        conn = http.client.HTTPConnection("127.0.0.1", farm.port, timeout=30)
        runs: list[tuple[int, int]] = []
        for i in range(args.workers):
            conn.request(
                "POST",
                "/workers/pickjob",
                json.dumps({"name": f"sim{i:04d}", "cpu": [0.0] * 8}),
                {"Content-Type": "application/json"},
            )
            job = json.loads(conn.getresponse().read())["job"]
            runs.append((job["id"], job["event"]))
        offsets = [0] * args.workers
        hosts = [
            list(range(h, min(h + args.per_host, args.workers)))
            for h in range(0, args.workers, args.per_host)
        ]
        asked: list[float] = []

        def slot_part(i: int, k: int) -> dict[str, Any]:
            chunk = f"frame {k} rendering tile {i}\nPROGRESS:{k % 100}\n".encode()
            job_id, event = runs[i]
            part = {
                "name": f"sim{i:04d}",
                "job_id": job_id,
                "event": event,
                "log_offset": offsets[i],
                "log": base64.b64encode(chunk).decode(),
            }
            offsets[i] += len(chunk)
            return part

        def sync(c: http.client.HTTPConnection, h: int, k: int) -> int:
            body = {
                "slots": [slot_part(i, k) for i in hosts[h]],
                "host": f"simhost{h:04d}",
                "interval": args.interval,
                "cpu": [12.5] * 8,
                "free_memory": 8000,
                "total_memory": 16000,
                "ip": "10.0.0.1",
            }
            c.request("POST", "/workers/sync", json.dumps(body), {"Content-Type": "application/json"})
            response = c.getresponse()
            answer = json.loads(response.read() or b"{}")
            if response.status == 200 and len(asked) < 100000:
                asked.append(answer["next"])
            return response.status, (answer.get("next") if response.status == 200 else None)

        def heartbeat(c: http.client.HTTPConnection, i: int, k: int) -> int:
            chunk = f"frame {k} rendering tile {i}\nPROGRESS:{k % 100}\n".encode()
            job_id, event = runs[i]
            body = {
                "name": f"sim{i:04d}",
                "job_id": job_id,
                "event": event,
                "log_offset": offsets[i],
                "log": base64.b64encode(chunk).decode(),
                "cpu": [12.5] * 8,
                "free_memory": 8000,
                "total_memory": 16000,
                "ip": "10.0.0.1",
            }
            offsets[i] += len(chunk)
            return post(c, "/workers/heartbeat", body)

        def ping(c: http.client.HTTPConnection, i: int, k: int) -> int:
            c.request("GET", "/api/ping")
            response = c.getresponse()
            response.read()
            return response.status

        senders = len(hosts) if args.route == "sync" else args.workers
        shape = {
            "slots": args.workers,
            "per_host": args.per_host if args.route == "sync" else 1,
            "interval_s": args.interval,
            "seconds": args.seconds,
        }
        # The pause is measured while the load runs, a third of the way in.
        kill: dict[str, float] = {}

        killable = start_killable(farm)

        def measure_kill() -> None:
            time.sleep(args.seconds / 3)
            kill["pause_to_kill_s"] = round(pause_to_kill(farm, *killable), 3)

        route = sync if args.route == "sync" else heartbeat
        follow = args.route == "sync" and args.cadence == "server"
        interval = args.interval
        for name, request in ((f"/workers/{args.route}", route), ("baseline GET /api/ping", ping)):
            killer = threading.Thread(target=measure_kill) if request is route else None
            if killer:
                killer.start()
            load = Load(farm.port, senders, interval, args.seconds, args.threads, follow and request is route)
            server_cpu, client_cpu = cpu_seconds(farm.procs[0].pid), time.process_time()
            began = time.perf_counter()
            if os.environ.get("HB_SPY") and request is route:  # a profile of the server meanwhile
                subprocess.Popen(
                    ["py-spy", "record", "--gil", "-r", "500", "-f", "raw", "-o", os.environ["HB_SPY"],
                     "--pid", str(farm.procs[0].pid), "-d", str(int(args.seconds))],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            figures = load.run(request)
            wall = time.perf_counter() - began
            # Where the CPU went (2 cores: the server, this load generator, MariaDB...).
            figures["server_cpu_pct"] = round(100 * (cpu_seconds(farm.procs[0].pid) - server_cpu) / wall, 1)
            figures["client_cpu_pct"] = round(100 * (time.process_time() - client_cpu) / wall, 1)
            if killer:
                killer.join()
                figures.update(kill)
                if asked:
                    figures["server_next_s"] = sorted(set(asked))[:5]
                    figures["cadence"] = args.cadence if args.route == "sync" else "fixed"
                    if follow:
                        # The baseline runs at the cadence the server set, on average.
                        interval = statistics.median(asked)
            print(json.dumps({"bench": "heartbeats", "route": name, **shape, **figures}), flush=True)
            if request is route:
                result = figures
        ok = result["errors"] == 0 and result["p99_ms"] < 100 and result.get("pause_to_kill_s", 99) < 5
        print(
            json.dumps({"bench": "heartbeats", "target_p99_ms": 100, "target_pause_to_kill_s": 5, "ok": ok})
        )
        return 0
    finally:
        farm.stop()


if __name__ == "__main__":
    sys.exit(main())
