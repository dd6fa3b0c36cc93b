"""The rendered boot, booted for real (issue 14): cloud-init 22.4 (NoCloud) in Debian 12
containers with a real systemd (tests/nspawn.py), the real Debian packages, a real server.

The autoscaler runs here, over the server's own database (servers are stateless: any process
on the database may run it), with a provider whose "instances" are containers on a private
network: launch boots one with the user-data the autoscaler rendered as its NoCloud seed
(or, for GCE's startup-script method, runs the script as the guest agent would), terminate
stops it, and the console the provider reads is the container's console.

What is not real: the bucket is a directory bind-mounted at the mountpoint (the boot script
sees it mounted and skips s3fs/gcsfuse, which need the cloud's instance identity), and the
network is a namespace of ours (10.14.0.0/24) with no route anywhere else.

Shown: the bundle is fetched, the main program unpacked, the worker starts, registers and
runs a job that uses the main program; then, with a missing or corrupt bundle, a bundle
holding the server, a dpkg error or a main program that does not unpack, the worker never
starts, the instance prints why on its console and powers off, and the autoscaler records
the failed boot with that reason and terminates the instance.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from coalition.cloud import policy
from coalition.cloud.base import PENDING, RUNNING, STOPPED, Instance, boot_failure_line
from coalition.cloud.config import CloudSettings, load
from coalition.cloud.reconcile import Autoscaler
from coalition.cloud.setup import bundle_bytes
from coalition.joblogs import JobLogs
from coalition.store import SqliteStore
from coalition.usecases import Context
from coalition.usecases.cloudfarm import CloudFarm
from tests import nspawn
from tests.cloud.conftest import write_ini
from tests.cloud.test_bundle import make_deb
from tests.packaging import conftest as packaging
from tests.support import wait_for

debs = packaging.debs  # the session fixture that builds the three .debs from this tree, once

SUBNET = "10.14.0"
SERVER_IP = f"{SUBNET}.1"  # the LAN namespace's own address: the server listens there
PORT = 19211
TOKEN = "c14-boot-token"
RENDER = '#!/bin/sh\necho "rendered $1 with the main program on $(hostname)"\n'
# cloud-init in a container: NoCloud only (nothing probes a metadata address), no network
# configuration (the container's is ours), and apt's sources as they are (none: offline).
CLOUD_CFG = """\
datasource_list: [NoCloud, None]
network: {config: disabled}
apt: {preserve_sources_list: true}
"""


@pytest.fixture(scope="module")
def root() -> Path:
    nspawn.require_nspawn()
    return nspawn.debian_root(extra=("cloud-init",))


@pytest.fixture(scope="module")
def lan() -> Iterator[nspawn.Lan]:
    nspawn.require_nspawn()
    with nspawn.private_lan("c14") as lan:
        lan.subnet = SUBNET
        _reconfigure(lan)
        yield lan


def _reconfigure(lan: nspawn.Lan) -> None:
    # private_lan numbers its bridge 10.13.0.1; issue 14's containers live on 10.14.0.0/24.
    subprocess.run(["ip", "-n", lan.name, "addr", "flush", "dev", "br0"], check=True)
    subprocess.run(["ip", "-n", lan.name, "addr", "add", f"{SERVER_IP}/24", "dev", "br0"], check=True)


@pytest.fixture(scope="module")
def server(lan: nspawn.Lan, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real coalition-server on SERVER_IP inside the LAN (this checkout's code)."""
    root = tmp_path_factory.mktemp("c14-server")
    ini = root / "coalition.ini"
    ini.write_text(
        f"[server]\nlisten = {SERVER_IP}\nport = {PORT}\ndatadir = {root / 'data'}\n"
        f"workertoken = {TOKEN}\ntimeout = 30\nverbose = 1\n"
    )
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lan.name, sys.executable, "-m", "coalition.server.main", "-c", str(ini)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    log.close()
    url = f"http://{SERVER_IP}:{PORT}"

    def up() -> bool:
        assert proc.poll() is None, (root / "server.log").read_text()
        return lan.run(["curl", "-sf", "-o", "/dev/null", url + "/api/workers"]).returncode == 0

    try:
        wait_for(up, timeout=60, interval=0.2, what="the server in the LAN")
        yield {"url": url, "root": root, "db": root / "data" / "coalition.db", "lan": lan}
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        if proc.poll() is None:
            proc.kill()


