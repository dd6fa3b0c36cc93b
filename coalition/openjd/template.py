"""Job templates through openjd-model: read, validate, resolve parameters, expand.

The server reads a submitted template (YAML or JSON text, or an already parsed document),
validates it as `openjd check` does, but names each problem's line as well as its field;
resolves the job parameter values (defaults, constraints, relative paths); instantiates the
job and walks each step's parameter space into plain `StepInput`s for plan.py. A worker
instantiates the same stored template and values again (`instantiate`) to run a task.

Needs the `openjd` extra: import this module only where a template is handled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from openjd.model import (
    DecodeValidationError,
    JobTemplate,
    ParameterValue,
    ParameterValueType,
    StepParameterSpaceIterator,
    create_job_with_symbol_tables,
    decode_job_template,
    model_to_object,
    preprocess_job_parameters,
)

from . import lines
from .plan import StepInput

# The extensions openjd-model and openjd-sessions implement (openjd-cli accepts the same):
# a template that declares another one is refused with the model's message.
EXTENSIONS = ("TASK_CHUNKING", "REDACTED_ENV_VARS", "FEATURE_BUNDLE_1", "EXPR", "WRAP_ACTIONS")
MAX_TEXT = 4 * 1024 * 1024  # characters of template text
MAX_NODES = 200_000  # values in a parsed document, YAML aliases expanded (a "billion laughs")
MAX_TASKS = 100_000  # tasks of one submission (PUT /api/jobs takes as many jobs at once)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a template or its parameter values."""

    message: str
    field: str = ""  # the path in the document, as openjd-model names it
    line: int | None = None

    def __str__(self) -> str:
        where = ", ".join(p for p in (f"line {self.line}" if self.line else "", self.field) if p)
        return f"{where}: {self.message}" if where else self.message

    def as_dict(self) -> dict[str, Any]:
        """For the JSON answer."""
        return {"line": self.line, "field": self.field, "message": self.message}


class TemplateError(ValueError):
    """A template or parameter values that cannot be run; `problems` lists each one."""

    def __init__(self, what: str, problems: Sequence[Problem]):
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            text = f"{what}: {self.problems[0]}"
        else:
            text = f"{what}: {len(self.problems)} problems: " + "; ".join(str(p) for p in self.problems)
        super().__init__(text)


