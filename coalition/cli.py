"""`coalition`: the command line of a Coalition farm (it replaces Coalition 4's control.py).

    coalition [--server URL] [--json] COMMAND ...
    coalition add -c "render -f 1" -t "frame 1" -a linux
    coalition add --frames 1-1000 --chunk 10 --cmd "render -s {start} -e {end}"   (cli_add.py)
    coalition list | show ID | log [-f] ID | wait ID | pause/start/reset/delete ID...
    coalition workers [stop|start|delete|terminate NAME...] | events [--job ID]
    coalition submit TEMPLATE|BUNDLE [-p NAME=VALUE ...]   (Open Job Description: cli_submit.py)

Coalition 4's form, `[OPTIONS] SERVER_URL ACTION` (actions add, list, remove), still works:
    coalition --cmd="echo toto" --priority=1000 --affinity="linux" --retry=10 http://127.0.0.1:19211 add

The server is --server, else $COALITION_SERVER, else the ini (`[worker] serverUrl`, else
`[server] port` on this host), else http://127.0.0.1:19211. Errors are one line on stderr and
a non-zero exit: 1 for a failure, 2 for a usage error; `wait` exits 0 when the job finished,
1 when it ended in error, 3 on --timeout.
"""

from __future__ import annotations

import argparse
import configparser
import getpass
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from coalition import __version__, cli_add, cli_failures, cli_scheduling, cli_submit
from coalition.client import CoalitionError, Connection, NotFound
from coalition.frames import UsageError
from coalition.worker.settings import find_config, normalise_url

PROG = "coalition"
DEFAULT_SERVER = "http://127.0.0.1:19211"
EXIT_ERROR, EXIT_USAGE, EXIT_TIMEOUT = 1, 2, 3
LEGACY_ACTIONS = ("add", "list", "remove")
FINAL = ("FINISHED", "ERROR")

# control.py's options, all of which take a value (its getopt string was "a:d:e:h:r:s:t:v:c:i:D:p:T:P:").
LEGACY_VALUE_OPTIONS = {
    "-a",
    "--affinity",
    "-d",
    "--directory",
    "--dir",
    "-e",
    "--end",
    "-r",
    "--retry",
    "-s",
    "--start",
    "-t",
    "--title",
    "-c",
    "--cmd",
    "--command",
    "-i",
    "--jobid",
    "-D",
    "--dependencies",
    "-p",
    "--priority",
    "-T",
    "--timeout",
    "-P",
    "--parent",
    "--localprogress",
    "--globalprogress",
    "--progress",
    "--output",
    "--user",
    "--url",
    "--env",
    "--frames",
    "--chunk",
    "--limits",
    "--frame-deps",
    "--cores",
    "--memory",
    "--gpus",
}
GLOBAL_VALUE_OPTIONS = {"--server", "--config", "--auth", "--cacert"}


# -- parser --------------------------------------------------------------------------------------
def _add_global_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    p.add_argument(
        "--server",
        metavar="URL",
        default=default,
        help="the server (default: $COALITION_SERVER, else the ini, else http://127.0.0.1:19211)",
    )
    p.add_argument("--config", metavar="INI", default=default, help="coalition.ini to read the server from")
    p.add_argument(
        "--auth",
        metavar="USER[:PASSWORD]",
        default=default,
        help="HTTP Basic credentials (default: $COALITION_AUTH; asks for a missing password)",
    )
    p.add_argument("--cacert", metavar="FILE", default=default, help="CA bundle to verify an https server")
    p.add_argument("--json", action="store_true", default=default, help="print JSON (for scripts)")


