"""`coalition cloud ...`: setup, render-user-data and status.

The `coalition` CLI calls register(subparsers) and later `args.func(args)`, which returns the
exit code. Errors are one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from coalition.cloud.base import CloudError, Instance
from coalition.cloud.config import PROVIDERS, CloudSettings, load

DEFAULT_CONFIG_DIR = "/etc/coalition"


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `cloud` command to the `coalition` CLI's subparsers."""
    cloud = subparsers.add_parser("cloud", help="cloud farms: setup, user-data, status")
    cloud.set_defaults(func=lambda args: _usage(cloud))
    verbs = cloud.add_subparsers(dest="cloud_command", metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("provider", choices=PROVIDERS, help="which cloud_<provider>.ini to use")
        p.add_argument(
            "--config-dir",
            default=os.environ.get("COALITION_CONFIG_DIR", DEFAULT_CONFIG_DIR),
            help="directory of cloud_aws.ini / cloud_gcloud.ini (default: %(default)s)",
        )
        p.add_argument(
            "--endpoint", help="API endpoint URL (moto_server, an emulator); http:// means no credentials"
        )

    setup = verbs.add_parser(
        "setup", help="create the bucket, network rules and uploads a farm needs (idempotent)"
    )
    common(setup)
    setup.add_argument("--dry-run", action="store_true", help="only print what would change")
    setup.add_argument(
        "--bundle", help="the worker bundle to upload: a .deb, a tarball, or a directory of .debs"
    )
    setup.add_argument("--main-program", help="the main program's package to upload")
    setup.add_argument(
        "--office-cidr", help="network allowed to reach the server (default: [coalition] officecidr)"
    )
    setup.set_defaults(func=cmd_setup)

    render = verbs.add_parser("render-user-data", help="print what a new worker instance would boot with")
    common(render)
    render.add_argument("--name", default="", help="instance name (default: a fresh one)")
    render.add_argument("--params", action="store_true", help="print the launch parameters (JSON) instead")
    render.set_defaults(func=cmd_render)

    status = verbs.add_parser("status", help="our instances, their workers, uptime and estimated cost")
    common(status)
    status.add_argument("--server", help="server URL for the worker list (default: from the ini)")
    status.set_defaults(func=cmd_status)

    clear = verbs.add_parser(
        "clear-backoff", help="resume launching after failed boots stopped it (the farm's database)"
    )
    clear.add_argument(
        "--config-dir",
        default=os.environ.get("COALITION_CONFIG_DIR", DEFAULT_CONFIG_DIR),
        help="directory of coalition.ini, whose [server] names the database (default: %(default)s)",
    )
    clear.add_argument("--by", default="", help="who clears it, for the event log (default: $USER)")
    clear.set_defaults(func=cmd_clear_backoff)
    return cloud


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _run(action: Callable[[], int]) -> int:
    try:
        return action()
    except (ValueError, CloudError, OSError) as exc:
        print(f"coalition cloud: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # an SDK error we did not map: still one line, not a traceback
        code = (
            getattr(exc, "response", {}).get("Error", {}).get("Code", "") if hasattr(exc, "response") else ""
        )
        print(
            f"coalition cloud: error: {code or type(exc).__name__}: {str(exc).splitlines()[0]}",
            file=sys.stderr,
        )
        return 1


def _settings(args: argparse.Namespace) -> CloudSettings:
    return load(
        args.provider,
        args.config_dir,
        warn=lambda w: print(f"coalition cloud: warning: {w}", file=sys.stderr),
    )


def cmd_setup(args: argparse.Namespace) -> int:
    """coalition cloud setup aws|gcloud [--dry-run]."""

    def run() -> int:
        settings = _settings(args)
        if settings.aws is not None:
            from coalition.cloud import aws
            from coalition.cloud.setup import setup_aws

            setup_aws(
                settings,
                aws.make_session(settings.aws),
                dry_run=args.dry_run,
                bundle=args.bundle,
                main_program=args.main_program,
                office_cidr=args.office_cidr,
                endpoint_url=args.endpoint,
            )
            return 0
        from coalition.cloud.gcs import STORAGE_URL, GcsBucket
        from coalition.cloud.setup import setup_gcloud

        assert settings.gce is not None
        firewalls, session = _gce_clients(settings, args.endpoint)
        bucket = GcsBucket(
            session, settings.storage.bucket, settings.gce.project, args.endpoint or STORAGE_URL
        )
        setup_gcloud(
            settings,
            firewalls,
            bucket,
            dry_run=args.dry_run,
            bundle=args.bundle,
            main_program=args.main_program,
            office_cidr=args.office_cidr,
        )
        return 0

    return _run(run)


def _gce_clients(settings: CloudSettings, endpoint: str | None) -> tuple[Any, Any]:
    """A FirewallsClient and a storage session, with the ini's key file or default credentials."""
    from coalition.cloud.gce import compute_v1

    compute = compute_v1()
    assert settings.gce is not None
    scopes = ["https://www.googleapis.com/auth/cloud-platform"]
    if endpoint and endpoint.startswith("http://"):  # an emulator or fake: no credentials at all
        import requests
        from google.auth.credentials import AnonymousCredentials

        credentials: Any = AnonymousCredentials()
        session: Any = requests.Session()
    else:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        if settings.gce.keyfile:
            from google.oauth2 import service_account

            credentials = service_account.Credentials.from_service_account_file(
                settings.gce.keyfile, scopes=scopes
            )
        else:
            credentials, _ = google.auth.default(scopes=scopes)
        session = AuthorizedSession(credentials)
    kwargs: dict[str, Any] = {"transport": "rest", "credentials": credentials}
    if endpoint:
        from google.api_core.client_options import ClientOptions

        kwargs["client_options"] = ClientOptions(api_endpoint=endpoint)
    return compute.FirewallsClient(**kwargs), session


def cmd_render(args: argparse.Namespace) -> int:
    """coalition cloud render-user-data aws|gcloud [--name NAME] [--params]."""

    def run() -> int:
        from coalition.cloud.policy import instance_names
        from coalition.cloud.reconcile import server_token
        from coalition.cloud.userdata import Renderer

        settings = _settings(args)
        if not settings.worker_token:
            settings = replace(settings, worker_token=server_token(args.config_dir))
        settings.require_launchable()
        renderer = Renderer(settings)
        name = args.name or instance_names(settings.limits.name_prefix, time.time(), 1)[0]
        if args.params:
            print(json.dumps(launch_request(settings, renderer, name), indent=2, sort_keys=True))
        else:
            sys.stdout.write(renderer.boot_payload(name))
        return 0

    return _run(run)


def launch_request(settings: CloudSettings, renderer: Any, name: str) -> dict[str, Any]:
    """The complete parameters a launch of `name` sends (tags, labels and boot payload too),
    built by the provider itself with no API call (the image stays as configured)."""
    payload = renderer.boot_payload(name)
    if settings.aws is not None:
        from coalition.cloud.aws import Ec2Provider

        provider = Ec2Provider(
            None,
            settings.aws,
            settings.farm,
            renderer.aws_run_instances,
            renderer.aws_spot_launch_specification,
        )
        return provider.launch_request(name, payload, resolve=False)[1]
    from coalition.cloud.gce import GceProvider

    assert settings.gce is not None
    key = "startup-script" if settings.gce.boot_method == "startup-script" else "user-data"
    return GceProvider(None, settings.gce, settings.farm, renderer.gce_instance, key).instance_body(
        name, payload
    )


def cmd_status(args: argparse.Namespace) -> int:
    """coalition cloud status aws|gcloud: instances, workers, uptime, estimated cost."""

    def run() -> int:
        from coalition.cloud.reconcile import make_provider

        settings = _settings(args)
        instances = make_provider(settings, args.endpoint).instances()
        workers, problem = fetch_workers(args.server or settings.server_url)
        for line in format_status(instances, workers, time.time(), settings.price_per_hour):
            print(line)
        if problem:
            print(f"workers: {problem}", file=sys.stderr)
        return 0

    return _run(run)


def cmd_clear_backoff(args: argparse.Namespace) -> int:
    """coalition cloud clear-backoff: forget the failed boots in a row, so launching resumes.

    Writes to the farm's database directly (the autoscaler of every server reads the record
    from there on its next tick); the web page's button will call the same Farm method.
    """

    def run() -> int:
        # The server's modules, imported here only: the rest of `coalition cloud` needs no DB.
        from coalition.config import ConfigError, load_server_settings
        from coalition.joblogs import JobLogs
        from coalition.server.main import open_store
        from coalition.usecases import Context, UseCases

        path = os.path.join(args.config_dir, "coalition.ini")
        if not os.path.isfile(path):
            raise ValueError(f"{path}: no such file (--config-dir names the server's configuration)")
        try:
            settings = load_server_settings(path)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        store = open_store(settings)
        try:
            uc = UseCases.over(Context(store, JobLogs(os.path.join(settings.datadir, "logs"), 1)))
            by = args.by or os.environ.get("SUDO_USER") or os.environ.get("USER") or "cli"
            n = uc.cloud.clear_boot_backoff(f"{by} (coalition cloud clear-backoff)")
        finally:
            store.close()
        print(f"coalition cloud: cleared {n} failed boot(s); the autoscaler launches again on its next tick")
        return 0

    return _run(run)


def fetch_workers(server_url: str, timeout: float = 5.0) -> tuple[list[dict[str, Any]] | None, str]:
    """GET /api/workers from the server: (workers, "") or (None, why not)."""
    if not server_url:
        return None, "no server URL ([coalition] ip or --server)"
    try:
        with urllib.request.urlopen(server_url.rstrip("/") + "/api/workers", timeout=timeout) as reply:
            data = json.load(reply)
    except (OSError, ValueError, urllib.error.URLError) as exc:
        return None, f"cannot read {server_url}/api/workers: {exc}"
    if isinstance(data, dict):  # a paged answer
        data = data.get("workers", [])
    return [w for w in data if isinstance(w, dict)], ""


def format_status(
    instances: Sequence[Instance], workers: Sequence[dict[str, Any]] | None, now: float, price: float
) -> list[str]:
    """The status table: one line per instance, then the totals."""
    by_name = {w.get("name"): w for w in workers or []}
    instances = [i for i in instances if i.state != "gone"]  # terminated: no longer billed
    rows = [("NAME", "ID", "STATE", "TYPE", "UPTIME", "WORKER", "JOB", "COST")]
    hours = 0.0
    for i in sorted(instances, key=lambda i: (i.launched_at, i.name)):
        up = max(0.0, now - i.launched_at) if i.launched_at else 0.0
        hours += up / 3600
        w = by_name.get(i.name)
        state = "?" if workers is None else (w.get("state", "?") if w else "-")
        job = str(w.get("current_job") or "-") if w else "-"
        cost = f"{price * up / 3600:.2f}" if price else "-"
        rows.append((i.name, i.id, i.state, i.machine_type or "-", _duration(up), state, job, cost))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[c]) for c, cell in enumerate(r)).rstrip() for r in rows]
    counts: dict[str, int] = {}
    for i in instances:
        counts[i.state] = counts.get(i.state, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
    total = f"{len(instances)} instance(s) ({summary}), {hours:.2f} instance-hours so far"
    if price:
        total += f", estimated cost {price * hours:.2f} at {price:g}/hour"
    lines.append(total)
    return lines


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
