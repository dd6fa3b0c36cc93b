"""A worker's OpenJD path-mapping rules, from its `[worker]` configuration. Pure.

A template written on a Windows workstation names `Z:\\projects\\shot\\scene.blend`; the Linux
worker that renders it sees the same file as `/mnt/projects/shot/scene.blend`. OpenJD maps
PATH parameters (and whatever a task asks to map through `Session.PathMappingRulesFile`) with
rules `{source_path_format, source_path, destination_path}`: each worker holds the rules for
its own filesystem (every Linux worker the same ones, every macOS worker its own), so the
rules live in the worker's configuration (docs/openjd.md):

    [worker]
    pathmapping = WINDOWS Z:\\projects -> /mnt/projects
        POSIX /Volumes/projects -> /mnt/projects
    pathmappingfile = /etc/coalition/pathmapping.json

`pathmapping` holds one rule per line (continuation lines, or `;` between rules):
`FORMAT SOURCE -> DESTINATION`, FORMAT being WINDOWS or POSIX (the submitter's system).
`pathmappingfile` names a document in OpenJD's own format
(`{"version": "pathmapping-1.0", "path_mapping_rules": [...]}`, what `openjd run
--path-mapping-rules` reads); its rules come first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

FORMATS = ("WINDOWS", "POSIX")
ARROW = " -> "
VERSION = "pathmapping-1.0"

# (source_path_format, source_path, destination_path)
Rule = tuple[str, str, str]


def _check(fmt: str, source: str, destination: str, where: str) -> Rule:
    fmt = fmt.strip().upper()
    if fmt not in FORMATS:
        raise ValueError(f"{where}: the source format must be WINDOWS or POSIX, got {fmt!r}")
    source, destination = source.strip(), destination.strip()
    if not source or not destination:
        raise ValueError(f"{where}: a rule needs a source and a destination path")
    if fmt == "POSIX" and not source.startswith("/"):
        raise ValueError(f"{where}: a POSIX source path is absolute (starts with /), got {source!r}")
    if fmt == "WINDOWS" and not (source.startswith("\\\\") or (len(source) >= 2 and source[1] == ":")):
        raise ValueError(
            f"{where}: a WINDOWS source path is absolute (X:\\... or \\\\server\\...), got {source!r}"
        )
    return fmt, source, destination


def parse_rules(text: str) -> tuple[Rule, ...]:
    """Rule lines (`FORMAT SOURCE -> DESTINATION`, newline- or `;`-separated)."""
    rules = []
    for n, line in enumerate(text.replace(";", "\n").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        head, sep, destination = line.partition(ARROW)
        fmt, _, source = head.strip().partition(" ")
        if not sep:
            raise ValueError(f"rule {n}: expected FORMAT SOURCE -> DESTINATION, got {line!r}")
        rules.append(_check(fmt, source, destination, f"rule {n}"))
    return tuple(rules)


def parse_document(text: str) -> tuple[Rule, ...]:
    """Rules from an OpenJD path-mapping document (JSON, version pathmapping-1.0)."""
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not a JSON document: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError(f'expected {{"version": "{VERSION}", "path_mapping_rules": [...]}}')
    items = data.get("path_mapping_rules")
    if not isinstance(items, list):
        raise ValueError("path_mapping_rules must be a list")
    rules = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ValueError(f"rule {n}: expected an object")
        fmt, source, destination = (
            item.get(k) for k in ("source_path_format", "source_path", "destination_path")
        )
        if not (isinstance(fmt, str) and isinstance(source, str) and isinstance(destination, str)):
            raise ValueError(f"rule {n}: source_path_format, source_path and destination_path are strings")
        rules.append(_check(fmt, source, destination, f"rule {n}"))
    return tuple(rules)


def as_dicts(rules: Iterable[Rule]) -> list[dict[str, str]]:
    """The rules as OpenJD writes them (openjd-sessions' PathMappingRule.from_dict)."""
    return [
        {"source_path_format": fmt, "source_path": source, "destination_path": destination}
        for fmt, source, destination in rules
    ]
