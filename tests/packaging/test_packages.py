"""The Debian packages end to end: build, lintian, install, run as the units say, purge.

The tests of this module share one installation and run in file order: the last one
purges and checks that nothing is left behind.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.packaging.conftest import (
    SYSTEM_PATH,
    Unit,
    apt,
    installed_packages,
    purge,
    require_root_and_apt,
    set_ini,
)
from tests.support import free_port, require_binary, wait_for

pytestmark = pytest.mark.slow

UNITS = Path("/lib/systemd/system")
CONFFILE = Path("/etc/coalition/coalition.ini")


@pytest.fixture(scope="module")
def installed(debs: Path) -> Iterator[Path]:
    """`apt-get install ./*.deb` on this machine; purged again after the module."""
    require_root_and_apt()
    done = apt("install", *sorted(str(p) for p in debs.glob("*.deb")))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    try:
        yield debs
    finally:
        purge()


def test_lintian_is_clean(debs: Path) -> None:
    lintian = require_binary("lintian", "lintian")
    (changes,) = debs.glob("*.changes")
    out = subprocess.run(
        [lintian, "--pedantic", "--display-info", "--display-experimental", str(changes)],
        capture_output=True,
        text=True,
        env={"PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8"},
        timeout=120,
    )
    # Overridden tags (O:, each explained in debian/*.lintian-overrides) and lintian's own
    # screens (M:) are fine; anything else, down to pedantic and experimental, is not.
    tags = [line for line in out.stdout.splitlines() if re.match(r"[EWIPX]: ", line)]
    assert tags == [], out.stdout
    assert out.returncode == 0, out.stderr


def test_installed_layout(installed: Path) -> None:
    account = pwd.getpwnam("coalition")
    assert account.pw_uid < 1000 and account.pw_dir == "/var/lib/coalition"
    assert account.pw_shell.endswith("nologin")

    state = os.stat("/var/lib/coalition")
    assert (state.st_uid, stat.S_IMODE(state.st_mode)) == (account.pw_uid, 0o750)

    # The configuration holds secrets: readable by the services' group only.
    for name in ("cloud_aws.ini", "cloud_gcloud.ini"):
        cloud = os.stat(CONFFILE.parent / name)
        assert (cloud.st_gid, stat.S_IMODE(cloud.st_mode)) == (grp.getgrnam("coalition").gr_gid, 0o640)
    conf = os.stat(CONFFILE)
    assert (conf.st_uid, conf.st_gid, stat.S_IMODE(conf.st_mode)) == (
        0,
        grp.getgrnam("coalition").gr_gid,
        0o640,
    )
    text = CONFFILE.read_text()
    assert "\ndatadir=/var/lib/coalition\n" in text and "[worker]" in text
    conffiles = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Conffiles}", "coalition-server"], capture_output=True, text=True
    )
    assert str(CONFFILE) in conffiles.stdout

    assert Path("/usr/share/coalition/web/index.html").is_file()
    assert Path("/usr/share/coalition/templates").is_dir()
    for page in ("coalition", "coalition-server", "coalition-worker"):
        assert Path(f"/usr/share/man/man1/{page}.1.gz").is_file()
    assert Path("/usr/share/doc/coalition-worker/examples/coalition.ini").is_file()

    # Enabled on install (the worker then waits for its ConditionPathExists).
    wants = Path("/etc/systemd/system/multi-user.target.wants")
    for name in ("coalition-server.service", "coalition-worker.service"):
        assert (wants / name).resolve() == (UNITS / name).resolve()
    assert (
        "ConditionPathExists=/etc/coalition/coalition.ini" in (UNITS / "coalition-worker.service").read_text()
    )


def test_installed_units_verify_cleanly(installed: Path, tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze", "systemd")
    # A template is verified through an instance of it.
    instance = tmp_path / "coalition-worker@gpu0.service"
    shutil.copy(UNITS / "coalition-worker@.service", instance)
    for unit in (UNITS / "coalition-server.service", UNITS / "coalition-worker.service", instance):
        out = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
        assert (out.returncode, out.stdout + out.stderr) == (0, ""), unit


def test_server_unit_is_sandboxed(installed: Path) -> None:
    analyze = require_binary("systemd-analyze", "systemd")
    out = subprocess.run(
        [analyze, "security", "--offline=true", str(UNITS / "coalition-server.service")],
        capture_output=True,
        text=True,
    )
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout).group(1))
    assert score <= 2.0, out.stdout


class Farm:
    """The installed server and worker, started from their units' command lines."""

    def __init__(self, config_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = config_dir / "coalition.ini"
        # The packaged configuration, on loopback and a free port, with the worker
        # pointed at this server.
        text = CONFFILE.read_text()
        for section, key, value in (
            ("server", "listen", "127.0.0.1"),
            ("server", "port", str(self.port)),
            ("worker", "serverUrl", self.url),
            ("worker", "name", "deb-worker"),
            ("worker", "sleep", "0.5"),
            ("worker", "interruptions", "off"),
            # The token the package generated for this server.
            ("worker", "token", Path("/etc/coalition/workertoken").read_text().strip()),
        ):
            text = set_ini(text, section, key, value)
        self.config.write_text(text)
        shutil.chown(self.config, "root", "coalition")
        self.config.chmod(0o640)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs = config_dir

    def start(self, unit_name: str) -> subprocess.Popen[bytes]:
        """What systemd does for the unit: ExecStartPre lines, then ExecStart, as User=."""
        unit = Unit(UNITS / unit_name)
        pre, start = unit.commands(self.config)
        cwd, env = unit.one("WorkingDirectory"), unit.environment()
        for argv in pre:
            done = subprocess.run(
                unit.as_user(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, f"{unit_name}: ExecStartPre {argv} failed:\n{done.stderr}"
        log = open(self.logs / f"{unit_name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            unit.as_user(start), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.processes.append(process)
        return process

    def log(self, unit_name: str) -> str:
        return (self.logs / f"{unit_name}.log").read_text(errors="replace")

    def get(self, path: str) -> object:
        with urllib.request.urlopen(self.url + path, timeout=5) as answer:
            return json.load(answer)

    def answers(self) -> bool:
        try:
            return isinstance(self.get("/api/jobs"), list)
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM, as systemd's stop sends it; SIGKILL for whatever outlives 20 s."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def farm(installed: Path, private_dir: Path) -> Iterator[Farm]:
    farm = Farm(private_dir)
    try:
        yield farm
    finally:
        farm.stop()


def test_upgrade_from_coalition_4(farm: Farm) -> None:
    """docs/deploy.md, "Upgrade from Coalition 4": the unit refuses the old database
    with advice, --migrate upgrades it, and the server then serves the old jobs."""
    from tests.store.test_migrate_c4 import fill_c4

    db = Path("/var/lib/coalition/coalition.db")
    with sqlite3.connect(db) as c4:
        fill_c4(c4.execute, "AUTOINCREMENT", "?")
    shutil.chown(db, "coalition", "coalition")
    unit = Unit(UNITS / "coalition-server.service")
    (pre,), start = unit.commands(farm.config)
    cwd, env = unit.one("WorkingDirectory"), unit.environment()
    try:
        refused = subprocess.run(
            unit.as_user(pre), cwd=cwd, env=env, capture_output=True, text=True, timeout=60
        )
        assert refused.returncode != 0 and "--migrate" in refused.stderr, refused.stdout + refused.stderr

        migrate = [*start, "--migrate", "--yes"]
        done = subprocess.run(
            unit.as_user(migrate), cwd=cwd, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0 and "Migration was successful" in done.stdout, done.stdout + done.stderr

        farm.start("coalition-server.service")
        wait_for(farm.answers, timeout=30, what="the migrated server to answer")
        frame = farm.get("/api/jobs/2")
        assert (frame["title"], frame["state"]) == ("frame 1", "FINISHED")
    finally:
        farm.stop()
        farm.processes.clear()
        for leftover in Path("/var/lib/coalition").iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()


def test_installed_server_and_worker_run_a_job(farm: Farm) -> None:
    server = farm.start("coalition-server.service")
    wait_for(lambda: farm.answers() or server.poll() is not None, timeout=30, what="the server to answer")
    assert server.poll() is None, farm.log("coalition-server.service")
    assert Path("/var/lib/coalition/coalition.db").stat().st_uid == pwd.getpwnam("coalition").pw_uid

    # The web page comes from /usr/share/coalition/web.
    with urllib.request.urlopen(farm.url + "/", timeout=5) as page:
        assert b"<html" in page.read().lower()

    farm.start("coalition-worker.service")
    request = urllib.request.Request(
        farm.url + "/api/jobs",
        data=json.dumps({"command": "echo hi", "title": "t"}).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        created = json.load(answer)
    job_id = created["id"] if isinstance(created, dict) else int(created)

    def ended() -> dict | None:
        job = farm.get(f"/api/jobs/{job_id}")
        return job if job["state"] in ("FINISHED", "ERROR") else None

    try:
        job = wait_for(ended, timeout=60, interval=0.3, what="the job to end")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{farm.log('coalition-worker.service')[-3000:]}") from None
    assert (job["state"], job["worker"]) == ("FINISHED", "deb-worker"), farm.log("coalition-worker.service")
    assert "hi" in str(farm.get(f"/api/jobs/{job_id}/log"))
    assert [w["name"] for w in farm.get("/api/workers")] == ["deb-worker"]

    # Both stop on SIGTERM, as `systemctl stop` asks them to.
    started = time.monotonic()
    farm.stop()
    assert [p.returncode for p in farm.processes] == [0, 0], farm.log("coalition-worker.service")
    assert time.monotonic() - started < 15


def test_purge_leaves_nothing(installed: Path) -> None:
    done = purge()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert installed_packages() == []
    for path in ("/etc/coalition", "/var/lib/coalition", "/usr/share/coalition", "/usr/bin/coalition-server"):
        assert not os.path.lexists(path), path
    wants = Path("/etc/systemd/system/multi-user.target.wants")
    assert not list(wants.glob("coalition*")), list(wants.glob("coalition*"))
    leftover = subprocess.run(["pgrep", "-u", "coalition"], capture_output=True, text=True).stdout.split()
    assert leftover == [], f"processes of the coalition user still running: {leftover}"
