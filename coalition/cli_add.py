"""`coalition add`: submit one job, or with --frames a group of frame chunks.

    coalition add -c "render -f 1" -t "frame 1" -a linux
    coalition add --frames 1-1000 --chunk 10 --cmd "render -s {start} -e {end}"

Its options are control.py's job options plus Coalition 5's; cli.py's legacy form
(`[OPTIONS] SERVER_URL add`) takes the same ones and runs the same command. Kept apart from
cli.py, like the other cli_*.py modules, to keep each module small.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from . import cli_failures, cli_scheduling
from .client import Connection, owner
from .frames import UsageError, chunk_frames, fill_frames, parse_frames
from .progress import PRESETS


def add_job_options(p: argparse.ArgumentParser) -> None:
    """control.py's job options, plus Coalition 5's."""
    p.add_argument("-c", "--cmd", "--command", dest="cmd", help="the command to run")
    p.add_argument(
        "-d", "--directory", "--dir", dest="dir", default=".", help="working directory (default: .)"
    )
    p.add_argument("-t", "--title", default="", help="title (default: the command)")
    p.add_argument("-p", "--priority", type=int, default=1000, help="priority (default: 1000)")
    p.add_argument("-r", "--retry", type=int, default=10, help="retries after an error (default: 10)")
    p.add_argument("-a", "--affinity", default="", help="comma-separated affinity tags")
    p.add_argument("-T", "--timeout", type=int, default=0, help="seconds before the job is killed (0: none)")
    p.add_argument("-D", "--dependencies", default="", help='ids of jobs to finish first, e.g. "21 22 23"')
    p.add_argument("-P", "--parent", default="0", help="parent job: an id, a title or an a|b path of titles")
    p.add_argument("--localprogress", default="", help="second-level progress pattern")
    p.add_argument("--globalprogress", default="", help="progress pattern (default: PROGRESS:%%percent)")
    p.add_argument(
        "--progress",
        default="",
        metavar="PRESET",
        help=f"read progress as this renderer prints it: {', '.join(sorted(PRESETS))} (docs/jobs.md)",
    )
    p.add_argument(
        "--output",
        default="",
        metavar="PATH",
        help="the job's output files, e.g. /render/f_####.png (thumbnails)",
    )
    p.add_argument("--user", default="", help="owner of the job (default: your login name)")
    p.add_argument("--url", default="", help="URL shown with the job (e.g. its output)")
    p.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="environment variable (repeatable)"
    )
    p.add_argument("--paused", action="store_true", help="create the job paused")
    p.add_argument("--frames", help="frame ranges, e.g. 1-1000: one child job per chunk")
    p.add_argument("--chunk", type=int, default=1, help="frames per child with --frames (default: 1)")
    cli_failures.add_options(p)
    cli_scheduling.add_resource_options(p)
    p.add_argument("--limits", default="", help='farm-wide limits each run needs, e.g. "nuke:1,arnold:2"')
    p.add_argument(
        "--frame-deps",
        type=int,
        default=0,
        metavar="ID",
        help="wait for job ID frame by frame (with --frames)",
    )


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `add` to the subcommands."""
    p = sub.add_parser("add", parents=[common], help="submit a job (or a group with --frames)")
    add_job_options(p)
    p.add_argument("words", nargs="*", metavar="COMMAND", help="the command, instead of --cmd (after --)")
    p.set_defaults(func=cmd_add)


def _job_body(
    args: argparse.Namespace, command: str, title: str, parent: Any, frames: tuple[int, int] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "parent": parent,
        "title": title,
        "command": command,
        "dir": args.dir or ".",
        "priority": args.priority,
        "retry": args.retry,
        "timeout": args.timeout,
        "user": owner(args.user),
    }
    if args.env:
        body["environment"] = "\\n".join(args.env)  # chapter 8: pairs joined by backslash-n
    if args.url:
        body["url"] = args.url
    if args.output:
        body["output"] = args.output
    if args.globalprogress:
        body["progress_pattern"] = args.globalprogress
    elif args.progress:
        # A chunk's range lets the preset count frames: 3 of 4 frames done is 75%.
        body["progress_pattern"] = f"@{args.progress}" + (f"[{frames[0]}-{frames[1]}]" if frames else "")
    if args.localprogress:
        body["local_progress_pattern"] = args.localprogress
    body.update(cli_failures.job_fields(args))
    if getattr(args, "limits", ""):
        body["limits"] = args.limits
    if frames:
        body.update(first_frame=frames[0], last_frame=frames[1])
    return body


def cmd_add(args: argparse.Namespace) -> int:
    """Submit one job, or a group of frame chunks with --frames."""
    from .cli import connect, emit

    command = args.cmd
    if args.words:
        if command:
            raise UsageError("give the command either with --cmd or after the options, not both")
        command = shlex.join(args.words)
    if not command:
        raise UsageError("no command: use --cmd COMMAND (or: coalition add [options] -- COMMAND...)")
    for pair in args.env:
        if "=" not in pair:
            raise UsageError(f"--env expects KEY=VALUE, got {pair!r}")
    if args.progress and args.globalprogress:
        raise UsageError("give either --progress PRESET or --globalprogress PATTERN, not both")
    if args.progress and args.progress.lower() not in PRESETS:
        raise UsageError(
            f"--progress: unknown preset {args.progress!r} (known: {', '.join(sorted(PRESETS))})"
        )
    parent: Any = int(args.parent) if str(args.parent).strip().isdigit() else args.parent
    title = args.title or command
    conn = connect(args)
    if not args.frames:
        body = _job_body(args, command, title, parent)
        body.update(affinity=args.affinity, dependencies=args.dependencies, paused=args.paused)
        body.update(cli_scheduling.resource_fields(args))
        if getattr(args, "frame_deps", 0):
            body["frame_dep"] = args.frame_deps
        job_id = _put(conn, body)
        emit(args, {"id": job_id}, lambda: str(job_id))
        return 0
    chunks = chunk_frames(parse_frames(args.frames), args.chunk)
    # The group is created paused and started once complete: no worker sees a half-built group.
    group = {
        "parent": parent,
        "title": fill_frames(title, chunks[0][0], chunks[-1][1]),
        "command": "",
        "priority": args.priority,
        "affinity": args.affinity,
        "user": owner(args.user),
        "dependencies": args.dependencies,
        "paused": True,
        **cli_scheduling.resource_fields(args),  # its chunks inherit the request
    }
    if getattr(args, "frame_deps", 0):
        group["frame_dep"] = args.frame_deps  # each chunk waits for the frames it covers
    group_id = _put(conn, group)
    children = []
    for start, end in chunks:
        templated = "{start}" in title or "{end}" in title
        child_title = fill_frames(title, start, end) if templated else f"{title} [{start}-{end}]"
        body = _job_body(args, fill_frames(command, start, end), child_title, group_id, (start, end))
        body["priority"] = 1000  # the group's priority orders it among its siblings
        children.append(body)
    ids = conn.request("PUT", "/api/jobs", children)
    if not args.paused:
        conn.start([group_id])
    emit(args, {"id": group_id, "children": ids}, lambda: str(group_id))
    return 0


def _put(conn: Connection, body: dict[str, Any]) -> int:
    answer = conn.request("PUT", "/api/jobs", body)
    return int(answer["id"] if isinstance(answer, dict) else answer)
