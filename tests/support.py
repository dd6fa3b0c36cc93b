"""Shared helpers for the test suite: the strict-skip policy and waiting on conditions."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

# CI sets COALITION_STRICT=1: a test that lacks a system dependency then fails instead of
# skipping, so a green CI run really ran everything (dramatiq's policy).
STRICT = os.environ.get("COALITION_STRICT") == "1"


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
