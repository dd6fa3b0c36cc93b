"""Finding the server without a URL: Coalition 4's UDP broadcast.

The worker sends the datagram `coalition` to the broadcast address on the Coalition port; a
server answers `roxor`, and the sender's address becomes `http://<sender>:<port>`. Unlike
Coalition 4, the broadcast address and the port are settings, and replies that are not
`roxor` are ignored.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

log = logging.getLogger("coalition.worker")

QUERY = b"coalition"
REPLY = b"roxor"


def probe(broadcast: str, port: int, timeout: float = 1.0) -> str | None:
    """Broadcast one query; the IP of the first server that answers within `timeout`, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.settimeout(timeout)
        try:
            sock.sendto(QUERY, (broadcast, port))
        except OSError as exc:
            log.warning("discovery: cannot send to %s:%d: %s", broadcast, port, exc)
            return None
        while True:
            try:
                data, (host, _port) = sock.recvfrom(512)
            except TimeoutError:
                return None
            except OSError:
                return None
            if data.strip() == REPLY:
                return host


def discover(
    broadcast: str,
    port: int,
    should_stop: Callable[[], bool] = lambda: False,
    wait: Callable[[float], None] | None = None,
    timeout: float = 1.0,
    max_delay: float = 10.0,
) -> str | None:
    """Broadcast until a server answers; its URL, or None if `should_stop()` became true."""
    delay = timeout
    announced = False
    while not should_stop():
        host = probe(broadcast, port, timeout)
        if host:
            url = f"http://{host}:{port}"
            log.info("discovery: found the server at %s", url)
            return url
        if not announced:
            log.info("discovery: no answer to a broadcast on %s:%d yet, still trying", broadcast, port)
            announced = True
        if wait is not None:
            wait(delay)
        delay = min(max_delay, delay * 2)
    return None
