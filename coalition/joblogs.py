"""Job logs as files: `<datadir>/logs/<id>.log`, appended by heartbeats, read by range.

Files, not database rows, as in Coalition 4: logs are big, append-only and read rarely. Each
file is capped; past the cap one marker line is written and the rest of the output dropped,
so a runaway job cannot fill the server's disk.
"""

from __future__ import annotations

import os
import threading

TRUNCATED = b"\n[coalition: log truncated: the server keeps %d bytes per job (maxlogsize)]\n"


class JobLogs:
    """The per-job log files under one directory."""

    def __init__(self, directory: str, max_bytes: int):
        self.directory = directory
        self.max_bytes = max_bytes
        os.makedirs(directory, exist_ok=True)
        self._lock = threading.Lock()

    def path(self, job_id: int) -> str:
        """The file of a job's log."""
        return os.path.join(self.directory, f"{int(job_id)}.log")

    def append(self, job_id: int, data: bytes) -> None:
        """Append bytes to a job's log, honouring the size cap."""
        if not data:
            return
        path = self.path(job_id)
        with self._lock:
            try:
                size = os.path.getsize(path)
            except FileNotFoundError:
                size = 0
            if size >= self.max_bytes:
                return
            room = self.max_bytes - size
            with open(path, "ab") as f:
                if len(data) <= room:
                    f.write(data)
                else:
                    f.write(data[:room])
                    f.write(TRUNCATED % self.max_bytes)

    def size(self, job_id: int) -> int:
        """Bytes stored for a job (0 if no log)."""
        try:
            return os.path.getsize(self.path(job_id))
        except FileNotFoundError:
            return 0

    def read(self, job_id: int, offset: int = 0, limit: int | None = None) -> bytes:
        """A byte range of a job's log (empty past the end or without a log)."""
        try:
            with open(self.path(job_id), "rb") as f:
                f.seek(max(0, offset))
                return f.read() if limit is None else f.read(max(0, limit))
        except FileNotFoundError:
            return b""

    def tail(self, job_id: int, nbytes: int) -> tuple[bytes, int]:
        """The last `nbytes` of a job's log and the offset they start at."""
        size = self.size(job_id)
        start = max(0, size - max(0, nbytes))
        return self.read(job_id, start, size - start), start

    def delete(self, job_id: int) -> None:
        """Remove a job's log."""
        try:
            os.remove(self.path(job_id))
        except FileNotFoundError:
            pass
