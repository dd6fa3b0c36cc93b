"""Woken by the server when work appears, instead of waiting for the next sync.

An idle worker syncs at the cadence the server sets (twice `sleep` when idle: 4 s by
default), so a job submitted to an idle farm used to wait 2 s on average before it started.
The courier now tells the server, in each sync of an idle worker, where it listens: a UDP
port on the address it reaches the server from, and a random token. When jobs become ready,
the server sends that token to the port (docs/protocol.md, "Wake-ups"), and the courier
syncs at once.

A wake-up only brings a sync forward: a lost or blocked datagram (a firewall, NAT, a proxy in
between) costs what it cost before, the next sync. A datagram without our token is ignored,
and wake-ups are rate-limited, so a flood makes at most ten syncs a second.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("coalition.worker")

PREFIX = b"coalition-wake "
MIN_GAP = 0.1  # seconds between two syncs wake-ups bring forward (more wait, none is lost)


def local_address(host: str, port: int) -> tuple[int, str]:
    """The address family and local address this host reaches `host:port` from (a UDP
    `connect` picks the route and sends nothing)."""
    family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(addr)
        return family, probe.getsockname()[0]


class WakeListener:
    """A UDP socket the server may wake this worker on; `on_wake` is called (from the
    listener's thread) for each datagram that carries our token, at most every `MIN_GAP`."""

    def __init__(
        self,
        server: tuple[str, int],
        on_wake: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        family, ip = local_address(*server)
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.bind((ip, 0))
        self.ip, self.port = ip, self._sock.getsockname()[1]
        self.token = secrets.token_hex(16)
        self._expected = PREFIX + self.token.encode("ascii")
        self._on_wake = on_wake
        self._clock = clock
        self._last = float("-inf")
        self._pending = False  # a wake-up came too soon after the last: acted on later
        self.wakes = 0  # wake-ups acted on (tests, logs)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="wake", daemon=True)

    def start(self) -> WakeListener:
        """Start listening (a daemon thread)."""
        self._thread.start()
        return self

    def running(self) -> bool:
        """Whether the listening thread runs."""
        return self._thread.is_alive()

    def describe(self) -> dict[str, Any]:
        """The sync body's `wake`: where and with what the server may wake us."""
        return {"ip": self.ip, "port": self.port, "token": self.token}

    def take(self, data: bytes) -> bool:
        """Act on one datagram: whether it carries our token. A wake-up that comes too soon
        after the last one is kept for later (see `due`), not lost: a submission and the
        start of its group come milliseconds apart, and the second is the one with work."""
        if not secrets.compare_digest(data, self._expected):
            return False
        self._pending = True
        self.fire()
        return True

    def due(self) -> float | None:
        """Seconds until a kept wake-up may act (None: none is kept)."""
        if not self._pending:
            return None
        return max(0.0, self._last + MIN_GAP - self._clock())

    def fire(self) -> bool:
        """Act on a kept wake-up if its time has come; whether it did."""
        if not self._pending or self._clock() - self._last < MIN_GAP:
            return False
        self._pending = False
        self._last = self._clock()
        self.wakes += 1
        self._on_wake()
        return True

    def close(self) -> None:
        """Stop listening."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # ends the blocked recvfrom
        self._sock.close()

    def _run(self) -> None:
        while True:
            try:
                self._sock.settimeout(self.due())
                data, _ = self._sock.recvfrom(256)
            except TimeoutError:
                data = b""  # a kept wake-up's time has come
            except OSError:
                return  # closed
            if self._closed:
                return  # the shutdown ended the recvfrom (with nothing)
            try:
                if not data or not self.take(data):
                    self.fire()
            except Exception:  # noqa: BLE001 - a listener must outlive one bad wake-up
                log.exception("cannot act on a wake-up")


def open_listener(url_host: str, url_port: int, on_wake: Callable[[], None]) -> WakeListener | None:
    """A started listener for the server at `url_host:url_port`, or None (with a warning)
    where this host cannot listen: the worker then waits for its syncs, as before."""
    try:
        return WakeListener((url_host, url_port), on_wake).start()
    except OSError as exc:
        log.warning("not listening for wake-ups (jobs start at the next sync): %s", exc)
        return None
