"""The worker protocol's messages: what a worker reports with its requests (Ping,
HostResources, SlotReport, RunReport, RunUsage) and what it is told back (Beat, SlotAnswer,
Sync, End).

Plain values, no transaction and no clock: kept apart from workers.py so that the HTTP
adapter (server/workers.py) and the tests build requests and read answers without the use
cases, and so that the pick (pick.py) and a run's end (runend.py) share them with the
protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import scheduling


@dataclass(frozen=True)
class HostResources:
    """What a worker's host offers to jobs (cores, memory in MB, GPUs) and what its running
    jobs hold, as the worker reports it with every request."""

    cores: int = 0
    memory: int = 0
    gpus: int = 0
    used_cores: int = 0
    used_memory: int = 0
    used_gpus: int = 0

    def columns(self) -> dict[str, int]:
        """The worker row's columns."""
        return {
            "cores": self.cores,
            "memory": self.memory,
            "gpus": self.gpus,
            "used_cores": self.used_cores,
            "used_memory": self.used_memory,
            "used_gpus": self.used_gpus,
        }


GPU_RESERVE = ("auto", "on", "off")


@dataclass(frozen=True)
class Ping:
    """What a worker reports about itself with every request."""

    name: str
    cpu: Any = None
    free_memory: int | None = None
    total_memory: int | None = None
    ip: str | None = None
    affinity: str | None = None  # the worker's own rule lines, if it sends them
    resources: HostResources | None = None
    # What the worker may take now when it asks for a job (None: a worker that does not say,
    # which takes only jobs that request nothing), and its [worker] gpureserve.
    free: scheduling.Free | None = None
    gpureserve: str = "auto"
    host: str | None = None  # the worker process's name, shared by its slots
    offers: str | None = None  # tags it offers on every rule line (OpenJD: docs/openjd.md)


@dataclass
class Beat:
    """A heartbeat's answer."""

    kill: bool = False
    stop: bool = False
    started: float = 0.0  # when the run began (0: not a run of this worker's)


@dataclass(frozen=True)
class RunUsage:
    """What a run used, as its worker measured it."""

    cpu_s: float = 0.0
    peak_memory_mb: int = 0
    wall_s: float = 0.0


@dataclass(frozen=True)
class SlotReport:
    """One slot's part of a sync: the run it reports (if any), or whether it wants a job."""

    name: str
    job_id: int | None = None
    event: int | None = None
    chunk: bytes = b""
    offset: int | None = None
    pick: bool = False
    free: scheduling.Free | None = None  # with pick: what the slot may take
    resources: HostResources | None = None  # a fixed slot's own share (else the host's)
    spare: bool = False  # a packing host's slot that never ran a job: no row unless it gets one


@dataclass
class SlotAnswer:
    """What one slot is told by a sync."""

    name: str
    job_id: int | None = None  # the run this answer is about (as reported)
    kill: bool = False
    stop: bool = False
    job: dict[str, Any] | None = None  # a job handed out (when the slot asked for one)
    sick: bool = False  # the worker is SICK: it should run its check command


@dataclass
class Sync:
    """A sync's answer: one entry per slot, and when to sync next."""

    slots: list[SlotAnswer]
    next: float


@dataclass(frozen=True)
class RunReport:
    """One run's end as its worker reports it: the endjob's own, or one of its `earlier`."""

    job_id: int
    event: int | None
    exit_code: int
    chunk: bytes = b""
    offset: int | None = None
    timed_out: bool = False
    interrupted: bool = False
    usage: RunUsage | None = None
    thumbnail: tuple[str, bytes] | None = None
    reason: str = ""
    elapsed: float | None = None


@dataclass
class End:
    """An endjob's answer."""

    ignored: str = ""
    sick: bool = False  # the worker is SICK (it takes no job until checked or cleared)
    next_job: dict[str, Any] | None = None
    held: list[dict[str, Any]] = field(default_factory=list)  # to start, in order, as runs end
    kill: bool = False  # the run the slot says it has started (`running`) is not its own now
    earlier_ignored: dict[int, str] = field(default_factory=dict)  # by job id
    transitions: list[Any] = field(default_factory=list)