@dataclass(frozen=True)
class Document:
    """A template as submitted: the parsed object, and its text when it came as text."""

    data: dict[str, Any]
    text: str = ""

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of a field (None for a document that came without text)."""
        return lines.locate(lines.compose(self.text), path) if self.text else None


def _count(value: Any, budget: list[int]) -> None:
    # Walks shared references as often as they are referenced: a YAML alias bomb runs out of
    # budget here instead of exhausting memory in json.dumps or the validator.
    budget[0] -= 1
    if budget[0] < 0:
        raise TemplateError("the job template", [Problem(f"the document has more than {MAX_NODES} values")])
    if isinstance(value, dict):
        for key, item in value.items():
            _count(key, budget)
            _count(item, budget)
    elif isinstance(value, list):
        for item in value:
            _count(item, budget)


def read_document(source: Any) -> Document:
    """A template from text (YAML, of which JSON is a part) or a parsed object."""
    if isinstance(source, str):
        if len(source) > MAX_TEXT:
            raise TemplateError("the job template", [Problem(f"longer than {MAX_TEXT} characters")])
        try:
            data = yaml.load(source, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = " ".join(str(getattr(exc, "problem", "") or exc).split())
            what = "the job template is not valid YAML or JSON"
            raise TemplateError(what, [Problem(problem, "", line)]) from None
        text = source
    else:
        data, text = source, ""
    if not isinstance(data, dict):
        raise TemplateError("the job template", [Problem("expected a mapping of keys to values at the top")])
    _count(data, [MAX_NODES])
    # Through JSON once: the stored copy, what a worker receives, is this same data (dates
    # and other YAML-only values become strings, which the schema then judges).
    data = json.loads(json.dumps(data, default=str))
    return Document(data, text)


def _problems(document: Document, message: str) -> list[Problem]:
    """openjd-model's message ("N validation errors for JobTemplate", then a location line
    ending in ':' and a tab-indented message per error) as problems with their lines."""
    root = lines.compose(document.text) if document.text else None
    out: list[Problem] = []
    location = ""
    for raw in message.splitlines()[1:] if "validation error" in message.split("\n", 1)[0] else []:
        if raw.startswith("\t"):
            path = lines.parse_path(location) if location else []
            out.append(Problem(raw.strip(), location, lines.locate(root, path) if location else None))
        elif raw.rstrip().endswith(":"):
            location = raw.rstrip()[:-1].strip()
        elif raw.strip():
            out.append(Problem(raw.strip()))
    return out or [Problem(" ".join(message.split()))]


def check(document: Document) -> JobTemplate:
    """Validate a job template (openjd-model's rules and its supported extensions)."""
    try:
        return decode_job_template(template=document.data, supported_extensions=EXTENSIONS)
    except DecodeValidationError as exc:
        raise TemplateError("the job template is not valid", _problems(document, str(exc))) from None
    except NotImplementedError as exc:  # a specification revision the model does not implement
        raise TemplateError("the job template", [Problem(str(exc), "specificationVersion")]) from None


def definitions(document: Document) -> list[dict[str, Any]]:
    """The template's job parameter definitions as written (for a submission form), each
    with the line it starts on."""
    out = []
    for i, item in enumerate(document.data.get("parameterDefinitions") or ()):
        if isinstance(item, dict):
            out.append({**item, "line": document.line_of(["parameterDefinitions", i])})
    return out


def _input_values(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, (dict, type(None))):
            raise TemplateError(
                "the job parameters", [Problem("expected a string, a number or a list", str(name))]
            )
        out[str(name)] = value
    return out


def resolve_parameters(
    template: JobTemplate,
    values: Mapping[str, Any],
    template_dir: str = "",
    cwd: str = "",
) -> tuple[dict[str, ParameterValue], list[str]]:
    """The job parameter values: the given ones checked against their definitions, defaults
    for the others; and notes for the submitter.

    Relative PATH values are joined to `cwd`, relative PATH defaults to `template_dir` (the
    submitter's directories, which `coalition submit` sends) when they are absolute paths
    here; without them, paths are left as they are (openjd-model's "server context")."""
    notes: list[str] = []
    given = _input_values(values)
    here = Path(template_dir) if template_dir and Path(template_dir).is_absolute() else None
    there = Path(cwd) if cwd and Path(cwd).is_absolute() else None
    try:
        resolved = preprocess_job_parameters(
            job_template=template,
            job_parameter_values=given,
            job_template_dir=here or Path(),
            current_working_dir=there or Path(),
            allow_job_template_dir_walk_up=here is None,
        )
    except (ValueError, NotImplementedError) as exc:
        raise TemplateError(
            "the job parameters", [Problem(line) for line in str(exc).splitlines() if line.strip()]
        ) from None
    for name, value in resolved.items():
        if value.type == ParameterValueType.PATH and value.value and not _absolute(str(value.value)):
            notes.append(
                f"parameter {name} is a relative path ({value.value}): a task sees it relative to "
                "its session's working directory, which is deleted when the session ends"
            )
    return resolved, notes


def _absolute(path: str) -> bool:
    # A path from a Windows submitter is absolute too (path mapping turns it into a local one).
    return path.startswith(("/", "\\")) or (len(path) > 2 and path[1] == ":") or "://" in path


def values_to_json(values: Mapping[str, ParameterValue]) -> dict[str, dict[str, Any]]:
    """Parameter values as stored and sent to workers: {name: {type, value}}."""
    return {name: {"type": v.type.value, "value": v.value} for name, v in values.items()}


def values_from_json(data: Mapping[str, Any]) -> dict[str, ParameterValue]:
    """The inverse of values_to_json."""
    return {
        str(name): ParameterValue(type=ParameterValueType(item["type"]), value=item["value"])
        for name, item in data.items()
    }


def expand(template: JobTemplate, values: Mapping[str, ParameterValue]) -> tuple[str, list[StepInput]]:
    """Instantiate the job: its resolved name, and each step with its dependencies, host
    requirements and tasks (parameter sets; chunks of a chunked parameter, at its
    `defaultTaskCount`)."""
    try:
        job = create_job_with_symbol_tables(job_template=template, job_parameter_values=dict(values)).job
    except (DecodeValidationError, ValueError) as exc:
        raise TemplateError(
            "the job cannot be made from this template and these parameters",
            [Problem(line.strip()) for line in str(exc).splitlines() if line.strip()],
        ) from None
    steps = []
    total = 0
    for step in job.steps:
        space = StepParameterSpaceIterator(space=step.parameterSpace)
        total += len(space)
        if total > MAX_TASKS:
            too_many = Problem(f"it has more than {MAX_TASKS} tasks", f"step {step.name}")
            raise TemplateError("the job", [too_many])
        tasks = [{name: (v.type.value, v.value) for name, v in params.items()} for params in space]
        requirements = model_to_object(model=step.hostRequirements) if step.hostRequirements else None
        depends_on = tuple(d.dependsOn for d in step.dependencies or ())
        steps.append(StepInput(step.name, depends_on, requirements, tasks))
    return str(job.name), steps


def instantiate(document: Mapping[str, Any], values: Mapping[str, ParameterValue]) -> Any:
    """The job (openjd-model's `JobWithSymbolTables`) a worker runs tasks of."""
    template = decode_job_template(template=dict(document), supported_extensions=EXTENSIONS)
    return create_job_with_symbol_tables(job_template=template, job_parameter_values=dict(values))
