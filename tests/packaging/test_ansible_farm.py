"""ansible-playbook site.yml against two Debian 12 hosts that boot a real systemd
(tests/nspawn.py), over ssh on a private LAN, as an operator runs it from their machine.

The server host installs from the signed apt repository (coalition_apt_repository), the
worker host from copied .deb files (coalition_deb_dir): both ways the roles offer. The
tests share the hosts and run in file order: check mode on fresh hosts, converge, a
second run that changes nothing, check mode on the converged hosts, a job.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import nspawn
from tests.packaging.conftest import REPO, ArchiveKey, build_repo
from tests.support import require, terminate_process, wait_for

pytestmark = pytest.mark.slow

ANSIBLE = REPO / "ansible"
VENV_BIN = Path(sys.executable).parent
REPO_PORT = 8080
TOKEN = "c13-ansible-token-5f2a9c"


@dataclass
class AnsibleFarm:
    lan: nspawn.Lan
    server: nspawn.Container
    worker: nspawn.Container
    inventory: Path
    extra_vars: Path
    workdir: Path

    def playbook(self, *args: str) -> subprocess.CompletedProcess[str]:
        """ansible-playbook site.yml from this machine, inside the LAN (where the hosts are)."""
        env = {
            "PATH": f"{VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(self.workdir),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_LOCAL_TEMP": str(self.workdir / "tmp"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.workdir / "cp"),
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
        }
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory), "-e", f"@{self.extra_vars}"]
        return self.lan.run([*argv, *args, "site.yml"], cwd=ANSIBLE, env=env, timeout=900)


def recap(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    """PLAY RECAP: host -> {ok, changed, failed, ...}; fails on a failed run."""
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-3000:]
    counts = {}
    for host, fields in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", done.stdout, re.M):
        counts[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", fields)}
    assert set(counts) == {"server", "worker"}, done.stdout[-3000:]
    return counts


@pytest.fixture(scope="module")
def farm(
    debs: Path, archive_key: ArchiveKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AnsibleFarm]:
    nspawn.require_nspawn()
    require((VENV_BIN / "ansible-playbook").exists(), "ansible-playbook missing: pip install ansible-core")
    root = nspawn.debian_root()
    work = tmp_path_factory.mktemp("ansible")
    (work / "tmp").mkdir()
    (work / "cp").mkdir()
    repo = work / "repo"
    build_repo(repo, archive_key, sorted(debs.glob("*.deb")))
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with nspawn.private_lan("c13") as lan:
        web = subprocess.Popen(
            ["ip", "netns", "exec", lan.name, "/usr/bin/python3", "-m", "http.server", str(REPO_PORT)]
            + ["--bind", lan.gateway, "--directory", str(repo)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with nspawn.boot(root, nspawn.machine_name("c13-asrv"), lan=lan) as server:
                with nspawn.boot(root, nspawn.machine_name("c13-awrk"), lan=lan) as worker:
                    for host in (server, worker):
                        host.put("/root/.ssh/authorized_keys", Path(f"{key}.pub").read_text(), mode=0o600)
                    inventory = work / "inventory.ini"
                    common = (
                        f"ansible_user=root ansible_ssh_private_key_file={key} "
                        "ansible_python_interpreter=/usr/bin/python3 "
                        "ansible_ssh_common_args='-o UserKnownHostsFile=/dev/null "
                        "-o StrictHostKeyChecking=no'"
                    )
                    inventory.write_text(
                        f"[coalition_servers]\nserver ansible_host={server.ip} {common}\n\n"
                        f"[coalition_workers]\nworker ansible_host={worker.ip} {common}\n"
                    )
                    extra = work / "extra.json"
                    extra.write_text(
                        json.dumps(
                            {
                                "vault_coalition_worker_token": TOKEN,
                                # The server host from the signed repository...
                                "coalition_server_apt_repository": f"http://{lan.gateway}:{REPO_PORT}",
                                "coalition_server_apt_keyring": str(repo / "coalition-archive-keyring.gpg"),
                                # ... the worker host from copied packages.
                                "coalition_worker_deb_dir": str(debs),
                                "coalition_worker_sleep": 0.5,
                                "coalition_worker_instances": [
                                    {
                                        "name": "gpu0",
                                        "affinity": "gpu",
                                        "environment": {"CUDA_VISIBLE_DEVICES": "0"},
                                    }
                                ],
                            }
                        )
                    )
                    wait_for(
                        lambda: (
                            lan.run(
                                ["curl", "-sf", "-o", "/dev/null", f"http://{lan.gateway}:{REPO_PORT}/"]
                            ).returncode
                            == 0
                        ),
                        timeout=30,
                        interval=0.1,
                        what="the repository's web server",
                    )
                    yield AnsibleFarm(lan, server, worker, inventory, extra, work)
        finally:
            terminate_process(web)
            stop_ssh_masters(work / "cp")


def stop_ssh_masters(control_dir: Path) -> None:
    """End the ssh connection masters Ansible left behind (ControlPersist) for our hosts:
    the processes whose command line names this run's own control directory."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if str(control_dir) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                os.kill(int(proc.name), signal.SIGTERM)
        except (OSError, ValueError):
            continue


def installed(host: nspawn.Container, package: str) -> bool:
    out = host.run("dpkg-query", "-W", "-f", "${db:Status-Status}", package, check=False).stdout
    return out == "installed"


def test_check_mode_on_fresh_hosts_changes_nothing_and_says_what_would(farm: AnsibleFarm) -> None:
    done = farm.playbook("--check", "--diff")
    counts = recap(done)
    assert counts["server"]["changed"] > 0 and counts["worker"]["changed"] > 0
    assert "coalition-server would be installed" in done.stdout
    assert "/etc/coalition/coalition.ini would be written, and coalition-worker (re)started" in done.stdout
    assert not installed(farm.server, "coalition-server") and not installed(farm.worker, "coalition-worker")
    assert not farm.server.exists("/etc/apt/sources.list.d/coalition.list")


