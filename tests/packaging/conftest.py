"""Helpers for the deployment tests: build the Debian packages once per session, read
systemd units, and run an installed unit's commands by hand (PID 1 is not systemd on CI).

These tests change the machine (apt-get install/purge, a `coalition` system user), so they
need root and refuse to run where Coalition packages are already installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import require

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("python3-coalition", "coalition-server", "coalition-worker")
# Debian's tools only: a virtualenv's python3 first on PATH breaks dh and pybuild.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def installed_packages() -> list[str]:
    """Which of our packages dpkg knows as installed (or half-installed)."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *PACKAGES],
        capture_output=True,
        text=True,
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[1:] not in ([], ["not-installed"])]


def require_root_and_apt() -> None:
    """The machine-changing tests: root, apt and dpkg, and no Coalition install to destroy."""
    require(os.geteuid() == 0, "these tests install and purge Debian packages: run them as root")
    require(
        shutil.which("apt-get") is not None and shutil.which("dpkg-query") is not None, "not a Debian system"
    )
    present = installed_packages()
    require(not present, f"{', '.join(present)} already installed here: the tests would purge them")


def require_build_tools() -> None:
    """debhelper and friends, and the build dependencies of packaging/debian/control."""
    require(shutil.which("dpkg-buildpackage") is not None, "apt-get install dpkg-dev debhelper")
    check = subprocess.run(
        ["dpkg-checkbuilddeps", str(REPO / "packaging/debian/control")],
        capture_output=True,
        text=True,
        env={"PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8"},
    )
    missing = (check.stderr.strip().splitlines() or [""])[-1]
    require(check.returncode == 0, f"build dependencies missing ({missing}): see packaging/build-debs")


@pytest.fixture(scope="session")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three .deb files (and the .changes), built once from this working tree."""
    require_build_tools()
    out = tmp_path_factory.mktemp("debs")
    build = subprocess.run(
        [str(REPO / "packaging/build-debs"), str(out)],
        capture_output=True,
        text=True,
        env={"PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8", "TMPDIR": tempfile.gettempdir()},
        timeout=300,
    )
    assert build.returncode == 0, (
        f"packaging/build-debs failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    )
    names = sorted(p.name.split("_")[0] for p in out.glob("*.deb"))
    assert names == sorted(PACKAGES), names
    return out


def apt(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """apt-get, non-interactive, output captured for the assertion message."""
    env = {"PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", "-y", "-q", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def purge() -> subprocess.CompletedProcess[str]:
    """Remove our packages and their configuration, whatever state they are in."""
    present = installed_packages()
    if not present:
        return subprocess.CompletedProcess([], 0, "", "")
    return apt("purge", *present)


class Unit:
    """The keys of a systemd unit file that our units use, as systemd reads them."""

    def __init__(self, path: Path):
        self.path = path
        self.values: dict[str, list[str]] = {}
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line[0] in "#;[":
                continue
            key, _, value = line.partition("=")
            self.values.setdefault(key.strip(), []).append(value.strip())

    def one(self, key: str) -> str:
        (value,) = self.values[key]
        return value

    def all(self, key: str) -> list[str]:
        return self.values.get(key, [])

    def commands(self, config: Path) -> tuple[list[list[str]], list[str]]:
        """ExecStartPre lines and ExecStart, with the `-c` file swapped for `config`."""

        def argv(line: str) -> list[str]:
            assert not any(c in line for c in "\"'\\%"), f"{self.path}: needs systemd's quoting: {line}"
            words = line.split()
            at = words.index("-c")
            words[at + 1] = str(config)
            return words

        return [argv(line) for line in self.all("ExecStartPre")], argv(self.one("ExecStart"))

    def environment(self) -> dict[str, str]:
        """A service's environment: systemd's minimal one plus the unit's Environment=."""
        env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}
        for line in self.all("Environment"):
            for pair in line.split():
                key, _, value = pair.partition("=")
                env[key] = value
        return env

    def as_user(self, argv: list[str]) -> list[str]:
        """`argv` run as the unit's User= and Group= with that user's groups, as systemd does."""
        user, group = self.one("User"), self.one("Group")
        return ["setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups", "--", *argv]


def set_ini(text: str, section: str, key: str, value: str) -> str:
    """Set `key` in `[section]`: replace its (maybe commented-out) first line, else add it."""
    lines = text.splitlines()
    start = lines.index(f"[{section}]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    for i in range(start + 1, end):
        if lines[i].lstrip("#;").split("=", 1)[0] == key and "=" in lines[i]:
            lines[i] = f"{key}={value}"
            break
    else:
        lines.insert(start + 1, f"{key}={value}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A directory the `coalition` user can read (pytest's own tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="coalition-test-"))
    try:
        shutil.chown(path, "root", "coalition")
        path.chmod(0o750)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- a signed apt repository, served on a private LAN (tests/nspawn.py) ----------------------
@dataclass
class ArchiveKey:
    """A throwaway gpg signing key in its own keyring (never the user's)."""

    home: Path
    fingerprint: str

    def env(self) -> dict[str, str]:
        return {"PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8", "GNUPGHOME": str(self.home)}


@pytest.fixture(scope="session")
def archive_key() -> Iterator[ArchiveKey]:
    """An ed25519 key for signing test repositories; its gpg-agent is stopped afterwards."""
    require(shutil.which("gpg") is not None, "`gpg` not found: apt-get install gnupg")
    # Short path: gpg-agent's socket lives in GNUPGHOME, and unix socket paths are short.
    home = Path(tempfile.mkdtemp(prefix="c13gpg.", dir="/tmp"))
    home.chmod(0o700)
    key = ArchiveKey(home, "")
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Coalition test archive",
            "ed25519",
            "sign",
            "never",
        ],
        check=True,
        capture_output=True,
        env=key.env(),
        timeout=60,
    )
    listing = subprocess.run(
        ["gpg", "--list-secret-keys", "--with-colons"],
        check=True,
        capture_output=True,
        text=True,
        env=key.env(),
    ).stdout
    key.fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    try:
        yield key
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=key.env(), capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def build_repo(repo: Path, key: ArchiveKey, debs: list[Path]) -> None:
    """packaging/build-repo, as an operator runs it."""
    require(shutil.which("reprepro") is not None, "`reprepro` not found: apt-get install reprepro")
    done = subprocess.run(
        [str(REPO / "packaging/build-repo"), str(repo), key.fingerprint, *map(str, debs)],
        capture_output=True,
        text=True,
        env=key.env(),
        timeout=120,
    )
    assert done.returncode == 0, f"packaging/build-repo failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="session")
def debs_next(tmp_path_factory: pytest.TempPathFactory, debs: Path) -> Path:
    """The same packages rebuilt as version 5.0.1, for upgrades."""
    out = tmp_path_factory.mktemp("debs-next")
    build = subprocess.run(
        [str(REPO / "packaging/build-debs"), str(out)],
        capture_output=True,
        text=True,
        env={
            "PATH": SYSTEM_PATH,
            "LC_ALL": "C.UTF-8",
            "TMPDIR": tempfile.gettempdir(),
            "COALITION_DEB_VERSION": NEXT_VERSION,
            "DEB_BUILD_OPTIONS": "nocheck",
        },
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return out


NEXT_VERSION = "5.0.1"
