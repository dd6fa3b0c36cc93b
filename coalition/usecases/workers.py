"""The worker protocol's use cases: pick, heartbeat, end of run. One write transaction per
call over the context; log bytes are effects, appended after the commit.

What the protocol says and hears is in messages.py, the worker row a request changes in
workerdraft.py; the pick is pick.Picker's and the record of a run's end runend.RunEnds',
collaborators WorkerProtocol holds and calls inside its transactions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from .. import columns, progress, scheduling
from ..hierarchy import Tree
from ..model import (
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
from .context import Context, Effects
from .failing import Failures, Verdict
from .messages import Beat, End, Ping, RunReport, RunUsage, SlotAnswer, SlotReport, Sync
from .pick import Picker
from .runend import RunEnds
from .runs import abort_run
from .workerdraft import WorkerDraft

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


class WorkerProtocol:
    """What workers ask of the server: pickjob, heartbeat, endjob."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.clock = ctx.clock
        self.failing = Failures(ctx)
        self.picker = Picker(ctx, self.failing)  # the pick: its plan cache, the CPU-hosts hint
        self.ends = RunEnds(ctx, self.failing)  # a reported run's end
        self._hosts: tuple[float, int] = (float("-inf"), 0)  # (read at, worker processes alive)
        self._idle_hosts: tuple[float, frozenset[str]] = (float("-inf"), frozenset())  # (read at, hosts)

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
            job = self.picker.pick(
                tx, fx, self.ctx.tree(tx, fx, now), worker, now, self.picker.offer(tx, ping, now)
            )
            worker.flush(tx)
            return job

        return self.ctx.write(fn)

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
                        offer = self.picker.offer(tx, replace(host, free=report.free if own else budget), now)
                        answer.job = self.picker.pick(tx, fx, tree, worker, now, offer)
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
                refusal = self.ends.end_run(tx, fx, tree, worker, report, now)
                if refusal:
                    result.earlier_ignored[report.job_id] = refusal
            result.ignored = self.ends.end_run(tx, fx, tree, worker, this, now)
            result.transitions = tree.transitions
            keep = frozenset((running,)) if running else frozenset()
            offer = self.picker.offer(tx, ping, now) if pick or hold else None
            if pick:
                result.next_job = self.picker.pick(tx, fx, tree, worker, now, offer, keep)
            if hold > 0 and scheduling.may_hold(pick, result.next_job):
                if result.next_job is not None:
                    keep = keep | {result.next_job["id"]}
                # A held job shares the slot with the run before it: never the whole host.
                held_offer = replace(offer, whole=False) if offer is not None else None
                others_idle = self._others_idle(tx, worker["host"] or "", now)
                for _ in range(scheduling.hold_count(hold, others_idle)):
                    job = self.picker.pick(tx, fx, tree, worker, now, held_offer, keep, held=True)
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

    def _others_idle(self, tx: Tx, host: str, now: float) -> bool:
        # A hint read at most every second per process, as the pick's CPU-hosts hint: a host
        # that just turned idle holds back the others' look-ahead a second late.
        read_at, hosts = self._idle_hosts
        if now - read_at > 1.0 or now < read_at:
            hosts = frozenset(tx.idle_hosts(now - self.ctx.settings.worker_timeout, 3))
            self._idle_hosts = (now, hosts)
        # Without a host name (a slot of its own), any waiting row is another's: ours runs.
        return any(h != host or not host for h in hosts)

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
