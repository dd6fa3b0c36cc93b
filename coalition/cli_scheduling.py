"""`coalition limits` and `coalition why`: the farm's limits and why a job waits.

coalition limits                      list every limit and its use
coalition limits set nuke 5 arnold 10 create limits or set their capacities
coalition limits delete nuke          remove a limit
coalition why 40                      why job 40 is not running
"""

from __future__ import annotations

import argparse
from typing import Any

from coalition.frames import UsageError


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