def api(server: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    """The server's REST API, from inside the LAN (curl: the way an operator's script would)."""
    argv = ["curl", "-sf", "-X", method, "-H", "Content-Type: application/json", server["url"] + path]
    if body is not None:
        argv += ["--data", json.dumps(body)]
    done = server["lan"].run(argv)
    assert done.returncode == 0, f"{method} {path}: curl {done.returncode}: {done.stderr}"
    return json.loads(done.stdout) if done.stdout.strip() else None


class ContainerCloud:
    """A Provider whose instances are booted Debian 12 containers on our LAN."""

    def __init__(self, root: Path, lan: nspawn.Lan, bucket: Path, work: Path, method: str):
        self.root, self.lan, self.bucket, self.work, self.method = root, lan, bucket, work, method
        self.vms: dict[str, tuple[nspawn.Container, contextlib.ExitStack, float]] = {}
        self.consoles: dict[str, str] = {}  # what terminated instances printed

    def instances(self) -> list[Instance]:
        out = []
        for name, (c, _, launched) in self.vms.items():
            state = RUNNING if c.process.poll() is None else STOPPED  # powered off: stopped
            out.append(Instance(name, name, state, launched))
        return out

    def launch(self, name: str, payload: str) -> Instance:
        seed = self.work / name
        seed.mkdir(parents=True)
        (seed / "meta-data").write_text(f"instance-id: {name}\nlocal-hostname: {name}\n")
        (seed / "cloud.cfg").write_text(CLOUD_CFG)
        args = [
            f"--bind-ro={self.bucket}:/mnt/bucket",
            f"--bind-ro={seed / 'cloud.cfg'}:/etc/cloud/cloud.cfg.d/99-c14.cfg",
        ]
        if self.method == "startup-script":
            (seed / "startup-script").write_text(payload)
            # No cloud-init datasource: the image boots without one, as Debian's GCE images do.
            (seed / "cloud.cfg").write_text("datasource_list: [None]\nnetwork: {config: disabled}\n")
            args.append(f"--bind-ro={seed}:/var/lib/c14-seed")
        else:
            (seed / "user-data").write_text(payload)
            args.append(f"--bind-ro={seed}:/var/lib/cloud/seed/nocloud")
        stack = contextlib.ExitStack()
        container = stack.enter_context(nspawn.boot(self.root, name, self.lan, extra_args=args, timeout=180))
        if self.method == "startup-script":
            # What google-guest-agent does with the startup-script metadata value: run it as root.
            container.run(
                "systemd-run",
                "--unit=google-startup-scripts",
                "--no-block",
                "/bin/sh",
                "/var/lib/c14-seed/startup-script",
            )
        launched = time.time()
        self.vms[name] = (container, stack, launched)
        return Instance(name, name, PENDING, launched)

    def terminate(self, ids: Any) -> None:
        for name in ids:
            if name in self.vms:
                container, stack, _ = self.vms.pop(name)
                self.consoles[name] = container.console()
                stack.close()

    def boot_report(self, instance: Instance) -> str:
        container = self.vms[instance.id][0]
        return boot_failure_line(container.console())

    def close(self) -> None:
        self.terminate(list(self.vms))


def farm_settings(config_dir: Path, provider: str, method: str, boot_timeout: int = 600) -> CloudSettings:
    """A farm's cloud ini, as an operator writes it for this LAN; on-demand: no metadata polling."""
    worker: dict[str, str] = {
        "nameprefix": "c14-",
        "installdir": "/opt/render",
        "affinity": "linux",
    }
    if provider == "aws":
        worker.update(spot="false", imageid="ami-12c6146b")
    else:
        worker.update(
            preemptible="false", provisioningmodel="STANDARD", maintenancepolicy="MIGRATE", bootmethod=method
        )
    values = {
        "storage": {"name": "c14-bucket", "mountpoint": "/mnt/bucket"},
        "main_program": {"package": "srv/render.tar.gz", "environment": "RENDERER=/opt/render/render"},
        "coalition": {
            "ip": SERVER_IP,
            "port": str(PORT),
            "workertoken": TOKEN,
            "workerinstancemax": "2",
            "workerinstancestartdelay": "0",
            "workerinstanceminimumlifetime": "0",
            "workerinstanceboottimeout": str(boot_timeout),
        },
        "worker": worker,
    }
    if provider == "aws":
        values["authentication"] = {"region": "eu-west-1"}
        values["storage"]["coalitionfilename"] = "srv/coalition.tar.gz"
    else:
        values["authentication"] = {"project": "c14-project"}
        values["storage"]["coalitionpackage"] = "srv/coalition.tar.gz"
    write_ini(config_dir, provider, values)
    return load(provider, str(config_dir))


def tarball(files: dict[str, bytes | str], mode: int = 0o755) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def make_bucket(path: Path, bundle: bytes | None, main_program: bytes | None) -> Path:
    (path / "srv").mkdir(parents=True)
    if bundle is not None:
        (path / "srv/coalition.tar.gz").write_bytes(bundle)
    if main_program is not None:
        (path / "srv/render.tar.gz").write_bytes(main_program)
    return path


def db_farm(server: dict[str, Any]) -> CloudFarm:
    store = SqliteStore(str(server["db"]))
    return CloudFarm(Context(store, JobLogs(str(server["root"] / "data" / "logs"), 1024 * 1024)))


def worker_state(server: dict[str, Any], name: str) -> str:
    row = next((w for w in api(server, "GET", "/api/workers") if w["name"] == name), None)
    return row["state"] if row else ""


@pytest.mark.parametrize(
    ("provider", "method"),
    [("aws", "user-data"), ("gcloud", "cloud-init"), ("gcloud", "startup-script")],
)
def test_a_rendered_boot_installs_registers_and_renders(
    root: Path,
    server: dict[str, Any],
    debs: Path,
    tmp_path: Path,
    provider: str,
    method: str,
) -> None:
    settings = farm_settings(tmp_path, provider, method)
    bucket = make_bucket(tmp_path / "bucket", bundle_bytes(str(debs)), tarball({"render": RENDER}))
    cloud = ContainerCloud(root, server["lan"], bucket, tmp_path / "seeds", method)
    farm = db_farm(server)
    farm.clear_boot_backoff("test_boot")  # whatever an earlier test left, as an operator would
    scaler = Autoscaler(cloud, settings, farm)
    try:
        job = api(
            server,
            "PUT",
            "/api/jobs",
            {"title": "frame 7", "command": '"$RENDERER" frame-7', "affinity": "linux"},
        )
        plan = scaler.tick()
        assert plan is not None and len(plan.launch) == 1, plan
        name = plan.launch[0]

        def finished() -> bool:
            state = api(server, "GET", f"/api/jobs/{job}")["state"]
            assert state != "ERROR", api(server, "GET", f"/api/jobs/{job}/log")
            assert cloud.instances()[0].state == RUNNING, cloud.vms[name][0].console()[-4000:]
            return state == "FINISHED"

        wait_for(finished, timeout=300, interval=1, what=f"{name} to boot and render frame 7")
        log = api(server, "GET", f"/api/jobs/{job}/log")
        text = log if isinstance(log, str) else json.dumps(log)
        assert f"rendered frame-7 with the main program on {name}" in text, text
        assert api(server, "GET", f"/api/jobs/{job}")["worker"] == name
        container = cloud.vms[name][0]
        assert container.run("systemctl", "is-active", "coalition-worker").stdout.strip() == "active"
        # The script checks the worker stays up (5 s) before it calls the boot done.
        wait_for(
            lambda: container.exists("/var/lib/coalition-boot/done"), timeout=60, interval=0.5, what="done"
        )
        status = container.run(
            "dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", "coalition-*", "python3-coalition"
        ).stdout.split("\n")
        installed = sorted(line.split()[0] for line in status if line.endswith(" installed"))
        assert installed == ["coalition-worker", "python3-coalition"], status  # the worker only
        # Idle (minimum lifetime 0): the autoscaler terminates it, once the worker's next
        # pick has told the server it is WAITING.
        wait_for(
            lambda: name in (scaler.tick() or policy.Plan()).terminate,
            timeout=60,
            interval=1,
            what="idle termination",
        )
        assert cloud.vms == {}
    finally:
        cloud.close()


FAILURES: dict[str, tuple[Callable[[Path, Path], Path], str]] = {}


def _failure(
    label: str, reason: str
) -> Callable[[Callable[[Path, Path], Path]], Callable[[Path, Path], Path]]:
    def register(fn: Callable[[Path, Path], Path]) -> Callable[[Path, Path], Path]:
        FAILURES[label] = (fn, reason)
        return fn

    return register


@_failure("missing bundle", "worker bundle srv/coalition.tar.gz not found in the bucket")
def _missing(debs: Path, where: Path) -> Path:
    return make_bucket(where, None, tarball({"render": RENDER}))


@_failure("corrupt bundle", "worker bundle srv/coalition.tar.gz is not a readable tarball")
def _corrupt(debs: Path, where: Path) -> Path:
    return make_bucket(where, bundle_bytes(str(debs))[:2000], tarball({"render": RENDER}))


@_failure(
    "bundle holding the server",
    "worker bundle holds coalition-server; only python3-coalition coalition-worker may be installed",
)
def _server(debs: Path, where: Path) -> Path:
    everything = tarball({p.name: p.read_bytes() for p in sorted(debs.glob("*.deb"))}, mode=0o644)
    return make_bucket(where, everything, tarball({"render": RENDER}))


@_failure("dpkg error", "installing the worker packages failed (apt-get/dpkg error, see the console above)")
def _dpkg(debs: Path, where: Path) -> Path:
    broken = where.parent / "broken"
    broken.mkdir()
    bad = make_deb(
        broken,
        "coalition-worker",
        postinst="#!/bin/sh\necho 'postinst: cannot create the coalition user' >&2\nexit 1\n",
    )
    good = next(debs.glob("python3-coalition_*.deb"))
    return make_bucket(
        where,
        tarball({good.name: good.read_bytes(), bad.name: bad.read_bytes()}, 0o644),
        tarball({"render": RENDER}),
    )


@_failure("main program that does not unpack", "cannot unpack the main program srv/render.tar.gz")
def _main(debs: Path, where: Path) -> Path:
    return make_bucket(where, bundle_bytes(str(debs)), b"not a tarball at all")


def test_failed_boots_never_take_jobs_and_are_reported_and_terminated(
    root: Path,
    server: dict[str, Any],
    debs: Path,
    tmp_path: Path,
) -> None:
    """Every failure at once (the containers boot side by side), one farm each."""
    farms = []
    db_farm(server).clear_boot_backoff("test_boot")
    try:
        for i, (label, (make, reason)) in enumerate(FAILURES.items()):
            d = tmp_path / f"farm{i}"
            d.mkdir()
            settings = farm_settings(d, "aws", "user-data")
            cloud = ContainerCloud(root, server["lan"], make(debs, d / "bucket"), d / "seeds", "user-data")
            farm = db_farm(server)
            scaler = Autoscaler(cloud, settings, farm)
            farms.append((label, reason, cloud, scaler, farm))
        job = api(
            server, "PUT", "/api/jobs", {"title": "never rendered", "command": "true", "affinity": "linux"}
        )
        names = {}
        for label, _, _, scaler, _ in farms:
            plan = scaler.tick()
            assert plan is not None and len(plan.launch) == 1, (label, plan)
            names[label] = plan.launch[0]
        for label, _, cloud, _, _ in farms:
            wait_for(
                lambda cloud=cloud: all(i.state == STOPPED for i in cloud.instances()),
                timeout=300,
                interval=1,
                what=f"the {label} instance to power itself off",
            )
        for label, reason, cloud, scaler, farm in farms:
            name = names[label]
            assert worker_state(server, name) == "STARTING", label  # never registered, never took a job
            console = cloud.vms[name][0].console()
            assert f"coalition-cloud-boot: FAILED: {reason}" in console, (label, console[-3000:])
            plan = scaler.tick()
            assert plan is not None, label
            assert [(f.name, f.reason) for f in plan.boot_failed] == [(name, reason)], (label, plan)
            assert plan.terminate == (name,) and cloud.vms == {}, label
            assert worker_state(server, name) == "TERMINATED", label
            assert (name, reason) in [(n, r) for _, n, r in farm.boot_failures()], label
        assert api(server, "GET", f"/api/jobs/{job}")["state"] == "WAITING"
        api(server, "DELETE", "/api/jobs", [job])
    finally:
        for _, _, cloud, _, _ in farms:
            cloud.close()
