"""`pip install coalition` as a user does it: build the wheel from this tree, install it
(not editable) into a fresh virtual environment, and run the installed programs from a
directory that holds nothing of the checkout. The web page and its assets must load, and
`coalition cloud render-user-data` must find its templates: both ship inside the package.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import urllib.request
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cloud.conftest import BASE, write_ini
from tests.packaging.conftest import REPO
from tests.support import free_port, terminate_process, wait_for

pytestmark = pytest.mark.slow

# What a wheel is made of; everything else (.git, .venv, tests, caches) stays behind.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "coalition")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the tree (pip builds in place and leaves build/)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.exists():
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (whl,) = out.glob("coalition-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its dependencies from PyPI; returns its bin/. With
    the `aws` extra, as the README says for an AWS farm (render-user-data parses its
    output back with PyYAML)."""
    env = tmp_path_factory.mktemp("venv")
    venv.create(env, with_pip=True)
    done = subprocess.run(
        [str(env / "bin/python"), "-m", "pip", "install", "-q", f"{wheel}[aws]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return env / "bin"


def test_the_wheel_carries_the_page_and_the_templates(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "coalition/web/index.html" in names
    assert any(n.startswith("coalition/templates/cloud-init/") for n in names), names
    assert not any(n.startswith(("tests/", "web/", "templates/")) for n in names)


@pytest.fixture
def server(installed: Path, tmp_path: Path) -> Iterator[str]:
    """The installed coalition-server, started in an empty directory; yields its URL."""
    port = free_port()
    ini = tmp_path / "coalition.ini"
    ini.write_text(f"[server]\nlisten=127.0.0.1\nport={port}\ndatadir={tmp_path / 'data'}\n")
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(installed / "coalition-server"), "-c", str(ini)],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        try:
            return urllib.request.urlopen(url + "/api/ping", timeout=1).status == 200
        except OSError:
            return False

    try:
        wait_for(up, timeout=30, interval=0.1, what="the installed server")
        yield url
    finally:
        terminate_process(proc)


def test_the_installed_server_serves_the_page_and_its_assets(server: str, installed: Path) -> None:
    # Not the checkout's files: the interpreter imports coalition from the venv.
    where = subprocess.run(
        [str(installed / "python"), "-c", "import coalition; print(coalition.__file__)"],
        capture_output=True,
        text=True,
        cwd="/",
    ).stdout
    assert where.startswith(str(installed.parent)), where
    page = urllib.request.urlopen(server + "/", timeout=5).read().decode()
    assert "<html" in page.lower() and "not installed" not in page
    assets = re.findall(r'(?:src|href)="([^"#:]+\.(?:js|css|svg|png|ico))"', page)
    assert assets, page[:2000]
    for asset in assets:
        answer = urllib.request.urlopen(f"{server}/{asset.lstrip('/')}", timeout=5)
        assert answer.status == 200 and answer.read(), asset


def test_render_user_data_finds_its_templates(installed: Path, tmp_path: Path) -> None:
    config = tmp_path / "etc"
    config.mkdir()
    write_ini(config, "aws", BASE["aws"])
    done = subprocess.run(
        [str(installed / "coalition"), "cloud", "render-user-data", "aws", "--config-dir", str(config)]
        + ["--name", "cloud-7"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    doc = yaml.safe_load(done.stdout)
    assert done.stdout.startswith("#cloud-config") and any(
        "cloud-7" in f["content"] for f in doc["write_files"]
    )
