"""What a run's processes used: wall time, CPU time and peak memory, reported with endjob.

CPU time comes from the kernel's accounting of the job's leader when the slot reaps it
(wait4): it includes every descendant the leader waited for, which is how shells and render
wrappers run their work. Peak memory is the largest sum, over the job's live processes, of
each one's own high-water mark (VmHWM) at a sample: the slot samples while it waits, from
1 s after the start and then every 2 s, so a renderer that forks helpers is counted whole.
The kernel's ru_maxrss of the leader is used too, but only when it is above the worker's own
size: a job is started by vfork, and Linux records the memory the child shared with the
worker until its exec as the child's own. A run too short to be sampled whose ru_maxrss says
nothing reports 0 (not measured).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from dataclasses import dataclass

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
SAMPLE_EVERY = 2.0  # seconds between memory samples of a running job
FIRST_SAMPLE = 1.0  # seconds after the start


@dataclass(frozen=True)
class Usage:
    """One run's figures."""

    wall_s: float
    cpu_s: float
    peak_memory_mb: int

    def as_dict(self) -> dict[str, float | int]:
        """The endjob body's `usage` object."""
        return {
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "peak_memory_mb": self.peak_memory_mb,
        }


def read_proc(path: str, size: int = 4096) -> bytes:
    """The start of a small /proc file, read with one system call (Python's file objects cost
    several times that, and a job start reads two of them)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def descendants(pid: int) -> list[int]:
    """`pid` and the processes below it that are still its descendants (Linux /proc)."""
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 10000:
        current = todo.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(child) for child in f.read().split())
            except (OSError, ValueError):
                continue
    return found


def resident_bytes(pids: list[int]) -> int:
    """The sum of the resident memory of `pids` (those still alive)."""
    total = 0
    for pid in pids:
        try:
            total += int(read_proc(f"/proc/{pid}/statm").split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            continue
    return total


def high_water_bytes(pids: list[int]) -> int:
    """The sum of each live process's own peak resident memory (VmHWM) in `pids`."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            continue
    return total


class UsageMeter:
    """Samples a running job's memory; turns the reaped leader's rusage into a Usage."""

    def __init__(self, pid: int, clock: Callable[[], float]) -> None:
        self.pid = pid
        self.clock = clock
        self.started = clock()
        self.peak = 0  # bytes, the largest sample
        self.worker_size = resident_bytes([os.getpid()])  # what a vforked child first shares
        # Not at once: until it execs, the new process shares the worker's own memory.
        self.next_sample = self.started + FIRST_SAMPLE

    def sample(self, now: float) -> None:
        """Take a memory sample if one is due."""
        if now >= self.next_sample:
            self.next_sample = now + SAMPLE_EVERY
            self.peak = max(self.peak, high_water_bytes(descendants(self.pid)))

    def finish(self, rusage: resource.struct_rusage | None) -> Usage:
        """The run's figures, given the leader's rusage (None if another reaped it)."""
        cpu = 0.0
        peak = self.peak
        if rusage is not None:
            cpu = rusage.ru_utime + rusage.ru_stime
            maxrss = rusage.ru_maxrss * 1024  # Linux counts ru_maxrss in KB
            if maxrss > self.worker_size * 1.1:  # not just the worker's pages before the exec
                peak = max(peak, maxrss)
        return Usage(max(0.0, self.clock() - self.started), cpu, (peak + (1 << 20) - 1) >> 20)
