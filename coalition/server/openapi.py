"""The OpenAPI 3.1 description of every route, served at `/api/openapi.json`.

Written as data next to the routes it describes, and kept true by a test that compares it with
the route table (tests/api/test_openapi.py): a route added without its description, or a
description left behind by a removed route, fails the suite. The human-readable page is
`web/api.html`, which renders this document (no CDN).
"""

from __future__ import annotations

import re
from typing import Any

from .. import __version__
from ..model import JOB_ALIASES, SETTABLE
from ..usecases.openjd import OPTIONS as OPENJD_OPTIONS

# -- schemas ---------------------------------------------------------------------------------
_INT = {"type": "integer"}
_ID = {"type": "integer", "minimum": 1, "maximum": 2**62}
_NAME = {"type": "string", "minLength": 1, "maxLength": 255}
_ANY: dict[str, Any] = {}

_JOB_FIELD_TYPES: dict[str, dict[str, Any]] = {
    "parent": {"type": ["integer", "string"]},
    "dependencies": {"type": ["array", "string"], "items": _ID},
    "retry": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "timeout": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "priority": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "paused": {"type": "boolean"},
    "state": {"type": "string", "enum": ["WAITING", "PAUSED"]},
    "user": {"type": "string", "maxLength": 255},
    "limits": {
        "type": ["string", "object"],
        "description": 'farm-wide limits it needs, e.g. "nuke:1,arnold:2"',
    },
    "first_frame": {"type": "integer"},
    "last_frame": {"type": "integer"},
    "frame_dep": {"type": "integer", "minimum": 0, "maximum": 2**62},
    "cores": {"type": "integer", "minimum": 0, "maximum": 65536, "description": "CPU cores (0: no request)"},
    "memory": {"type": "integer", "minimum": 0, "maximum": 2**40, "description": "MB (0: no request)"},
    "gpus": {"type": "integer", "minimum": 0, "maximum": 65536, "description": "GPUs (0: none)"},
    "exclusive": {"type": "boolean", "description": "a whole host"},
}

