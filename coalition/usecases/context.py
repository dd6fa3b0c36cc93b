"""The one object every use case works over, and the effects a transaction hands back.

A write transaction may run more than once: SQLite's group commit reruns the other members
of a batch when one fails, and the MySQL engine retries on deadlocks and on a connection lost
during COMMIT. So a transaction function touches nothing but the database: what must happen
outside it (log lines appended to a job's log, logs deleted, tag sets learnt by the process
cache, lines for the server log) goes into an `Effects` made fresh for each attempt, and
`Context.write` applies the effects of the attempt that committed, once, after the commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..failures import FailurePolicy
from ..hierarchy import Transition, Tree
from ..joblogs import DbLogs, LogStore
from ..store.base import Row, Store, Tx
from .tagcache import TagCache, TagView

T = TypeVar("T")
log = logging.getLogger("coalition.usecases")

# A hook that sees every job state change inside its transaction; it may write through the
# transaction (the notifier queues its mail in the same commit) and nowhere else.
TransitionHook = Callable[[Tx, Transition], None]
# A hook told, inside the reaper's transaction, of a worker just marked TIMEOUT (its row
# as it was); it may write through the transaction (webhooks queue their delivery).
WorkerHook = Callable[[Tx, Row], None]
# A hook told, inside the transaction that records it, of a farm event other than a job's
# state change (`autoscaler.decision`, `worker.sick`, with its data); it may write through the
# transaction.
EventHook = Callable[[Tx, str, dict[str, Any]], None]


@dataclass(frozen=True)
class Settings:
    """The use cases' knobs, from `[server]` in coalition.ini."""

    worker_timeout: float = 10.0  # heartbeat silence before a worker is TIMEOUT
    requeue_limit: int = 3  # silent-worker requeues before a job turns ERROR
    decrease_priority_after: int = 10
    event_retention_days: float = 90.0
    submission_key_days: float = 1.0  # how long a submission's idempotency key is remembered
    failures: FailurePolicy = FailurePolicy()  # blocklists, sick hosts, stalls, log rules
    sick_mail: tuple[str, ...] = ()  # who is told when a worker turns SICK
    # Syncs a second the farm's servers are set to take in all (0: no limit): a farm with
    # more worker processes than that times their cadence is told to sync less often.
    sync_rate: float = 0.0
    # Fair share between users at the same priority (usecases/fairshare.py): None is off,
    # else each user's weight (users not named weigh 1).
    fair_share: tuple[tuple[str, float], ...] | None = None


@dataclass
class Effects:
    """What one attempt of a write transaction wants done outside the database."""

    log_appends: list[tuple[int, bytes]] = field(default_factory=list)
    # (job, run event, offset in the run's output, chunk, bytes the database had received)
    run_output: list[tuple[int, int, int, bytes, int]] = field(default_factory=list)
    runs_started: list[tuple[int, int]] = field(default_factory=list)
    log_deletes: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tag_views: list[TagView] = field(default_factory=list)
    # (seconds, whether a job was handed out) of each pick: told to Context.on_pick only for
    # the attempt that committed, so a rerun transaction is not counted twice.
    picks: list[tuple[float, bool]] = field(default_factory=list)

    def append_log(self, job_id: int, data: bytes) -> None:
        """Append to a job's log after the commit."""
        if data:
            self.log_appends.append((job_id, data))

    def run_started(self, job_id: int, event: int) -> None:
        """A run began: its output will be counted from 0."""
        self.runs_started.append((job_id, event))

    def append_run_output(self, job_id: int, event: int, offset: int, chunk: bytes, received: int) -> None:
        """Append what the job's log lacks of a run's output chunk (JobLogs.append_run):
        idempotent, so that a rerun after an uncertain commit still writes it, once."""
        if chunk:
            self.run_output.append((job_id, event, offset, chunk, received))

    def delete_log(self, job_id: int) -> None:
        """Delete a job's log after the commit."""
        self.log_deletes.append(job_id)

    def note(self, message: str) -> None:
        """A line for the server log, written only if the transaction commits."""
        self.notes.append(message)

    def picked(self, seconds: float, handed: bool) -> None:
        """A pick took `seconds` (and handed out a job, or not)."""
        self.picks.append((seconds, handed))


class Context:
    """Store, clock, job logs, tag cache, settings and hooks: everything a use case needs."""

    def __init__(
        self,
        store: Store,
        logs: LogStore,
        settings: Settings = Settings(),
        clock: Callable[[], float] = time.time,
        tags: TagCache | None = None,
    ):
        self.store = store
        self.logs = logs
        self.settings = settings
        self.clock = clock
        self.tags = tags or TagCache()
        self.on_transition: list[TransitionHook] = []
        self.on_worker_lost: list[WorkerHook] = []
        self.on_event: list[EventHook] = []
        # Told the kind ("read", "write") and seconds of every transaction (metrics).
        self.on_db_time: Callable[[str, float], None] | None = None
        # Told the seconds of every committed pick and whether it handed out a job (metrics):
        # the pick alone, whichever request it was part of (pickjob, endjob, sync).
        self.on_pick: Callable[[float, bool], None] | None = None

    def write(self, fn: Callable[[Tx, Effects], T]) -> T:
        """Run `fn(tx, effects)` in a write transaction (maybe more than once); after the
        commit, apply the effects of the attempt that committed and return its result."""

        logs = self.logs

        def attempt(tx: Tx) -> tuple[T, Effects]:
            fx = Effects()
            result = fn(tx, fx)
            if isinstance(logs, DbLogs):
                # Logs in the database are written by this same attempt, so a rerun or a
                # rollback takes them along; only a legacy file's removal is left for later.
                logs.write_in(tx, fx.run_output, fx.log_appends, fx.log_deletes)
                fx.runs_started, fx.run_output, fx.log_appends = [], [], []
            return result, fx

        started = time.perf_counter()
        result, fx = self.store.write(attempt)
        if self.on_db_time is not None:
            self.on_db_time("write", time.perf_counter() - started)
        self.apply(fx)
        return result

    def read(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn(tx)` in a read transaction."""
        if self.on_db_time is None:
            return self.store.read(fn)
        started = time.perf_counter()
        try:
            return self.store.read(fn)
        finally:
            self.on_db_time("read", time.perf_counter() - started)

    def apply(self, fx: Effects) -> None:
        """Carry out the effects of a committed transaction."""
        for view in fx.tag_views:
            self.tags.learn(view)
        for job_id, event in fx.runs_started:
            self.logs.start_run(job_id, event)
        for job_id, event, offset, chunk, received in fx.run_output:
            self.logs.append_run(job_id, event, offset, chunk, received)
        for job_id, data in fx.log_appends:
            self.logs.append(job_id, data)
        for job_id in fx.log_deletes:
            self.logs.delete(job_id)
        for message in fx.notes:
            log.info("%s", message)
        if self.on_pick is not None:
            for seconds, handed in fx.picks:
                self.on_pick(seconds, handed)

    def tree(self, tx: Tx, fx: Effects, now: float) -> Tree:
        """Tree upkeep for one attempt of a transaction."""
        view = self.tags.view(tx)
        fx.tag_views.append(view)
        hooks = self.on_transition
        return Tree(
            tx,
            now,
            view,
            self.settings.decrease_priority_after,
            on_transition=(lambda t: [hook(tx, t) for hook in hooks]) if hooks else None,
        )
