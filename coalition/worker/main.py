"""`coalition-worker`: the command line of the worker agent.

    coalition-worker [-c INI] [-n NAME] [-w WORKERS] [-s SLEEP] [-u STARTUP] [-a AFFINITY]
                     [-v] [--check] [SERVER_URL]

Command-line values override the `[worker]` section of the ini file (-c, else ./coalition.ini,
else /etc/coalition/coalition.ini). Without a server URL anywhere, the server is found by UDP
broadcast. SIGTERM or SIGINT stops gracefully (see `shutdown` in docs/worker.md); a second
one hands running jobs back at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from coalition import __version__
from coalition.model import format_rule_lines, parse_rule_lines
from coalition.openjd import MISSING, sessions_available
from coalition.openjd.plan import OPENJD_TAG
from coalition.openjd.requirements import worker_tags

from . import process, resources
from .agent import Slot
from .control import Control
from .courier import Courier
from .discovery import discover
from .interruption import watch, watchers_for
from .link import LinkError, ServerLink
from .metrics import Metrics
from .settings import SettingsError, WorkerSettings, load_settings, normalise_url
from .wake import open_listener

log = logging.getLogger("coalition.worker")
PROG = "coalition-worker"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _whole(lo: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `lo`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected a number >= {lo}, got {value}")
        return value

    return parse


_count, _amount = _whole(1), _whole(0)


def _workers(text: str) -> int | str:
    return "auto" if text.strip().lower() == "auto" else _count(text)


def _gpus(text: str) -> tuple[str, ...]:
    try:
        return resources.parse_gpus(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The worker's argument parser (Coalition 4's flags, plus -c and --check)."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Run Coalition jobs. Options override the [worker] section of coalition.ini.",
        epilog="With -w N the slots are named NAME-1 .. NAME-N (just NAME when N is 1).",
    )
    p.add_argument(
        "server_url",
        nargs="?",
        metavar="SERVER_URL",
        help="the server, e.g. http://render-server:19211 (default: serverUrl, else broadcast)",
    )
    p.add_argument(
        "-c",
        "--config",
        metavar="INI",
        help="configuration file (default: ./coalition.ini, else /etc/coalition/coalition.ini)",
    )
    p.add_argument("-n", "--name", help="worker name (default: the host name)")
    p.add_argument(
        "-w",
        "--workers",
        type=_workers,
        help="job slots: auto (as many jobs as fit, the default) or a number of equal slots",
    )
    p.add_argument("--cores", type=_amount, help="CPU cores offered to jobs (default: detected)")
    p.add_argument("--memory", type=_amount, help="memory offered to jobs, in MB (default: detected)")
    p.add_argument("--gpus", type=_gpus, help="GPUs offered to jobs: a count or device ids (0,2)")
    p.add_argument("-s", "--sleep", type=_seconds, help="seconds between heartbeats (default: 2)")
    p.add_argument("-u", "--startup", help="shell command run once before taking jobs")
    p.add_argument("-a", "--affinity", help="affinity rule lines, separated by ';' (e.g. 'linux,gpu;linux')")
    p.add_argument("--cpus", type=_count, help="cpus per slot: slots = cpu count / CPUS (unless -w)")
    p.add_argument("-v", "--verbose", action="store_true", default=None, help="debug logging")
    p.add_argument(
        "--check", action="store_true", help="contact the server once; exit 0 if it answers, else 1"
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (None: not given)."""
    out: dict[str, Any] = {
        "name": args.name,
        "workers": args.workers,
        "sleep": args.sleep,
        "startup": args.startup,
        "verbose": args.verbose,
        "cpus": args.cpus,
        "cores": args.cores,
        "memory": args.memory,
        "gpus": args.gpus,
    }
    if args.affinity is not None:
        out["affinity"] = format_rule_lines(parse_rule_lines(args.affinity.replace(";", "\n")))
    if args.server_url:
        out["server_url"] = normalise_url(args.server_url)
    return out


