"""Fixtures shared by the whole suite: real server processes on free loopback ports, and a
private MariaDB instance for the MySQL half of the store contract."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    free_port,
    mariadb_binaries,
    private_mariadb,
    require,
    terminate_process,
    wait_for,
)

REPO = Path(__file__).resolve().parent.parent


# -- MariaDB ------------------------------------------------------------------------------
@dataclass
class MariaDB:
    """A private MariaDB server for the test session."""

    host: str
    port: int
    user: str
    password: str
    socket: str

    def server_keys(self) -> dict[str, Any]:
        """`[server]` keys for a server process on a fresh database of this server."""
        return {
            "db_type": "mysql",
            "db_mysql_host": self.host,
            "db_mysql_port": self.port,
            "db_mysql_user": self.user,
            "db_mysql_password": self.password,
            "db_mysql_base": self.new_database(),
        }

    def new_database(self) -> str:
        """A fresh, empty database; returns its name."""
        import pymysql

        name = "t_" + uuid.uuid4().hex[:12]
        conn = pymysql.connect(unix_socket=self.socket, user="root")
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
                cur.execute(f"GRANT ALL ON {name}.* TO 'coal'@'127.0.0.1'")
            conn.commit()
        finally:
            conn.close()
        return name


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """A throwaway mariadbd on a free port for the session, with a `coal` user."""
    install, daemon = mariadb_binaries()
    require(bool(install and daemon), "MariaDB server not installed: apt-get install mariadb-server")
    try:
        import pymysql  # noqa: F401
    except ImportError:
        require(False, "PyMySQL not installed: pip install 'coalition[mysql]'")
    with private_mariadb() as server:
        server.root_sql("CREATE USER 'coal'@'127.0.0.1' IDENTIFIED BY 'coalpw'")
        yield MariaDB(server.host, server.port, "coal", "coalpw", server.socket)


# -- real server processes ------------------------------------------------------------------
class ServerProcess:
    """A `coalition-server` process on a free loopback port, with its own data directory."""

    def __init__(self, root: Path, **server_keys: Any):
        self.root = root
        self.datadir = root / "data"
        self.port = int(server_keys.pop("port", 0)) or free_port()
        self.ini_path = root / "coalition.ini"
        keys = {
            "listen": "127.0.0.1",
            "port": self.port,
            "datadir": str(self.datadir),
            "timeout": 3,
            "reaperinterval": 0.2,
            "verbose": 1,
            **server_keys,
        }
        self.keys = keys
        lines = ["[server]"] + [f"{k} = {v}" for k, v in keys.items()]
        self.ini_path.write_text("\n".join(lines) + "\n")
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.session = requests.Session()
        self.log_path = root / "server.log"

    def init_database(self) -> None:
        """`coalition-server --init` with this server's ini (before start())."""
        cmd = [sys.executable, "-m", "coalition.server.main", "-c", str(self.ini_path), "--init"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start (or restart on the same port and data) and wait until it answers."""
        log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "coalition.server.main", "-c", str(self.ini_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            env=env,
        )
        log.close()

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                return self.answers()
            except requests.RequestException:
                return False

        wait_for(up, timeout=timeout, interval=0.05, what="the server to answer")
        # HTTP answers a little before the engine has finished starting; a SIGTERM in that
        # window makes CherryPy exit hard. The banner line marks the end of start-up.
        self._ready_count = getattr(self, "_ready_count", 0) + 1
        wait_for(
            lambda: (
                self.log_path.read_text(errors="replace").count("Coalition server on ") >= self._ready_count
            ),
            timeout=timeout,
            interval=0.05,
            what="the server's start-up banner",
        )
        return self

    def answers(self) -> bool:
        """Whether the server answers its trivial route (subclasses loosen this: with LDAP on
        a 401 is an answer too)."""
        return requests.get(self.url + "/api/ping", timeout=1).status_code == 200

    def view(self) -> ServerProcess:
        """The same server with its own HTTP session (requests sessions are not thread-safe)."""
        other = ServerProcess.__new__(ServerProcess)
        other.__dict__.update(self.__dict__)
        other.session = requests.Session()
        return other

    def log_tail(self, n: int = 60) -> str:
        """The end of the server's output (for failure messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def terminate(self) -> int:
        """Stop the server gracefully; returns its exit code."""
        return 0 if self.proc is None else terminate_process(self.proc)

    def request(self, method: str, path: str, body: Any = None, **kw: Any) -> requests.Response:
        """A raw HTTP request to the server."""
        if body is not None and "data" not in kw:
            kw["json"] = body
        return self.session.request(method, self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def api(self, method: str, path: str, body: Any = None, expect: int = 200, **kw: Any) -> Any:
        """A request whose decoded JSON answer is returned; the status must be `expect`."""
        r = self.request(method, path, body, **kw)
        assert r.status_code == expect, f"{method} {path} -> {r.status_code} {r.text[:500]}"
        ctype = r.headers.get("Content-Type", "")
        return r.json() if "json" in ctype else r.text

    def submit(self, **job: Any) -> int:
        """PUT a job; returns its id."""
        return int(self.api("PUT", "/api/jobs", job))

    def job(self, job_id: int) -> dict[str, Any]:
        """GET one job."""
        return self.api("GET", f"/api/jobs/{job_id}")

    def worker_call(self, route: str, body: dict[str, Any], expect: int = 200) -> Any:
        """A JSON worker-protocol request (as a scripted worker)."""
        return self.api("POST", f"/workers/{route}", body, expect=expect)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
    """A factory: make_server(**[server] keys) -> a started ServerProcess (stopped at the end)."""
    servers: list[ServerProcess] = []

    def make(start: bool = True, **keys: Any) -> ServerProcess:
        root = tmp_path / f"server{len(servers)}"
        root.mkdir()
        server = ServerProcess(root, **keys)
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Any) -> ServerProcess:
    """A started server on SQLite with a short heartbeat timeout (3 s)."""
    return make_server()


def pytest_report_header(config: Any) -> str:
    strict = os.environ.get("COALITION_STRICT") == "1"
    return (
        f"coalition: COALITION_STRICT={'1 (missing system dependencies fail)' if strict else '0 (they skip)'}"
    )


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests talk to loopback only; a proxy from the environment must never see that traffic.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole session (Playwright's sync API allows one
    running instance per thread, so every browser test shares this one)."""
    require(os.path.exists(CHROMIUM), f"{CHROMIUM} not found: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright Python package is missing: pip install 'coalition[test]'")
        raise
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
