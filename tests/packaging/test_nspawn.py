"""tests/nspawn.py itself: containers boot a real systemd, talk over their private LAN and
nothing else, and do not disturb each other or their cached root."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import nspawn

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root() -> Path:
    nspawn.require_nspawn()
    return nspawn.debian_root()


def test_two_hosts_on_a_private_lan(root: Path) -> None:
    with nspawn.private_lan("c13") as lan:
        with nspawn.boot(root, nspawn.machine_name("c13-a"), lan=lan) as a:
            with nspawn.boot(root, nspawn.machine_name("c13-b"), lan=lan) as b:
                assert a.run("systemctl", "is-system-running").stdout.strip() == "running"
                assert a.run("hostname").stdout.strip() == a.name
                # b reaches a's sshd over the LAN, and this machine reaches it from the LAN.
                probe = f"import socket; print(socket.create_connection(('{a.ip}', 22), 5).recv(7))"
                assert "SSH-2.0" in b.run("python3", "-c", probe).stdout
                banner = lan.run(["python3", "-c", probe], timeout=30)
                assert "SSH-2.0" in banner.stdout, banner.stderr
                # No way out: the only route is the LAN.
                assert "default" not in b.run("ip", "route").stdout

                a.put("/etc/systemd/system/idle.service", "[Service]\nExecStart=/bin/sleep infinity\n")
                a.run("systemctl", "daemon-reload")
                a.run("systemctl", "start", "idle")
                b.put("/etc/marker", "b only\n")
            # Halting b left a's service running: each container has its own cgroup.
            assert a.run("systemctl", "is-active", "idle").stdout.strip() == "active"
            assert not a.exists("/etc/marker")
    # The containers wrote into their overlays, never into the cached root.
    assert not (root / "etc/marker").exists()
    assert not (root / "etc/systemd/system/idle.service").exists()


def test_a_command_that_fails_says_what_it_printed(root: Path) -> None:
    with nspawn.boot(root, nspawn.machine_name("c13-c")) as host:
        assert host.ip is None and "eth0" not in host.run("ip", "-o", "link").stdout
        with pytest.raises(AssertionError, match="(?s)exited 3.*oops"):
            host.sh("echo oops >&2; exit 3")
        assert host.sh("exit 4", check=False).returncode == 4


def test_a_root_that_cannot_boot_fails_quickly(tmp_path: Path, root: Path) -> None:
    # An empty directory has no init: nspawn exits and boot() says so instead of hanging.
    with pytest.raises(AssertionError, match="exited early|not booted"):
        with nspawn.boot(tmp_path, nspawn.machine_name("c13-d"), timeout=30):
            pass
