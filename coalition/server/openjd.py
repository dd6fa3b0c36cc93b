"""HTTP adapters of Open Job Description (docs/openjd.md): `POST /api/openjd` submits a job
template with its parameter values, `POST /api/openjd/check` validates one and describes
its parameters (for the web page's form) and the job it would make; `POST /workers/openjd`
gives a worker the template and values of a task's job.

Templates are read and expanded with openjd-model (coalition/openjd/template.py), imported
only here and only when a template arrives: a server without the `openjd` extra runs, and
answers these routes with a 501 saying what to install.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import ModuleType
from typing import Any

import cherrypy

from ..audit import Actor
from ..model import JobSpec, ValidationError, parse_job_spec
from ..openjd import MISSING, model_available
from ..openjd.plan import JobTree, plan_job
from ..openjd.requirements import RequirementError
from ..store.base import Row
from ..usecases import UseCases
from ..usecases.openjd import OPTIONS, OpenJDSubmission
from .auth import CREATE, Auth, Identity
from .http import ApiError, json_body
from .router import Router

_REQUEST_KEYS = frozenset({"template", "parameters", "template_dir", "cwd"}) | OPTIONS
MAX_PROBLEMS = 50  # problems listed in an error answer (the message summarises them all)


def _template() -> ModuleType:
    """coalition.openjd.template, or a 501 naming the missing (or broken) extra."""
    if not model_available():
        raise ApiError(501, MISSING)
    try:
        from ..openjd import template
    except ImportError as exc:  # installed, but it does not load (a missing dependency of it)
        raise ApiError(501, f"{MISSING}: it does not load here ({exc})") from None
    return template


def _parameters(value: Any) -> dict[str, Any]:
    """Job parameter values: {name: value}, or Deadline Cloud's [{name, value}] list."""
    if value is None:
        return {}
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for item in value:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or "value" not in item:
                raise ValidationError('parameters: each item of the list must be {"name": ..., "value": ...}')
            out[item["name"]] = item["value"]
        return out
    if not isinstance(value, dict):
        raise ValidationError("parameters must be an object of parameter names and values")
    return dict(value)


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str) or "\x00" in value or len(value) > 4096:
        raise ValidationError(f"{key} must be a path (a string of at most 4096 characters)")
    return value


class Request:
    """A validated body of POST /api/openjd or /api/openjd/check."""

    def __init__(self, body: Any):
        if not isinstance(body, dict):
            raise ValidationError('expected a JSON object {"template": ..., "parameters": {...}}')
        unknown = sorted(k for k in body if k not in _REQUEST_KEYS)
        if unknown:
            raise ValidationError(
                f"unknown field(s): {', '.join(unknown)}; an OpenJD submission takes template, "
                f"parameters, template_dir, cwd and {', '.join(sorted(OPTIONS))}"
            )
        source = body.get("template")
        if not isinstance(source, (str, dict)) or not source:
            raise ValidationError("template is required: the job template's YAML or JSON text, or its object")
        self.source: str | dict[str, Any] = source
        self.parameters = _parameters(body.get("parameters"))
        self.template_dir = _text(body, "template_dir")
        self.cwd = _text(body, "cwd")
        self.options: JobSpec = parse_job_spec({k: v for k, v in body.items() if k in OPTIONS})


def _bad(exc: Exception) -> ApiError:
    """A 400 for a template or values that cannot run: the message, and each problem."""
    problems = [p.as_dict() for p in getattr(exc, "problems", ())][:MAX_PROBLEMS]
    return ApiError(400, str(exc), detail={"problems": problems} if problems else None)


