"""Host metrics sent with every pick and heartbeat: per-core CPU, memory, the worker's IP."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

Sample = list[tuple[int, int]]  # per core: (busy jiffies, total jiffies)


def parse_proc_stat(text: str) -> Sample:
    """Per-core (busy, total) jiffies from /proc/stat's `cpuN` lines (not the `cpu` sum)."""
    cores: Sample = []
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        # user nice system idle iowait irq softirq steal (guest time is already in user)
        values = [int(v) for v in rest.split()[:8]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        total = sum(values)
        cores.append((total - idle, total))
    return cores


def busy_percent(before: Sample, after: Sample) -> list[float]:
    """Busy % of each core between two samples (since boot when `before` is empty)."""
    out = []
    for i, (busy, total) in enumerate(after):
        busy0, total0 = before[i] if i < len(before) else (0, 0)
        dtotal = total - total0
        out.append(round(100.0 * (busy - busy0) / dtotal, 1) if dtotal > 0 else 0.0)
    return out


def parse_meminfo(text: str) -> tuple[int, int]:
    """(free, total) memory in MB; free is MemAvailable, or free+buffers+cached on old kernels."""
    kb: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            kb[key] = int(parts[0])
    total = kb.get("MemTotal", 0)
    if "MemAvailable" in kb:
        free = kb["MemAvailable"]
    else:
        free = kb.get("MemFree", 0) + kb.get("Buffers", 0) + kb.get("Cached", 0)
    return free // 1024, total // 1024


def local_ip(host: str, port: int) -> str:
    """The local address the kernel would use to reach host:port (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, port or 9))
            return s.getsockname()[0]
    except OSError:
        return ""


class Metrics:
    """Thread-safe sampler shared by all slots of a process.

    CPU is measured between consecutive samples; samples closer than `min_interval` reuse the
    last figures, so N slots heartbeating at once do not measure N tiny, noisy intervals.
    """

    def __init__(
        self,
        proc: str = "/proc",
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._proc = proc
        self._min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last_sample: Sample = []
        self._last_time = float("-inf")
        self._cpu: list[float] = []
        self._memory = (0, 0)
        self._memory_time = float("-inf")
        self._ip_cache: dict[tuple[str, int], str] = {}

    def _read(self, name: str) -> str | None:
        try:
            with open(os.path.join(self._proc, name), encoding="ascii", errors="replace") as f:
                return f.read()
        except OSError:
            return None  # not Linux: the figures are simply absent

    def cpu(self) -> list[float]:
        """Busy % per core since the previous sample (since boot on the first call)."""
        with self._lock:
            now = self._clock()
            if now - self._last_time >= self._min_interval:
                text = self._read("stat")
                if text is not None:
                    sample = parse_proc_stat(text)
                    self._cpu = busy_percent(self._last_sample, sample)
                    self._last_sample = sample
                self._last_time = now
            return list(self._cpu)

    def memory(self) -> tuple[int, int]:
        """(free, total) in MB, (0, 0) when unknown; re-read at most every `min_interval`."""
        with self._lock:
            now = self._clock()
            if now - self._memory_time >= self._min_interval:
                text = self._read("meminfo")
                self._memory = parse_meminfo(text) if text is not None else (0, 0)
                self._memory_time = now
            return self._memory

    def ip(self, host: str, port: int) -> str:
        """Our address as seen on the route to the server (cached: routes rarely change)."""
        key = (host, port)
        with self._lock:
            cached = self._ip_cache.get(key)
        if cached is None:
            cached = local_ip(host, port)
            with self._lock:
                self._ip_cache[key] = cached
        return cached

    def snapshot(self, host: str, port: int) -> dict[str, object]:
        """The metric fields of a pickjob/heartbeat/endjob body."""
        free, total = self.memory()
        return {"cpu": self.cpu(), "free_memory": free, "total_memory": total, "ip": self.ip(host, port)}
