"""The packages on a real systemd: two Debian 12 containers (tests/nspawn.py), a server
host and a worker host on a private LAN, install from a signed apt repository served
on that LAN, as the README's section 2a tells an operator.

The tests of this module share the two hosts and run in file order, like an operator's
day: install, configure, run a job, stop a worker, crash the server, upgrade, add a
worker instance, purge.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import nspawn
from tests.packaging.conftest import NEXT_VERSION, ArchiveKey, build_repo, set_ini
from tests.support import terminate_process, wait_for

pytestmark = pytest.mark.slow

PORT = 19211
REPO_PORT = 8080
KEYRING = "/usr/share/keyrings/coalition-archive-keyring.gpg"
CONF = "/etc/coalition/coalition.ini"


@dataclass
class Farm:
    """The LAN, its apt repository, and the two hosts."""

    lan: nspawn.Lan
    repo: Path
    repo_url: str
    server: nspawn.Container
    worker: nspawn.Container
    token: str = ""  # the worker token the server package generated

    @property
    def url(self) -> str:
        return f"http://{self.server.ip}:{PORT}"

    def api(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        """A REST call from the LAN (as a user's browser or script makes it)."""
        argv = ["curl", "-sS", "-m", "10", "-X", method, "-w", "\n%{http_code}", self.url + path]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        done = self.lan.run(argv, timeout=30)
        text, _, status = done.stdout.rpartition("\n")
        assert done.returncode == 0 and status == str(expect), (
            f"{method} {path}: {status} {text} {done.stderr}"
        )
        return json.loads(text) if text.strip() else None

    def answers(self) -> bool:
        done = self.lan.run(["curl", "-sf", "-m", "2", self.url + "/api/ping"], timeout=10)
        return done.returncode == 0

    def submit(self, command: str, title: str = "t") -> int:
        created = self.api("PUT", "/api/jobs", {"command": command, "title": title})
        return int(created["id"] if isinstance(created, dict) else created)

    def job(self, job_id: int) -> dict[str, Any]:
        return self.api("GET", f"/api/jobs/{job_id}")

    def wait_job(self, job_id: int, states: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["state"] in states else None

        try:
            return wait_for(reached, timeout=timeout, interval=0.3, what=f"job {job_id} to be {states}")
        except AssertionError as exc:
            journal = self.worker.sh("journalctl -u 'coalition-worker*' --no-pager | tail -40", check=False)
            raise AssertionError(f"{exc}\nworker journal:\n{journal.stdout}") from None


def add_repository(host: nspawn.Container, url: str) -> None:
    """What docs/deploy.md tells an operator to do once per host."""
    host.run("curl", "-fsSLo", KEYRING, f"{url}/coalition-archive-keyring.gpg")
    host.put("/etc/apt/sources.list.d/coalition.list", f"deb [signed-by={KEYRING}] {url} bookworm main\n")
    host.run("apt-get", "update", "-q")


def unit_property(host: nspawn.Container, unit: str, prop: str) -> str:
    return host.run("systemctl", "show", "-p", prop, "--value", unit).stdout.strip()


def edit_ini(host: nspawn.Container, path: str, section: str, **keys: str) -> None:
    """Set keys in an ini file of the host, as an operator's editor would."""
    text = host.read(path)
    for key, value in keys.items():
        text = set_ini(text, section, key, value)
    host.put(path, text, mode=0o640, owner="root:coalition")


def wait_active(host: nspawn.Container, unit: str, timeout: float = 30) -> None:
    def active() -> bool:
        return host.run("systemctl", "is-active", unit, check=False).stdout.strip() == "active"

    try:
        wait_for(active, timeout=timeout, interval=0.2, what=f"{unit} to be active")
    except AssertionError as exc:
        status = host.run("systemctl", "status", "--no-pager", "-l", unit, check=False).stdout
        raise AssertionError(f"{exc}\n{status}") from None


@pytest.fixture(scope="module")
def farm(debs: Path, archive_key: ArchiveKey, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    nspawn.require_nspawn()
    root = nspawn.debian_root()
    repo = tmp_path_factory.mktemp("repo")
    build_repo(repo, archive_key, sorted(debs.glob("*.deb")))
    with nspawn.private_lan("c13") as lan:
        # The operator's web server for the repository: any static server will do.
        web = subprocess.Popen(
            ["ip", "netns", "exec", lan.name, "/usr/bin/python3", "-m", "http.server", str(REPO_PORT)]
            + ["--bind", lan.gateway, "--directory", str(repo)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://{lan.gateway}:{REPO_PORT}"
        try:
            wait_for(
                lambda: (
                    lan.run(
                        ["curl", "-sf", "-m", "2", "-o", "/dev/null", f"{url}/dists/bookworm/InRelease"]
                    ).returncode
                    == 0
                ),
                timeout=30,
                interval=0.1,
                what="the repository's web server",
            )
            with nspawn.boot(root, nspawn.machine_name("c13-srv"), lan=lan) as server:
                with nspawn.boot(root, nspawn.machine_name("c13-wrk"), lan=lan) as worker:
                    yield Farm(lan, repo, url, server, worker)
        finally:
            terminate_process(web)


def test_apt_install_coalition_server_from_the_signed_repository(farm: Farm) -> None:
    server = farm.server
    add_repository(server, farm.repo_url)
    server.run("apt-get", "install", "-y", "-q", "coalition-server", timeout=300)
    # The package enabled and started it; the first start created the database.
    wait_active(server, "coalition-server")
    # ... at the first attempt (Restart= would hide a start that fails at first).
    assert unit_property(server, "coalition-server", "NRestarts") == "0", server_journal(farm)
    status = server.run("systemctl", "status", "--no-pager", "coalition-server").stdout
    assert "active (running)" in status and "enabled" in status, status
    wait_for(farm.answers, timeout=30, interval=0.2, what="the server to answer on the LAN")
    assert server.exists("/var/lib/coalition/coalition.db")
    assert server.run("stat", "-c", "%U", "/var/lib/coalition/coalition.db").stdout.strip() == "coalition"
    # The documentation is where Debian users look for it.
    docs = server.run("ls", "/usr/share/doc/coalition-server").stdout.split()
    assert {"README.md.gz", "deploy.md.gz", "security.md.gz", "copyright"} <= set(docs), docs
    # The web page is served.
    page = farm.lan.run(["curl", "-sf", farm.url + "/"], timeout=30)
    assert "<html" in page.stdout.lower()

    # Closed to strangers from the start: the package generated a worker token, readable
    # by root and the services' group only, and the server says it requires it.
    assert server.run("stat", "-c", "%U:%G %a", "/etc/coalition/workertoken").stdout.split() == [
        "root:coalition",
        "640",
    ]
    farm.token = server.read("/etc/coalition/workertoken").strip()
    assert re.fullmatch(r"[0-9a-f]{48}", farm.token), farm.token
    assert server.run("stat", "-c", "%U:%G %a", CONF).stdout.split() == ["root:coalition", "640"]
    # (The banner is printed once the server answers: the journal may take it a moment later.)
    banner = "listening on 0.0.0.0 port 19211, every address; workers need the token"
    wait_for(lambda: banner in server_journal(farm), timeout=30, what="the server's banner in the journal")
    refused = farm.lan.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            farm.url + "/workers/heartbeat",
        ],
        timeout=30,
    )
    assert refused.stdout in ("401", "403"), refused.stdout


def test_a_signature_from_another_key_is_refused(farm: Farm, tmp_path: Path) -> None:
    # apt must check the signature: a host trusting only our key rejects a repository
    # signed by someone else.
    host = farm.worker
    host.put(
        "/etc/apt/sources.list.d/coalition.list",
        f"deb [signed-by=/etc/apt/nobody.gpg] {farm.repo_url} bookworm main\n",
    )
    host.put("/etc/apt/nobody.gpg", b"")
    done = host.run("apt-get", "update", "-q", check=False)
    assert "NO_PUBKEY" in done.stdout + done.stderr or "not signed" in done.stdout + done.stderr, done
    host.run("rm", "/etc/apt/sources.list.d/coalition.list", "/etc/apt/nobody.gpg")


def test_worker_host_runs_a_job_as_the_coalition_user(farm: Farm) -> None:
    worker = farm.worker
    add_repository(worker, farm.repo_url)
    worker.run("apt-get", "install", "-y", "-q", "coalition-worker", timeout=300)
    # Enabled, but waiting for its configuration (ConditionPathExists).
    assert worker.run("systemctl", "is-enabled", "coalition-worker").stdout.strip() == "enabled"
    assert worker.run("systemctl", "is-active", "coalition-worker", check=False).stdout.strip() == "inactive"
    # README 2a, worker host.
    worker.sh(
        "install -D -m 640 -g coalition /usr/share/doc/coalition-worker/examples/coalition.ini "
        "/etc/coalition/coalition.ini"
    )
    # interruptions=off: a LAN worker never probes the cloud metadata address.
    edit_ini(worker, CONF, "worker", serverUrl=farm.url, token=farm.token, sleep="0.5", interruptions="off")
    worker.run("systemctl", "start", "coalition-worker")
    wait_active(worker, "coalition-worker")

    job_id = farm.submit("id -un; echo rendered frame 1", title="frame 1")
    job = farm.wait_job(job_id, ("FINISHED", "ERROR"))
    assert (job["state"], job["worker"]) == ("FINISHED", worker.name), job
    log = farm.api("GET", f"/api/jobs/{job_id}/log")
    assert "coalition\n" in str(log) and "rendered frame 1" in str(log), log
    journal = worker.run("journalctl", "-u", "coalition-worker", "--no-pager").stdout
    assert f"job {job_id} started" in journal and f"job {job_id} ended with exit code 0" in journal, journal
    assert "Coalition server on" in server_journal(farm)


def server_journal(farm: Farm) -> str:
    return farm.server.run("journalctl", "-u", "coalition-server", "--no-pager").stdout


def test_stopping_the_worker_hands_its_job_back(farm: Farm) -> None:
    job_id = farm.submit("sleep 600", title="long")
    farm.wait_job(job_id, ("WORKING",))
    farm.worker.run("systemctl", "stop", "coalition-worker", timeout=60)
    job = farm.wait_job(job_id, ("WAITING",), timeout=30)
    assert job["worker"] in ("", None, farm.worker.name)
    # KillMode=mixed: nothing of the job is left running on the host.
    assert "sleep 600" not in farm.worker.run("ps", "-eo", "args").stdout
    # Pause it, so that the worker does not take it again.
    farm.api("POST", "/api/pausejobs", [job_id])
    farm.worker.run("systemctl", "start", "coalition-worker")
    wait_active(farm.worker, "coalition-worker")


def test_systemd_restarts_a_killed_server(farm: Farm) -> None:
    server = farm.server
    before = unit_property(server, "coalition-server", "MainPID")
    assert before != "0", "the server is not running"
    server.run("kill", "-9", before)

    def restarted() -> bool:
        pid = unit_property(server, "coalition-server", "MainPID")
        return pid not in ("0", before) and farm.answers()

    wait_for(restarted, timeout=30, interval=0.3, what="systemd to restart the killed server")
    assert unit_property(server, "coalition-server", "NRestarts") == "1"
    assert "status=9/KILL" in server_journal(farm)


def test_upgrade_restarts_the_server_and_leaves_a_running_job_alone(
    farm: Farm, debs_next: Path, archive_key: ArchiveKey
) -> None:
    server, worker = farm.server, farm.worker
    job_id = farm.submit("while [ ! -e /tmp/c13-go ]; do sleep 0.2; done; echo survived", title="upgrade")
    farm.wait_job(job_id, ("WORKING",))
    server_pid = unit_property(server, "coalition-server", "MainPID")
    worker_pid = unit_property(worker, "coalition-worker", "MainPID")

    build_repo(farm.repo, archive_key, sorted(debs_next.glob("*.deb")))
    for host in (server, worker):
        host.run("apt-get", "update", "-q")
        host.run("apt-get", "upgrade", "-y", "-q", timeout=300)
        assert host.run("coalition", "--version").stdout.split() == ["coalition", NEXT_VERSION]

    # The server was restarted onto the new code; the worker, with its job, was not.
    wait_for(farm.answers, timeout=30, interval=0.2, what="the upgraded server")
    assert unit_property(server, "coalition-server", "MainPID") != server_pid
    assert unit_property(worker, "coalition-worker", "MainPID") == worker_pid
    assert farm.job(job_id)["state"] == "WORKING"
    worker.run("touch", "/tmp/c13-go")
    job = farm.wait_job(job_id, ("FINISHED", "ERROR"))
    assert job["state"] == "FINISHED" and "survived" in str(farm.api("GET", f"/api/jobs/{job_id}/log"))


def test_a_worker_instance_per_gpu(farm: Farm) -> None:
    worker = farm.worker
    worker.sh(
        "install -D -m 640 -g coalition /usr/share/doc/coalition-worker/examples/coalition.ini "
        "/etc/coalition/worker-gpu0.ini"
    )
    edit_ini(
        worker,
        "/etc/coalition/worker-gpu0.ini",
        "worker",
        serverUrl=farm.url,
        token=farm.token,
        sleep="0.5",
        interruptions="off",
        affinity="gpu",
    )
    worker.run("systemctl", "enable", "--now", "coalition-worker@gpu0")
    wait_active(worker, "coalition-worker@gpu0")
    # The instance shares the main unit's stop and sandbox settings (one drop-in).
    for unit in ("coalition-worker", "coalition-worker@gpu0"):
        assert unit_property(worker, unit, "KillMode") == "mixed"
        assert unit_property(worker, unit, "TimeoutStopUSec") == "2h"
        assert "shared.conf" in unit_property(worker, unit, "DropInPaths")
    name = f"{worker.name}-gpu0"
    wait_for(
        lambda: name in [w["name"] for w in farm.api("GET", "/api/workers")],
        timeout=30,
        interval=0.3,
        what=f"{name} to register",
    )
    job = farm.api("PUT", "/api/jobs", {"command": "echo on the gpu", "title": "gpu", "affinity": "gpu"})
    job_id = int(job["id"] if isinstance(job, dict) else job)
    assert farm.wait_job(job_id, ("FINISHED", "ERROR"))["worker"] == name


LEFTOVERS = (
    "/etc/coalition",
    "/var/lib/coalition",
    "/var/cache/coalition",
    "/usr/share/coalition",
    "/usr/bin/coalition",
    "/lib/systemd/system/coalition-worker@.service",
)


@pytest.mark.parametrize("host_name", ["worker", "server"])
def test_purge_leaves_nothing_behind(farm: Farm, host_name: str) -> None:
    host: nspawn.Container = getattr(farm, host_name)
    packages = host.run("dpkg-query", "-W", "-f", "${Package}\n", "*coalition*").stdout.split()
    host.run("apt-get", "purge", "-y", "-q", *packages, timeout=300)
    left = host.run("dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", "*coalition*", check=False)
    assert left.stdout == "", left.stdout
    # Nothing loaded from a file or running; systemd may still remember a unit's name
    # (not-found inactive dead) until it garbage-collects it.
    units = host.run("systemctl", "list-units", "--all", "--plain", "--no-legend", "coalition*").stdout
    forgotten = ["not-found", "inactive", "dead"]
    assert [line for line in units.splitlines() if line.split()[1:4] != forgotten] == []
    links = host.run("sh", "-c", "ls /etc/systemd/system/*/coalition* 2>/dev/null || true").stdout
    assert links == ""
    assert [p for p in LEFTOVERS if host.exists(p)] == []
    assert host.run("pgrep", "-u", "coalition", check=False).stdout == ""
    assert re.search(r"^coalition:", host.read("/etc/passwd"), re.M)  # the account stays (Debian policy)
