"""The deployment files agree with the code: the sample ini, the Ansible role variables and
the Debian version all follow what coalition.config and the worker settings read."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import subprocess
import tomllib

import pytest
import yaml

from coalition.config import _SERVER_TYPES, ServerSettings
from coalition.worker.settings import KEYS as WORKER_KEYS
from coalition.worker.settings import WorkerSettings, load_settings
from tests.packaging.conftest import REPO, Unit
from tests.support import require_binary

SAMPLE = REPO / "etc/coalition.ini"
ROLES = REPO / "ansible/roles"


def sample_lines() -> dict[str, dict[str, tuple[str, str]]]:
    """section -> key -> (prefix, value) of the key's first line: `#key=value` shows the
    default, `;key=value` an example; indented lines continue the previous value."""
    keys: dict[str, dict[str, tuple[str, str]]] = {}
    section = ""
    for line in SAMPLE.read_text().splitlines():
        if match := re.fullmatch(r"\[(\w+)\]", line):
            section = match.group(1)
            keys[section] = {}
        elif match := re.fullmatch(r"([#;]?)(\w+)=(.*)", line):
            keys[section].setdefault(match.group(2), (match.group(1), match.group(3)))
    return keys


def test_sample_has_every_server_key_with_its_default() -> None:
    sample = sample_lines()["server"]
    assert sorted(sample) == sorted(_SERVER_TYPES)
    defaults = ServerSettings()
    for key, (prefix, text) in sample.items():
        if prefix == ";":
            continue
        assert _SERVER_TYPES[key](text) == getattr(defaults, key), key


def test_sample_has_every_worker_key_with_its_default() -> None:
    sample = sample_lines()["worker"]
    assert sorted(k.lower() for k in sample) == sorted(WORKER_KEYS)
    defaults = dataclasses.asdict(WorkerSettings(name="x"))
    for key, (prefix, text) in sample.items():
        if prefix == ";":
            continue
        if key == "workers":  # auto: load_settings' default (packing), not a number of slots
            assert text == "auto" and load_settings(str(SAMPLE)).packing
            continue
        field, parse = WORKER_KEYS[key.lower()]
        assert parse(text) == defaults[field], key


def load_role(role: str) -> dict:
    values = {}
    for part in ("defaults", "vars"):
        values.update(yaml.safe_load((ROLES / role / part / "main.yml").read_text()))
    return values


def test_every_server_key_is_a_role_variable() -> None:
    role = load_role("coalition_server")
    assert sorted(role["coalition_server_ini_keys"]) == sorted(_SERVER_TYPES)
    missing = [k for k in _SERVER_TYPES if f"coalition_server_{k}" not in role]
    assert missing == []


def test_every_worker_key_is_a_role_variable() -> None:
    role = load_role("coalition_worker")
    pairs = role["coalition_worker_ini_keys"]
    assert sorted(p["key"].lower() for p in pairs) == sorted(WORKER_KEYS)
    missing = [p["var"] for p in pairs if f"coalition_worker_{p['var']}" not in role]
    assert missing == []


def test_both_roles_write_the_same_header() -> None:
    # Both assemble /etc/coalition/coalition.ini from the same fragment directory: a
    # different 00-header.ini would make them undo each other on every run.
    server = (ROLES / "coalition_server/templates/header.ini.j2").read_text()
    assert server == (ROLES / "coalition_worker/templates/header.ini.j2").read_text()


def test_debian_version_is_the_python_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    first = (REPO / "packaging/debian/changelog").read_text().splitlines()[0]
    assert re.match(r"coalition \(([^)]+)\)", first).group(1) == version


def test_server_unit_sandbox_score() -> None:
    # Also checked on the installed unit (test_packages.py); this one needs no root.
    analyze = require_binary("systemd-analyze", "systemd")
    unit = REPO / "systemd/coalition-server.service"
    out = subprocess.run([analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True)
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout).group(1))
    assert score <= 2.0, out.stdout


@pytest.mark.parametrize("unit", ["coalition-worker.service", "coalition-worker@.service"])
def test_worker_units_stop_gracefully(unit: str) -> None:
    # SIGTERM to the agent alone (it hands back or finishes its jobs), a stop timeout
    # longer than a frame, and a restart after a crash.
    # Both take these from one drop-in, the template through a link to it.
    values = {key: value[-1] for key, value in Unit(REPO / "systemd" / unit).values.items()}
    shared = Unit(REPO / "systemd/coalition-worker.service.d/shared.conf").values
    values.update({key: value[-1] for key, value in shared.items()})
    assert "KillMode" not in Unit(REPO / "systemd" / unit).values
    assert values["KillMode"] == "mixed" and values["Restart"] == "on-failure"
    assert values["TimeoutStopSec"].endswith("h") and int(values["TimeoutStopSec"][:-1]) >= 1


@pytest.mark.parametrize(
    "unit", ["coalition-server.service", "coalition-worker.service", "coalition-worker@.service"]
)
def test_units_run_the_packaged_commands(unit: str) -> None:
    # The units name the files the package installs, and the configuration they read.
    text = (REPO / "systemd" / unit).read_text()
    assert re.search(r"^ExecStart=/usr/bin/coalition-(server|worker) -c /etc/coalition/\S+\.ini", text, re.M)
    assert "User=coalition" in text and "StateDirectory=coalition" in text


@pytest.mark.parametrize("role", ["coalition_server", "coalition_worker"])
def test_argument_specs_declare_every_default(role: str) -> None:
    # meta/argument_specs.yml is what ansible-doc shows and what the role checks its
    # variables against: it must list every variable of defaults/ with the same default,
    # and hide the secrets from the log.
    specs = yaml.safe_load((ROLES / role / "meta/argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    defaults = yaml.safe_load((ROLES / role / "defaults/main.yml").read_text())
    assert list(options) == list(defaults)
    assert {k: o["default"] for k, o in options.items()} == defaults
    secrets = {k for k in defaults if re.search(r"password|passwd|token$|secret$", k)}
    assert secrets and {k for k, o in options.items() if o.get("no_log")} == secrets
    assert all(o["description"] for o in options.values())
    # Not importable as ansible.make_argument_specs: "ansible" is Ansible's own package.
    spec = importlib.util.spec_from_file_location(
        "make_argument_specs", REPO / "ansible/make_argument_specs.py"
    )
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    assert (ROLES / role / "meta/argument_specs.yml").read_text() == maker.specs(ROLES / role), (
        "run ansible/make_argument_specs.py"
    )
