"""End-to-end benchmark: N `true` commands through a real server and a real 2-slot worker,
against `xargs -P2` running the same commands through the same shell, in the same run.

Prints JSON lines: one per run of each contender (interleaved, `--repeat` times), then the
ratio of the best runs (target: coalition within 3x of xargs).
The Coalition figure counts everything a user waits for: submission (one PUT of N jobs under a
group), picking, process start, log and result delivery, until the group is FINISHED.

    python bench/e2e.py [--jobs 2000] [--slots 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port: int, method: str, path: str, body: Any = None) -> Any:
    """One JSON request; the decoded answer (raises on a non-2xx status)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, data, {"Content-Type": "application/json"} if data else {})
        response = conn.getresponse()
        payload = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {response.status} {payload[:200]!r}")
        return json.loads(payload) if payload else None
    finally:
        conn.close()


class Farm:
    """A server (SQLite, temporary data directory) and optionally a local worker process."""

    def __init__(self, server_keys: dict[str, Any] | None = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="coal-bench-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ini = os.path.join(self.dir, "coalition.ini")
        keys = {
            "listen": "127.0.0.1",
            "port": self.port,
            "datadir": self.dir,
            "discovery": 0,
            "timeout": 60,
            **(server_keys or {}),
        }
        with open(self.ini, "w") as f:
            f.write("[server]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()))
            f.write("[worker]\ninterruptions = off\n")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.procs.append(self._spawn("coalition.server.main", "-c", self.ini))
        deadline = time.monotonic() + 30
        while True:
            try:
                call(self.port, "GET", "/api/ping")
                return
            except (OSError, RuntimeError):
                if time.monotonic() > deadline or self.procs[0].poll() is not None:
                    self.stop()
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.05)

    def _spawn(self, module: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(os.path.join(self.dir, module.split(".")[1] + ".log"), "ab")
        return subprocess.Popen([sys.executable, "-m", module, *args], stdout=log, stderr=subprocess.STDOUT)

    def start_worker(self, slots: int, sleep: float = 0.5) -> None:
        """A worker process with `slots` slots."""
        self.procs.append(
            self._spawn(
                "coalition.worker.main",
                "-c",
                self.ini,
                "-n",
                "bench",
                "-w",
                str(slots),
                "-s",
                str(sleep),
                self.url,
            )
        )

    def stop(self) -> None:
        """Stop everything (workers first) and remove the data directory."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used itself, children not included."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_coalition(jobs: int, slots: int) -> tuple[float, dict[str, float]]:
    """Seconds from submission to a FINISHED group of `jobs` `true` commands, and the CPU
    seconds the server and the worker used meanwhile (where the time goes on a small box)."""
    farm = Farm()
    try:
        farm.start_worker(slots)
        # Let the slots register and sit in their idle wait, as on a real farm.
        deadline = time.monotonic() + 30
        while len(call(farm.port, "GET", "/api/workers")) < slots:
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not register")
            time.sleep(0.05)
        server, worker = farm.procs[0].pid, farm.procs[1].pid
        cpu0 = {"server": cpu_seconds(server), "worker": cpu_seconds(worker)}
        start = time.perf_counter()
        group = call(farm.port, "PUT", "/api/jobs", {"title": "bench", "paused": True})
        ids = call(farm.port, "PUT", "/api/jobs", [{"parent": group, "command": "true"} for _ in range(jobs)])
        submitted = time.perf_counter() - start
        call(farm.port, "POST", "/api/startjobs", [group])
        started_wall = time.time()
        while True:
            job = call(farm.port, "GET", f"/api/jobs/{group}")
            if job["total_finished"] + job["total_errors"] >= jobs:
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
        cpu = {
            "server_cpu_s": round(cpu_seconds(server) - cpu0["server"], 2),
            "worker_cpu_s": round(cpu_seconds(worker) - cpu0["worker"], 2),
            # Where the wall time goes: the submission, then the idle slots' wait for their
            # next sync (the server's cadence), then the runs.
            "submit_s": round(submitted, 3),
        }
        first = ids[0] if isinstance(ids, list) and ids else None
        if first is not None:
            runs = call(farm.port, "GET", f"/api/jobs/{first}/events")
            if runs:
                cpu["first_start_s"] = round(min(r["start"] for r in runs) - started_wall, 3)
        if job["total_errors"]:
            raise RuntimeError(f"{job['total_errors']} jobs failed")
        return elapsed, cpu
    finally:
        farm.stop()


def run_xargs(jobs: int, slots: int) -> float:
    """Seconds for `xargs -P` to run the same commands through `sh -c`, as the worker does."""
    lines = "true\n" * jobs
    start = time.perf_counter()
    subprocess.run(["xargs", "-P", str(slots), "-I{}", "sh", "-c", "{}"], input=lines.encode(), check=True)
    return time.perf_counter() - start


def emit(runner: str, jobs: int, seconds: float, **extra: Any) -> None:
    """One JSON line for one timed run."""
    line = {"bench": "e2e", "runner": runner, "jobs": jobs, "seconds": round(seconds, 3),
            "jobs_per_s": round(jobs / seconds, 1), **extra}  # fmt: skip
    print(json.dumps(line), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2, help="interleaved runs of each; the best counts")
    args = p.parse_args(argv)
    # `timeout` and CI stop a bench with SIGTERM: unwind through Farm.stop(), so that no
    # server or worker is left running.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if shutil.which("xargs") is None:
        print(json.dumps({"bench": "e2e", "error": "xargs not found (apt-get install findutils)"}))
        return 1
    baseline, ours = [], []
    # Interleaved, best of N: a burst of load from elsewhere on the machine hits one run of
    # one contender, not the ratio.
    for _ in range(args.repeat):
        baseline.append(run_xargs(args.jobs, args.slots))
        emit(f"xargs -P{args.slots}", args.jobs, baseline[-1])
        seconds, cpu = run_coalition(args.jobs, args.slots)
        ours.append(seconds)
        emit(f"coalition server + worker -w {args.slots}", args.jobs, seconds, **cpu)
    ratio = min(ours) / min(baseline)
    # Each pair ran a few seconds apart: its ratio cancels the machine's slower drifts (xargs
    # itself took 0.88 to 1.20 s within one evening), which the best-of-N pairs across.
    pairs = sorted(o / x for x, o in zip(baseline, ours, strict=True))
    summary = {"bench": "e2e", "ratio_vs_xargs": round(ratio, 2), "target": 3.0, "ok": ratio <= 3.0,
               "pair_ratios": [round(r, 2) for r in pairs],
               "pair_ratio_median": round(statistics.median(pairs), 2),
               "cpus": os.cpu_count()}  # fmt: skip
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
