"""The pick: which job a worker gets next, inside the caller's transaction. Its rule plan
(the affinity lines against the tag sets of the queue), what it may take (its free amounts,
GPUs kept for GPU jobs), the fair share between users, limits, and the claim itself.

Kept apart from workers.py because a pick happens inside three of the protocol's calls
(pickjob, sync, endjob with its held jobs) and carries state of its own across them: the plan
cache and the CPU-hosts hint. `Picker` is a collaborator the protocol holds and calls, not a
base class (use-case classes do not inherit from each other).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .. import columns, scheduling
from ..hierarchy import Tree
from ..model import W_SICK, W_WAITING, W_WORKING, WAITING, WORKING, parse_rule_lines, parse_tags
from ..store.base import Row, Tx
from . import limits
from .context import Context, Effects
from .failing import Failures
from .fairshare import FairShare
from .messages import Ping
from .runs import abort_run
from .workerdraft import WorkerDraft


class Picker:
    """Hands a worker its next job inside the caller's transaction (WorkerProtocol's pickjob,
    sync and endjob call it)."""

    def __init__(self, ctx: Context, failing: Failures):
        self.ctx = ctx
        self.failing = failing
        # Rule plans by (rule lines, tag-cache generation): pure results over committed data.
        self._plans: dict[tuple[str, str, int], list[list[int]]] = {}
        shares = ctx.settings.fair_share
        self.shares = FairShare(dict(shares), ctx.clock) if shares is not None else None
        self._cpu_hosts: tuple[float, bool] = (float("-inf"), False)  # (read at, answer)

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

    def offer(self, tx: Tx, ping: Ping, now: float) -> scheduling.Free | None:
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

    def pick(
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