class OpenJDApi:
    """Handlers of the OpenJD routes."""

    def __init__(
        self,
        uc: UseCases,
        auth: Auth,
        who: Callable[[], Identity],
        actor: Callable[[], Actor],
        parent_guard: Callable[[Identity], Callable[[Row], None]],
    ):
        self.uc = uc
        self.auth = auth
        self.who = who
        self.actor = actor
        self.parent_guard = parent_guard

    def routes(self, router: Router, prefix: str) -> None:
        """Register the routes under `prefix` ("/api" and "/api/webfrontend")."""
        router.add("POST", f"{prefix}/openjd", self.submit)
        router.add("POST", f"{prefix}/openjd/check", self.check)

    def _expand(self, template: ModuleType, req: Request) -> tuple[Any, dict[str, Any], JobTree, list[str]]:
        """Validate, resolve the parameters, expand and plan: (the document, the parameter
        values, the tree, notes for the submitter); a 400 on any problem."""
        try:
            document = template.read_document(req.source)
            job_template = template.check(document)
            values, notes = template.resolve_parameters(
                job_template, req.parameters, req.template_dir, req.cwd
            )
            name, steps = template.expand(job_template, values)
            tree = plan_job(name, steps)
        except (template.TemplateError, RequirementError) as exc:
            raise _bad(exc) from None
        return document, values, tree, notes

    def submit(self, params: dict[str, Any]) -> Any:
        """POST /api/openjd: create the job's groups and task jobs; answers {"id", "title",
        "steps": [{"name", "id", "tasks"}], "tasks", "notes"}."""
        who = self.who()
        self.auth.require(who, CREATE)
        req = Request(json_body())
        template = _template()
        document, values, tree, notes = self._expand(template, req)
        owner = self.auth.owner_for_new_job(who, req.options.user)
        options = replace(req.options, user=owner)
        # The whitelist sees each task as the command it shows (`openjd-task STEP PARAMS`):
        # a farm with a whitelist admits OpenJD jobs with a rule such as `openjd-task .*`.
        self.auth.check_commands(who, [(owner, t.command) for s in tree.steps for t in s.tasks])
        submission = OpenJDSubmission(
            tree,
            json.dumps(document.data, separators=(",", ":")),
            json.dumps(template.values_to_json(values), separators=(",", ":")),
            options,
        )
        result = self.uc.openjd.submit(submission, self.actor(), self.parent_guard(who), _key(who.user))
        result["notes"] = [*notes, *tree.notes]
        return result

    def check(self, params: dict[str, Any]) -> Any:
        """POST /api/openjd/check: is the template valid, what parameters does it declare
        (as written, with their lines), and, when the values given are complete and right,
        the job it would make; nothing is created."""
        self.auth.require(self.who(), CREATE)
        req = Request(json_body())
        template = _template()
        try:
            document = template.read_document(req.source)
            job_template = template.check(document)
        except template.TemplateError as exc:
            raise _bad(exc) from None
        data = document.data
        answer: dict[str, Any] = {
            "name": data.get("name", ""),
            "description": data.get("description", ""),
            "parameters": template.definitions(document),
            "job": None,
            "problem": "",
            "problems": [],
            "notes": [],
        }
        try:
            values, notes = template.resolve_parameters(
                job_template, req.parameters, req.template_dir, req.cwd
            )
            name, steps = template.expand(job_template, values)
            tree = plan_job(name, steps)
        except (template.TemplateError, RequirementError) as exc:
            answer["problem"] = str(exc)
            answer["problems"] = [p.as_dict() for p in getattr(exc, "problems", ())][:MAX_PROBLEMS]
            return answer
        answer["notes"] = [*notes, *tree.notes]
        answer["job"] = {
            "title": req.options.title or tree.title,
            "tasks": tree.task_count,
            "parameters": template.values_to_json(values),
            "steps": [
                {
                    "name": s.name,
                    "depends_on": list(s.depends_on),
                    "tasks": len(s.tasks),
                    "tags": list(s.requirements.tags),
                    **s.requirements.resources(),
                }
                for s in tree.steps
            ],
        }
        return answer


def _key(user: str) -> str | None:
    """The request's Idempotency-Key for an OpenJD submission (scoped to its user and to this
    route, so that the same key on PUT /api/jobs is another submission)."""
    given = cherrypy.request.headers.get("Idempotency-Key")
    if given is None:
        return None
    if not 1 <= len(given) <= 255 or not given.isprintable():
        raise ApiError(400, "Idempotency-Key must be 1 to 255 printable characters")
    return hashlib.sha256(f"openjd\0{user}\0{given}".encode()).hexdigest()
