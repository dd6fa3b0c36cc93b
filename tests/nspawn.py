"""Debian 12 test hosts that boot a real systemd, under systemd-nspawn (tooling.md §6b).

The CI machine's PID 1 is not systemd, but a container can boot one. This module is the
one place that knows how; the deployment tests (tests/packaging/) and the cloud-boot tests
use it. The interface is meant to stay stable:

    require_nspawn()                      skip (or fail under COALITION_STRICT=1) without the tools
    root = debian_root(extra=("cloud-init",))   build once, then reuse, a cached root
    with private_lan("c13") as lan:       a network namespace with a bridge (10.13.0.0/24)
        with boot(root, "c13-srv", lan=lan) as host:   a booted container on that LAN
            host.run("systemctl", "start", "coalition-server")      -> CompletedProcess
            host.sh("journalctl -u coalition-server | tail")        -> CompletedProcess
            host.put("/etc/coalition/x.ini", "text", mode=0o640)
            host.read("/var/log/syslog"); host.ip  ->  "10.13.0.10"
        lan.run(["curl", "http://10.13.0.10:19211/"])   a host command inside the LAN

Roots are cached under /var/cache/coalition-test/roots/<hash>, keyed on the suite, the
package list and RECIPE, so CI builds each once and every later run boots in seconds.
Containers never write to a cached root: each boots with --volatile=overlay (the root is
the read-only lower layer of a tmpfs overlay), so a container's changes vanish with it.

Network hygiene: a container sees only what we give it. Without `lan` it has loopback
only (--private-network); with it, a veth into the LAN's namespace, whose addresses exist
inside our namespaces only. The cached roots carry no apt sources (they are removed after
the build), so nothing inside a container tries to reach a Debian mirror.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import require

CACHE = Path(os.environ.get("COALITION_TEST_CACHE", "/var/cache/coalition-test"))
SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# What every test host has: a booting systemd, what Ansible needs on a target (python3,
# python3-apt, sudo, sshd), and every Debian dependency of our packages, so that
# `apt install coalition-server` from a local repository needs no Debian mirror.
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "procps",
    "curl",
    "sqlite3",
    "ca-certificates",
    "openssh-server",
    "sudo",
    "python3",
    "python3-apt",
    "adduser",
    "python3-cherrypy3",
    "python3-requests",
    "python3-jinja2",
    "python3-pymysql",
    "python3-ldap3",
    "python3-yaml",
)
# Bump when the way a root is made changes (hooks, options), to rebuild every cache.
RECIPE = 2
BOOT_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
# A clean environment for commands inside a container: what a root login shell gets.
INSIDE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "DEBIAN_FRONTEND": "noninteractive",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}


def require_nspawn() -> None:
    """Skip loudly (fail under COALITION_STRICT=1) unless this machine can boot containers."""
    require(os.geteuid() == 0, "systemd-nspawn containers need root")
    for tool, package in (
        ("systemd-nspawn", "systemd-container"),
        ("mmdebstrap", "mmdebstrap"),
        ("nsenter", "util-linux"),
        ("ip", "iproute2"),
    ):
        require(shutil.which(tool) is not None, f"`{tool}` not found: apt-get install {package}")
    require(_cgroup_base() is not None, "no writable systemd cgroup hierarchy under /sys/fs/cgroup")


# -- roots ----------------------------------------------------------------------------------
def root_key(extra: Sequence[str] = ()) -> str:
    """The cache key of a root: what goes into it, and how it is made."""
    packages = sorted(set(BASE_PACKAGES) | set(extra))
    text = "\n".join([f"recipe {RECIPE}", SUITE, *MIRRORS, *packages])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def debian_root(extra: Sequence[str] = (), timeout: float = 1200.0) -> Path:
    """A Debian 12 root with BASE_PACKAGES and `extra`, built by mmdebstrap on first use.

    Concurrent callers (two test sessions on one machine) wait on a lock file rather than
    build it twice; a half-built root is never visible (built aside, then renamed)."""
    roots = CACHE / "roots"
    roots.mkdir(parents=True, exist_ok=True)
    key = root_key(extra)
    final = roots / key
    with open(roots / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "etc/os-release").exists():
            return final
        work = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=roots))
        try:
            _mmdebstrap(work / "root", sorted(set(BASE_PACKAGES) | set(extra)), timeout)
            (work / "root").rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def _mmdebstrap(target: Path, packages: list[str], timeout: float) -> None:
    # The hooks leave a root that boots offline: no apt sources (nothing inside ever
    # reaches for a mirror), no machine-id (nspawn gives each boot its own), no hostname,
    # and no login prompt (tests enter with nsenter, Ansible with an ssh key).
    customize = [
        'rm -f "$1"/etc/apt/sources.list; rm -rf "$1"/var/lib/apt/lists/*',
        ': > "$1"/etc/machine-id',
        # No /etc/hostname: the container is then named after its machine (-M).
        'rm -f "$1"/etc/hostname',
        # The console would otherwise ask for a login on /dev/console forever.
        'systemctl --root="$1" mask console-getty.service getty@tty1.service',
    ]
    argv = [
        "mmdebstrap",
        "--variant=apt",
        "--quiet",
        "--include=" + ",".join(packages),
        *[f"--customize-hook={hook}" for hook in customize],
        SUITE,
        str(target),
        *MIRRORS,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"mmdebstrap failed ({done.returncode}):\n{done.stderr[-4000:]}")


# -- cgroups ----------------------------------------------------------------------------------
def _cgroup_base() -> Path | None:
    """Where to make a container's own cgroup: the unified (v2) hierarchy when it is the
    only one, else the named systemd v1 hierarchy of a hybrid layout (this CI machine)."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.procs").exists():
        return root
    if (root / "systemd/cgroup.procs").exists():
        return root / "systemd"
    return None


