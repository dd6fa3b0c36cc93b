"""An expanded OpenJD job as the Coalition tree that runs it. Pure.

A job becomes a group (tagged `openjd`, so that only workers able to run OpenJD tasks take
its jobs); each step a child group, in dependency order, waiting for the groups of the steps
it depends on and carrying the tags of its host requirements; each task (one point of the
step's parameter space, or one chunk of it) a job under its step. The template and the job
parameter values are stored once, with the top group; each task job carries, in its `openjd`
field, its step's name and its task parameter values (`task_ref`), which is what a worker
needs, beside the template, to run it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .requirements import Requirements, host_requirements

OPENJD_TAG = "openjd"  # every OpenJD job carries it; OpenJD-capable workers offer it
PROGRESS = "openjd_progress: %percent"  # the stdout message a task reports its progress with
TITLE_MAX = 200
COMMAND = "openjd-task"  # what a task's `command` shows; the worker runs the step's script

# (type, value) of a parameter, as openjd-model's ParameterValue carries it: strings for the
# scalar types, native lists and booleans for the EXPR extension's.
Value = tuple[str, Any]


@dataclass(frozen=True)
class StepInput:
    """One step of an instantiated job, as plain data."""

    name: str
    depends_on: tuple[str, ...] = ()
    host_requirements: Mapping[str, Any] | None = None
    tasks: Sequence[Mapping[str, Value]] = ({},)  # one task per parameter set


@dataclass(frozen=True)
class TaskNode:
    """One task: a job of its step's group."""

    title: str
    command: str
    params: Mapping[str, Value]


@dataclass(frozen=True)
class StepNode:
    """One step: a group of task jobs."""

    name: str
    depends_on: tuple[str, ...]
    requirements: Requirements
    tasks: tuple[TaskNode, ...]

    @property
    def affinity(self) -> str:
        """The step group's tags (its host requirements), comma-separated."""
        return ",".join(self.requirements.tags)


@dataclass(frozen=True)
class JobTree:
    """The groups and jobs an OpenJD job becomes."""

    title: str
    steps: tuple[StepNode, ...]  # dependencies first
    notes: tuple[str, ...] = field(default=())  # requirements not enforced

    @property
    def task_count(self) -> int:
        """How many task jobs the tree holds."""
        return sum(len(s.tasks) for s in self.steps)


def _clean(text: str) -> str:
    return " ".join(str(text).split())


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, bool)) else str(value)


def task_label(params: Mapping[str, Value]) -> str:
    """`Frame=1`, `StarFactor=3 SwirlFactor=5.5 Frame=0`: a task's parameters, in order."""
    return _clean(" ".join(f"{name}={_shown(value)}" for name, (_, value) in params.items()))


def _title(text: str) -> str:
    text = _clean(text)
    return text if len(text) <= TITLE_MAX else text[: TITLE_MAX - 1] + "…"


def order_steps(steps: Sequence[StepInput]) -> list[StepInput]:
    """Steps in an order where each comes after the steps it depends on (the template's
    order among independent ones). The model has refused cycles and unknown names already;
    a cycle here is still refused rather than looped on."""
    by_name = {s.name: s for s in steps}
    done: dict[str, StepInput] = {}
    pending = list(steps)
    while pending:
        ready = [s for s in pending if all(d in done or d not in by_name for d in s.depends_on)]
        if not ready:
            raise ValueError("the steps' dependencies form a cycle: " + ", ".join(s.name for s in pending))
        for s in ready:
            done[s.name] = s
        pending = [s for s in pending if s.name not in done]
    return list(done.values())


def plan_job(name: str, steps: Sequence[StepInput]) -> JobTree:
    """The tree that runs an instantiated job (its resolved name and its steps)."""
    nodes = []
    notes: list[str] = []
    for step in order_steps(steps):
        requirements = host_requirements(step.name, step.host_requirements)
        notes.extend(requirements.notes)
        tasks = []
        for params in step.tasks:
            label = task_label(params)
            tasks.append(
                TaskNode(
                    title=_title(label or step.name),
                    command=_clean(f"{COMMAND} {step.name} {label}"),
                    params=dict(params),
                )
            )
        nodes.append(StepNode(step.name, tuple(step.depends_on), requirements, tuple(tasks)))
    return JobTree(_title(name) or "OpenJD job", tuple(nodes), tuple(notes))


@dataclass(frozen=True)
class TaskRef:
    """What a task job's `openjd` field says: its OpenJD job (the top group's id), its step,
    its task parameter values."""

    job: int
    step: str
    params: Mapping[str, Value]


def task_ref(job_id: int, step: str, params: Mapping[str, Value]) -> str:
    """The `openjd` field of a task job (compact JSON)."""
    task = {name: {"type": kind, "value": value} for name, (kind, value) in params.items()}
    return json.dumps({"job": job_id, "step": step, "task": task}, separators=(",", ":"))


def parse_task_ref(text: str) -> TaskRef | None:
    """The inverse of task_ref; None for "" (not an OpenJD task) or anything malformed."""
    if not text:
        return None
    try:
        data = json.loads(text)
        task = data["task"]
        params = {str(k): (str(v["type"]), v["value"]) for k, v in task.items()}
        return TaskRef(int(data["job"]), str(data["step"]), params)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
