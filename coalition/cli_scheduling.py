"""`coalition limits` and `coalition why`: the farm's limits and why a job waits.

coalition limits                      list every limit and its use
coalition limits set nuke 5 arnold 10 create limits or set their capacities
coalition limits delete nuke          remove a limit
coalition why 40                      why job 40 is not running
coalition add --cores 4 --memory 8000 --gpus 1 [--exclusive] ...   resource requests
"""

from __future__ import annotations

import argparse
from typing import Any

from coalition.frames import UsageError


def _amount(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def add_resource_options(p: argparse.ArgumentParser) -> None:
    """The resource requests of `coalition add` (docs/scheduling.md)."""
    p.add_argument("--cores", type=_amount, default=None, help="CPU cores each run needs")
    p.add_argument("--memory", type=_amount, default=None, metavar="MB", help="memory each run needs, in MB")
    p.add_argument("--gpus", type=_amount, default=None, help="GPUs each run needs (pinned to it)")
    p.add_argument("--exclusive", action="store_true", help="each run takes a whole host")


def resource_fields(args: argparse.Namespace) -> dict[str, Any]:
    """What those options add to a job (with --frames: to the group, which its chunks inherit)."""
    out: dict[str, Any] = {k: getattr(args, k) for k in ("cores", "memory", "gpus") if getattr(args, k, None)}
    if getattr(args, "exclusive", False):
        out["exclusive"] = True
    return out


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `limits` and `why` subcommands to the `coalition` parser."""
    p = sub.add_parser("limits", parents=[common], help="list the farm's limits, or set/delete some")
    p.add_argument("action", nargs="?", choices=("set", "delete"))
    p.add_argument("words", nargs="*", metavar="NAME [CAPACITY]")
    p.set_defaults(func=cmd_limits)

    p = sub.add_parser("why", parents=[common], help="why a job is not running")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_why)


def cmd_limits(args: argparse.Namespace) -> int:
    """List, set or delete limits."""
    from coalition.cli import connect, emit, table

    conn = connect(args)
    if args.action == "set":
        words = list(args.words)
        if not words or len(words) % 2:
            raise UsageError("limits set: give NAME CAPACITY pairs, e.g. limits set nuke 5")
        values: dict[str, int] = {}
        for name, capacity in zip(words[::2], words[1::2], strict=True):
            if not capacity.isdigit():
                raise UsageError(f"limits set: the capacity of {name} must be a number, got {capacity!r}")
            values[name] = int(capacity)
        conn.request("POST", "/api/limits", values)
    elif args.action == "delete":
        if not args.words:
            raise UsageError("limits delete: name the limits to remove")
        for name in args.words:
            conn.request("DELETE", f"/api/limits/{name}")
    rows = conn.request("GET", "/api/limits")
    emit(
        args,
        rows,
        lambda: table(
            [[r["name"], r["capacity"], r["in_use"], r["external"], r["free"]] for r in rows],
            ["NAME", "CAPACITY", "IN USE", "OUTSIDE", "FREE"],
        ),
    )
    return 0


def cmd_why(args: argparse.Namespace) -> int:
    """Print why a job is not running, one reason a line."""
    from coalition.cli import connect, emit

    answer = connect(args).request("GET", f"/api/jobs/{args.id}/why")

    def text() -> str:
        reasons = answer.get("reasons") or []
        if reasons:
            return "\n".join(r["text"] for r in reasons)
        if answer.get("state") in ("WORKING", "FINISHED"):
            return f"job {args.id} is {answer['state']}"
        return f"job {args.id} is {answer.get('state')}: nothing holds it back but free workers"

    emit(args, answer, text)
    return 0