def _enter_cgroup(path: str) -> None:
    # Runs in the child between fork and exec: "0" moves the writing process itself.
    with open(os.path.join(path, "cgroup.procs"), "w") as procs:
        procs.write("0")


def _kill_cgroup(path: Path, deadline: float) -> None:
    """SIGKILL whatever is left in a container's cgroup tree, then remove the tree."""
    while path.exists():
        pids = [int(pid) for procs in path.rglob("cgroup.procs") for pid in procs.read_text().split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Remove the deepest directories first; a busy one fails until its processes die.
        for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            path.rmdir()
        if not path.exists() or time.monotonic() > deadline:
            return
        time.sleep(0.05)


# -- network ------------------------------------------------------------------------------------
@dataclass
class Lan:
    """A private network: a namespace holding a bridge at 10.13.0.1/24 into which each
    container's own namespace is wired with a veth pair."""

    name: str
    subnet: str = "10.13.0"
    hosts: list[str] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        """The LAN namespace's own address: where host commands run by `run` come from."""
        return f"{self.subnet}.1"

    def attach(self, machine: str) -> tuple[str, str]:
        """Create a namespace for `machine` wired to the bridge; returns (path, address)."""
        index = len(self.hosts)
        ns = f"{self.name}-{index}"
        ip = f"{self.subnet}.{10 + index}"
        _ip("netns", "add", ns)
        self.hosts.append(ns)
        _ip("-n", self.name, "link", "add", f"v{index}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", self.name, "link", "set", f"v{index}", "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return f"/run/netns/{ns}", ip

    def run(self, argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
        """A command of this machine (ansible-playbook, curl...) run inside the LAN."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], **kw)  # type: ignore[call-overload]


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@contextlib.contextmanager
def private_lan(prefix: str = "c13") -> Iterator[Lan]:
    """A fresh LAN namespace (named `<prefix>-<random>`), deleted with its hosts' namespaces."""
    lan = Lan(f"{prefix}-{secrets.token_hex(3)}")
    _ip("netns", "add", lan.name)
    try:
        _ip("-n", lan.name, "link", "set", "lo", "up")
        _ip("-n", lan.name, "link", "add", "br0", "type", "bridge")
        _ip("-n", lan.name, "addr", "add", f"{lan.gateway}/24", "dev", "br0")
        _ip("-n", lan.name, "link", "set", "br0", "up")
        yield lan
    finally:
        for ns in [*lan.hosts, lan.name]:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


# -- containers -----------------------------------------------------------------------------------
class Container:
    """A booted container: run commands in it, copy files in, read files back."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log: Path, ip: str | None):
        self.name = name
        self.process = process
        self.log = log
        self.ip = ip
        self.leader = 0

    @property
    def rootfs(self) -> Path:
        """The container's file system as seen from this machine (its mount namespace)."""
        return Path(f"/proc/{self.leader}/root")

    def run(
        self, *argv: str, check: bool = True, timeout: float = 120.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`argv` inside the container, as root, in a clean environment; output captured.
        With check (the default) a non-zero exit raises, showing the output."""
        env_argv = ["env", "-i", *[f"{k}={v}" for k, v in INSIDE_ENV.items()]]
        done = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "--", *env_argv, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            cwd="/",
            # Its own session: a `kill 0` or a stray signal inside never reaches the test.
            start_new_session=True,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{self.name}: {' '.join(argv)} exited {done.returncode}\n"
                f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
            )
        return done

    def sh(self, script: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """A shell script inside the container (`set -e`)."""
        return self.run("sh", "-ec", script, check=check, timeout=timeout)

    def put(self, path: str, content: str | bytes, mode: int = 0o644, owner: str = "root:root") -> None:
        """Write a file inside the container (parent directories are created)."""
        target = self.rootfs / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
        self.run("chown", owner, path)
        self.run("chmod", f"{mode:o}", path)

    def copy_in(self, source: Path, path: str) -> None:
        """Copy a file or a directory tree of this machine into the container."""
        target = self.rootfs / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)

    def read(self, path: str) -> str:
        """A file of the container."""
        return (self.rootfs / path.lstrip("/")).read_text(errors="replace")

    def exists(self, path: str) -> bool:
        """Whether a path exists inside the container (symlinks are not followed)."""
        return os.path.lexists(self.rootfs / path.lstrip("/"))

    def console(self) -> str:
        """What the container printed on its console (boot messages)."""
        return self.log.read_text(errors="replace")

    def wait_until_booted(self, timeout: float = BOOT_TIMEOUT) -> str:
        """Wait until `systemctl is-system-running` says running or degraded; returns it."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name}: systemd-nspawn exited early:\n{self.console()[-3000:]}")
            if not self.leader:
                self.leader = _leader(self.process.pid)
            if self.leader:
                # --wait blocks until start-up is over; before systemd's bus exists it
                # returns at once, hence the loop.
                left = max(1.0, deadline - time.monotonic())
                with contextlib.suppress(subprocess.TimeoutExpired):
                    state = self.run(
                        "systemctl", "is-system-running", "--wait", check=False, timeout=left
                    ).stdout
                    state = state.strip()
                if state in ("running", "degraded"):
                    return state
            time.sleep(0.1)
        raise AssertionError(
            f"{self.name}: not booted after {timeout}s (state {state!r}):\n{self.console()[-3000:]}"
        )


def _leader(nspawn_pid: int) -> int:
    """The container's PID 1 as this machine sees it: the child of systemd-nspawn that
    runs systemd (nspawn's intermediate child exits once the container is set up)."""
    try:
        children = Path(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children").read_text().split()
    except FileNotFoundError:
        return 0
    for child in children:
        try:
            if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                return int(child)
        except FileNotFoundError:
            continue
    return 0


def machine_name(prefix: str) -> str:
    """A unique machine name (also the container's hostname)."""
    return f"{prefix}-{secrets.token_hex(3)}"


@contextlib.contextmanager
def boot(
    root: Path,
    name: str,
    lan: Lan | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = BOOT_TIMEOUT,
) -> Iterator[Container]:
    """Boot `root` as machine `name` (unique: see machine_name) and wait for systemd.

    Always stopped and cleaned up on exit: SIGTERM to nspawn (a clean halt), a second
    one after STOP_TIMEOUT, then SIGKILL to whatever is left in its cgroup."""
    base = _cgroup_base()
    assert base is not None, "call require_nspawn() first"
    # Its own cgroup: nspawn --keep-unit hands the cgroup it runs in to the container's
    # systemd, and two containers sharing one would kill each other's units on halt.
    cgroup = base / f"coalition-test/{name}"
    cgroup.mkdir(parents=True)
    argv = [
        "systemd-nspawn",
        "--quiet",
        "--boot",
        "--register=no",
        "--keep-unit",
        "--volatile=overlay",
        f"--directory={root}",
        f"--machine={name}",
        "--console=read-only",
        "--link-journal=no",
        "--timezone=off",
    ]
    ip = None
    if lan is None:
        argv.append("--private-network")
    else:
        path, ip = lan.attach(name)
        argv.append(f"--network-namespace-path={path}")
    argv.extend(extra_args)
    logdir = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=tempfile.gettempdir()))
    log = logdir / "console.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: _enter_cgroup(str(cgroup)),  # noqa: PLW1509 - no threads touched
        )
    container = Container(name, process, log, ip)
    try:
        container.wait_until_booted(timeout)
        yield container
    finally:
        _stop(process)
        _kill_cgroup(cgroup, time.monotonic() + STOP_TIMEOUT)
        shutil.rmtree(logdir, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """A clean halt if the container allows it, a forced one if not."""
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT if sig == signal.SIGTERM else 10)
