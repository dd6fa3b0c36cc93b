"""Open Job Description (OpenJD, the open specification of render jobs that AWS Deadline Cloud
uses): templates submitted to the farm, expanded into groups and jobs, run by workers.

    requirements.py  PURE: a step's hostRequirements -> resource requests and tags
    plan.py          PURE: an expanded job (steps, tasks) -> the Coalition tree to create
    pathmap.py       PURE: a worker's path-mapping rules from its configuration
    lines.py         where a field sits in a YAML or JSON document (error messages)
    template.py      read, validate, resolve parameters, expand (needs openjd-model)
    bundle.py        a job bundle directory (Deadline Cloud's export) for `coalition submit`

Only template.py needs the optional `openjd` extra (openjd-model); the worker's runtime
(worker/openjd.py) needs openjd-sessions too. Everything else imports nothing beyond the
standard library (and PyYAML where a document is read), so a server or worker without the
extra still starts, and says what is missing when a template arrives (docs/openjd.md).
"""

from __future__ import annotations

import importlib.util

# What a server or worker without the extra answers (the pip extra, then what it holds).
MISSING = (
    "Open Job Description support is not installed: pip install 'coalition[openjd]' "
    "(openjd-model and openjd-sessions)"
)


def _found(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # the parent package `openjd` itself is missing
        return False


def model_available() -> bool:
    """Whether openjd-model can be imported (templates can be read and expanded)."""
    return _found("openjd.model")


def sessions_available() -> bool:
    """Whether openjd-sessions can be imported (tasks can be run)."""
    return model_available() and _found("openjd.sessions")
