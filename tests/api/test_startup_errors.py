"""coalition-server refuses to start with one line that names the problem, with or
without -v, and a non-zero status (systemctl status shows that line); ENGINE lines once."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port


def start(ini: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """The server, as its unit runs it; it is expected to exit on its own."""
    return subprocess.run(
        [sys.executable, "-m", "coalition.server.main", "-c", str(ini), *flags],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ini.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def write_ini(tmp_path: Path, **keys: object) -> Path:
    values = {"listen": "127.0.0.1", "port": free_port(), "datadir": tmp_path / "data", **keys}
    ini = tmp_path / "coalition.ini"
    ini.write_text("[server]\n" + "".join(f"{k}={v}\n" for k, v in values.items()))
    return ini


def assert_one_line(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode not in (0, 70), (done.returncode, done.stderr)
    ours = [line for line in done.stderr.splitlines() if line.startswith("coalition-server:")]
    assert len(ours) == 1, done.stderr
    assert all(word in ours[0] for word in words), ours[0]
    assert "Traceback" not in done.stderr + done.stdout, done.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.create_server(("127.0.0.1", 0)) as other:
        yield other.getsockname()[1]


@pytest.mark.parametrize("flags", [(), ("-v",)])
def test_a_taken_port(tmp_path: Path, taken_port: int, flags: tuple[str, ...]) -> None:
    done = start(write_ini(tmp_path, port=taken_port), *flags)
    assert_one_line(done, f"port {taken_port}", "in use")


@pytest.mark.parametrize("flags", [(), ("-v",)])
def test_a_database_that_is_not_one(tmp_path: Path, flags: tuple[str, ...]) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data/coalition.db").write_text("not a database\n" * 100)
    done = start(write_ini(tmp_path), *flags)
    assert_one_line(done, "coalition.db", "not a database")


@pytest.fixture
def world_readable() -> Iterator[Path]:
    """A directory other users can enter (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="c13-startup-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the server as another user")
def test_an_unreadable_database(world_readable: Path) -> None:
    # Root reads every file: run as nobody, as a wrong owner would make the service run.
    tmp_path = world_readable
    data = tmp_path / "data"
    data.mkdir()
    (data / "coalition.db").write_bytes(b"")
    (data / "coalition.db").chmod(0o600)
    ini = write_ini(tmp_path)
    ini.chmod(0o644)
    done = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
        + [sys.executable, "-m", "coalition.server.main", "-c", str(ini)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    if "Permission denied" in done.stderr and "coalition-server:" not in done.stderr:
        pytest.skip(f"nobody cannot run this interpreter here: {done.stderr[-300:]}")
    assert_one_line(done, "coalition.db")


@pytest.mark.parametrize("flags", [(), ("-v",)])
def test_a_data_directory_that_cannot_exist(tmp_path: Path, flags: tuple[str, ...]) -> None:
    (tmp_path / "afile").write_text("")
    done = start(write_ini(tmp_path, datadir=tmp_path / "afile/data"), *flags)
    assert_one_line(done, "data directory", "afile/data")


def test_a_configured_web_directory_that_is_missing(tmp_path: Path) -> None:
    done = start(write_ini(tmp_path, webdir=tmp_path / "nope"))
    assert_one_line(done, "webdir", "nope")


def test_engine_lines_are_logged_once(make_server) -> None:  # noqa: ANN001 - conftest fixture
    server = make_server(verbose=1)
    server.terminate()
    lines = [line for line in server.log_path.read_text().splitlines() if "ENGINE Bus STARTED" in line]
    assert len(lines) == 1, lines
