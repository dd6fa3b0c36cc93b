"""The worker token: a new configuration is closed by default, `make run` still works, and
`/workers/` refuses requests without the token."""

from __future__ import annotations

import base64
import configparser
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from coalition import devfarm
from coalition.config import ConfigError, load_server_settings
from coalition.worker.settings import load_settings
from tests.authfarm import AuthServer, Slapd, ldap_keys
from tests.conftest import free_port


def _server(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coalition.server.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    return parser


def test_init_writes_a_token_into_a_new_config(tmp_path: Path) -> None:
    ini = tmp_path / "etc" / "coalition.ini"
    data = tmp_path / "data"
    port = free_port()
    flags = ("-c", str(ini), "--datadir", str(data), "-p", str(port), "--listen", "127.0.0.1")
    done = _server("--init", *flags, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    parser = _ini(ini)
    token = parser.get("server", "workertoken")
    assert len(token) >= 40 and parser.get("worker", "token") == token
    assert token not in done.stdout + done.stderr  # the secret stays in the file
    assert stat.S_IMODE(os.stat(ini).st_mode) == 0o600
    assert (data / "coalition.db").exists() and parser.get("server", "datadir") == str(data)
    # A server on that very file is closed to workers without the token.
    (tmp_path / "run").mkdir()
    farm = AuthServer(tmp_path / "run", port=port)
    farm.ini_path = ini
    farm.start()
    try:
        body = {"name": "w1"}
        assert farm.worker("pickjob", body, token="").status_code == 401
        assert farm.worker("pickjob", body, token="wrong").status_code == 401
        assert farm.worker("pickjob", body, token=token).status_code == 200
        legacy = requests.post(farm.url + "/workers/pickjob", data={"hostname": "old"}, timeout=30)
        assert legacy.status_code == 401
    finally:
        farm.stop()


def test_init_leaves_an_existing_config_alone(tmp_path: Path) -> None:
    ini = tmp_path / "coalition.ini"
    ini.write_text(f"[server]\ndatadir = {tmp_path / 'data'}\n")
    done = _server("--init", "-c", str(ini), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "workertoken" not in ini.read_text()


def test_write_config_never_overwrites(tmp_path: Path) -> None:
    ini = tmp_path / "new.ini"
    assert _server("--write-config", str(ini), cwd=tmp_path).returncode == 0
    first = ini.read_text()
    again = _server("--write-config", str(ini), cwd=tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr
    assert ini.read_text() == first
    assert not (tmp_path / "coalition.db").exists()  # writing a config creates no database


def test_make_run_config_gives_the_local_worker_the_token(tmp_path: Path) -> None:
    ini = tmp_path / "coalition.ini"
    devfarm.write_ini(str(ini), free_port(), str(tmp_path))
    server_token = load_server_settings(str(ini)).workertoken
    assert server_token and load_settings(str(ini)).token == server_token
    assert stat.S_IMODE(os.stat(ini).st_mode) == 0o600


def test_ldap_without_a_worker_token_refuses_to_start(slapd: Slapd, tmp_path: Path) -> None:
    keys = ldap_keys(slapd)
    del keys["workertoken"]
    ini = tmp_path / "c.ini"
    ini.write_text("[server]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()))
    with pytest.raises(ConfigError, match="workertoken"):
        load_server_settings(str(ini))
    done = _server("-c", str(ini), "--datadir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and "workertoken" in done.stderr


def test_ldap_farm_workers_need_the_token(ldap_farm: AuthServer) -> None:
    # Logged-in users are not workers: HTTP Basic does not replace the token.
    r = ldap_farm.client("admin1").post(ldap_farm.url + "/workers/pickjob", json={"name": "x"})
    assert r.status_code == 401
    log = base64.b64encode(b"x").decode()
    r = ldap_farm.worker("heartbeat", {"name": "x", "job_id": 1, "event": 1, "log": log}, token="nope")
    assert r.status_code == 401