def setup_logging(settings: WorkerSettings) -> None:
    """Log to `logfile` (or stderr when empty or '-'), debug level with `verbose`."""
    if settings.logfile and settings.logfile != "-":
        handler: logging.Handler = logging.FileHandler(settings.logfile)
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("coalition")
    root.handlers[:] = [handler]
    # A busy slot logs two lines per job. The format uses none of the caller's file, thread or
    # process: not looking them up (the logging HOWTO's "Optimization") halves a line's cost.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root.setLevel(logging.DEBUG if settings.verbose else logging.INFO)


def run_startup(command: str) -> None:
    """The `startup` command, once, before the first job (its failure is logged, not fatal)."""
    log.info("running the startup command: %s", command)
    try:
        done = subprocess.run(command, shell=True, stdin=subprocess.DEVNULL, check=False)
    except OSError as exc:
        log.error("startup command failed to start: %s", exc)
        return
    if done.returncode != 0:
        log.warning("startup command exited with code %d", done.returncode)


def check(settings: WorkerSettings) -> int:
    """`--check`: one idle heartbeat as this worker. 0 if the server answers, 1 otherwise."""
    url = settings.server_url or discover(
        settings.broadcast, settings.port, should_stop=_attempts(3), wait=lambda s: None
    )
    if not url:
        print(
            f"{PROG}: no server answered the broadcast on {settings.broadcast}:{settings.port}",
            file=sys.stderr,
        )
        return 1
    link = ServerLink(url, settings.token, settings.cacert, timeout=(3.05, 10.0))
    name = settings.slot_names()[0]
    try:
        link.heartbeat({"name": name})
    except LinkError as exc:
        print(f"{PROG}: {url}: {exc}", file=sys.stderr)
        return 1
    finally:
        link.close()
    print(f"ok: {url} answers worker {name}")
    return 0


def _attempts(n: int) -> Callable[[], bool]:
    """A should_stop() that says stop after `n` calls."""
    count = {"n": 0}

    def should_stop() -> bool:
        count["n"] += 1
        return count["n"] > n

    return should_stop


def install_signals(control: Control, settings: WorkerSettings) -> None:
    """SIGTERM/SIGINT: stop as `shutdown` says; a second signal hands jobs back at once."""

    def handler(signum: int, _frame: object) -> None:
        again = control.stopping
        log.info(
            "%s received: %s",
            signal.Signals(signum).name,
            "handing running jobs back"
            if again or settings.shutdown == "handback"
            else "finishing running jobs, then exiting (send it again to hand them back)",
        )
        control.request_stop(handback=again or settings.shutdown == "handback")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def watch_interruptions(settings: WorkerSettings, control: Control, stop: threading.Event) -> None:
    """Find this host's metadata service (if any) and watch it (thread body: probing may be slow)."""
    watchers = watchers_for(settings.interruptions, settings.aws_metadata, settings.gce_metadata)
    if watchers:
        log.info("watching for interruption notices: %s", ", ".join(w.name for w in watchers))
        watch(watchers, control.interrupt, stop, settings.interruption_poll)


def end_leftover_jobs(settings: WorkerSettings, config: str | None) -> None:
    """End the jobs a previous worker of this name and config left when it was killed -9
    (process.py, GroupLedger): a replacement must not run a second copy next to them."""
    if os.name != "posix":
        return
    key = f"{settings.slot_names()[0]}\0{os.path.abspath(config) if config else ''}"
    process.LEDGER = process.open_ledger(settings.spooldir or tempfile.gettempdir(), key)
    if process.LEDGER is not None:
        ended = process.LEDGER.end_leftovers(settings.killgrace)
        if ended:
            log.warning("ended %d job process group(s) left by a previous worker: %s", len(ended), ended)


