"""`coalition submit`: an Open Job Description job template or job bundle to the farm
(docs/openjd.md).

    coalition submit TEMPLATE|BUNDLE [-p NAME=VALUE ...] [--priority N] [--paused] ...
    coalition submit --check TEMPLATE|BUNDLE [-p NAME=VALUE ...]

The server validates the template (openjd-model): each problem prints as one line,
`FILE:LINE: FIELD: MESSAGE`, as a compiler's would, and the command exits 1. The template's
own directory and the current one go with it, so that relative PATH defaults and values mean
what they mean on this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .client import CoalitionError
from .openjd.bundle import BundleError, load


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `submit` to the subcommands."""
    p = sub.add_parser(
        "submit",
        parents=[common],
        help="submit an Open Job Description job template or job bundle",
        description="Submit an OpenJD job template (a .yaml or .json file) or a job bundle (a directory "
        "with template.yaml and parameter_values.yaml, as Deadline Cloud submitters export them).",
    )
    p.add_argument("path", metavar="TEMPLATE|BUNDLE")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a job parameter value (repeatable; wins over the bundle's)",
    )
    p.add_argument("--check", action="store_true", help="validate and describe the job; submit nothing")
    p.add_argument("--title", help="the job's title (default: the template's job name)")
    p.add_argument("--parent", help="put the job under this group (id, title or a|b path)")
    p.add_argument("--priority", type=int, help="the job's priority (default: 1000, or the bundle's)")
    p.add_argument("--paused", action="store_true", default=None, help="submit it paused")
    p.add_argument("--retry", type=int, help="retries of each task")
    p.add_argument("--affinity", help="more tags, comma-separated, for every task")
    p.add_argument("--user", help="the owner (default: your login name)")
    p.add_argument("--output", help="the tasks' output files (f_####.png): thumbnails")
    p.set_defaults(func=cmd_submit)


def _params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise BundleError(f"-p {item!r}: expected NAME=VALUE")
        out[name.strip()] = value
    return out


def _shown(path: str) -> str:
    """The template's path as messages name it: relative to here when it is below here."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _problems(path: str, exc: CoalitionError) -> list[str]:
    """One line per problem of a refused template: `FILE:LINE: FIELD: MESSAGE`."""
    lines = []
    for p in exc.body.get("problems") or ():
        where = f"{path}:{p['line']}" if p.get("line") else path
        field = f" {p['field']}:" if p.get("field") else ""
        lines.append(f"{where}:{field} {p.get('message', '')}")
    return lines


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit (or, with --check, validate) a template or a bundle."""
    from .cli import EXIT_ERROR, PROG, connect, emit
    from .client import owner

    bundle = load(args.path, _params(args.param))
    body: dict[str, Any] = {
        "template": bundle.text,
        "parameters": bundle.values,
        "template_dir": os.path.dirname(bundle.template_path),
        "cwd": os.getcwd(),
        **bundle.options,
    }
    for key in ("title", "parent", "priority", "paused", "retry", "affinity", "output"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    body["user"] = owner(args.user or "")
    shown = _shown(bundle.template_path)
    for note in bundle.notes:
        print(f"{PROG}: note: {note}", file=sys.stderr)
    route = "/api/openjd/check" if args.check else "/api/openjd"
    try:
        answer = connect(args).request("POST", route, body)
    except CoalitionError as exc:
        lines = _problems(shown, exc)
        if not lines:
            raise
        for line in lines:
            print(f"{PROG}: error: {line}", file=sys.stderr)
        return EXIT_ERROR
    for note in answer.get("notes") or ():
        print(f"{PROG}: note: {note}", file=sys.stderr)
    if args.check:
        return _report_check(args, shown, answer)
    steps = answer.get("steps") or []
    emit(
        args,
        answer,
        lambda: (
            f"{answer['id']}: {answer['title']} ({len(steps)} step{'s' * (len(steps) != 1)}, "
            f"{answer['tasks']} task{'s' * (answer['tasks'] != 1)})"
        ),
    )
    return 0


def _report_check(args: argparse.Namespace, shown: str, answer: dict[str, Any]) -> int:
    from .cli import EXIT_ERROR, PROG, emit

    job = answer.get("job")

    def text() -> str:
        lines = [f"{shown}: a valid job template ({answer.get('name', '')})"]
        for p in answer.get("parameters") or ():
            default = f" = {p['default']!r}" if "default" in p else " (required)"
            lines.append(f"  parameter {p.get('name')} {p.get('type')}{default}")
        for s in (job or {}).get("steps") or ():
            needs = [f"{k} {s[k]}" for k in ("cores", "memory", "gpus") if s.get(k)] + s.get("tags", [])
            after = f", after {', '.join(s['depends_on'])}" if s.get("depends_on") else ""
            extra = f" [{'; '.join(needs)}]" if needs else ""
            lines.append(f"  step {s['name']}: {s['tasks']} task{'s' * (s['tasks'] != 1)}{after}{extra}")
        return "\n".join(lines)

    emit(args, answer, text)
    if job is None:
        problems = [p["message"] for p in answer.get("problems") or ()] or [answer.get("problem", "")]
        for problem in problems:
            print(f"{PROG}: error: {problem}", file=sys.stderr)
        return EXIT_ERROR
    return 0
