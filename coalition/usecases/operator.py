"""The operator's commands: submit, edit, pause, start, reset, delete jobs; dependencies;
the affinity registry; worker edits. Each is one write transaction over the context; every
effect outside the database is handed back in `Effects` and applied after the commit. The
rules of dependency lists and moves, and the wait-cycle check, are in jobdeps.py.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any

from .. import columns
from ..audit import NOBODY, Actor, audit_rows, record_audit
from ..errors import NotFound
from ..hierarchy import Tree
from ..model import (
    DEFAULT_PROGRESS_PATTERN,
    ERROR,
    FINISHED,
    PENDING,
    W_TIMEOUT,
    W_WAITING,
    WAITING,
    WORKING,
    JobEdit,
    JobSpec,
    ValidationError,
    format_rule_lines,
    parse_rule_lines,
    parse_tags,
)
from ..store.base import Row, Tx
from . import framedeps, jobdeps
from .context import Context, Effects
from .limits import check_limits_exist, release_held
from .runs import abort_run, release_worker_job

# Called with a job row when a job is about to be put under it (a new child, or a move):
# the auth layer refuses a group its caller may not edit. Raising aborts the transaction.
ParentGuard = Callable[[Row], None]


# The settable columns a JobSpec carries as they are (`state` is folded into `paused`).
_SPEC_COLUMNS = tuple(c for c in columns.JOB_SETTABLE if c in {f.name for f in fields(JobSpec)})
_NEED_COLUMNS = ("cores", "memory", "gpus", "exclusive")  # a change re-derives the subtree


class Operator:
    """Commands of the people who run the farm (the REST API's write side)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def set_affinities(self, names: Mapping[Any, Any], actor: Actor = NOBODY) -> None:
        """Set numbered registry entries; an empty name clears one."""
        clean: dict[int, str] = {}
        for key, value in names.items():
            try:
                num = int(str(key).strip().lstrip("#"))
            except ValueError:
                raise ValidationError(f"affinity numbers must be integers, got {key!r}") from None
            if num < 1 or num > 1_000_000:
                raise ValidationError(f"affinity number {num} is out of range")
            if value is None:
                value = ""
            if not isinstance(value, str) or "," in value or "\n" in value or len(value) > 255:
                raise ValidationError(f"affinity {num}: a name is a string without commas or newlines")
            clean[num] = value.strip()
        names_in_use = [n for n in clean.values() if n]
        if len(names_in_use) != len(set(names_in_use)):
            raise ValidationError("affinity names must be unique")

        def fn(tx: Tx, fx: Effects) -> None:
            existing = {v: k for k, v in tx.affinities().items()}
            for num, name in clean.items():
                other = existing.get(name)
                if name and other is not None and other != num and other not in clean:
                    raise ValidationError(f"affinity name {name!r} is already number {other}")
            tx.set_affinities(clean)
            record_audit(
                tx, actor, "affinities", "", [], self.ctx.clock(), {str(k): v for k, v in clean.items()}
            )

        self.ctx.write(fn)

    # -- submission -------------------------------------------------------------------------
    def submit(
        self,
        spec: JobSpec,
        actor: Actor = NOBODY,
        parent_guard: ParentGuard | None = None,
        key: str | None = None,
    ) -> int:
        """Create a job; returns its id."""
        return self.submit_many([spec], actor, parent_guard, key)[0]

    def submit_many(
        self,
        specs: Sequence[JobSpec],
        actor: Actor = NOBODY,
        parent_guard: ParentGuard | None = None,
        key: str | None = None,
    ) -> list[int]:
        """Create jobs in one transaction (all or none); returns their ids in order.

        Idempotent under `key` (a client's Idempotency-Key, else one made here): the key is
        recorded in the same transaction, so a transaction the engine reruns after a COMMIT
        whose answer was lost finds it and returns the jobs it created, not a second set.
        """
        now = self.ctx.clock()
        key = key or uuid.uuid4().hex

        def fn(tx: Tx, fx: Effects) -> list[int]:
            done = tx.submission(key)
            if done is not None:
                return done
            tree = self.ctx.tree(tx, fx, now)
            batch = _Batch()
            ids = [self._insert(tx, tree, spec, now, parent_guard, batch) for spec in specs]
            batch.flush(tree)
            by_owner: dict[str, list[int]] = {}
            for spec, job_id in zip(specs, ids, strict=True):
                by_owner.setdefault(spec.user, []).append(job_id)
            for owner, owned in by_owner.items():
                record_audit(tx, actor, "create", owner, owned, now)
            tx.insert_submission(key, ids, now)
            return ids

        return self.ctx.write(fn)

    def _insert(
        self,
        tx: Tx,
        tree: Tree,
        spec: JobSpec,
        now: float,
        parent_guard: ParentGuard | None = None,
        batch: _Batch | None = None,
    ) -> int:
        parent_id = self._resolve_parent(tx, spec.parent)
        batch = batch or _Batch()
        prow = batch.parent(tx, parent_id) if parent_id else None
        if parent_id and prow is None:
            raise ValidationError(f"parent job {parent_id} does not exist")
        if prow is not None and parent_guard is not None:
            parent_guard(prow)
        if prow is not None and not prow["children"] and prow["state"] == WORKING:
            raise ValidationError(f"parent job {parent_id} is running: it cannot become a group now")
        deps = list(spec.dependencies)
        dep_rows = tx.jobs(deps)
        missing = sorted(set(deps) - {r["id"] for r in dep_rows})
        if missing:
            raise ValidationError(f"dependencies: job(s) {', '.join(map(str, missing))} do not exist")
        if parent_id and deps:
            chain = {parent_id, *tree.ancestors(parent_id)}
            bad = sorted(chain & set(deps))
            if bad:
                raise ValidationError(f"dependencies: a job cannot depend on its own group ({bad[0]})")
        affinity = self._resolve_affinity(tx, spec.affinity)
        pending = any(r["state"] != FINISHED for r in dep_rows)
        if spec.frame_dep:
            framedeps.check_frame_dep(tx, tree, 0, parent_id, spec.frame_dep, jobdeps.deadlock)
            tx.mark_has_dependents(spec.frame_dep)
            batch.rows.pop(spec.frame_dep, None)  # its row changed: read it again
        if spec.limits:
            check_limits_exist(tx, spec.limits)
        row = columns.new_job_row()
        # The settable columns come from the spec as given; the rest is decided here.
        row.update({name: getattr(spec, name) for name in _SPEC_COLUMNS})
        row.update(
            parent=parent_id,
            dir=spec.dir or ".",
            state=PENDING if pending else WAITING,
            paused=int(spec.paused),
            affinity=affinity,
            progress_pattern=spec.progress_pattern or DEFAULT_PROGRESS_PATTERN,
            pending=int(pending),
            leaf=int(spec.command != ""),
            created_at=now,
            updated_at=now,
        )
        if prow is not None and prow["has_dependents"]:
            row["has_dependents"] = 1  # a frame source's new unit may release its dependents
        if not pending and row["leaf"] and (spec.frame_dep or (prow is not None and prow["frame_dep"])):
            if tree.frame_blocker({**row, "id": 0}) is not None:
                row.update(pending=1, state=PENDING)
        job_id = tx.insert_job(row)
        row.update(id=job_id, h_depth=0, h_blocked=0, tagset=0)
        parent_d = tree.derived_of(prow) if prow is not None else tree.parent_derived(0)
        _, derived = tree.derive_row(parent_d, row)
        tx.update_job(job_id, derived)
        if deps:
            tx.set_deps(job_id, deps)
        if prow is not None:
            if prow["children"]:
                batch.children[parent_id] = batch.children.get(parent_id, 0) + 1  # bumped at the end
            else:
                # A plain job becomes a group: recount it and its ancestors from their rows,
                # which must first hold every count this batch has kept back (a recount would
                # count those new children, and the bump at the end would count them again).
                batch.flush(tree)
                tree.recount(parent_id)
                batch.rows.pop(parent_id, None)  # its row changed: read it again
        return job_id

    def _resolve_parent(self, tx: Tx, parent: int | str) -> int:
        if isinstance(parent, int):
            return parent
        # Chapter 8: a title, or an `a|b` path of titles from the root.
        current = 0
        for title in parent.split("|"):
            ids = tx.child_ids_by_title(current, title.strip())
            if not ids:
                raise ValidationError(f"parent: no job titled {title.strip()!r} under job {current}")
            current = ids[0]
        return current

    def _resolve_affinity(self, tx: Tx, affinity: str) -> str:
        tags = parse_tags(affinity)
        if not tags:
            return ""
        registry = None
        names = []
        for tag in tags:
            m = re.fullmatch(r"#(\d+)", tag)
            if m:  # Coalition 4's numbered affinities
                registry = registry if registry is not None else tx.affinities()
                name = registry.get(int(m.group(1)))
                if not name:
                    raise ValidationError(f"affinity {tag} is not a known affinity number")
                names.append(name)
            else:
                names.append(tag)
        names = list(dict.fromkeys(names))
        tx.register_affinities(names)
        return ",".join(names)

    # -- edits ------------------------------------------------------------------------------
    _PLAIN = columns.JOB_PLAIN_EDITS  # copied as given; the other settable fields have rules

    def edit(
        self, edits: Mapping[int, JobEdit], actor: Actor = NOBODY, parent_guard: ParentGuard | None = None
    ) -> None:
        """Apply attribute edits to several jobs in one transaction (all or none)."""
        now = self.ctx.clock()

        def fn(tx: Tx, fx: Effects) -> None:
            tree = self.ctx.tree(tx, fx, now)
            owners = {r["id"]: r["user"] for r in tx.jobs(list(edits))}
            for job_id, edit in edits.items():
                self._edit_one(tx, tree, fx, job_id, dict(edit.values), now, parent_guard)
                values = edit.values
                detail: dict[str, Any] = {"fields": sorted(values)}
                if "command" in values:  # what a job runs is what an auditor looks for
                    detail["command"] = str(values["command"])[:1000]
                if "user" in values:
                    detail["user"] = values["user"]
                record_audit(tx, actor, "edit", owners.get(job_id, ""), [job_id], now, detail)

        self.ctx.write(fn)

    def _edit_one(
        self,
        tx: Tx,
        tree: Tree,
        fx: Effects,
        job_id: int,
        values: dict[str, Any],
        now: float,
        parent_guard: ParentGuard | None = None,
    ) -> None:
        row = tx.job(job_id)
        if row is None:
            raise NotFound(f"job {job_id} not found")
        plain = {k: values[k] for k in self._PLAIN if k in values}
        if plain.get("limits"):
            check_limits_exist(tx, plain["limits"])
        if "progress_pattern" in plain and not plain["progress_pattern"]:
            plain["progress_pattern"] = DEFAULT_PROGRESS_PATTERN
        if "command" in values:
            plain["command"] = values["command"]
            plain["leaf"] = int(not row["children"] and values["command"] != "")
        rekey = False
        if "priority" in values and values["priority"] != row["priority"]:
            plain["priority"] = values["priority"]
            rekey = True
        if "affinity" in values:
            affinity = self._resolve_affinity(tx, values["affinity"])
            if affinity != row["affinity"]:
                plain["affinity"] = affinity
                rekey = True
        if any(k in plain and plain[k] != row[k] for k in _NEED_COLUMNS):
            rekey = True  # the effective request is part of the subtree's tag sets
        if plain:
            plain["updated_at"] = now
            tx.update_job(job_id, plain)
        if rekey:
            tree.rederive(job_id)
        if "parent" in values:
            jobdeps.move(tx, tree, job_id, self._resolve_parent(tx, values["parent"]), now, parent_guard)
        if "dependencies" in values:
            jobdeps.set_deps(tx, tree, job_id, list(values["dependencies"]))
        if "frame_dep" in values and values["frame_dep"] != row["frame_dep"]:
            framedeps.set_frame_dep(tx, tree, row, int(values["frame_dep"]), jobdeps.deadlock)
        elif any(k in values for k in ("first_frame", "last_frame")):
            framedeps.refresh_frame_waits(tx, tree, job_id)
        pause = values.get("paused")
        state = values.get("state")
        if state == "PAUSED":
            pause = True
        elif state in (WAITING, PENDING) and pause is None:
            pause = False
        if pause is True:
            self._pause(tx, tree, fx, job_id, now)
        elif pause is False:
            self._start(tx, tree, fx, job_id, now)

    def set_dependencies(self, job_id: int, deps: Sequence[int], actor: Actor = NOBODY) -> None:
        """Replace a job's dependency list (cycles refused)."""
        now = self.ctx.clock()

        def fn(tx: Tx, fx: Effects) -> None:
            row = tx.job(job_id)
            if row is None:
                raise NotFound(f"job {job_id} not found")
            jobdeps.set_deps(tx, self.ctx.tree(tx, fx, now), job_id, list(deps))
            record_audit(tx, actor, "edit", row["user"], [job_id], now, {"fields": ["dependencies"]})

        self.ctx.write(fn)

    # -- state commands ---------------------------------------------------------------------
    def pause(self, ids: Sequence[int], actor: Actor = NOBODY) -> None:
        """Pause jobs: nothing below them is dispatched; running ones are killed."""
        self._each(ids, self._pause, actor, "pause")

    def start(self, ids: Sequence[int], actor: Actor = NOBODY) -> None:
        """Un-pause jobs."""
        self._each(ids, self._start, actor, "start")

    def reset(self, ids: Sequence[int], actor: Actor = NOBODY) -> None:
        """Send whole subtrees back to WAITING (or PENDING), killing what runs."""
        self._each(
            ids,
            lambda tx, tree, fx, job_id, now: self._reset(tx, tree, fx, job_id, now, errors_only=False),
            actor,
            "reset",
        )

    def reset_errors(self, ids: Sequence[int], actor: Actor = NOBODY) -> None:
        """Send the ERROR leaves of subtrees back to WAITING."""
        self._each(
            ids,
            lambda tx, tree, fx, job_id, now: self._reset(tx, tree, fx, job_id, now, errors_only=True),
            actor,
            "reseterrors",
        )

    def _each(
        self,
        ids: Sequence[int],
        op: Callable[[Tx, Tree, Effects, int, float], None],
        actor: Actor = NOBODY,
        action: str = "",
    ) -> None:
        now = self.ctx.clock()

        def fn(tx: Tx, fx: Effects) -> None:
            tree = self.ctx.tree(tx, fx, now)
            rows = tx.jobs(ids)
            missing = sorted(set(ids) - {r["id"] for r in rows})
            if missing:
                raise NotFound(f"job(s) {', '.join(map(str, missing))} not found")
            for job_id in ids:
                op(tx, tree, fx, job_id, now)
            if action:
                audit_rows(tx, actor, action, rows, now)

        self.ctx.write(fn)

    def _pause(self, tx: Tx, tree: Tree, fx: Effects, job_id: int, now: float) -> None:
        row = tx.job(job_id)
        if row is None or row["paused"]:
            return
        tx.update_job(job_id, {"paused": 1, "updated_at": now})
        tree.rederive(job_id)
        for leaf in tree.subtree(job_id):
            if not leaf["children"] and leaf["state"] == WORKING:
                abort_run(tx, tree, fx, leaf, "PAUSED", now)

    def _start(self, tx: Tx, tree: Tree, fx: Effects, job_id: int, now: float) -> None:
        row = tx.job(job_id)
        if row is None or not row["paused"]:
            return
        tx.update_job(job_id, {"paused": 0, "updated_at": tree.now})
        tree.rederive(job_id)

    def _reset(self, tx: Tx, tree: Tree, fx: Effects, job_id: int, now: float, errors_only: bool) -> None:
        for row in tree.subtree(job_id):
            if row["children"]:
                if not errors_only:
                    tx.update_job(row["id"], {"child_fail_count": 0, "updated_at": now})
                continue
            if errors_only and row["state"] != ERROR:
                continue
            if row["state"] == WORKING:
                abort_run(tx, tree, fx, row, "RESET", now)
                row = tx.job(row["id"]) or row
            target = PENDING if row["pending"] else WAITING
            tree.set_leaf_state(
                row,
                target,
                {
                    "fail_count": 0,
                    "requeues": 0,
                    "progress": 0.0,
                    "local_progress": 0.0,
                    "start_time": 0.0,
                    "duration": 0.0,
                    "run_event": 0,
                },
                duration_delta=-(row["duration"] or 0.0),
            )

    def delete(self, ids: Sequence[int], actor: Actor = NOBODY) -> list[int]:
        """Delete jobs and their subtrees (running ones are killed); returns deleted ids."""
        now = self.ctx.clock()

        def fn(tx: Tx, fx: Effects) -> list[int]:
            tree = self.ctx.tree(tx, fx, now)
            rows = tx.jobs(ids)
            missing = sorted(set(ids) - {r["id"] for r in rows})
            if missing:
                raise NotFound(f"job(s) {', '.join(map(str, missing))} not found")
            audit_rows(tx, actor, "delete", rows, now, titles=True)
            doomed: dict[int, Row] = {}
            for job_id in ids:
                if job_id not in doomed:
                    for row in tree.subtree(job_id):
                        doomed[row["id"]] = row
            for row in doomed.values():
                if not row["children"] and row["state"] == WORKING:
                    if row["run_event"]:
                        tx.update_event(
                            row["run_event"],
                            {"state": "DELETED", "duration": max(0.0, now - row["start_time"])},
                        )
                    worker = tx.worker(row["worker"]) if row["worker"] else None
                    if worker is not None and worker["current_job"] == row["id"]:
                        tx.update_worker(worker["name"], {"current_job": 0, "state": W_WAITING})
            outside: set[int] = set()
            for job_id in doomed:
                outside.update(d for d in tx.dependents(job_id) if d not in doomed)
            parents = {r["parent"] for r in doomed.values() if r["parent"] and r["parent"] not in doomed}
            tx.delete_jobs(list(doomed))
            for job_id in doomed:
                fx.delete_log(job_id)
            for row in doomed.values():
                if row["state"] == WORKING and row.get("limits_held"):
                    release_held(tx, row["limits_held"])
            for dep in sorted(outside):
                tree.set_pending(dep, tx.unfinished_deps(dep) > 0)
            frame_waiters = {w for j in doomed for w in tx.frame_dependents(j) if w not in doomed}
            for waiter in sorted(frame_waiters):
                tx.update_job(waiter, {"frame_dep": 0, "updated_at": now})  # its source is gone
                framedeps.refresh_frame_waits(tx, tree, waiter)
            for parent in sorted(parents):
                tree.recount(parent)
            return sorted(doomed)

        return self.ctx.write(fn)

    # -- workers (operator side) ------------------------------------------------------------
    def edit_workers(
        self, edits: Mapping[str, Mapping[str, Any]], actor: Actor = NOBODY, action: str = "editworkers"
    ) -> None:
        """Edit worker affinity rule lines and active flags."""
        now = self.ctx.clock()

        def fn(tx: Tx, fx: Effects) -> None:
            tree = self.ctx.tree(tx, fx, now)
            fields_sent = sorted({k for values in edits.values() for k in values})
            record_audit(tx, actor, action, "", list(edits), now, {"fields": fields_sent})
            for name, values in edits.items():
                row = tx.worker(name)
                if row is None and action == "editworkers":
                    # Coalition 4 took rules for a worker that has not connected yet and
                    # applied them when it arrived (its client's editWorkers relies on it):
                    # the row waits, never heard from (TIMEOUT), with the rules set.
                    tx.insert_worker({**columns.new_worker_row(name), "state": W_TIMEOUT})
                    row = tx.worker(name)
                if row is None:
                    raise NotFound(f"worker {name!r} not found")
                fields: dict[str, Any] = {}
                if "affinity" in values:
                    lines = parse_rule_lines(values["affinity"])
                    tx.register_affinities(t for line in lines for t in line)
                    fields.update(affinity=format_rule_lines(lines), affinity_set=1)
                if "active" in values:
                    fields["active"] = int(values["active"])
                tx.update_worker(name, fields)
                if "active" in values and not values["active"]:
                    release_worker_job(tx, tree, fx, row, "STOPPED", now)

        self.ctx.write(fn)

    def set_workers_active(self, names: Sequence[str], active: bool, actor: Actor = NOBODY) -> None:
        """Start or stop workers; stopping kills and requeues their job."""
        action = "startworkers" if active else "stopworkers"
        self.edit_workers({name: {"active": active} for name in names}, actor, action)

    def delete_workers(self, names: Sequence[str], actor: Actor = NOBODY) -> None:
        """Forget workers; a running job carries on (its worker comes back with its next
        heartbeat), as in Coalition 4."""
        now = self.ctx.clock()

        def fn(tx: Tx, fx: Effects) -> None:
            tree = self.ctx.tree(tx, fx, now)
            record_audit(tx, actor, "deleteworkers", "", list(names), now)
            rows = tx.workers(names)
            missing = sorted(set(names) - {r["name"] for r in rows})
            if missing:
                raise NotFound(f"worker(s) {', '.join(missing)} not found")
            for row in rows:
                job = tx.job(row["current_job"]) if row["current_job"] else None
                if job is not None and job["state"] == WORKING and job["worker"] == row["name"]:
                    # Coalition 4 let a busy worker's job finish: the worker's next heartbeat
                    # brings its row back, and the reaper requeues the job if none comes.
                    continue
                release_worker_job(tx, tree, fx, row, "DELETED", now)
            tx.delete_workers(names)

        self.ctx.write(fn)


class _Batch:
    """What one submission's jobs share: the rows of their parents (read once; a parent's
    derived fields do not change while its children are inserted) and each group's count of
    new children, added to its counters once at the end."""

    def __init__(self) -> None:
        self.rows: dict[int, Row | None] = {}
        self.children: dict[int, int] = {}

    def parent(self, tx: Tx, parent_id: int) -> Row | None:
        """The parent's row (None: it does not exist)."""
        if parent_id not in self.rows:
            self.rows[parent_id] = tx.job(parent_id)
        return self.rows[parent_id]

    def flush(self, tree: Tree) -> None:
        """Add the counts kept back to each group and its ancestors (one round trip per
        group, not per frame: the bulk submission of a shot is one statement's worth)."""
        for pid, n in self.children.items():
            tree.bump_chain(pid, {"children": n}, {"total": n})
        self.children.clear()
