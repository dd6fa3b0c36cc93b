"""UDP discovery on the loopback network only (127.255.255.255): nothing leaves the host."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from coalition.worker.discovery import discover, probe


@pytest.fixture
def responder() -> Iterator[tuple[int, list[bytes]]]:
    """A minimal server side: answers `roxor` to `coalition` (and junk to anything else)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))  # broadcasts reach sockets bound to the wildcard address only
    port = sock.getsockname()[1]
    sock.settimeout(0.1)
    seen: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            seen.append(data)
            sock.sendto(b"roxor" if data == b"coalition" else b"junk", peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port, seen
    stop.set()
    thread.join(5)
    sock.close()


def test_probe_and_discover(responder: tuple[int, list[bytes]]) -> None:
    port, seen = responder
    assert probe("127.255.255.255", port, timeout=2) == "127.0.0.1"
    assert discover("127.255.255.255", port) == f"http://127.0.0.1:{port}"
    assert seen[0] == b"coalition"


def test_no_answer() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        silent = s.getsockname()[1]
        assert probe("127.255.255.255", silent, timeout=0.2) is None
        calls = iter([False, False, True])
        waits: list[float] = []
        assert discover("127.255.255.255", silent, lambda: next(calls), waits.append, timeout=0.1) is None
        assert waits == [0.1, 0.2]  # backing off between broadcasts
