"""`coalition` subcommands and options of failure handling (docs/failures.md):

coalition blocks [--job ID] [--worker NAME]   the host blocks in force
coalition unblock ID [NAME...]                lift a job's blocks (all, or these workers')
coalition workers clearsick NAME...           (in cli.py's `workers`)
coalition add --stalltimeout S --minruntime S --hostfails N --logrules RULE...
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from .failures import PRESETS


def add_options(p: argparse.ArgumentParser) -> None:
    """The failure-handling options of `coalition add`."""
    p.add_argument(
        "--stalltimeout", type=int, default=None, help="kill a run printing nothing for S seconds (-1: never)"
    )
    p.add_argument("--minruntime", type=int, default=None, help="a run exiting 0 faster than S seconds fails")
    p.add_argument("--hostfails", type=int, default=None, help="block a host after N failed runs (-1: never)")
    p.add_argument(
        "--logrules",
        action="append",
        default=[],
        metavar="RULE",
        help=f"'NAME ACTION REGEX' or @preset ({', '.join('@' + p for p in sorted(PRESETS))}); repeatable",
    )


def job_fields(args: argparse.Namespace) -> dict[str, Any]:
    """What those options add to a job body."""
    out: dict[str, Any] = {}
    for key in ("stalltimeout", "minruntime", "hostfails"):
        if getattr(args, key, None) is not None:
            out[key] = getattr(args, key)
    if getattr(args, "logrules", None):
        out["logrules"] = "\n".join(args.logrules)
    return out


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `blocks` and `unblock` to the subcommands."""
    p = sub.add_parser("blocks", parents=[common], help="list hosts blocked from jobs after failures")
    p.add_argument("--job", type=int, help="only this job's (and its group's)")
    p.add_argument("--worker", help="only this worker's")
    p.set_defaults(func=cmd_blocks)
    p = sub.add_parser("unblock", parents=[common], help="lift a job's host blocks")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these workers' (default: all)")
    p.set_defaults(func=cmd_unblock)


def _when(stamp: int) -> str:
    if stamp >= 10**15:  # forgive = 0: the server stores "never" as 1e15
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def cmd_blocks(args: argparse.Namespace) -> int:
    """List the blocks in force."""
    from .cli import connect, emit, table

    params = {k: v for k, v in (("job", args.job), ("worker", args.worker)) if v is not None}
    blocks = connect(args).request("GET", "/api/blocks", params=params)
    rows = [[b["job_id"], b["worker"], b["failures"], _when(b["blocked_until"]), b["reason"]] for b in blocks]
    emit(args, blocks, lambda: table(rows, ["JOB", "WORKER", "FAILURES", "UNTIL", "LAST REASON"]))
    return 0


def cmd_unblock(args: argparse.Namespace) -> int:
    """Lift a job's blocks."""
    from .cli import connect, emit

    answer = connect(args).request("DELETE", f"/api/jobs/{args.id}/blocks", args.names or None)
    emit(args, answer, lambda: f"job {args.id}: {answer.get('lifted', 0)} block(s) lifted")
    return 0
