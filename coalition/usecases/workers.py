"""The worker protocol's use cases: pick, heartbeat, end of run. One write transaction per
call over the context; log bytes are effects, appended after the commit.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .. import columns, failures, progress, scheduling
from ..hierarchy import Tree
from ..model import (
    ERROR,
    FINISHED,
    PENDING,
    W_SICK,
    W_STARTING,
    W_TERMINATED,
    W_TIMEOUT,
    W_WAITING,
    W_WORKING,
    WAITING,
    WORKING,
    format_rule_lines,
    parse_rule_lines,
    parse_tags,
)
from ..store.base import Row, Tx
from ..views import cpu_text
from . import limits
from .context import Context, Effects
from .failing import Failures, Verdict
from .fairshare import FairShare
from .runs import abort_run


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
class RunEnd:
    """How a run ended, as its worker reports it."""

    exit_code: int
    timed_out: bool = False
    interrupted: bool = False
    reason: str = ""  # the worker's own account (timeout, stall, handback)
    elapsed: float | None = None  # seconds by the worker's clock
    usage: RunUsage | None = None  # what the run used (usage.wall_s: its run time too)


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


# What a heartbeat reads of its job (a sync reads them for all its slots at once; the whole
# row costs several times more to fetch on a busy farm). _readopt reads the whole row.
_BEAT_COLUMNS = (
    "state",
    "worker",
    "run_event",
    "paused",
    "h_blocked",
    "start_time",
    "log_offset",
    "progress_pattern",
    "local_progress_pattern",
    "rule_hit",
    "logrules",
)


class WorkerDraft:
    """A worker row read once per request; its changes are written once, by flush(). A new
    row (`new`) is inserted by flush() too: a sync drops the draft of a new slot that asked
    for a job and got none, so a packing host's spare slots never clutter the workers list."""

    def __init__(self, row: Row, new: bool = False):
        self.row = row
        self.new = new
        self.fields: dict[str, Any] = {}
        self.deltas: dict[str, int] = {}

    def __getitem__(self, key: str) -> Any:
        return self.row[key]

    def set(self, **fields: Any) -> None:
        """Change columns (in memory until flush)."""
        self.fields.update(fields)
        self.row.update(fields)

    def bump(self, column: str, delta: int) -> None:
        """Add to a counter atomically at flush (another server may count too)."""
        self.deltas[column] = self.deltas.get(column, 0) + delta
        self.row[column] = (self.row.get(column) or 0) + delta

    @staticmethod
    def flush_all(tx: Tx, drafts: Sequence[WorkerDraft]) -> None:
        """Write what changed of several drafts: those that changed the same columns to the
        same values (the slots of one host telling its ping time, CPU and memory) in one
        statement, the others one by one."""
        same: dict[tuple[tuple[str, Any], ...], list[str]] = {}
        for draft in drafts:
            if draft.new or draft.deltas or not draft.fields:
                draft.flush(tx)
                continue
            key = tuple(draft.fields.items())
            try:
                same.setdefault(key, []).append(draft.row["name"])
            except TypeError:  # an unhashable value: written on its own
                draft.flush(tx)
                continue
            draft.fields = {}
        for key, names in same.items():
            tx.update_workers(names, dict(key))

    def flush(self, tx: Tx) -> None:
        """Write what changed, in one statement (two for a new row)."""
        if self.new:
            tx.insert_worker({k: v for k, v in self.row.items() if k in columns.WORKER_COLUMNS})
            self.new = False  # (another server may have inserted it: the update still applies)
        if self.fields or self.deltas:
            tx.update_worker(self.row["name"], self.fields, self.deltas)
            self.fields, self.deltas = {}, {}