_AMOUNT = {"type": "integer", "minimum": 0, "maximum": 2**40}
_RESOURCES = {
    "type": "object",
    "description": "What the host (a fixed slot: its share) offers to jobs and what its runs hold",
    "properties": {k: _AMOUNT for k in ("cores", "memory", "gpus", "used_cores", "used_memory", "used_gpus")},
}
_FREE = {
    "type": "object",
    "description": "With pick: what the slot may take now (docs/scheduling.md)",
    "properties": {
        **{k: _AMOUNT for k in ("cores", "memory", "gpus", "total_cores", "total_memory", "total_gpus")},
        "bare": {"type": "boolean"},
        "whole": {"type": "boolean"},
    },
}
_GPU_RESERVE = {"type": "string", "enum": ["auto", "on", "off"]}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    },
    "JobSpec": {
        "type": "object",
        "description": "A job to create; unknown fields are refused (aliases: "
        + ", ".join(f"{a} for {b}" for a, b in JOB_ALIASES.items())
        + ").",
        "properties": {
            name: _JOB_FIELD_TYPES.get(name, {"type": "string", "maxLength": 65536}) for name in SETTABLE
        },
    },
    "JobEdit": {
        "type": "object",
        "description": "Job id -> the fields to change.",
        "additionalProperties": {"type": "object"},
    },
    "Ids": {"type": "array", "items": _ID},
    "Limits": {
        "type": "object",
        "description": "Limit name -> capacity (created if missing).",
        "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 10**9},
    },
    "Names": {"type": "array", "items": _NAME},
    "WorkerEdit": {
        "type": "object",
        "description": "Worker name -> {affinity (rule lines), active}.",
        "additionalProperties": {
            "type": "object",
            "properties": {"affinity": {"type": "string"}, "active": {"type": "boolean"}},
        },
    },
    "Affinities": {
        "type": "object",
        "description": 'Slot number -> tag name ("" clears the slot).',
        "additionalProperties": {"type": "string", "maxLength": 255},
    },
    "Login": {
        "type": "object",
        "properties": {"user": _NAME, "password": {"type": "string"}, "next": {"type": "string"}},
    },
    "WorkerPing": {
        "type": "object",
        "description": "A worker's request (docs/protocol.md); Coalition 4's form fields also work.",
        "properties": {
            "name": _NAME,
            "cpu": {"type": "array", "items": {"type": "number"}},
            "free_memory": {"type": "integer", "minimum": 0},
            "total_memory": {"type": "integer", "minimum": 0},
            "affinity": {"type": "string"},
            "offers": {
                "type": "string",
                "description": "Tags offered on every rule line (openjd, the OS family, the CPU arch)",
            },
            "ip": {"type": "string"},
            "resources": _RESOURCES,
            "free": _FREE,
            "gpureserve": _GPU_RESERVE,
            "host": {**_NAME, "description": "the worker process's name, shared by its slots"},
            "job_id": _ID,
            "event": _INT,
            "log": {"type": "string", "description": "base64 of the next bytes of output"},
            "log_offset": {"type": "integer", "minimum": 0},
            "exit_code": _INT,
            "timed_out": {"type": "boolean"},
            "interrupted": {"type": "boolean"},
            "pick": {"type": "boolean"},
            "usage": {
                "type": "object",
                "description": "What the run used (endjob)",
                "properties": {
                    "wall_s": {"type": "number", "minimum": 0, "maximum": 1e9},
                    "cpu_s": {"type": "number", "minimum": 0, "maximum": 1e9},
                    "peak_memory_mb": {"type": "integer", "minimum": 0, "maximum": 2**40},
                },
            },
            "thumbnail": {
                "type": "object",
                "description": "The newest image of the run's output (endjob)",
                "properties": {
                    "mime": {"type": "string", "enum": ["image/jpeg", "image/png"]},
                    "data": {"type": "string", "description": "base64, at most 128 KB decoded"},
                },
                "required": ["mime", "data"],
            },
        },
        "required": ["name"],
    },
    "WorkerCheck": {
        "type": "object",
        "properties": {"name": _NAME, "passed": {"type": "boolean"}, "detail": {"type": "string"}},
        "required": ["name", "passed"],
    },
    "OpenJDSubmission": {
        "type": "object",
        "description": "An Open Job Description job template and its parameter values (docs/openjd.md). "
        "The job becomes a group (tagged openjd), each step a child group, each task a job. The other "
        "fields place the job in the farm (parent, title, priority, paused, user, affinity: extra tags, "
        "url, dependencies) or set its task jobs (retry, timeout, environment, output, stalltimeout, "
        "minruntime, hostfails, logrules, limits). A template or values that cannot run answer 400 "
        "with `problems`: [{line, field, message}]; a server without the openjd extra answers 501.",
        "properties": {
            "template": {
                "type": ["string", "object"],
                "description": "The template's YAML or JSON text (problems name their line), or its object",
            },
            "parameters": {
                "type": ["object", "array"],
                "description": 'Job parameter values: {"Name": value}, or [{"name": ..., "value": ...}]',
            },
            "template_dir": {
                "type": "string",
                "description": "Where the template lives on the submitter's host (relative PATH defaults)",
            },
            "cwd": {"type": "string", "description": "The submitter's directory (relative PATH values)"},
            **{name: _JOB_FIELD_TYPES.get(name, {"type": "string"}) for name in sorted(OPENJD_OPTIONS)},
        },
        "required": ["template"],
    },
    "WorkerOpenJD": {
        "type": "object",
        "description": "The OpenJD job of a task: its `openjd` field's `job`. Answers {job, template, "
        "parameters}, 404 when it is gone.",
        "properties": {"name": _NAME, "job": _ID},
        "required": ["name", "job"],
    },
    "WorkerSync": {
        "type": "object",
        "description": "Every slot of one worker process: heartbeats and picks (docs/protocol.md)",
        "properties": {
            "cpu": {"type": "array", "items": {"type": "number"}},
            "free_memory": {"type": "integer", "minimum": 0},
            "total_memory": {"type": "integer", "minimum": 0},
            "affinity": {"type": "string"},
            "offers": {
                "type": "string",
                "description": "Tags offered on every rule line (openjd, the OS family, the CPU arch)",
            },
            "ip": {"type": "string"},
            "resources": _RESOURCES,
            "host": {**_NAME, "description": "the worker process's name, shared by its slots"},
            "free": {**_FREE, "description": "A packing host's free amounts, shared by the slots that pick"},
            "gpureserve": _GPU_RESERVE,
            "interval": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
            "slots": {
                "type": "array",
                "minItems": 1,
                "maxItems": 256,
                "items": {
                    "type": "object",
                    "properties": {
                        "name": _NAME,
                        "job_id": _ID,
                        "event": _INT,
                        "log": {"type": "string"},
                        "log_offset": {"type": "integer", "minimum": 0},
                        "pick": {"type": "boolean"},
                        "free": _FREE,
                        "resources": _RESOURCES,
                        "spare": {
                            "type": "boolean",
                            "description": "a slot never used: listed once it runs a job",
                        },
                    },
                    "required": ["name"],
                },
            },
        },
        "required": ["slots"],
    },
}

