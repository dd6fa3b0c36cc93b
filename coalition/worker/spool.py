"""The output of one run, held until the server acknowledges it: memory first, then disk.

Offsets count bytes from the start of the run's output stream, as `log_offset` does in the
worker protocol. Bytes leave the buffer only when a heartbeat or endjob carrying them got an
answer (`ack`), so a server that goes away loses nothing: the output waits here, in memory up
to `memory_limit` and in an anonymous temporary file beyond, and is resent when it returns.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import IO

DEFAULT_MEMORY_LIMIT = 1 << 20  # per run: a chatty render must not grow the worker's heap
DEFAULT_DISK_LIMIT = 1 << 30  # per run: past this the output is dropped (and says so)


class RunLog:
    """Append-only byte stream with an acknowledged prefix. Thread-safe."""

    def __init__(
        self,
        spool_dir: str | None = None,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        disk_limit: int = DEFAULT_DISK_LIMIT,
    ) -> None:
        self._dir = spool_dir or None
        self._memory_limit = memory_limit
        self._disk_limit = disk_limit
        self._lock = threading.Lock()
        self._end = 0  # bytes written so far
        self._acked = 0  # bytes the server has confirmed
        self._mem = bytearray()  # holds [_mem_start, _end)
        self._mem_start = 0
        self._file: IO[bytes] | None = None  # when set, holds [_file_start, _mem_start)
        self._file_start = 0
        self.dropped = 0  # bytes discarded past disk_limit
        self._last = b"\n"  # the last byte written: do notes need a line break first?

    @property
    def size(self) -> int:
        """Bytes written so far (the offset the next byte will have)."""
        with self._lock:
            return self._end

    @property
    def acked(self) -> int:
        """Bytes the server has acknowledged."""
        with self._lock:
            return self._acked

    @property
    def spooled(self) -> bool:
        """Whether part of the pending output currently lives on disk."""
        with self._lock:
            return self._file is not None

    @property
    def at_line_start(self) -> bool:
        """Whether the output so far ends with a newline (or is empty)."""
        with self._lock:
            return self._last == b"\n"

    def write(self, data: bytes, *, force: bool = False) -> None:
        """Append output. Past `disk_limit` it is counted as dropped unless `force` (our notes)."""
        if not data:
            return
        with self._lock:
            if not force and self._end - self._acked + len(data) > self._disk_limit:
                self.dropped += len(data)
                return
            self._mem += data
            self._end += len(data)
            self._last = data[-1:]
            if len(self._mem) > self._memory_limit:
                self._spill()

    def _spill(self) -> None:
        # Move the memory part to the end of the spool file (created on first use).
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="coalition-run-", dir=self._dir)
            self._file_start = self._mem_start
        self._file.seek(0, os.SEEK_END)
        self._file.write(self._mem)
        self._file.flush()
        self._mem_start = self._end
        self._mem = bytearray()

    def pending(self, limit: int) -> tuple[int, bytes]:
        """(offset, up to `limit` bytes) of the oldest output not yet acknowledged."""
        with self._lock:
            start = self._acked
            head = b""
            if self._file is not None and start < self._mem_start:
                self._file.seek(start - self._file_start)
                head = self._file.read(min(limit, self._mem_start - start))
            # Then from memory, so that the whole pending output fits in one call when it can.
            i = start + len(head) - self._mem_start
            return start, head + bytes(self._mem[i : i + limit - len(head)])

    def ack(self, end: int) -> None:
        """The server has everything before offset `end`: forget it."""
        with self._lock:
            end = min(end, self._end)
            if end <= self._acked:
                return
            self._acked = end
            if self._file is not None and end >= self._mem_start:
                self._file.close()
                self._file = None
            if end > self._mem_start:
                del self._mem[: end - self._mem_start]
                self._mem_start = end

    def close(self) -> None:
        """Release the spool file, if any."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