class WorkerProtocol:
    """What workers ask of the server: pickjob, heartbeat, endjob."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.clock = ctx.clock
        self.failing = Failures(ctx)
        # Rule plans by (rule lines, tag-cache generation): pure results over committed data.
        self._plans: dict[tuple[str, str, int], list[list[int]]] = {}
        shares = ctx.settings.fair_share
        self.shares = FairShare(dict(shares), ctx.clock) if shares is not None else None
        self._cpu_hosts: tuple[float, bool] = (float("-inf"), False)  # (read at, answer)
        self._hosts: tuple[float, int] = (float("-inf"), 0)  # (read at, worker processes alive)

    # -- worker rows ------------------------------------------------------------------------
    def _touch(
        self,
        tx: Tx,
        ping: Ping,
        now: float,
        defer: bool = False,
        rows: Mapping[str, Row] | None = None,
        cpu: str | None = None,
    ) -> WorkerDraft:
        """Read (or create) the worker row and note what it reported; written by flush().
        With `defer`, a new row is only inserted by flush(). `rows`: the rows of a sync's
        slots, read at once (a name missing there has no row); `cpu`: the ping's cpu text,
        made once per sync."""
        row = rows.get(ping.name) if rows is not None else tx.worker(ping.name)
        fields: dict[str, Any] = {"ping_time": now}
        if ping.cpu is not None:
            fields["cpu"] = cpu if cpu is not None else cpu_text(ping.cpu)
        if ping.free_memory is not None:
            fields["free_memory"] = int(ping.free_memory)
        if ping.total_memory is not None:
            fields["total_memory"] = int(ping.total_memory)
        if ping.ip:
            fields["ip"] = ping.ip[:64]
        if ping.resources is not None:
            fields.update(ping.resources.columns())
        if ping.host is not None:
            fields["host"] = ping.host
        if ping.offers is not None:
            fields["offers"] = ",".join(parse_tags(ping.offers))
        if ping.affinity is not None and (row is None or not row["affinity_set"]):
            lines = parse_rule_lines(ping.affinity)
            fields["affinity"] = format_rule_lines(lines)
            if row is None or row["affinity"] != fields["affinity"]:
                tx.register_affinities(t for line in lines for t in line)
        if row is None:
            new = {**columns.new_worker_row(ping.name), "state": W_WAITING, "start_time": now, **fields}
            if ping.host:
                new.update(self.failing.inherited(tx, ping.host))  # a new slot of a known host
            if defer:
                return WorkerDraft(new, new=True)
            tx.insert_worker(new)
            return WorkerDraft(tx.worker(ping.name) or new)
        draft = WorkerDraft(row)
        draft.set(**fields)
        if row["state"] in (W_TIMEOUT, W_STARTING, W_TERMINATED):
            # A worker heard from again is alive (a terminated cloud instance that still
            # polls is too: Coalition 4 flipped it back the same way).
            draft.set(state=W_WORKING if row["current_job"] else W_WAITING)
        return draft

    # -- pick -------------------------------------------------------------------------------
    def pick(self, ping: Ping) -> dict[str, Any] | None:
        """Give the worker its next job (or None), atomically."""
        now = self.clock()

        def fn(tx: Tx, fx: Effects) -> dict[str, Any] | None:
            worker = self._touch(tx, ping, now)
            job = self._pick(tx, fx, self.ctx.tree(tx, fx, now), worker, now, self._offer(tx, ping, now))
            worker.flush(tx)
            return job

        return self.ctx.write(fn)

    def _plan(
        self, affinity: str, shapes: Mapping[int, scheduling.Shape], generation: int | None, offers: str = ""
    ) -> list[list[int]]:
        def plan_of() -> list[list[int]]:
            lines = scheduling.with_offers(parse_rule_lines(affinity), parse_tags(offers))
            return scheduling.rule_plan(lines, {k: v.tags for k, v in shapes.items()})

        if generation is None:  # tag sets not committed yet: not to be cached
            return plan_of()
        key = (affinity, offers, generation)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) > 4096:
                self._plans.clear()
            plan = plan_of()
            self._plans[key] = plan
        return plan

    def _offer(self, tx: Tx, ping: Ping, now: float) -> scheduling.Free | None:
        """What the asking worker may take: its `free`, with `gpureserve` decided. `auto`
        keeps a GPU host's GPUs for GPU jobs while the farm has hosts without GPUs alive."""
        free = ping.free
        if free is None or free.total_gpus == 0 or ping.gpureserve == "off":
            return free
        reserve = ping.gpureserve == "on" or self._farm_has_cpu_hosts(tx, now)
        return replace(free, reserve_gpus=reserve) if reserve else free

    def _farm_has_cpu_hosts(self, tx: Tx, now: float) -> bool:
        # A hint read at most every 10 s per process: a host that joined or left shifts CPU
        # jobs a few seconds late, which costs nothing but a pick's worth of preference.
        read_at, answer = self._cpu_hosts
        if now - read_at > 10.0 or now < read_at:
            answer = tx.cpu_hosts_alive(now - self.ctx.settings.worker_timeout)
            self._cpu_hosts = (now, answer)
        return answer

    def _pick(
        self,
        tx: Tx,
        fx: Effects,
        tree: Tree,
        worker: WorkerDraft,
        now: float,
        free: scheduling.Free | None = None,
        keep: frozenset[int] = frozenset(),
        held: bool = False,
    ) -> dict[str, Any] | None:
        """Hand the worker its next job (or None) inside the caller's transaction; how long
        it took goes to the effects (the pick latency of /metrics). `keep`: jobs the worker
        has or runs (not lost though it asks); `held`: the job is to be held, not started now
        (the worker row keeps its current job)."""
        started = time.perf_counter()
        job = self._choose(tx, fx, tree, worker, now, free, keep, held)
        fx.picked(time.perf_counter() - started, job is not None)
        return job

    def _choose(
        self,
        tx: Tx,
        fx: Effects,
        tree: Tree,
        worker: WorkerDraft,
        now: float,
        free: scheduling.Free | None,
        keep: frozenset[int] = frozenset(),
        held: bool = False,
    ) -> dict[str, Any] | None:
        name = worker["name"]
        sick = worker["state"] == W_SICK  # takes no job until checked or cleared
        if worker["current_job"] and worker["current_job"] not in keep:
            # The worker asks for work while we think it runs a job: it restarted or lost it.
            job = tx.job(worker["current_job"])
            if job is not None and job["state"] == WORKING and job["worker"] == name:
                abort_run(tx, tree, fx, job, "LOST", now)
            worker.set(current_job=0, state=W_SICK if sick else W_WAITING)
        if sick:
            return None
        if not worker["active"]:
            if not held:
                worker.set(state=W_WAITING)
            return None
        skip = self.failing.skip_ranges(tx, worker, now)
        shapes, generation = tree.tags.current()
        rules = self._plan(worker["affinity"], shapes, generation, worker["offers"])
        plan = scheduling.fit_plan(rules, shapes, free)
        for line in plan:
            full: list[str] = []  # limit texts found without room in this pick
            attempts = 0
            while attempts < 4:
                candidate = tx.first_ready(line, skip, full)
                if candidate is None:
                    break
                if self.shares is not None:
                    candidate = self.shares.choose(tx, line, full, candidate, skip)
                job_id, _, title, needs = candidate
                if needs and limits.acquire(tx, needs, now):
                    full.append(needs)  # pass over every job needing these limits, this pick
                    continue
                attempts += 1
                event = tx.insert_event(
                    {
                        "worker": name,
                        "job_id": job_id,
                        "job_title": title,
                        "state": WORKING,
                        "start": now,
                        "duration": 0.0,
                    }
                )
                job = tx.claim(job_id, name, event, now)
                if job is not None:
                    fx.run_started(job_id, event)
                    if needs:
                        tx.update_job(job_id, {"limits_held": needs})
                        job["limits_held"] = needs
                    return self._start_run(tree, job, event, worker, held)
                # Another server won this job between our read and our write: look again.
                tx.delete_event(event)
                if needs:
                    limits.release_held(tx, needs)
        if not held:
            worker.set(state=W_WAITING)
        return None

    def _start_run(
        self, tree: Tree, job: Row, event: int, worker: WorkerDraft, held: bool = False
    ) -> dict[str, Any]:
        job_id = job["id"]
        job["state"] = WAITING  # the claim wrote WORKING; count the transition once, here
        tree.set_leaf_state(job, WORKING, {"run_event": event}, written=True)
        if not held:
            worker.set(state=W_WORKING, current_job=job_id, last_job=job_id, current_event=event)
        out = {"event": event, **{name: job[name] for name in columns.JOB_PICK}}
        out["stalltimeout"] = self.failing.stalltimeout(job)  # the job's own, or the farm's
        out["need"] = tree.tags.shape(job["tagset"]).need.as_dict()  # what the run holds there
        return out

    # -- heartbeat --------------------------------------------------------------------------
    def heartbeat(
        self, ping: Ping, job_id: int | None, event: int | None, chunk: bytes, offset: int | None
    ) -> Beat:
        """Record a heartbeat; say whether the worker must kill its job."""
        now = self.clock()

        def fn(tx: Tx, fx: Effects) -> Beat:
            worker = self._touch(tx, ping, now)
            beat = self._beat(tx, fx, worker, job_id, event, chunk, offset, now)
            worker.flush(tx)
            return beat

        return self.ctx.write(fn)

    def _beat(
        self,
        tx: Tx,
        fx: Effects,
        worker: WorkerDraft,
        job_id: int | None,
        event: int | None,
        chunk: bytes,
        offset: int | None,
        now: float,
        jobs: Mapping[int, Row] | None = None,
    ) -> Beat:
        beat = Beat(stop=not worker["active"])
        if not job_id:
            return beat
        job = jobs.get(job_id) if jobs is not None else tx.job(job_id)
        if job is None:
            beat.kill = True
            return beat
        name = worker["name"]
        if not self._owns(job, name, event, worker.row):
            # Re-adopt a run we requeued only because the worker went silent, if nobody
            # took it since: killing a healthy render after a network blip wastes it.
            if self._adoptable(job, name, event, worker.row):
                whole = tx.job(job_id)  # tree upkeep reads more than a beat's columns
                assert whole is not None
                self._readopt(tx, fx, whole, worker, now)
                job = whole
            else:
                beat.kill = True
                if worker["current_job"] == job_id:
                    worker.set(current_job=0, state=W_WAITING)
                return beat
        if worker["current_job"] != job_id or worker["state"] != W_WORKING:
            worker.set(current_job=job_id, state=W_WORKING, last_job=job_id, current_event=job["run_event"])
        beat.started = float(job["start_time"] or now)
        fields: dict[str, Any] = {"ping_time": now}
        if chunk:
            start = job["log_offset"] if offset is None else offset
            data, received = scheduling.log_slice(job["log_offset"], start, chunk)
            fields["log_offset"] = received
            fx.append_run_output(job_id, job["run_event"], start, chunk, job["log_offset"])
            text = data.decode("utf-8", "replace")
            done = progress.parse_progress(job["progress_pattern"], text)
            if done is not None:
                fields["progress"] = done
            local = progress.parse_progress(job["local_progress_pattern"], text)
            if local is not None:
                fields["local_progress"] = local
            hit = self.failing.match(job, text)
            if hit:
                fields["rule_hit"] = job["rule_hit"] = hit
                fx.note(f"job {job_id}: log rule {hit} on worker {name}")
        verdict = Verdict.of(job)
        if verdict is not None and verdict.kills:
            beat.kill = True  # the worker ends the run and reports it; the end applies the verdict
        tx.update_job(job_id, {**fields, "updated_at": now})
        return beat

    # -- sync: every slot of a worker process in one request --------------------------------
    def sync(self, host: Ping, slots: Sequence[SlotReport], asked: float) -> Sync:
        """Heartbeats and picks of all the slots of one worker process, in one transaction;
        the answer also says when to sync next (scheduling.next_sync)."""
        now = self.clock()

        def fn(tx: Tx, fx: Effects) -> list[tuple[SlotAnswer, float]]:
            out: list[tuple[SlotAnswer, float]] = []
            tree: Tree | None = None
            budget = host.free  # a packing host's free amounts, spent as jobs are handed out
            # Every slot's row and every reported run's job in two reads, not two per slot.
            rows = {r["name"]: r for r in tx.workers([s.name for s in slots])}
            jobs = {r["id"]: r for r in tx.jobs([s.job_id for s in slots if s.job_id], _BEAT_COLUMNS)}
            cpu = cpu_text(host.cpu) if host.cpu is not None else None
            drafts: list[WorkerDraft] = []  # written together at the end
            for report in slots:
                share = report.resources or host.resources
                spare = report.spare and report.pick and not report.job_id
                ping = replace(host, name=report.name, resources=share)
                worker = self._touch(tx, ping, now, defer=spare, rows=rows, cpu=cpu)
                answer = SlotAnswer(report.name, job_id=report.job_id)
                started = 0.0
                if report.job_id:
                    beat = self._beat(
                        tx, fx, worker, report.job_id, report.event, report.chunk, report.offset, now, jobs
                    )
                    answer.kill, answer.stop, started = beat.kill, beat.stop, beat.started
                else:
                    answer.stop = not worker["active"]
                    answer.sick = worker["state"] == W_SICK
                    if report.pick:
                        tree = tree or self.ctx.tree(tx, fx, now)
                        own = report.free is not None  # a fixed slot's share
                        offer = self._offer(tx, replace(host, free=report.free if own else budget), now)
                        answer.job = self._pick(tx, fx, tree, worker, now, offer)
                        if answer.job is not None and not own and budget is not None:
                            need = answer.job["need"]
                            budget = scheduling.consume(
                                budget, scheduling.Need(**{**need, "exclusive": bool(need["exclusive"])})
                            )
                    elif worker["current_job"]:
                        # Idle and not asking (stopping): nothing of ours runs there any more.
                        job = tx.job(worker["current_job"])
                        if job is not None and job["state"] == WORKING and job["worker"] == report.name:
                            tree = tree or self.ctx.tree(tx, fx, now)
                            abort_run(tx, tree, fx, job, "LOST", now)
                        worker.set(current_job=0, state=W_WAITING)
                if not (worker.new and answer.job is None):
                    drafts.append(worker)
                out.append((answer, started))
            WorkerDraft.flush_all(tx, drafts)
            return out

        results = self.ctx.write(fn)
        runs = [now - started for answer, started in results if started and not answer.kill]
        interval = scheduling.next_sync(
            asked,
            self.ctx.settings.worker_timeout,
            handed=any(answer.job for answer, _ in results),
            kill=any(answer.kill for answer, _ in results),
            running=len(runs),
            shortest_run=min(runs, default=0.0),
            spread=scheduling.sync_spread(self._hosts_alive(now), self.ctx.settings.sync_rate),
        )
        if not any(answer.job or answer.kill for answer, _ in results):
            ceiling = max(scheduling.SYNC_MIN, self.ctx.settings.worker_timeout / 2.5)
            if runs:
                ceiling = min(ceiling, scheduling.SYNC_KILL_BOUND)
            phase = scheduling.host_phase(host.host or host.name)
            interval = scheduling.phase_aligned(interval, phase, now, ceiling)
        return Sync([answer for answer, _ in results], interval)

    def _hosts_alive(self, now: float) -> int:
        """Worker processes heard from within the timeout: read at most every 10 s per server
        process (a farm's size changes slowly; being a few hosts off moves the cadence by
        milliseconds)."""
        if self.ctx.settings.sync_rate <= 0:
            return 0
        read_at, hosts = self._hosts
        if now - read_at > 10.0 or now < read_at:
            since = now - self.ctx.settings.worker_timeout
            hosts = self.ctx.read(lambda tx: tx.hosts_alive(since))
            self._hosts = (now, hosts)
        return hosts

    @staticmethod
    def _owns(job: Row, name: str, event: int | None, worker: Row) -> bool:
        return (
            job["state"] == WORKING
            and job["worker"] == name
            and (event is None or job["run_event"] == event)
            and bool(worker["active"])
            and not job["paused"]
        )

    @staticmethod
    def _adoptable(job: Row, name: str, event: int | None, worker: Row) -> bool:
        return (
            event is not None
            and job["state"] == WAITING
            and job["worker"] == name
            and job["run_event"] == event
            and not job["h_blocked"]
            and bool(worker["active"])
        )

    def _readopt(self, tx: Tx, fx: Effects, job: Row, worker: WorkerDraft, now: float) -> None:
        tree = self.ctx.tree(tx, fx, now)
        held: dict[str, Any] = {}
        if job["limits"]:
            # The requeue gave its limits back; the run kept them all along: count them again.
            for limit_name, amount in scheduling.limit_amounts(job["limits"]).items():
                tx.release_limit(limit_name, -amount)
            held["limits_held"] = job["limits"]
        tree.set_leaf_state(job, WORKING, {"requeues": max(0, job["requeues"] - 1), **held})
        tx.update_event(job["run_event"], {"state": WORKING})
        worker.set(current_job=job["id"], state=W_WORKING)
        fx.note(f"worker {worker['name']}: re-adopted job {job['id']} after a silence")

    # -- end of a run -----------------------------------------------------------------------
    def end(
        self,
        ping: Ping,
        job_id: int,
        event: int | None,
        exit_code: int,
        chunk: bytes,
        offset: int | None,
        timed_out: bool = False,
        interrupted: bool = False,
        pick: bool = False,
        usage: RunUsage | None = None,
        thumbnail: tuple[str, bytes] | None = None,
        reason: str = "",
        elapsed: float | None = None,
        hold: int = 0,
        running: int | None = None,
        earlier: Sequence[RunReport] = (),
    ) -> End:
        """Record the end of a run (and maybe hand out the next job in the same transaction).

        `reason` is the worker's own account when it ended the run itself (timeout, stall,
        handback); `elapsed` how long the process ran by the worker's clock.

        Look-ahead (docs/protocol.md, "Held jobs"): with `hold` (a count), that many more
        jobs are handed out for the slot to hold and start, one after the other, the moment
        its current run ends, so that a farm of short jobs does not wait a round trip between
        runs. `running`: the held job the slot has started meanwhile; it becomes the worker's
        current job (and is not taken for lost), or, if it is no longer the slot's to run, the
        answer says `kill`. `earlier`: runs of the slot that ended before this one, reported
        together (one request and one transaction for several short runs)."""
        now = self.clock()
        this = RunReport(
            job_id, event, exit_code, chunk, offset, timed_out, interrupted, usage, thumbnail, reason, elapsed
        )

        def fn(tx: Tx, fx: Effects) -> End:
            worker = self._touch(tx, ping, now)
            tree = self.ctx.tree(tx, fx, now)
            result = End()
            for report in earlier:
                refusal = self._end_run(tx, fx, tree, worker, report, now)
                if refusal:
                    result.earlier_ignored[report.job_id] = refusal
            result.ignored = self._end_run(tx, fx, tree, worker, this, now)
            result.transitions = tree.transitions
            keep = frozenset((running,)) if running else frozenset()
            offer = self._offer(tx, ping, now) if pick or hold else None
            if pick:
                result.next_job = self._pick(tx, fx, tree, worker, now, offer, keep)
            if hold > 0 and scheduling.may_hold(pick, result.next_job):
                if result.next_job is not None:
                    keep = keep | {result.next_job["id"]}
                # A held job shares the slot with the run before it: never the whole host.
                held_offer = replace(offer, whole=False) if offer is not None else None
                for _ in range(min(hold, scheduling.HOLD_DEPTH)):
                    job = self._pick(tx, fx, tree, worker, now, held_offer, keep, held=True)
                    if job is None:
                        break
                    result.held.append(job)
                    keep = keep | {job["id"]}
            if running:
                result.kill = not self._keep_running(tx, fx, tree, worker, running, now)
            result.sick = worker["state"] == W_SICK
            worker.flush(tx)
            return result

        return self.ctx.write(fn)

    def _end_run(
        self, tx: Tx, fx: Effects, tree: Tree, worker: WorkerDraft, report: RunReport, now: float
    ) -> str:
        """Record one reported run's end; the reason it was refused ("": recorded)."""
        job_id = report.job_id
        job = tx.job(job_id)
        refusal = self._end_refusal(job, worker["name"], report.event)
        if refusal:
            if worker["current_job"] == job_id:
                worker.set(current_job=0, state=W_WAITING)
            return refusal
        assert job is not None
        if report.chunk:
            start = job["log_offset"] if report.offset is None else report.offset
            data, received = scheduling.log_slice(job["log_offset"], start, report.chunk)
            fx.append_run_output(job_id, job["run_event"], start, report.chunk, job["log_offset"])
            job["log_offset"] = received
            hit = self.failing.match(job, data.decode("utf-8", "replace"))
            if hit:
                job["rule_hit"] = hit
        run = RunEnd(
            report.exit_code,
            report.timed_out,
            report.interrupted,
            report.reason,
            report.elapsed,
            report.usage,
        )
        self._finish_run(tx, fx, tree, job, worker, run, now)
        if report.thumbnail is not None:
            # The newest image of the job is also its groups' newest, up to the root.
            kind, data_ = report.thumbnail
            tx.put_thumbnail(_lineage(tx, job), job_id, kind, data_, now)
        return ""

    def _keep_running(
        self, tx: Tx, fx: Effects, tree: Tree, worker: WorkerDraft, job_id: int, now: float
    ) -> bool:
        """The slot started its held job `job_id`: make it the worker's current job, or, if
        the job is not the slot's to run any more, say so (False: the worker kills it). A
        held job of a worker stopped by an operator is still WORKING there (the stop freed
        only the current job): it goes back to the queue here."""
        job = tx.job(job_id)
        if job is not None and self._owns(job, worker["name"], None, worker.row):
            worker.set(state=W_WORKING, current_job=job_id, last_job=job_id, current_event=job["run_event"])
            return True
        if job is not None and job["state"] == WORKING and job["worker"] == worker["name"]:
            abort_run(tx, tree, fx, job, "STOPPED" if not worker["active"] else "PAUSED", now)
        return False

    @staticmethod
    def _end_refusal(job: Row | None, name: str, event: int | None) -> str:
        if job is None:
            return "the job was deleted"
        if job["worker"] != name:
            return "the job is no longer assigned to this worker"
        if event is not None and job["run_event"] != event:
            return "this run was cancelled (paused, reset or handed to another worker)"
        if job["state"] == WORKING:
            return ""
        if job["state"] == WAITING and event is not None and job["run_event"] == event:
            return ""  # requeued while the worker was silent and not picked since: accept the result
        return f"the job is {job['state']}, not running"

    def _finish_run(
        self, tx: Tx, fx: Effects, tree: Tree, job: Row, worker: WorkerDraft, run: RunEnd, now: float
    ) -> None:
        duration = max(0.0, now - job["start_time"]) if job["start_time"] else 0.0
        fields: dict[str, Any] = {
            "run_event": 0,
            "duration": duration,
            "log_offset": job["log_offset"],
            "ping_time": now,
            "rule_hit": "",
        }
        verdict = Verdict.of(job)
        failed = False  # a failure of this host's run (counted towards blocks and sickness)
        requeued_by_rule = verdict is not None and verdict.kind in (
            failures.REQUEUE,
            failures.SICK,
            failures.LIMIT,
        )
        if run.interrupted:
            # A hand-back (systemctl stop, a restart, a spot interruption) is the worker's own
            # doing, not the job's: back to the queue, no retry spent, and not counted against
            # `requeuelimit` either, which is for silent workers (a job that kills its host).
            # Hand-backs are counted apart, as the job's INTERRUPTED runs (its events).
            outcome, event_state = WAITING, "INTERRUPTED"
            why = run.reason or "handed back"
        elif requeued_by_rule:
            # A log rule says the run could not work here or now (licence, disk): back to the
            # queue without spending a retry, bounded like silent requeues.
            assert verdict is not None
            requeue = scheduling.should_requeue_silent(job["requeues"], self.ctx.settings.requeue_limit)
            fields["requeues"] = job["requeues"] + 1
            outcome, event_state = (WAITING, "REQUEUED") if requeue else (ERROR, ERROR)
            why = verdict.reason
            if not requeue:
                fields["fail_count"] = job["fail_count"] + 1
                why += f"; requeued {job['requeues']} times already"
            if verdict.kind == failures.LIMIT:
                # The licence server refused one: count it as used outside the farm for a
                # while, so the farm stops starting runs that would be refused too.
                name, _, seconds = verdict.action[6:].partition(":")
                if limits.lower(tx, name.lower(), now, int(seconds or 0)):
                    fx.note(f"job {job['id']}: log rule {verdict.name} lowered limit {name}")
                else:
                    fx.note(f"job {job['id']}: log rule {verdict.name}: the farm has no limit {name}")
        else:
            elapsed = run.elapsed
            if elapsed is None:
                elapsed = run.usage.wall_s if run.usage is not None and run.usage.wall_s > 0 else duration
            ok = run.exit_code == 0 and not run.timed_out and not run.reason
            if verdict is not None and verdict.kind == failures.SUCCEED:
                ok, why = True, verdict.reason  # e.g. "render complete" from a renderer that then hangs
            elif verdict is not None and verdict.kind == failures.FAIL:
                ok, why = False, verdict.reason
            elif ok and failures.too_fast(run.exit_code, elapsed, self.failing.minruntime(job)):
                ok, why = False, failures.too_fast_reason(elapsed, self.failing.minruntime(job))
            elif ok:
                why = ""
            elif run.reason:
                why = run.reason
            elif run.timed_out:
                why = failures.timeout_reason(job["timeout"])
            else:
                why = failures.exit_reason(run.exit_code)
            if ok:
                outcome, event_state = FINISHED, FINISHED
                fields.update(progress=1.0, run_done=job["run_done"] + 1)
            else:
                failed = True
                fails = job["fail_count"] + 1
                fields.update(fail_count=fails, run_done=job["run_done"] + 1)
                retry = scheduling.should_retry(fails, job["retry"])
                # "fail": a fatal message a retry would print again: ERROR now.
                outcome = WAITING if retry and not (verdict and verdict.kind == failures.FAIL) else ERROR
                event_state = ERROR
        why = failures.clip(why)
        fields["reason"] = why
        if outcome == WAITING and job["pending"]:
            outcome = PENDING
        if job["run_event"]:
            fields_of_event: dict[str, Any] = {"state": event_state, "duration": duration, "reason": why}
            if run.usage is not None:
                fields_of_event.update(cpu_time=run.usage.cpu_s, peak_memory=run.usage.peak_memory_mb)
            tx.update_event(job["run_event"], fields_of_event)
        counter = "finished" if event_state == FINISHED else "error" if event_state == ERROR else ""
        if counter:
            worker.bump(counter, 1)
        if worker["current_job"] == job["id"]:
            worker.set(current_job=0, state=W_WAITING)
        was_running = job["state"] == WORKING
        tree.set_leaf_state(
            job, outcome, fields, duration_delta=duration if was_running or outcome != WAITING else 0.0
        )
        if event_state == ERROR:
            tree.child_failed(job["parent"])
        if failed:
            self.failing.count(tx, fx, job, worker, why, now)
        if verdict is not None and verdict.kind == failures.SICK:
            self.failing.mark_sick(tx, fx, worker, verdict.reason, now)
        self.failing.catch_sickness(tx, worker)  # its host may have turned SICK meanwhile

    # -- a SICK worker's check ----------------------------------------------------------------
    def checked(self, ping: Ping, passed: bool, detail: str = "") -> bool:
        """A SICK worker ran its check command: a pass clears it. Returns whether it is
        still SICK."""
        now = self.clock()

        def fn(tx: Tx, fx: Effects) -> bool:
            worker = self._touch(tx, ping, now)
            worker.flush(tx)
            if worker["state"] != W_SICK:
                return False
            if not passed:
                return True
            how = "check command passed" + (f": {detail}" if detail else "")
            self.failing.heal(tx, worker.row, how, now)
            fx.note(f"worker {ping.name}: {how}; no longer SICK")
            return False

        return self.ctx.write(fn)


def _lineage(tx: Tx, job: Row) -> list[int]:
    """A job's id and its ancestors' ids, the job first."""
    ids = [job["id"]]
    parent = job["parent"]
    while parent and parent not in ids and len(ids) <= 128:
        ids.append(parent)
        row = tx.job(parent)
        parent = row["parent"] if row is not None else 0
    return ids
