"""UDP discovery: a worker with no server URL broadcasts `coalition` on the server port and
takes the sender of the `roxor` reply as its server (Coalition 4's protocol, kept)."""

from __future__ import annotations

import logging
import socket
import threading

log = logging.getLogger("coalition.discovery")

QUERY = b"coalition"
REPLY = b"roxor"


class DiscoveryResponder:
    """Answers discovery datagrams on (address, port) from a daemon thread."""

    def __init__(self, address: str, port: int):
        self.address = address
        self.port = port
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve; a port already taken is logged, not fatal (HTTP still works)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.address, self.port))
        except OSError as exc:
            log.warning(
                "discovery: cannot listen on UDP %s:%d (%s); workers need a server URL",
                self.address,
                self.port,
                exc,
            )
            sock.close()
            return
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="discovery", daemon=True)
        self._thread.start()
        log.info("discovery: answering on UDP %s:%d", self.address, self.port)

    def _serve(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                data, peer = sock.recvfrom(512)
            except OSError:
                return  # closed by stop()
            # Coalition 4 answered any datagram; answering only the query keeps the server
            # from being a reflector for stray or spoofed traffic.
            if data.strip() == QUERY:
                try:
                    sock.sendto(REPLY, peer)
                except OSError as exc:
                    log.debug("discovery: cannot answer %s: %s", peer, exc)

    def stop(self) -> None:
        """Close the socket; the thread ends."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
