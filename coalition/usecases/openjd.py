"""Open Job Description jobs: create the tree a template expands into, in one transaction,
and hand a worker what it needs to run a task (docs/openjd.md).

The HTTP adapter validates and expands the template (coalition/openjd, with openjd-model);
this module only writes the plan it is given: the top group (tagged `openjd`), one group per
step (waiting for the groups of the steps it depends on, tagged with its host requirements),
one job per task, the template and parameter values once (`openjd_jobs`), and the audit row.
All or nothing, idempotent under the submission's key like PUT /api/jobs.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from ..audit import NOBODY, Actor, record_audit
from ..model import JobSpec, ValidationError
from ..openjd.plan import OPENJD_TAG, PROGRESS, JobTree, task_ref
from ..store.base import Tx
from .context import Context, Effects
from .operator import Operator, ParentGuard, _Batch

# What a submission's options may set, and where: the top group takes its place in the farm
# (parent, priority, pause, owner, extra tags...), the task jobs the run settings.
# Resource requests on the top group are what steps without host requirements inherit.
GROUP_OPTIONS = (
    "parent",
    "title",
    "priority",
    "paused",
    "user",
    "affinity",
    "url",
    "dependencies",
    "cores",
    "memory",
    "gpus",
    "exclusive",
)
TASK_OPTIONS = (
    "user",
    "retry",
    "timeout",
    "environment",
    "output",
    "stalltimeout",
    "minruntime",
    "hostfails",
    "logrules",
    "limits",
)
OPTIONS = frozenset(GROUP_OPTIONS + TASK_OPTIONS + ("state",))


@dataclass(frozen=True)
class OpenJDSubmission:
    """A validated, expanded OpenJD job, ready to be written."""

    tree: JobTree
    template: str  # the template document, as JSON text
    parameters: str  # the job parameter values, {name: {type, value}}, as JSON text
    options: JobSpec = field(default_factory=JobSpec)  # only OPTIONS fields are used


class OpenJDJobs:
    """Submissions of OpenJD jobs, and what workers read of them."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.operator = Operator(ctx)

    def submit(
        self,
        sub: OpenJDSubmission,
        actor: Actor = NOBODY,
        parent_guard: ParentGuard | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Create the job's groups and task jobs; returns {"id", "title", "steps": [{"name",
        "id", "tasks"}], "tasks"}. Idempotent under `key` (see Operator.submit_many)."""
        now = self.ctx.clock()
        key = key or uuid.uuid4().hex
        opts = sub.options
        title = opts.title or sub.tree.title
        # Every OpenJD job carries the `openjd` tag: only workers able to run its tasks take them.
        tags = ",".join(dict.fromkeys(t for t in (OPENJD_TAG, *opts.affinity.split(",")) if t.strip()))
        group = replace(JobSpec(**{k: getattr(opts, k) for k in GROUP_OPTIONS}), title=title, affinity=tags)
        base = {k: getattr(opts, k) for k in TASK_OPTIONS}

        def fn(tx: Tx, fx: Effects) -> dict[str, Any]:
            done = tx.submission(key)
            if done is not None:
                return _answer(tx, done)
            tree = self.ctx.tree(tx, fx, now)
            batch = _Batch()
            insert = self.operator._insert  # the submission's own insert (parents first)
            top = insert(tx, tree, group, now, parent_guard, batch)
            step_ids: dict[str, int] = {}
            for step in sub.tree.steps:
                deps = tuple(step_ids[d] for d in step.depends_on if d in step_ids)
                # The step's host requirements: its tags, and the resources its tasks inherit.
                need = step.requirements
                spec = JobSpec(
                    parent=top,
                    title=step.name,
                    affinity=step.affinity,
                    user=opts.user,
                    cores=need.cores,
                    memory=need.memory,
                    gpus=need.gpus,
                )
                sid = step_ids[step.name] = insert(
                    tx, tree, replace(spec, dependencies=deps), now, None, batch
                )
                ids = []
                for task in step.tasks:
                    job = JobSpec(
                        parent=sid, title=task.title, command=task.command, progress_pattern=PROGRESS
                    )
                    ids.append(insert(tx, tree, replace(job, **base), now, None, batch))
                # One statement for the step's tasks (not a third per task, as a setting would be).
                tx.update_jobs(
                    [
                        (i, {"openjd": task_ref(top, step.name, t.params)})
                        for i, t in zip(ids, step.tasks, strict=True)
                    ]
                )
            # The counters, from scratch: a step's first task recounts the groups above it,
            # which the batch's per-group increments (meant for flat submissions) would count
            # again.
            for sid in step_ids.values():
                tree.recount(sid, up=False)
            tree.recount(top)
            tx.put_openjd_job(top, sub.template, sub.parameters, now)
            record_audit(tx, actor, "create", opts.user, [top], now, {"openjd": title[:200]})
            created = [top, *step_ids.values()]
            tx.insert_submission(key, created, now)
            return _answer(tx, created)

        return self.ctx.write(fn)

    def job(self, job_id: int) -> dict[str, Any] | None:
        """What a worker needs to run the tasks of OpenJD job `job_id` (its top group):
        {"template": document, "parameters": {name: {type, value}}}; None if it is gone."""
        row = self.ctx.read(lambda tx: tx.openjd_job(job_id))
        if row is None:
            return None
        return {
            "job": job_id,
            "template": json.loads(row["template"]),
            "parameters": json.loads(row["parameters"]),
        }


def _answer(tx: Tx, ids: list[int]) -> dict[str, Any]:
    rows = {r["id"]: r for r in tx.jobs(ids)}
    if ids[0] not in rows:
        raise ValidationError(f"the jobs of this submission (job {ids[0]}) were deleted since")
    steps = [{"name": rows[i]["title"], "id": i, "tasks": rows[i]["children"]} for i in ids[1:] if i in rows]
    return {
        "id": ids[0],
        "title": rows[ids[0]]["title"],
        "steps": steps,
        "tasks": sum(s["tasks"] for s in steps),
    }
