"""Job bundles: what `coalition submit` reads (docs/openjd.md).

A Deadline Cloud submitter (Blender, Maya, Nuke, Houdini...) can export its job as a *job
bundle*: a directory holding `template.yaml` (or `.json`), the OpenJD job template, and
`parameter_values.yaml` (or `.json`), `{"parameterValues": [{"name", "value"}, ...]}`, the
values the artist chose, among them Deadline's own `deadline:*` settings; beside them
`asset_references.yaml` lists files for Deadline's job attachments, which a farm on shared
storage does not need. `coalition submit BUNDLE` sends the template and the values to the
farm; the `deadline:*` values that have a Coalition meaning become the job's settings
(`deadline_options`), the others are reported and left out (the template does not declare
them, so the model would refuse them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TEMPLATES = ("template.yaml", "template.yml", "template.json")
VALUES = ("parameter_values.yaml", "parameter_values.yml", "parameter_values.json")
MAX_FILE = 8 * 1024 * 1024


class BundleError(ValueError):
    """A bundle or template that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Bundle:
    """A template to submit, with the values and settings that came with it."""

    template_path: str  # absolute
    text: str
    values: dict[str, Any] = field(default_factory=dict)  # job parameter values
    options: dict[str, Any] = field(default_factory=dict)  # job settings (priority, paused...)
    notes: tuple[str, ...] = ()


def _read(path: str) -> str:
    try:
        if os.path.getsize(path) > MAX_FILE:
            raise BundleError(f"{path}: larger than {MAX_FILE // (1024 * 1024)} MB")
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise BundleError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise BundleError(f"{path}: {exc.strerror or exc}") from None


def parse_values(text: str, where: str) -> list[tuple[str, Any]]:
    """A parameter values document: `{"parameterValues": [{"name", "value"}]}` (YAML or JSON)."""
    try:
        data = json.loads(text) if where.endswith(".json") else _yaml(text)
    except ValueError as exc:
        raise BundleError(f"{where}: {exc}") from None
    items = data.get("parameterValues") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise BundleError(f'{where}: expected {{"parameterValues": [{{"name": ..., "value": ...}}]}}')
    out = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or "value" not in item:
            raise BundleError(f"{where}: item {n} must be a {{name, value}} object")
        out.append((item["name"], item["value"]))
    return out


def _yaml(text: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise ValueError("reading YAML needs PyYAML: pip install 'coalition[openjd]'") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ValueError(f"line {mark.line + 1 if mark else '?'}: not valid YAML") from None


def deadline_options(values: Sequence[tuple[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Split Deadline Cloud's `deadline:*` settings from the job parameter values:
    (parameter values, Coalition job settings, notes on what was left out).

    `deadline:priority` (0-100, default 50) becomes the priority times 20 (50 is Coalition's
    1000); `deadline:targetTaskRunStatus` SUSPENDED submits paused; `deadline:maxRetriesPerTask`
    is each task's `retry`."""
    params: dict[str, Any] = {}
    options: dict[str, Any] = {}
    notes: list[str] = []
    for name, value in values:
        if not name.startswith("deadline:"):
            params[name] = value
            continue
        key = name.removeprefix("deadline:")
        try:
            if key == "priority":
                options["priority"] = max(0, int(value)) * 20
            elif key == "targetTaskRunStatus":
                options["paused"] = str(value).upper() == "SUSPENDED"
            elif key == "maxRetriesPerTask":
                options["retry"] = max(0, int(value))
            else:
                notes.append(f"{name} = {value}: no Coalition equivalent, left out")
        except (TypeError, ValueError):
            raise BundleError(f"{name}: expected a whole number, got {value!r}") from None
    return params, options, notes


def load(path: str, overrides: Mapping[str, Any] | None = None) -> Bundle:
    """A template file, or a bundle directory (its template and parameter values); the
    `overrides` (`-p Name=Value`) win over the bundle's values."""
    path = os.path.abspath(path)
    values: list[tuple[str, Any]] = []
    notes: list[str] = []
    if os.path.isdir(path):
        found = [os.path.join(path, n) for n in TEMPLATES if os.path.isfile(os.path.join(path, n))]
        if not found:
            raise BundleError(f"{path}: no {' or '.join(TEMPLATES)} in this bundle directory")
        template = found[0]
        for name in VALUES:
            candidate = os.path.join(path, name)
            if os.path.isfile(candidate):
                values = parse_values(_read(candidate), candidate)
                break
        if os.path.isfile(os.path.join(path, "asset_references.yaml")):
            notes.append("asset_references.yaml: not used (the farm reads the files where they are)")
    elif os.path.isfile(path):
        template = path
    else:
        raise BundleError(f"{path}: no such file or directory")
    params, options, more = deadline_options(values)
    params.update(overrides or {})
    return Bundle(template, _read(template), params, options, tuple(notes + more))