def build_parser() -> argparse.ArgumentParser:
    """The `coalition` argument parser; each subcommand sets `func(args) -> int`."""
    parser = argparse.ArgumentParser(prog=PROG, description="Drive a Coalition render farm.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    cli_add.register(sub, common)

    p = sub.add_parser("list", parents=[common], help="list jobs (the root jobs by default)")
    p.add_argument("--parent", type=int, default=0, help="list the children of this job")
    p.add_argument("--state", help="comma-separated states")
    p.add_argument("--user", help="only this user's jobs")
    p.add_argument("--text", help="title or command contains")
    p.add_argument("--limit", type=int, default=200, help="at most this many (default: 200)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", parents=[common], help="show one job")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("log", parents=[common], help="print a job's log")
    p.add_argument("id", type=int)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls with -f")
    p.set_defaults(func=cmd_log)

    for name, what in (
        ("pause", "pause jobs (kills running ones)"),
        ("start", "un-pause jobs"),
        ("reset", "run jobs again"),
        ("delete", "delete jobs and their children"),
    ):
        p = sub.add_parser(name, parents=[common], help=what)
        p.add_argument("ids", type=int, nargs="+", metavar="ID")
        if name == "reset":
            p.add_argument("--errors", action="store_true", help="only the jobs in ERROR")
        p.set_defaults(func=cmd_state, action=name)

    p = sub.add_parser("workers", parents=[common], help="list workers, or stop/start/delete/terminate some")
    p.add_argument("action", nargs="?", choices=("stop", "start", "delete", "terminate", "clearsick"))
    p.add_argument("names", nargs="*", metavar="NAME")
    p.set_defaults(func=cmd_workers)

    p = sub.add_parser("events", parents=[common], help="list runs")
    p.add_argument("--job", type=int)
    p.add_argument("--worker")
    p.add_argument("--howlong", type=float, help="only the last N seconds")
    p.set_defaults(func=cmd_events)

    cli_failures.register(sub, common)
    cli_submit.register(sub, common)

    p = sub.add_parser("wait", parents=[common], help="wait for a job or group to end, with a progress bar")
    p.add_argument("id", type=int)
    p.add_argument("--timeout", type=float, default=0, help="give up after N seconds (exit 3)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_wait)

    cli_scheduling.register(sub, common)
    try:  # the cloud subcommand is optional: its provider SDKs may not be installed
        from coalition.cloud import cli as cloud_cli

        cloud_cli.register(sub)
    except ImportError:
        pass
    parser.commands = tuple(sub.choices)  # type: ignore[attr-defined]  # for is_legacy()
    return parser


def build_legacy_parser() -> argparse.ArgumentParser:
    """Coalition 4's `control.py [OPTIONS] SERVER_URL ACTION`."""
    p = argparse.ArgumentParser(prog=PROG, usage=f"{PROG} [OPTIONS] SERVER_URL {{add,list,remove}}")
    cli_add.add_job_options(p)
    p.add_argument("-i", "--jobid", type=int, help="the job to remove")
    p.add_argument("-s", "--start", help=argparse.SUPPRESS)  # parsed and unused, as in control.py
    p.add_argument("-e", "--end", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help=argparse.SUPPRESS)
    _add_global_options(p, suppress=False)
    p.add_argument("url", metavar="SERVER_URL")
    p.add_argument("action", choices=LEGACY_ACTIONS)
    p.add_argument("words", nargs="*", metavar="COMMAND")
    return p


def is_legacy(argv: Sequence[str], commands: Sequence[str]) -> bool:
    """Whether argv is control.py's form: its first positional word is a URL, not a command."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            return False
        if token.startswith("-") and token != "-":
            name = token.split("=", 1)[0]
            takes_value = name in LEGACY_VALUE_OPTIONS or name in GLOBAL_VALUE_OPTIONS
            short_joined = not token.startswith("--") and len(token) > 2  # -p1000
            i += 2 if takes_value and "=" not in token and not short_joined else 1
            continue
        if token in commands:
            return False
        return "://" in token or re.fullmatch(r"[\w.-]+:\d+", token) is not None
    return False


# -- plumbing ------------------------------------------------------------------------------------
def resolve_server(args: argparse.Namespace, environ: dict[str, str] | None = None) -> str:
    """--server, else $COALITION_SERVER, else the ini, else the local default."""
    environ = dict(os.environ) if environ is None else environ
    explicit = getattr(args, "server", None) or environ.get("COALITION_SERVER")
    if explicit:
        return normalise_url(explicit)
    path = find_config(getattr(args, "config", None))
    if path:
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path, encoding="utf-8")
        url = parser.get("worker", "serverurl", fallback="").strip()
        if url:
            return normalise_url(url)
        port = parser.get("server", "port", fallback="").strip()
        if port.isdigit():
            return f"http://127.0.0.1:{port}"
    return DEFAULT_SERVER


def connect(args: argparse.Namespace) -> Connection:
    """A Connection from the global options."""
    auth = None
    credentials = getattr(args, "auth", None) or os.environ.get("COALITION_AUTH")
    if credentials:
        user, sep, password = credentials.partition(":")
        if not sep:
            password = getpass.getpass(f"password for {user}: ") if sys.stdin.isatty() else ""
        auth = (user, password)
    return Connection(resolve_server(args), auth=auth, cacert=getattr(args, "cacert", None) or None)


def emit(args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    """Print JSON with --json, else the human text."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        out = text()
        if out:
            print(out)


def table(rows: list[list[Any]], header: list[str]) -> str:
    """A plain left-aligned text table."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def _progress_text(job: dict[str, Any]) -> str:
    if job.get("total"):
        return f"{job.get('total_finished', 0)}/{job['total']}"
    return f"{round(100 * float(job.get('progress') or 0))}%"


# -- commands ------------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    """List jobs."""
    conn = connect(args)
    params = {
        "parent": args.parent,
        "state": args.state,
        "user": args.user,
        "text": args.text,
        "limit": args.limit,
    }
    answer = conn.request("GET", "/api/jobs", params=params)
    jobs = answer["jobs"] if isinstance(answer, dict) else answer
    rows = [
        [j["id"], j["state"], _progress_text(j), j["priority"], j.get("worker") or "-", j["title"]]
        for j in jobs
    ]
    emit(args, jobs, lambda: table(rows, ["ID", "STATE", "PROGRESS", "PRIORITY", "WORKER", "TITLE"]))
    return 0


def duration_text(seconds: float | None) -> str:
    """`45 s`, `12 min`, `3 h 20 min`; `unknown` for None."""
    if seconds is None:
        return "unknown"
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


def _stats_lines(stats: dict[str, Any]) -> list[str]:
    time, peak = stats["time"], stats["peak_memory"]
    lines = [f"frames: {stats['frame_count']} ({time['count']} finished, {stats['running']} running, "
             f"{stats['waiting']} waiting)"]  # fmt: skip
    if time["count"]:
        lines.append(
            f"frame time: min {time['min']:.1f} s, mean {time['mean']:.1f} s, max {time['max']:.1f} s"
        )
        lines.append(
            f"peak memory: min {peak['min']:.0f} MB, mean {peak['mean']:.0f} MB, max {peak['max']:.0f} MB"
        )
    lines.append(f"time left: {duration_text(stats['time_left'])}")
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    """Show one job, field by field, then its frames' figures and its time left."""
    conn = connect(args)
    job = conn.request("GET", f"/api/jobs/{args.id}")
    job["stats"] = conn.request("GET", f"/api/jobs/{args.id}/stats")
    stats = {k: v for k, v in job["stats"].items() if k != "frames"}
    emit(
        args,
        job,
        lambda: "\n".join([*(f"{k}: {v}" for k, v in job.items() if k != "stats"), *_stats_lines(stats)]),
    )
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    """Print a log; with -f keep printing until the job is FINISHED or ERROR."""
    conn = connect(args)
    if not args.follow:
        text = conn.log(args.id)
        emit(args, text, lambda: text.rstrip("\n"))
        return 0
    offset = 0
    while True:
        job = conn.request("GET", f"/api/jobs/{args.id}")  # before the read: no final bytes missed
        while True:
            part = conn.log_range(args.id, offset)
            if part["data"]:
                sys.stdout.write(part["data"])
                sys.stdout.flush()
            offset = int(part.get("next", offset + len(part["data"].encode())))
            if not part["data"] or offset >= part.get("size", offset):
                break
        if job["state"] in FINAL:
            return 0
        time.sleep(args.interval)


def cmd_state(args: argparse.Namespace) -> int:
    """pause / start / reset / delete a list of jobs."""
    conn = connect(args)
    if args.action == "delete":
        conn.delete(args.ids)
    elif args.action == "reset":
        conn.reset(args.ids, errors_only=args.errors)
    else:
        getattr(conn, args.action)(args.ids)
    emit(args, {"ok": True, args.action: args.ids}, lambda: "")
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    """List workers, or act on some."""
    conn = connect(args)
    if args.action:
        if not args.names:
            raise UsageError(f"workers {args.action}: give at least one worker name")
        conn.workers_action(args.action, args.names)
        emit(args, {"ok": True, args.action: args.names}, lambda: "")
        return 0
    workers = conn.getWorkers()

    def cpu(w: dict[str, Any]) -> str:
        try:
            values = json.loads(w.get("cpu") or "[]")
        except ValueError:
            return "?"
        return f"{sum(values) / len(values):.0f}%" if values else "-"

    rows = [
        [
            w["name"],
            w["state"],
            w.get("ip") or "-",
            cpu(w),
            f"{w.get('free_memory') or 0}/{w.get('total_memory') or 0}",
            w.get("last_job") or "-",
            (w.get("affinity") or "").replace("\n", " | "),
            "" if w.get("active", 1) else "stopped",
        ]
        for w in workers
    ]
    emit(
        args,
        workers,
        lambda: table(rows, ["NAME", "STATE", "IP", "CPU", "MEM MB", "LAST JOB", "AFFINITY", ""]),
    )
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    """List runs."""
    events = connect(args).events(args.job, args.worker, int(args.howlong) if args.howlong else None)
    rows = [
        [
            e["id"],
            e["job_id"],
            e["worker"],
            e["state"],
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["start"])),
            f"{e['duration']:.1f}s",
            e.get("job_title", ""),
            e.get("reason", ""),
        ]
        for e in events
    ]
    header = ["EVENT", "JOB", "WORKER", "STATE", "START", "DURATION", "TITLE", "REASON"]
    emit(args, events, lambda: table(rows, header))
    return 0