def openjd_capability(settings: WorkerSettings) -> str:
    """Why this worker does not take Open Job Description tasks ("" when it does)."""
    if settings.openjd == "off":
        return "[worker] openjd = off"
    if settings.runcommand:
        # runcommand runs each job as its owner; an OpenJD task would run as the worker's user.
        return "this worker has a runcommand, which OpenJD tasks would not go through"
    if not sessions_available():
        return MISSING
    try:  # installed is not enough: it must load (its Rust extension, pydantic...)
        from . import openjd  # noqa: F401
    except ImportError as exc:
        return f"{MISSING}: it does not load here ({exc})"
    return ""


def serve(settings: WorkerSettings, config: str | None = None) -> int:
    """Discover the server if needed, run the startup command, then the slots until stopped."""
    end_leftover_jobs(settings, config)
    control = Control()
    install_signals(control, settings)
    url: str | None = settings.server_url
    if not url:
        url = discover(
            settings.broadcast, settings.port, should_stop=lambda: control.stopping, wait=control.wait
        )
        if not url:
            log.info("worker stopped before finding a server")
            return 0
    if settings.startup:
        run_startup(settings.startup)
    stop_watch = threading.Event()
    if settings.interruptions != "off":
        threading.Thread(
            target=watch_interruptions,
            args=(settings, control, stop_watch),
            name="interruptions",
            daemon=True,
        ).start()
    metrics = Metrics()
    # OpenJD tasks carry the `openjd` tag (and their host requirements' tags): a worker that
    # can run them offers it, and its OS family and CPU architecture, on each affinity line.
    why_not = openjd_capability(settings)
    offers = ""
    if why_not:
        log.info("not taking Open Job Description tasks: %s", why_not)
    else:
        offers = ",".join((OPENJD_TAG, *worker_tags(platform.system(), platform.machine())))
        log.info("taking Open Job Description tasks: offering %s on every affinity line", offers)
    cap = resources.capacity(settings.cores, settings.memory, settings.gpus)
    names = settings.slot_names(cap.cores)
    pool = resources.Pool(cap, names, settings.packing, settings.gpureserve, settings.name)
    log.info(
        "offering %d cores, %d MB, %d GPU(s)%s; %s",
        cap.cores,
        cap.memory,
        len(cap.gpus),
        f" ({','.join(cap.gpus)})" if cap.gpus else "",
        "as many jobs as fit" if settings.packing else f"{len(names)} equal slot(s)",
    )
    slots = [
        Slot(
            name,
            settings,
            ServerLink(url, settings.token, settings.cacert),
            metrics,
            control,
            pool=pool,
            openjd=not why_not,
        )
        for name in names
    ]
    server = urlsplit(url)
    port = server.port or (443 if server.scheme == "https" else 80)
    listener = open_listener(server.hostname or "", port, control.poke) if settings.wake else None
    courier = Courier(
        ServerLink(url, settings.token, settings.cacert),
        metrics,
        control,
        settings.sleep,
        settings.affinity,
        pool=pool,
        offers=offers,
        wake=listener,
    )
    courier.add(slots)
    courier_thread = threading.Thread(target=courier.run, name="courier", daemon=True)
    courier_thread.start()
    threads = [threading.Thread(target=slot.run, name=slot.name) for slot in slots]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)  # a timed join keeps the main thread free to run signal handlers
    courier.stop()
    courier_thread.join(15)
    if listener is not None:
        listener.close()
    stop_watch.set()
    log.info("worker stopped%s", f" ({control.interruption})" if control.interruption else "")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `coalition-worker` console script."""
    args = build_parser().parse_args(argv)
    warnings: list[str] = []
    try:
        settings = load_settings(args.config, settings_overrides(args), warn=warnings.append)
    except (SettingsError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings)
    for warning in warnings:
        log.warning("%s", warning)
    if args.check:
        return check(settings)
    return serve(settings, args.config)


if __name__ == "__main__":
    sys.exit(main())
