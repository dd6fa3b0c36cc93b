"""What this host offers to jobs, and what its slots' runs hold (docs/scheduling.md, "Resources
and packing").

Two ways to use a host:

* **packing** (`workers = auto`, the default): one pool of cores, memory (MB) and GPUs. The
  worker runs as many jobs at once as fit. A job that requests nothing takes the whole host
  (one such job at a time, as a worker with one slot always did); an `exclusive` job too.
* **fixed slots** (`workers = N`, or `cpus`): N slots, each an equal share of the host (the
  first slots get the remainder of the GPUs). A job that requests nothing takes one slot.

The server picks only jobs that fit what a slot offers (`free` in the worker protocol), so the
pool is the single authority on this host's capacity. Asks that share capacity are
serialised: in packing mode one sync (or one endjob) at a time asks for the whole host's free
amounts, which the server spends as it hands jobs out; in fixed mode each slot asks for its
own share, and only a lone idle slot may offer the whole host (to an `exclusive` job).

Detection is deliberately simple: cores from the CPU affinity mask, memory from
/proc/meminfo, GPUs from the NVIDIA driver (/proc/driver/nvidia/gpus) or ROCm's KFD topology;
each is overridden by `[worker] cores`, `memory` and `gpus`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .metrics import parse_meminfo

MAX_PACKED_SLOTS = 256  # slots of one packing worker (the server takes 256 in one sync)


@dataclass(frozen=True)
class Capacity:
    """What the host offers to jobs."""

    cores: int
    memory: int  # MB
    gpus: tuple[str, ...] = ()  # device ids as the GPU runtimes number them ("0", "1", ...)


@dataclass(frozen=True)
class Grant:
    """What one run holds on this host, and the environment that tells the job."""

    cores: int
    memory: int
    gpus: tuple[str, ...]
    whole: bool  # the run holds the whole host (or the whole slot: nothing else may come)
    env: Mapping[str, str]


# -- detection -------------------------------------------------------------------------------
def detect_cores() -> int:
    """CPUs this process may run on (the affinity mask, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def detect_memory(meminfo: str = "/proc/meminfo") -> int:
    """Total memory in MB (0 when unknown)."""
    try:
        return parse_meminfo(Path(meminfo).read_text())[1]
    except OSError:
        return 0


def detect_gpus(
    nvidia: str = "/proc/driver/nvidia/gpus", kfd: str = "/sys/class/kfd/kfd/topology/nodes"
) -> tuple[str, ...]:
    """GPU device ids: NVIDIA's driver lists one directory per GPU; ROCm's KFD topology has a
    node per CPU and per GPU, the GPUs with a non-zero `gfx_target_version`."""
    try:
        count = len([p for p in Path(nvidia).iterdir() if p.is_dir()])
    except OSError:
        count = 0
    if count == 0:
        try:
            for node in Path(kfd).iterdir():
                props = (node / "properties").read_text()
                for line in props.splitlines():
                    key, _, value = line.partition(" ")
                    if key == "gfx_target_version" and value.strip() not in ("", "0"):
                        count += 1
        except OSError:
            pass
    return tuple(str(i) for i in range(count))


def parse_gpus(text: str) -> tuple[str, ...]:
    """`[worker] gpus`: a count ("2": devices 0 and 1) or a list of device ids ("0,2")."""
    text = text.strip()
    if not text:
        return ()
    if "," not in text and text.isascii() and text.isdigit():
        return tuple(str(i) for i in range(int(text)))
    ids = tuple(part.strip() for part in text.split(",") if part.strip())
    if any(not part.replace("-", "").isalnum() for part in ids):
        raise ValueError(f"expected a number of GPUs or a list of device ids (0,1), got {text!r}")
    return ids


def capacity(cores: int | None, memory: int | None, gpus: tuple[str, ...] | None) -> Capacity:
    """The host's capacity: the given values, detected where None."""
    return Capacity(
        cores=cores if cores is not None else detect_cores(),
        memory=memory if memory is not None else detect_memory(),
        gpus=gpus if gpus is not None else detect_gpus(),
    )


def gpu_env(devices: Sequence[str]) -> dict[str, str]:
    """The variables that pin a job to `devices` (none: it sees no GPU). CUDA (NVIDIA), ROCm
    (AMD: ROCR_VISIBLE_DEVICES, not HIP's, which would filter a second time) and Level Zero
    (Intel) each read their own; COALITION_GPUS is for wrappers of renderers that take a
    device flag instead."""
    ids = ",".join(devices)
    return {
        "CUDA_VISIBLE_DEVICES": ids,
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # CUDA's numbering as the driver's (and nvidia-smi's)
        "ROCR_VISIBLE_DEVICES": ids,
        "ZE_AFFINITY_MASK": ids,
        "COALITION_GPUS": ids,
    }


def need_of(job: Mapping[str, Any]) -> tuple[int, int, int, bool]:
    """(cores, memory, gpus, exclusive) of a picked job's effective request (`need`, sent by
    the server; a server that sends none hands out only jobs that request nothing)."""
    need = job.get("need")
    if not isinstance(need, dict):
        return 0, 0, 0, False
    values = []
    for key in ("cores", "memory", "gpus"):
        value = need.get(key, 0)
        values.append(value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0)
    return values[0], values[1], values[2], bool(need.get("exclusive"))


# -- the pool ----------------------------------------------------------------------------------
class Pool:
    """The host's capacity, the runs holding parts of it, and who may ask for a job now.

    Thread-safe: the courier's thread plans the asks of a sync, slot threads ask at the end of
    a run and settle what the server answered.
    """

    def __init__(
        self, cap: Capacity, names: Sequence[str], packing: bool, gpureserve: str = "auto", host: str = ""
    ):
        self.cap = cap
        self.host = host or (names[0] if names else "")  # the process's name, for the server
        self.names = list(names)
        self.packing = packing
        self.gpureserve = gpureserve
        self._lock = threading.Lock()
        self._held: dict[str, Grant] = {}
        self._asking: set[str] = set()
        self._whole_ask = False  # a lone slot offers the whole host: nobody else may ask
        self._used: set[str] = {self.names[0]} if self.names else set()  # slots the server knows
        n = max(1, len(self.names))
        # Fixed slots: equal shares; GPU i goes to slot i mod N (the first slots get the rest).
        self._shares = {
            name: Capacity(max(1, cap.cores // n), cap.memory // n, cap.gpus[i::n])
            for i, name in enumerate(self.names)
        }

    # -- what the server is told ----------------------------------------------------------------
    def resources(self, name: str | None = None) -> dict[str, int]:
        """What a slot may use and what is held of it (the `resources` of its requests): a
        packing host's totals and what all its runs hold; a fixed slot's share and what its
        own run holds."""
        with self._lock:
            if self.packing or name not in self._shares:
                cap, held = self.cap, list(self._held.values())
            else:
                cap, held = self._shares[name], [g for n, g in self._held.items() if n == name]
        return {
            "cores": cap.cores,
            "memory": cap.memory,
            "gpus": len(cap.gpus),
            "used_cores": min(cap.cores, sum(g.cores for g in held)),
            "used_memory": min(cap.memory, sum(g.memory for g in held)),
            "used_gpus": min(len(cap.gpus), len({d for g in held for d in g.gpus})),
        }

    def visible(self, name: str) -> bool:
        """Whether the slot is reported while idle: it ran a job, or it is the first one (a
        packing host's other slots appear when it first runs that many jobs at once)."""
        with self._lock:
            return not self.packing or name in self._used

    # -- asking -------------------------------------------------------------------------------
    def plan(self, wanting: Sequence[str]) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any] | None]]:
        """The asks of one sync among the idle slots `wanting` a job: (the budget they share,
        packing mode, else None; {slot: its own `free` (fixed slots) or None (shares the
        budget)}). Slots left out do not ask this time."""
        with self._lock:
            if self._blocked():
                return None, {}
            if self.packing:
                if self._asking:
                    return None, {}
                known = [n for n in wanting if n in self._used]
                # Spare slots too, as many as the free cores could still start (each job
                # takes a core at least): the server lists a spare slot once it gets a job.
                room = self.cap.cores - sum(g.cores for g in self._held.values()) - len(known)
                new = [n for n in wanting if n not in self._used][: max(0, room)]
                askers = known + new
                if not askers:
                    return None, {}
                self._asking.update(askers)
                return self._free_packing(), dict.fromkeys(askers)
            askers = [n for n in wanting if n not in self._asking and n not in self._held]
            lone = len(askers) == 1 and not self._held and not self._asking
            out: dict[str, dict[str, Any] | None] = {}
            for n in askers:
                out[n] = self._free_fixed(n, whole=lone)
            self._asking.update(askers)
            self._whole_ask = lone
            return None, out

    def ask(self, name: str) -> dict[str, Any] | None:
        """The `free` of one slot asking alone (at the end of its run), or None: it must not
        ask now (another ask shares this capacity, or an exclusive run holds the host)."""
        with self._lock:
            if self._blocked() or name in self._held or (self.packing and self._asking):
                return None
            if self.packing:
                self._asking.add(name)
                return self._free_packing()
            lone = not self._held and not self._asking
            self._asking.add(name)
            self._whole_ask = self._whole_ask or lone
            return self._free_fixed(name, whole=lone)

    def hold_offer(self, name: str) -> dict[str, Any] | None:
        """The `free` with which a slot asks for a job to hold behind its current run (its own
        share, never the whole host), or None: it must not hold (a packing host's free
        amounts change with every run; an exclusive run holds the host)."""
        with self._lock:
            # (The slot's own ask for a whole host does not count: the server holds nothing
            # behind an exclusive job.)
            if self.packing or any(g.whole for g in self._held.values()):
                return None
            return self._free_fixed(name, whole=False)

    def start_held(self, name: str, job: Mapping[str, Any]) -> Grant:
        """The slot's run ended and it starts its held job: what that run holds now."""
        with self._lock:
            grant = self._grant(name, job)
            self._held[name] = grant
            self._used.add(name)
            return grant

    def settle(self, name: str, job: Mapping[str, Any] | None) -> Grant | None:
        """The answer to `name`'s ask came: the job handed out (None: nothing, or the ask
        failed). Returns what the run holds."""
        with self._lock:
            self._asking.discard(name)
            if not self._asking:
                self._whole_ask = False
            if job is None:
                return None
            grant = self._grant(name, job)
            self._held[name] = grant
            self._used.add(name)
            return grant

    def release(self, name: str) -> None:
        """The slot's run ended: what it held is free again."""
        with self._lock:
            self._held.pop(name, None)

    def held(self, name: str) -> Grant | None:
        """What the slot's run holds, if it runs one."""
        with self._lock:
            return self._held.get(name)

    # -- inside the lock ------------------------------------------------------------------
    def _blocked(self) -> bool:
        return self._whole_ask or any(g.whole for g in self._held.values())

    def _totals(self) -> dict[str, int]:
        # An exclusive job's request is checked against the whole host's.
        return {
            "total_cores": self.cap.cores,
            "total_memory": self.cap.memory,
            "total_gpus": len(self.cap.gpus),
        }

    def _free_packing(self) -> dict[str, Any]:
        held = list(self._held.values())
        empty = not held
        in_use = {d for g in held for d in g.gpus}
        return {
            "cores": max(0, self.cap.cores - sum(g.cores for g in held)),
            "memory": max(0, self.cap.memory - sum(g.memory for g in held)),
            "gpus": len([d for d in self.cap.gpus if d not in in_use]),
            "bare": empty,
            "whole": empty,
            **self._totals(),
        }

    def _free_fixed(self, name: str, whole: bool) -> dict[str, Any]:
        share = self._shares[name]
        return {
            "cores": share.cores,
            "memory": share.memory,
            "gpus": len(share.gpus),
            "bare": True,
            "whole": whole,
            **self._totals(),
        }

    def _grant(self, name: str, job: Mapping[str, Any]) -> Grant:
        cores, memory, gpus, exclusive = need_of(job)
        bare = not (cores or memory or gpus or exclusive)
        cap = self.cap
        if exclusive or (bare and self.packing):
            # The whole host: the job sees every GPU, as a one-job-per-host worker's jobs did.
            return Grant(cap.cores, cap.memory, cap.gpus, True, self._env(cap.gpus, cap.cores, cap.memory))
        if bare:  # a fixed slot's share
            share = self._shares[name]
            return Grant(
                share.cores, share.memory, share.gpus, False, self._env(share.gpus, share.cores, share.memory)
            )
        pool = self._shares[name].gpus if not self.packing else cap.gpus
        in_use = {d for g in self._held.values() for d in g.gpus}
        devices = tuple(d for d in pool if d not in in_use)[:gpus]
        cores = max(1, cores)
        return Grant(cores, memory, devices, False, self._env(devices, cores, memory))

    def _env(self, devices: tuple[str, ...], cores: int, memory: int) -> dict[str, str]:
        env = {"COALITION_CORES": str(cores)}
        if memory:
            env["COALITION_MEMORY"] = str(memory)
        # A host without GPUs leaves the GPU variables alone; a run that may use every GPU
        # too (it would see them all anyway, and a wrapper's own pinning keeps working).
        if self.cap.gpus and tuple(devices) != self.cap.gpus:
            env.update(gpu_env(devices))
        return env


def slot_names(name: str, workers: int, packing: bool, cores: int) -> list[str]:
    """Slot names: fixed, `name` for one slot and `name-1` .. `name-N` for N; packing, `name`
    then `name-2`, `name-3` ... up to one slot per core (a host that runs one job at a time
    keeps its host name, as before packing existed)."""
    if packing:
        count = max(1, min(cores, MAX_PACKED_SLOTS))
        return [name] + [f"{name}-{i}" for i in range(2, count + 1)]
    if workers == 1:
        return [name]
    return [f"{name}-{i}" for i in range(1, workers + 1)]
