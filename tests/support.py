"""Shared helpers for the test suite: the strict-skip policy and waiting on conditions."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pytest

T = TypeVar("T")

# CI sets COALITION_STRICT=1: a test that lacks a system dependency then fails instead of
# skipping, so a green CI run really ran everything (dramatiq's policy).
STRICT = os.environ.get("COALITION_STRICT") == "1"


class Clock:
    """A clock the tests move by hand (injected wherever the code takes `clock=`)."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


def terminate_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM, then SIGKILL if it does not go within `timeout`; returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def require(ok: bool, reason: str) -> None:
    """Skip (on a laptop) or fail (in CI) when a system dependency is missing."""
    if ok:
        return
    message = f"MISSING SYSTEM DEPENDENCY: {reason}"
    if STRICT:
        pytest.fail(message + " (COALITION_STRICT=1 turns this skip into a failure)")
    pytest.skip(message)


def require_binary(name: str, package: str) -> str:
    """The path of a system binary, or skip/fail naming the Debian package to install."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    require(path is not None, f"`{name}` not found: apt-get install {package}")
    assert path is not None
    return path


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    """Poll `predicate` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}; last value: {last!r}")


class Pinger:
    """A thread asking a route again and again while something else happens (an attack), to
    measure how long the server keeps others waiting meanwhile. Use as a context manager:
    entering waits for a first answer, leaving waits for one more (so some pings overlap
    what ran inside) and stops the thread."""

    def __init__(self, url: str, path: str = "/api/ping"):
        import requests

        self.url = url + path
        self.session = requests.Session()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pinger", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                r = self.session.get(self.url, timeout=30)
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
            except OSError as exc:  # requests' errors are OSErrors
                self.failures.append(repr(exc))
            self.latencies.append(time.monotonic() - started)

    @property
    def worst(self) -> float:
        """The longest wait for an answer so far (s)."""
        return max(self.latencies, default=0.0)

    def __enter__(self) -> Pinger:
        self._thread.start()
        wait_for(lambda: self.latencies, timeout=30, what="a first ping")
        return self

    def __exit__(self, *exc: object) -> None:
        seen = len(self.latencies)
        try:
            if exc[0] is None:
                wait_for(lambda: len(self.latencies) > seen, timeout=30, what="a ping after")
        finally:
            self._stop.set()
            self._thread.join(timeout=60)


def read_answer(sock: socket.socket) -> bytes:
    """One HTTP answer from `sock`, read to its Content-Length or to the end of the connection
    (b"" when the server closed it without answering)."""
    answer = b""
    while True:
        head, sep, body = answer.partition(b"\r\n\r\n")
        if sep:
            lengths = [
                h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")
            ]
            if len(body) >= int(lengths[0] if lengths else 0):
                return answer
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return answer
        if not chunk:
            return answer
        answer += chunk


def status_of(answer: bytes) -> int:
    """The status of an answer read by read_answer (0: none)."""
    return int(answer.split()[1]) if answer.startswith(b"HTTP/") else 0


def raw_http(port: int, data: bytes, timeout: float = 10.0) -> tuple[int, bytes, bytes]:
    """Send `data` on a fresh connection and read one answer: (status, head, body); status 0
    when the server closed the connection without answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = read_answer(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    return status_of(answer), head, body


def free_port() -> int:
    """A port free on 127.0.0.1 right now, for TCP (HTTP) and UDP (discovery) alike."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


# Debian's Chromium, headless, kept off the network (reference/tooling.md section 4).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
    "--no-default-browser-check",
]


@dataclass(frozen=True)
class MariaDBServer:
    """A private mariadbd: root over its unix socket, clients over TCP on loopback."""

    host: str
    port: int
    socket: str

    def root_sql(self, *statements: str) -> None:
        """Run statements as root (over the unix socket)."""
        import pymysql

        conn = pymysql.connect(unix_socket=self.socket, user="root")
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
            conn.commit()
        finally:
            conn.close()


def mariadb_binaries() -> tuple[str | None, str | None]:
    """mariadb-install-db and mariadbd, where installed."""
    daemon = shutil.which("mariadbd") or (
        "/usr/sbin/mariadbd" if os.path.exists("/usr/sbin/mariadbd") else None
    )
    return shutil.which("mariadb-install-db"), daemon


@contextlib.contextmanager
def private_mariadb(buffer_pool: str = "128M") -> Iterator[MariaDBServer]:
    """A throwaway mariadbd in a temporary directory on a free loopback port
    (reference/tooling.md section 2), stopped and removed afterwards."""
    import pymysql

    install, daemon = mariadb_binaries()
    if not install or not daemon:
        raise RuntimeError("MariaDB server not installed: apt-get install mariadb-server")
    datadir = tempfile.mkdtemp(prefix="coal-mariadb-")
    sock = os.path.join(datadir, "mysqld.sock")
    port = free_port()
    subprocess.run(
        [
            install,
            "--no-defaults",
            f"--datadir={datadir}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = open(os.path.join(datadir, "server.log"), "wb")
    proc = subprocess.Popen(
        [
            daemon,
            "--no-defaults",
            f"--datadir={datadir}",
            f"--socket={sock}",
            f"--pid-file={datadir}/mysqld.pid",
            "--bind-address=127.0.0.1",
            f"--port={port}",
            "--user=root",
            "--skip-log-bin",
            f"--innodb-buffer-pool-size={buffer_pool}",
            "--innodb-flush-log-at-trx-commit=2",
            "--max-connections=500",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def ready() -> bool:
        try:
            pymysql.connect(unix_socket=sock, user="root").close()
            return True
        except pymysql.err.MySQLError:
            return proc.poll() is not None  # ends the wait; checked below

    try:
        wait_for(ready, timeout=60, interval=0.1, what="mariadbd to accept connections")
        if proc.poll() is not None:
            raise RuntimeError(f"mariadbd exited: see {datadir}/server.log")
        yield MariaDBServer("127.0.0.1", port, sock)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(datadir, ignore_errors=True)
