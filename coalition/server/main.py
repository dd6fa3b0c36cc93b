"""`coalition-server`: run the server, or manage its database (--init, --migrate, --reset)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import sqlite3
import sys

from ..config import ConfigError, ServerSettings, find_config, load_server_settings
from ..store import SchemaError, StoreError, open_mysql, open_sqlite
from ..store.base import Store
from ..store.schema import SCHEMA_VERSION

FIRST_C5_VERSION = 2  # schema versions 0 and 1 are Coalition 4


def build_parser() -> argparse.ArgumentParser:
    """The command line (Coalition 4's flags, plus -c and --yes)."""
    p = argparse.ArgumentParser(
        prog="coalition-server",
        description="Coalition render-farm server. Config: -c FILE, else ./coalition.ini, "
        "else /etc/coalition/coalition.ini.",
    )
    p.add_argument("-c", "--config", help="configuration file")
    p.add_argument("-p", "--port", type=int, help="HTTP (and UDP discovery) port, default 19211")
    p.add_argument("--listen", help="address to bind, default 0.0.0.0")
    p.add_argument("--datadir", help="where the SQLite database and the job logs live")
    p.add_argument("-v", "--verbose", action="store_true", help="log requests and details to stderr")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--init",
        action="store_true",
        help="create the database schema, then exit; with -c FILE naming a file that does not "
        "exist yet, first write FILE with a random worker token",
    )
    group.add_argument(
        "--write-config",
        metavar="FILE",
        help="write a new configuration file with a random worker token, then exit",
    )
    group.add_argument(
        "--init-if-needed",
        action="store_true",
        help="create the schema only if the database is empty, then exit (for units)",
    )
    group.add_argument(
        "--migrate",
        action="store_true",
        help="upgrade the database schema (Coalition 4 databases too), then exit",
    )
    group.add_argument("--reset", action="store_true", help="delete every job, worker and event, then exit")
    p.add_argument(
        "-y", "--yes", action="store_true", help="do not ask for confirmation (--reset, --migrate)"
    )
    return p


def open_store(settings: ServerSettings) -> Store:
    """The store the settings describe."""
    if settings.db_type == "mysql":
        return open_mysql(
            settings.db_mysql_host,
            settings.db_mysql_port,
            settings.db_mysql_user,
            settings.db_mysql_password,
            settings.db_mysql_base,
            settings.db_mysql_driver,
        )
    return open_sqlite(settings.sqlite_path)


def _confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question} Refusing without a terminal; pass --yes.", file=sys.stderr)
        return False
    return input(f"{question} Type 'yes' to go on: ").strip().lower() == "yes"


