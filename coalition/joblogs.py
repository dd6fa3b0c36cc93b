"""Job logs as files: `<datadir>/logs/<id>.log`, appended by heartbeats, read by range.

Files, not database rows, as in Coalition 4: logs are big, append-only and read rarely. Each
file is capped; past the cap one marker line is written and the rest of the output dropped,
so a runaway job cannot fill the server's disk.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from .scheduling import log_slice

TRUNCATED = b"\n[coalition: log truncated: the server keeps %d bytes per job (maxlogsize)]\n"


class JobLogs:
    """The per-job log files under one directory."""

    def __init__(self, directory: str, max_bytes: int):
        self.directory = directory
        self.max_bytes = max_bytes
        os.makedirs(directory, exist_ok=True)
        self._lock = threading.Lock()
        # How many bytes of each recent run's output this process wrote to the file, by
        # (job, run event). The file's side of the truth: a transaction the database engine
        # ran again after a COMMIT whose answer was lost sees the run's bytes as received,
        # though they never reached the file; this says they did not.
        self._runs: OrderedDict[tuple[int, int], int] = OrderedDict()

    def path(self, job_id: int) -> str:
        """The file of a job's log."""
        return os.path.join(self.directory, f"{int(job_id)}.log")

    def start_run(self, job_id: int, event: int) -> None:
        """A run of the job began (its output is counted from 0)."""
        with self._lock:
            self._remember((job_id, event), 0)

    def append_run(self, job_id: int, event: int, offset: int, chunk: bytes, received: int) -> None:
        """Append the part of a run's output chunk (at `offset` in the run's output) that the
        file lacks. `received` is what the database says was received of the run; it is used
        for runs this process has not seen start (after a restart)."""
        key = (job_id, event)
        with self._lock:
            written = self._runs.get(key, received)
            data, end = log_slice(written, offset, chunk)
            self._append(job_id, data)
            self._remember(key, max(written, end))

    def _remember(self, key: tuple[int, int], value: int) -> None:
        self._runs[key] = value
        self._runs.move_to_end(key)
        while len(self._runs) > 100_000:
            self._runs.popitem(last=False)

    def append(self, job_id: int, data: bytes) -> None:
        """Append bytes to a job's log, honouring the size cap."""
        with self._lock:
            self._append(job_id, data)

    def _append(self, job_id: int, data: bytes) -> None:
        if not data:
            return
        path = self.path(job_id)
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            size = 0
        if size >= self.max_bytes:
            if size == self.max_bytes:  # the cap fell on a chunk's end: the marker is still due
                with open(path, "ab") as f:
                    f.write(TRUNCATED % self.max_bytes)
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
                if offset >= os.fstat(f.fileno()).st_size:
                    return b""  # past the end (a seek to 2**62 fails on some file systems)
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
