"""The Ansible roles without hosts: lint, syntax, and the configuration they write.
test_ansible_farm.py converges real hosts (systemd containers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coalition.config import load_server_settings
from coalition.worker.settings import load_settings
from tests.packaging.conftest import REPO
from tests.support import require

ANSIBLE = REPO / "ansible"
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """An Ansible tool from this virtualenv (pip), where CI installs them."""
    path = VENV_BIN / name
    require(
        path.exists(),
        f"{name} not found next to {sys.executable}: pip install ansible-core ansible-lint molecule",
    )
    return str(path)


def run(argv: list[str], timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    """A tool with the virtualenv first on PATH (molecule and ansible-lint call ansible-*)."""
    full_env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_NOCOLOR": "1",
        "PY_COLORS": "0",
        "ANSIBLE_LOCAL_TEMP": str(Path(os.environ.get("TMPDIR", "/tmp")) / "coalition-ansible"),
        **env,
    }
    return subprocess.run(argv, cwd=ANSIBLE, capture_output=True, text=True, env=full_env, timeout=timeout)


def test_syntax_check() -> None:
    done = run(
        [tool("ansible-playbook"), "-i", "inventories/lan.example", "site.yml", "--syntax-check"], timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_ansible_lint_production_profile() -> None:
    done = run([tool("ansible-lint"), "--offline", "--profile", "production", "--nocolor"], timeout=180)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]


# Inventory-like values, given as extra vars (role defaults come in through vars_files).
OVERRIDES = {
    "coalition_server_port": 19999,
    "coalition_server_verbose": True,
    "coalition_server_commandwhitelist": ["render\\s", "@alice", "maya\\s"],
    "coalition_server_db_mysql_password": "p%ss'word",
    "coalition_worker_server_url": "http://farm:19999",
    "coalition_worker_affinity": [["linux", "gpu"], "linux"],
    "coalition_worker_workers": 3,
}

RENDER = """
- name: Render the roles' configuration fragments
  hosts: localhost
  gather_facts: false
  vars_files:
    - {roles}/coalition_server/defaults/main.yml
    - {roles}/coalition_server/vars/main.yml
    - {roles}/coalition_worker/defaults/main.yml
    - {roles}/coalition_worker/vars/main.yml
  tasks:
    - name: Render
      ansible.builtin.template:
        src: "{roles}/{{{{ item.role }}}}/templates/{{{{ item.src }}}}"
        dest: "{out}/{{{{ item.dest }}}}"
        mode: "0600"
      loop:
        - {{role: coalition_server, src: header.ini.j2, dest: 00-header.ini}}
        - {{role: coalition_server, src: server.ini.j2, dest: 10-server.ini}}
        - {{role: coalition_worker, src: worker.ini.j2, dest: 20-worker.ini}}
"""


def test_roles_write_a_configuration_the_programs_read(tmp_path: Path) -> None:
    playbook = tmp_path / "render.yml"
    playbook.write_text(RENDER.format(roles=ANSIBLE / "roles", out=tmp_path))
    overrides = tmp_path / "overrides.json"
    overrides.write_text(json.dumps(OVERRIDES))
    local = ["-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}"]
    local += ["-e", f"@{overrides}"]
    done = run([tool("ansible-playbook"), *local, str(playbook)], timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    ini = tmp_path / "coalition.ini"
    ini.write_text(
        "".join((tmp_path / name).read_text() for name in ("00-header.ini", "10-server.ini", "20-worker.ini"))
    )

    server = load_server_settings(str(ini))
    assert server.warnings == ()
    assert (server.port, server.listen, server.datadir, server.verbose) == (
        19999,
        "0.0.0.0",
        "/var/lib/coalition",
        True,
    )
    assert server.db_mysql_password == "p%ss'word"
    assert server.commandwhitelist.split() == ["render\\s", "@alice", "maya\\s"]

    warnings: list[str] = []
    worker = load_settings(str(ini), warn=warnings.append)
    assert warnings == []
    assert (worker.server_url, worker.workers, worker.shutdown) == ("http://farm:19999", 3, "handback")
    assert worker.affinity.splitlines() == ["linux,gpu", "linux"]