def main(argv: list[str] | None = None) -> int:
    """Entry point of `coalition-server`."""
    args = build_parser().parse_args(argv)
    overrides = {}
    if args.port is not None:
        overrides["port"] = str(args.port)
    if args.listen:
        overrides["listen"] = args.listen
    if args.datadir:
        overrides["datadir"] = args.datadir
    fresh = args.init and args.config and not os.path.exists(args.config)
    new_config = args.write_config or (args.config if fresh else "")
    if new_config:
        # A new farm is closed by default: its workers need the token written here.
        from ..auth.bootstrap import write_new_config

        try:
            write_new_config(new_config, dict(overrides))
        except OSError as exc:
            print(f"coalition-server: cannot write {new_config}: {exc}", file=sys.stderr)
            return 2
        print(
            f"coalition-server: wrote {new_config} with a new worker token; give each worker the "
            "same `token` in its [worker] section"
        )
        if args.write_config:
            return 0
    if args.verbose:
        overrides["verbose"] = "1"
    try:
        settings = load_server_settings(find_config(args.config), overrides)
    except ConfigError as exc:
        print(f"coalition-server: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO if settings.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if settings.verbose:  # our own details too (ignored fields...), not the libraries' debug
        logging.getLogger("coalition").setLevel(logging.DEBUG)
    for warning in settings.warnings:
        print(f"coalition-server: warning: {warning}", file=sys.stderr)
    # Start-up problems are one line naming the problem, with or without -v, never a
    # traceback or a silent exit code: an operator reads them in `systemctl status`.
    problem = _startup_problem(settings)
    if problem:
        print(f"coalition-server: {problem}", file=sys.stderr)
        return 2
    try:
        store = open_store(settings)
        return _run(args, settings, store)
    except (SchemaError, StoreError, ConfigError) as exc:
        print(f"coalition-server: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(
            f"coalition-server: cannot use the SQLite database {settings.sqlite_path}: {exc}", file=sys.stderr
        )
        return 2
    except ImportError as exc:
        print(
            f"coalition-server: missing Python package: {exc.name} (for MySQL: pip install "
            "'coalition[mysql]' or apt install python3-pymysql; db_mysql_driver = mysqlclient: "
            "apt install python3-mysqldb)",
            file=sys.stderr,
        )
        return 2


def _startup_problem(settings: ServerSettings) -> str:
    """What would stop the server from starting, checked before anything starts."""
    try:
        os.makedirs(settings.datadir, exist_ok=True)
    except OSError as exc:
        return f"cannot create the data directory {settings.datadir}: {exc.strerror}"
    for key in ("webdir", "templatedir"):
        path = getattr(settings, key)
        if path and not os.path.isdir(path):
            return f"[server] {key} {path} is not a directory"
    return ""


def _port_problem(settings: ServerSettings) -> str:
    """Whether the HTTP port can be bound. CherryPy finds out too, but then exits with
    status 70 and says nothing unless -v; binding first gives the operator the reason."""
    if not settings.port:
        return ""
    family = socket.AF_INET6 if ":" in settings.listen else socket.AF_INET
    try:
        socket.create_server((settings.listen, settings.port), family=family).close()
    except OSError as exc:
        return f"cannot listen on {settings.listen} port {settings.port}: {exc.strerror}"
    return ""


def _run(args: argparse.Namespace, settings: ServerSettings, store: Store) -> int:
    where = (
        settings.sqlite_path
        if settings.db_type == "sqlite"
        else f"mysql://{settings.db_mysql_host}:{settings.db_mysql_port}/{settings.db_mysql_base}"
    )
    if args.init or args.init_if_needed:
        version = store.version() if args.init_if_needed else None
        if version is not None:
            if FIRST_C5_VERSION <= version < SCHEMA_VERSION:
                # An earlier Coalition 5 schema: our own steps only add tables, columns and
                # indexes (version 4 also merges an affinity name numbered twice into its
                # first number), so the unit applies them (a package upgrade must not leave
                # the server down).
                # A Coalition 4 database still needs an explicit --migrate after a backup.
                for step in store.migrate():
                    print(f"coalition-server: migrated {where} to {step}")
            store.check_schema()
            print(f"coalition-server: database {where} already initialised")
            return 0
        store.init()
        print(f"coalition-server: created the database {where}")
        return 0
    if args.migrate:
        version = store.version()
        if version is None:
            raise SchemaError("the database is empty: use --init")
        if not _confirm(f"Upgrade the database {where} in place (back it up first)?", args.yes):
            return 1
        steps = store.migrate()
        for step in steps:
            print(f"coalition-server: migrated to {step}")
        print("coalition-server: " + ("Migration was successful" if steps else "the database is up to date"))
        return 0
    if args.reset:
        if not _confirm(f"Delete every job, worker and event in {where}?", args.yes):
            return 1
        store.reset()
        shutil.rmtree(settings.logs_dir, ignore_errors=True)
        print(f"coalition-server: reset {where}")
        return 0
    if store.version() is None:
        store.init()  # a fresh install just works, as Coalition 4 did
        logging.getLogger("coalition.server").warning("created the database %s", where)
    store.check_schema()
    problem = _port_problem(settings)
    if problem:
        print(f"coalition-server: {problem}", file=sys.stderr)
        return 2
    from .app import ServerApp

    # With -v CherryPy prints its ENGINE and access lines itself (log.screen): keep them
    # away from the root logger too, which would print every one a second time.
    for name in ("cherrypy.error", "cherrypy.access"):
        logging.getLogger(name).propagate = False
    app = ServerApp(settings, store)
    try:
        app.start()
    except OSError as exc:  # the discovery port (UDP), for instance
        print(f"coalition-server: cannot start: {exc}", file=sys.stderr)
        app.stop()
        return 2
    except ValueError as exc:  # a bad cloud_<mode>.ini, for instance: one line, not a traceback
        print(f"coalition-server: {exc}", file=sys.stderr)
        app.stop()
        return 2
    except Exception as exc:
        if type(exc).__name__ != "CloudError":
            raise
        print(f"coalition-server: cloud mode: {exc}", file=sys.stderr)
        app.stop()
        return 2
    # Where it listens and whether workers must authenticate, in words: the operator of a
    # fresh install learns here that the port is open on every address.
    bound = f"{settings.listen} port {app.bound_port()}"
    if settings.listen in ("0.0.0.0", "", "::"):
        bound += ", every address"
    access = "workers need the token" if settings.workertoken else "workers are NOT authenticated"
    print(f"Coalition server on {app.url()} (listening on {bound}; {access}; database: {where})", flush=True)
    app.block()
    return 0


if __name__ == "__main__":
    sys.exit(main())
