"""Wake idle workers when work appears (docs/protocol.md, "Wake-ups").

An idle worker says in its sync where it listens for a wake-up (a UDP port on the address
the server sees it from, and a token). When an operator's change may have made jobs ready
(a submission, a start, a reset...), the server sends the token to up to `WAKE_MAX` of the
idle workers it knows, and each syncs at once instead of at its next cadence.

What the server remembers is in memory, per server process: a worker is known here after
its first idle sync with this server, and forgotten once woken, busy, or silent. With several
servers, a change made through one wakes the workers that sync with that one; the others
start the work at their next sync, as before. Datagrams go only to the address a worker's
request came from (never to a third party), at most every `WAKE_GAP` to one worker.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("coalition.server")

PREFIX = b"coalition-wake "
WAKE_MAX = 64  # wake-ups a second, in all: the rest start the work at their next sync
WAKE_GAP = 1.0  # seconds between two wake-ups of a worker that has not synced meanwhile
ROUND_GAP = 0.05  # seconds between two rounds: a stream of changes makes one round per gap
FORGET_AFTER = 120.0  # seconds without an idle sync before a worker is not woken any more
MAX_KNOWN = 100_000  # idle workers remembered at once (a flood of made-up hosts stops there)


@dataclass(frozen=True)
class Listener:
    """Where and with what one idle worker process may be woken."""

    ip: str
    port: int
    token: str
    seen: float  # when its last idle sync came
    woken: float = float("-inf")  # when it was last woken


def parse(value: Any, remote_ip: str, now: float) -> Listener | None:
    """A sync body's `wake` as a Listener; None if the worker's own address is not the one
    its request came from (a proxy or NAT between us: a datagram would go elsewhere).
    Raises ValueError on a malformed value."""
    if not isinstance(value, Mapping):
        raise ValueError("wake must be an object {ip, port, token}")
    ip, port, token = value.get("ip"), value.get("port"), value.get("token")
    try:
        address = ipaddress.ip_address(ip) if isinstance(ip, str) else None
    except ValueError:
        address = None
    if address is None:
        raise ValueError("wake.ip must be the worker's IP address")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError("wake.port must be a UDP port number")
    if not isinstance(token, str) or not 16 <= len(token) <= 64 or not token.isascii() or not token.isalnum():
        raise ValueError("wake.token must be 16 to 64 letters and digits")
    if address != _unmapped(remote_ip):
        return None
    return Listener(str(address), port, token, now)


def _unmapped(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # A server listening on "::" sees an IPv4 client as ::ffff:a.b.c.d.
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def choose(
    listeners: Mapping[str, Listener], now: float, most: int = WAKE_MAX, gap: float = WAKE_GAP
) -> list[str]:
    """Which idle workers to wake now: seen lately, and synced since their last wake-up (or
    woken `gap` seconds ago: the datagram may have been lost), the most recently seen first
    (the likeliest to be idle still), at most `most`."""
    fresh = [
        (item.seen, key)
        for key, item in listeners.items()
        if now - item.seen <= FORGET_AFTER and (item.seen > item.woken or now - item.woken >= gap)
    ]
    fresh.sort(reverse=True)
    return [key for _, key in fresh[:most]]


class Waker:
    """The idle workers this server knows, and the thread that wakes them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_known: int = MAX_KNOWN) -> None:
        self._clock = clock
        self._max_known = max_known
        self._lock = threading.Lock()
        self._idle: dict[str, Listener] = {}
        self._due = threading.Event()
        self._stopped = threading.Event()
        self._budget, self._budget_at = float(WAKE_MAX), clock()  # wake-ups left, refilled
        self._stop = False
        self.sent = 0  # datagrams sent (tests, metrics)
        self._thread: threading.Thread | None = None

    def idle(self, host: str, listener: Listener) -> None:
        """`host` synced idle and may be woken at `listener`."""
        with self._lock:
            known = self._idle.get(host)
            if known is None and len(self._idle) >= self._max_known:
                return  # full (forgotten ones are dropped at the next wake-up): it syncs anyway
            woken = known.woken if known is not None else float("-inf")
            self._idle[host] = Listener(listener.ip, listener.port, listener.token, listener.seen, woken)

    def busy(self, host: str) -> None:
        """`host` has work (or asked for none): no wake-up for it."""
        with self._lock:
            self._idle.pop(host, None)

    def poke(self) -> None:
        """Work may have appeared: wake idle workers soon (from the waker's thread)."""
        self._due.set()

    def known(self) -> int:
        """Idle workers known here."""
        with self._lock:
            return len(self._idle)

    def start(self) -> None:
        """Start the waker's thread."""
        self._thread = threading.Thread(target=self._run, name="waker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the waker's thread."""
        self._stop = True
        self._stopped.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join(5)

    def wake_now(self, send: Callable[[Listener], None]) -> int:
        """Wake the workers `choose` picks, through `send`; how many."""
        now = self._clock()
        with self._lock:
            for key in [k for k, item in self._idle.items() if now - item.seen > FORGET_AFTER]:
                del self._idle[key]
            # A steady stream of changes must not make the idle farm sync in a loop.
            elapsed = max(0.0, now - self._budget_at)
            self._budget = min(float(WAKE_MAX), self._budget + elapsed * WAKE_MAX / WAKE_GAP)
            self._budget_at = now
            keys = choose(self._idle, now, int(self._budget))
            self._budget -= len(keys)
            chosen = [self._idle[key] for key in keys]
            for key, item in zip(keys, chosen, strict=True):
                self._idle[key] = Listener(item.ip, item.port, item.token, item.seen, now)
        for item in chosen:
            send(item)
        return len(chosen)

    def _run(self) -> None:
        socks: dict[int, socket.socket] = {}

        def send(item: Listener) -> None:
            family = socket.AF_INET6 if ":" in item.ip else socket.AF_INET
            try:
                sock = socks.get(family)
                if sock is None:
                    sock = socks[family] = socket.socket(family, socket.SOCK_DGRAM)
                sock.sendto(PREFIX + item.token.encode("ascii"), (item.ip, item.port))
                self.sent += 1
            except OSError as exc:  # unreachable, or no such family here: it syncs anyway
                log.debug("cannot wake %s:%d: %s", item.ip, item.port, exc)

        try:
            while True:
                self._due.wait()
                self._due.clear()
                if self._stop:
                    return
                try:
                    self.wake_now(send)
                except Exception:  # noqa: BLE001 - the waker must outlive one bad round
                    log.exception("waking idle workers failed")
                # A busy farm's endjobs poke hundreds of times a second; each round looks at
                # every idle worker known, so the pokes of the next ROUND_GAP make one round.
                self._stopped.wait(ROUND_GAP)
        finally:
            for sock in socks.values():
                with contextlib.suppress(OSError):
                    sock.close()