_JOB_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "at": {"type": "number"},
        "job": {
            "type": "object",
            "properties": {
                "id": _ID,
                "parent": _INT,
                "title": {"type": "string"},
                "user": {"type": "string"},
                "state": {"type": "string", "enum": ["FINISHED", "ERROR"]},
                "total": _INT,
                "total_finished": _INT,
                "total_errors": _INT,
                "run_done": _INT,
                "fail_count": _INT,
            },
        },
    },
    "required": ["event", "at", "job"],
}
# What webhooks POST (docs/webhooks.md), as OpenAPI 3.1 describes outgoing calls.
WEBHOOKS: dict[str, dict[str, Any]] = {
    "job.finished": _JOB_EVENT,
    "job.failed": _JOB_EVENT,
    "group.finished": _JOB_EVENT,
    "worker.lost": {
        "type": "object",
        "properties": {
            "event": {"type": "string"},
            "at": {"type": "number"},
            "worker": {
                "type": "object",
                "properties": {"name": _NAME, "ip": {"type": "string"}, "last_job": _INT},
            },
        },
        "required": ["event", "at", "worker"],
    },
    "worker.sick": {
        "type": "object",
        "properties": {
            "event": {"type": "string"},
            "at": {"type": "number"},
            "worker": {
                "type": "object",
                "properties": {
                    "name": _NAME,
                    "host": _NAME,
                    "ip": {"type": "string"},
                    "last_job": _INT,
                    "reason": {"type": "string"},
                },
                "required": ["name", "host", "reason"],
            },
        },
        "required": ["event", "at", "worker"],
    },
    "autoscaler.decision": {
        "type": "object",
        "properties": {"event": {"type": "string"}, "at": {"type": "number"}, "decision": {"type": "string"}},
        "required": ["event", "at", "decision"],
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _query(*names: str, ints: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [
        {
            "name": n,
            "in": "query",
            "required": False,
            "schema": {"type": "integer"} if n in ints else {"type": "string"},
        }
        for n in names
    ]


# (methods, path under the mount's prefix, summary, query parameters, JSON body schema name)
Op = tuple[str, str, str, list[dict[str, Any]], str | None]

API: list[Op] = [
    ("GET", "/ping", "Liveness and the server's version", [], None),
    (
        "GET",
        "/jobs",
        "List jobs (children of `parent`, or a filtered page)",
        _query(
            "parent",
            "state",
            "user",
            "text",
            "affinity",
            "worker",
            "sort",
            "order",
            "offset",
            "limit",
            "changed_since",
            ints=("offset", "limit"),
        ),
        None,
    ),
    ("PUT", "/jobs", "Create one job or a list of jobs (all or nothing)", [], "JobSpec"),
    ("POST", "/jobs", "Edit jobs: {id: {field: value}}", [], "JobEdit"),
    ("DELETE", "/jobs", "Delete jobs (and their subtrees)", [], "Ids"),
    ("GET", "/jobs/{id}", "One job", [], None),
    ("GET", "/jobs/{id}/children", "A job's children", [], None),
    ("GET", "/jobs/{id}/dependencies", "The jobs a job waits for", [], None),
    ("POST", "/jobs/{id}/dependencies", "Set the jobs a job waits for", [], "Ids"),
    ("GET", "/jobs/{id}/childrendependencies", "Dependencies of a job's children", [], None),
    (
        "GET",
        "/jobs/{id}/log",
        "A job's log: whole, a byte range, or its tail",
        _query("offset", "limit", "tail", ints=("offset", "limit", "tail")),
        None,
    ),
    ("GET", "/jobs/{id}/events", "A job's runs", [], None),
    ("GET", "/jobs/{id}/stats", "A group's frames: time, CPU, memory, min/mean/max, time left", [], None),
    ("GET", "/jobs/{id}/thumbnail", "The newest image of a job's (or group's) output", [], None),
    ("POST", "/resetjobs", "Reset jobs to WAITING", [], "Ids"),
    ("POST", "/reseterrorjobs", "Reset the jobs in ERROR under the given ones", [], "Ids"),
    ("POST", "/startjobs", "Unpause jobs", [], "Ids"),
    ("POST", "/pausejobs", "Pause jobs", [], "Ids"),
    ("GET", "/workers", "List workers", [], None),
    ("POST", "/workers", "Edit workers' affinity and active flag", [], "WorkerEdit"),
    ("DELETE", "/workers", "Forget workers", [], "Names"),
    ("GET", "/workers/{name}", "One worker", [], None),
    ("POST", "/startworkers", "Let workers take jobs", [], "Names"),
    ("POST", "/stopworkers", "Stop workers (their job is requeued)", [], "Names"),
    ("POST", "/terminateworkers", "Terminate cloud instances (cloud mode)", [], "Names"),
    ("GET", "/cloud/backoff", "The autoscaler's failed-boot back-off", [], None),
    ("POST", "/cloud/clearbackoff", "Clear the failed-boot back-off", [], None),
    ("GET", "/jobs/{id}/why", "Why a job is not running (limits, frame dependencies, ...)", [], None),
    ("GET", "/limits", "The farm-wide limits and their use", [], None),
    ("POST", "/limits", "Create limits or set their capacities", [], "Limits"),
    ("DELETE", "/limits/{name}", "Remove a limit", [], None),
    ("GET", "/affinities", "The tag registry, every slot from 1 to 63", [], None),
    ("POST", "/affinities", "Name registry slots", [], "Affinities"),
    (
        "GET",
        "/events",
        "Runs (or, with kind=audit, the audit trail)",
        _query("job", "worker", "howlong", "limit", "kind", ints=("job", "limit")),
        None,
    ),
    (
        "GET",
        "/audit",
        "Who did what, newest first",
        _query("howlong", "user", "action", "job", "worker", "limit", ints=("job", "limit")),
        None,
    ),
    ("GET", "/stats", "Counts and recent history", _query("hours"), None),
    (
        "GET",
        "/webhooks",
        "The newest webhook deliveries and their status",
        _query("limit", ints=("limit",)),
        None,
    ),
    ("GET", "/blocks", "The host blocks in force (docs/failures.md)", _query("job", "worker"), None),
    ("GET", "/jobs/{id}/blocks", "The hosts blocked from a job", _query("worker"), None),
    ("DELETE", "/jobs/{id}/blocks", "Lift a job's host blocks (all, or the names sent)", [], "Names"),
    ("POST", "/clearsickworkers", "Clear SICK workers", [], "Names"),
    (
        "POST",
        "/openjd",
        "Submit an Open Job Description job template with its parameter values",
        [],
        "OpenJDSubmission",
    ),
    (
        "POST",
        "/openjd/check",
        "Validate an OpenJD template: its parameters, and the job its values would make (nothing is created)",
        [],
        "OpenJDSubmission",
    ),
    ("POST", "/login", "Open a web session (JSON or form)", [], "Login"),
    ("GET POST", "/logout", "End the web session", [], None),
    ("GET", "/whoami", "The current user and what they may do", [], None),
]
# Only under /api: the description itself.
SPEC_ROUTE: Op = ("GET", "/openapi.json", "This document", [], None)
LEGACY_FIELDS = (
    "title",
    "cmd",
    "command",
    "dir",
    "env",
    "parent",
    "priority",
    "retry",
    "timeout",
    "affinity",
    "user",
    "paused",
    "dependencies",
)
LEGACY: list[Op] = [
    (
        "GET POST",
        "/addjob",
        "Create a job from chapter 8 fields; answers its id as text",
        _query(*LEGACY_FIELDS),
        None,
    )
]
WORKERS: list[Op] = [
    ("GET POST", "/pickjob", "A worker asks for a job", [], "WorkerPing"),
    ("GET POST", "/heartbeat", "A worker reports liveness, output and progress", [], "WorkerPing"),
    ("GET POST", "/endjob", "A worker reports the end of a run", [], "WorkerPing"),
    ("GET POST", "/sync", "A worker process syncs all its slots (heartbeats, picks)", [], "WorkerSync"),
    ("GET POST", "/checked", "A SICK worker's check command ran", [], "WorkerCheck"),
    (
        "GET POST",
        "/openjd",
        "A worker fetches the template and parameter values of an OpenJD job",
        [],
        "WorkerOpenJD",
    ),
]
METRICS: list[Op] = [("GET", "/metrics", "Prometheus metrics (text format 0.0.4)", [], None)]

MOUNTS: list[tuple[str, list[Op], str]] = [
    ("/api", [*API, SPEC_ROUTE], "api"),
    ("/api/webfrontend", API, "web page"),
    ("/json", LEGACY, "legacy"),
    ("/xmlrpc", LEGACY, "legacy"),
    ("/workers", WORKERS, "worker protocol"),
    ("", METRICS, "metrics"),
]


def operations() -> list[tuple[str, str]]:
    """Every (method, full path template) the document describes."""
    return [
        (m, prefix + path) for prefix, ops, _ in MOUNTS for methods, path, *_ in ops for m in methods.split()
    ]


def _operation(method: str, prefix: str, op: Op, tag: str) -> dict[str, Any]:
    _, path, summary, params, body = op
    params = list(params)
    for name in ("id", "name"):
        if "{" + name + "}" in path:
            schema = {"type": "string"} if name == "name" else {"type": "integer", "minimum": 1}
            params.append({"name": name, "in": "path", "required": True, "schema": schema})
    text = "text/plain" if prefix in ("/json", "/xmlrpc") or path == "/metrics" else "application/json"
    if path.endswith("/thumbnail"):
        text = "image/jpeg"
    out: dict[str, Any] = {
        "operationId": method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", prefix + path).rstrip("_"),
        "summary": summary,
        "tags": [tag],
        "parameters": params,
        "responses": {
            "200": {"description": "Done", "content": {text: {"schema": _ANY}}},
            "default": {
                "description": "An error: 4xx for a bad request, 503 when the database is away",
                "content": {"application/json": {"schema": _ref("Error")}},
            },
        },
    }
    if path in ("/login", "/logout"):
        out["responses"]["303"] = {
            "description": "A form post (or a logout from the page): back to the page",
            "content": {"text/html": {"schema": _ANY}},
        }
    if body and method != "GET":
        content = {"application/json": {"schema": _ref(body)}}
        if body in ("Login", "WorkerPing"):
            content["application/x-www-form-urlencoded"] = {"schema": _ref(body)}
        out["requestBody"] = {"required": body not in ("Login",), "content": content}
    if prefix in ("/json", "/xmlrpc") and method == "POST":
        out["requestBody"] = {
            "required": False,
            "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
        }
    return out


def spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    paths: dict[str, dict[str, Any]] = {}
    for prefix, ops, tag in MOUNTS:
        for op in ops:
            for method in op[0].split():
                paths.setdefault(prefix + op[1], {})[method.lower()] = _operation(method, prefix, op, tag)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Coalition",
            "version": __version__,
            "description": "The render-farm manager's HTTP interface: the user API under /api (and "
            "/api/webfrontend, the web page's copy), Coalition 4's submission routes /json/addjob "
            "and /xmlrpc/addjob, and the worker protocol under /workers/ (docs/protocol.md). "
            'Every error is a JSON object {"error": "..."}.',
        },
        "paths": paths,
        "webhooks": {
            event: {
                "post": {
                    "summary": f"{event} (signed: X-Coalition-Signature)",
                    "requestBody": {"content": {"application/json": {"schema": schema}}},
                    "responses": {"200": {"description": "Any 2xx: delivered"}},
                }
            }
            for event, schema in WEBHOOKS.items()
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "session": {"type": "apiKey", "in": "cookie", "name": "coalition_session"},
                "workerToken": {"type": "apiKey", "in": "header", "name": "X-Coalition-Token"},
            },
        },
    }