def job_outcome(job: dict[str, Any]) -> str | None:
    """FINISHED or ERROR once a job or group has ended, None while it may still run."""
    if job.get("total") or job.get("children"):
        total = int(job.get("total") or 0)
        done, errors = int(job.get("total_finished") or 0), int(job.get("total_errors") or 0)
        if total and done == total:
            return "FINISHED"
        if total and done + errors >= total and not job.get("total_working"):
            return "ERROR"
        return None
    state = job.get("state")
    return state if state in FINAL else None  # a failed run with retries left is WAITING again


def _bar(job: dict[str, Any], width: int = 30) -> str:
    if job.get("total"):
        fraction = int(job.get("total_finished") or 0) / max(1, int(job["total"]))
    else:
        fraction = float(job.get("progress") or 0)
    filled = int(round(width * min(1.0, max(0.0, fraction))))
    bar = "#" * filled + "." * (width - filled)
    return f"[{bar}] {100 * fraction:5.1f}% {_progress_text(job)} {job['state']}"


def cmd_wait(args: argparse.Namespace) -> int:
    """Poll a job until it ends: 0 FINISHED, 1 ERROR, 3 timeout."""
    conn = connect(args)
    deadline = time.monotonic() + args.timeout if args.timeout > 0 else None
    show = not args.quiet and not args.json and sys.stderr.isatty()
    while True:
        try:
            job = conn.request("GET", f"/api/jobs/{args.id}")
        except NotFound:
            raise CoalitionError(f"job {args.id} does not exist (deleted?)") from None
        outcome = job_outcome(job)
        if show:
            sys.stderr.write("\r" + _bar(job))
            sys.stderr.flush()
        if outcome is not None:
            if show:
                sys.stderr.write("\n")
            summary = "" if show else f"job {args.id}: {outcome}"
            emit(args, job, lambda: summary)  # noqa: B023 - called right away
            return 0 if outcome == "FINISHED" else EXIT_ERROR
        if deadline is not None and time.monotonic() >= deadline:
            if show:
                sys.stderr.write("\n")
            print(f"{PROG}: timed out waiting for job {args.id} ({job['state']})", file=sys.stderr)
            return EXIT_TIMEOUT
        time.sleep(args.interval)


# -- legacy --------------------------------------------------------------------------------------
def run_legacy(argv: Sequence[str]) -> int:
    """control.py's `[OPTIONS] SERVER_URL ACTION`, mapped onto the new commands."""
    args = build_legacy_parser().parse_args(list(argv))
    args.server = args.url
    if args.action == "add":
        return cli_add.cmd_add(args)
    if args.action == "list":
        parent = int(args.parent) if str(args.parent).isdigit() else 0
        listing = argparse.Namespace(
            server=args.server,
            config=args.config,
            auth=args.auth,
            cacert=args.cacert,
            json=args.json,
            parent=parent,
            state=None,
            user=None,
            text=None,
            limit=10000,
        )
        return cmd_list(listing)
    if args.jobid is None:
        raise UsageError("remove: use -i JOBID to say which job")
    args.ids, args.action = [args.jobid], "delete"
    return cmd_state(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `coalition` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        if is_legacy(argv, parser.commands):  # type: ignore[attr-defined]
            return run_legacy(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_usage(sys.stderr)
            print(f"{PROG}: error: no command given (try: {PROG} --help)", file=sys.stderr)
            return EXIT_USAGE
        return int(args.func(args))
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (CoalitionError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2); main() returns, never exits
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