def test_site_yml_converges_with_systemd(farm: AnsibleFarm) -> None:
    counts = recap(farm.playbook())
    assert counts["server"]["changed"] > 0 and counts["worker"]["changed"] > 0
    for host, unit in ((farm.server, "coalition-server"), (farm.worker, "coalition-worker")):
        assert installed(host, unit)
        assert host.run("systemctl", "is-active", unit).stdout.strip() == "active"
        assert host.run("systemctl", "is-enabled", unit).stdout.strip() == "enabled"
    assert "apt-get" not in farm.server.run("ps", "-eo", "args").stdout


def test_a_second_run_changes_nothing(farm: AnsibleFarm) -> None:
    counts = recap(farm.playbook())
    assert (counts["server"]["changed"], counts["worker"]["changed"]) == (0, 0), counts


def test_check_mode_on_converged_hosts_reports_no_change(farm: AnsibleFarm) -> None:
    done = farm.playbook("--check", "--diff")
    counts = recap(done)
    assert (counts["server"]["changed"], counts["worker"]["changed"]) == (0, 0), done.stdout[-4000:]
    assert "RUNNING HANDLER" not in done.stdout


def test_check_mode_tells_which_service_a_change_would_restart(farm: AnsibleFarm) -> None:
    before = farm.worker.read("/etc/coalition/coalition.ini")
    done = farm.playbook("--check", "--diff", "-e", "coalition_worker_sleep=1")
    counts = recap(done)
    # Changed: the [worker] fragment and its restart, the gpu0 instance's ini (it inherits
    # sleep) and its restart; nothing on the hosts.
    assert (counts["server"]["changed"], counts["worker"]["changed"]) == (0, 4), done.stdout[-4000:]
    assert "RUNNING HANDLER [coalition_worker : Restart coalition-worker]" in done.stdout
    assert re.search(r"changed: \[worker\] => \(item=gpu0\)\n\nTASK \[coalition_worker : Find", done.stdout)
    assert farm.worker.read("/etc/coalition/coalition.ini") == before
    assert "sleep=0.5" in farm.worker.read("/etc/coalition/worker-gpu0.ini")


def run_job(farm: AnsibleFarm, job: dict, what: str) -> dict:
    """Submit a job with curl from the LAN, as a user would, and wait for its end."""
    url = f"http://{farm.server.ip}:19211"
    json_type = "Content-Type: application/json"
    put = farm.lan.run(
        ["curl", "-sSf", "-X", "PUT", "-H", json_type, "--data-binary", json.dumps(job), f"{url}/api/jobs"]
    )
    created = json.loads(put.stdout)
    job_id = int(created["id"] if isinstance(created, dict) else created)

    def finished() -> dict | None:
        row = json.loads(farm.lan.run(["curl", "-sSf", f"{url}/api/jobs/{job_id}"]).stdout)
        return row if row["state"] in ("FINISHED", "ERROR") else None

    return wait_for(finished, timeout=60, interval=0.3, what=what)


def test_the_converged_farm_runs_a_job(farm: AnsibleFarm) -> None:
    job = run_job(farm, {"command": "echo converged", "title": "ansible"}, "the job on the Ansible farm")
    # An untagged job fits both workers of the host: the main one and the gpu0 instance.
    assert job["state"] == "FINISHED" and job["worker"] in (farm.worker.name, f"{farm.worker.name}-gpu0"), job
    # The roles wrote one token into both hosts' configurations.
    assert f"workertoken={TOKEN}" in farm.server.read("/etc/coalition/coalition.ini")
    assert f"token={TOKEN}" in farm.worker.read("/etc/coalition/coalition.ini")
    assert "interruptions=off" in farm.worker.read("/etc/coalition/coalition.ini")


def test_a_worker_instance_from_the_inventory(farm: AnsibleFarm) -> None:
    worker = farm.worker
    unit = "coalition-worker@gpu0.service"
    assert worker.run("systemctl", "is-active", unit).stdout.strip() == "active"
    env = worker.run("systemctl", "show", "-p", "Environment", "--value", unit).stdout
    assert "CUDA_VISIBLE_DEVICES=0" in env, env
    ini = worker.read("/etc/coalition/worker-gpu0.ini")
    assert "affinity=gpu" in ini and f"token={TOKEN}" in ini and "sleep=0.5" in ini
    job = run_job(
        farm, {"command": "echo on gpu0", "title": "gpu", "affinity": "gpu"}, "the job on the instance"
    )
    assert (job["state"], job["worker"]) == ("FINISHED", f"{worker.name}-gpu0"), job


def test_an_instance_dropped_from_the_inventory_is_retired(farm: AnsibleFarm) -> None:
    extra = json.loads(farm.extra_vars.read_text())
    extra["coalition_worker_instances"] = []
    farm.extra_vars.write_text(json.dumps(extra))
    counts = recap(farm.playbook())
    assert counts["worker"]["changed"] > 0
    unit = "coalition-worker@gpu0.service"
    assert farm.worker.run("systemctl", "is-active", unit, check=False).stdout.strip() == "inactive"
    assert farm.worker.run("systemctl", "is-enabled", unit, check=False).stdout.strip() != "enabled"
    assert not farm.worker.exists("/etc/coalition/worker-gpu0.ini")
    assert not farm.worker.exists("/etc/systemd/system/coalition-worker@gpu0.service.d")
    assert recap(farm.playbook())["worker"]["changed"] == 0
