"""A connection's reading and writing ends, for cheroot, without its pure-Python io.

cheroot reads requests through `_pyio.BufferedReader` ("prefer slower Python-based io
module", cheroot/makefile.py): every header line is a dozen Python calls (peek, read-ahead,
locks), and a worker request has six of them. These two classes keep cheroot's interface
(read, readline, iteration, has_data, bytes_read/bytes_written, close) with a plain bytes
buffer: a line is one `find`. They serve plain TCP connections; TLS ones keep cheroot's own.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

RECV_SIZE = 65536
MAX_RECV = 1 << 20  # one recv of a big body: more would allocate for nothing


class SocketReader:
    """Buffered reads from a blocking socket (its timeout raises, as with cheroot's)."""

    def __init__(self, sock: socket.socket, size: int = RECV_SIZE) -> None:
        self._sock = sock
        self._size = size
        self._buf = b""
        self._eof = False
        self.bytes_read = 0
        self.closed = False

    def _fill(self) -> bool:
        """One recv into the buffer; False at the end of the stream."""
        if self._eof:
            return False
        data = self._sock.recv(self._size)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes (all until the end of the stream when negative or None); fewer
        only at the end of the stream."""
        want = None if size is None or size < 0 else size
        if want is not None and len(self._buf) >= want:
            data, self._buf = self._buf[:want], self._buf[want:]
        else:
            # A big body: its pieces are joined once (not the buffer grown piece by piece).
            parts, have = [self._buf], len(self._buf)
            self._buf = b""
            while (want is None or have < want) and not self._eof:
                step = MAX_RECV if want is None else min(MAX_RECV, max(self._size, want - have))
                piece = self._sock.recv(step)
                if not piece:
                    self._eof = True
                    break
                parts.append(piece)
                have += len(piece)
            blob = b"".join(parts)
            data, self._buf = (blob, b"") if want is None else (blob[:want], blob[want:])
        self.bytes_read += len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        """A line with its newline, at most `size` bytes (when positive), or what is left at
        the end of the stream."""
        limit = size if size is not None and size >= 0 else None
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end >= 0:
                cut = end + 1
                break
            if limit is not None and len(self._buf) >= limit:
                cut = limit
                break
            start = len(self._buf)
            if not self._fill():
                cut = len(self._buf)
                break
        if limit is not None:
            cut = min(cut, limit)
        data, self._buf = self._buf[:cut], self._buf[cut:]
        self.bytes_read += len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def has_data(self) -> bool:
        """Whether bytes are buffered (cheroot serves such a connection at once)."""
        return bool(self._buf)

    def close(self) -> None:
        """Forget the buffer (the socket is the connection's to close)."""
        self.closed = True
        self._buf = b""


class SocketWriter:
    """Unbuffered writes: each write is one sendall (cheroot's answers are written whole)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.bytes_written = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Send every byte (a timeout or a reset raises, as with cheroot's)."""
        self._sock.sendall(data)
        size = len(data)
        self.bytes_written += size
        return size

    def flush(self) -> None:
        """Nothing is held back."""

    def close(self) -> None:
        """Stop writing (the socket is the connection's to close)."""
        self.closed = True
