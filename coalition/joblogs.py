"""Job logs: appended by heartbeats, read by range, in one of two stores.

* `JobLogs`, files `<datadir>/logs/<id>.log` as in Coalition 4: logs are big, append-only and
  read rarely. Right for one server (SQLite); written after the commit (Effects).
* `DbLogs`, rows of the `job_logs` table: every server appends to and reads the same log, so
  a worker whose heartbeats reach several servers still has one complete log. Written inside
  the transaction that received the output (a rerun transaction rewrites it, a rolled-back
  one leaves nothing), so the log and the byte count the database keeps never disagree.

Both cap each log; past the cap one marker line is written and the rest of the output
dropped, so a runaway job cannot fill the disk (or the database).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence

from .scheduling import log_slice
from .store.base import Store, Tx

TRUNCATED = b"\n[coalition: log truncated: the server keeps %d bytes per job (maxlogsize)]\n"
_STRIPES = 64  # appends to different jobs' files run side by side; one job's stay in order
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


class JobLogs:
    """The per-job log files under one directory (written after the commit, from Effects)."""

    def __init__(self, directory: str, max_bytes: int):
        self.directory = directory
        self.max_bytes = max_bytes
        os.makedirs(directory, exist_ok=True)
        self._lock = threading.Lock()  # guards _runs only
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
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
        # A job's appends hold its stripe (in order, and the run's count with them); the
        # files of other jobs are written meanwhile (5,000 running jobs beat every 2 s).
        with self._stripes[job_id % _STRIPES]:
            with self._lock:
                written = self._runs.get(key, received)
            data, end = log_slice(written, offset, chunk)
            self._append(job_id, data)
            with self._lock:
                self._remember(key, max(written, end))

    def _remember(self, key: tuple[int, int], value: int) -> None:
        self._runs[key] = value
        self._runs.move_to_end(key)
        while len(self._runs) > 100_000:
            self._runs.popitem(last=False)

    def append(self, job_id: int, data: bytes) -> None:
        """Append bytes to a job's log, honouring the size cap."""
        with self._stripes[job_id % _STRIPES]:
            self._append(job_id, data)

    def _append(self, job_id: int, data: bytes) -> None:
        # One open, one fstat, one write, one close: no Python file object (this runs for every
        # heartbeat's chunk, thousands of times a second on a big farm).
        if not data:
            return
        fd = os.open(self.path(job_id), _APPEND, 0o666)  # as open("ab"): the umask decides
        try:
            size = os.fstat(fd).st_size
            if size >= self.max_bytes:
                if size == self.max_bytes:  # the cap fell on a chunk's end: the marker is still due
                    _write_all(fd, TRUNCATED % self.max_bytes)
                return
            room = self.max_bytes - size
            _write_all(fd, data if len(data) <= room else data[:room] + TRUNCATED % self.max_bytes)
        finally:
            os.close(fd)

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


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a write may take only part of a big chunk)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class DbLogs:
    """Job logs in the database (`logstore = database`), shared by every server.

    Appends happen inside the writing transaction (`write_in`); reads are read transactions.
    Logs written to files before the switch stay readable: a job with no rows in the database
    is read from `legacy`, the file store (and deleting the job deletes that file too)."""

    def __init__(self, store: Store, max_bytes: int, legacy: JobLogs | None = None):
        self.store = store
        self.max_bytes = max_bytes
        self.legacy = legacy
        self._marker = TRUNCATED % max_bytes

    # -- inside a write transaction ------------------------------------------------------------
    def write_in(
        self,
        tx: Tx,
        run_output: Sequence[tuple[int, int, int, bytes, int]],
        appends: Sequence[tuple[int, bytes]],
        deletes: Sequence[int],
    ) -> None:
        """Write a transaction's log effects through the transaction itself. For run output,
        `received` (what the database counts as received of the run) is the truth: it
        commits or rolls back with the chunk."""
        for job_id, _event, offset, chunk, received in run_output:
            data, _ = log_slice(received, offset, chunk)
            tx.log_append(job_id, data, self.max_bytes, self._marker)
        for job_id, data in appends:
            tx.log_append(job_id, data, self.max_bytes, self._marker)
        if deletes:
            tx.log_delete(deletes)

    # -- after the commit (the file store's interface: nothing left to do but legacy files) ---
    def start_run(self, job_id: int, event: int) -> None:
        """Nothing to remember: the database counts a run's bytes."""

    def append_run(self, job_id: int, event: int, offset: int, chunk: bytes, received: int) -> None:
        """Never called: run output was written in the transaction."""

    def append(self, job_id: int, data: bytes) -> None:
        """Append in a transaction of its own (callers outside a use-case transaction)."""
        self.store.write(lambda tx: tx.log_append(job_id, data, self.max_bytes, self._marker))

    def delete(self, job_id: int) -> None:
        """The rows went with the job's transaction; remove a legacy file if there is one."""
        if self.legacy is not None:
            self.legacy.delete(job_id)

    # -- reads ------------------------------------------------------------------------------
    def size(self, job_id: int) -> int:
        """Bytes stored for a job's log."""
        size = self.store.read(lambda tx: tx.log_size(job_id))
        if size == 0 and self.legacy is not None:
            return self.legacy.size(job_id)
        return size

    def read(self, job_id: int, offset: int = 0, limit: int | None = None) -> bytes:
        """A byte range of a job's log (empty past the end or without a log)."""

        def fn(tx: Tx) -> bytes | None:
            data = tx.log_read(job_id, offset, limit)
            return data if data or tx.log_size(job_id) else None

        data = self.store.read(fn)
        if data is None:
            return self.legacy.read(job_id, offset, limit) if self.legacy is not None else b""
        return data

    def tail(self, job_id: int, nbytes: int) -> tuple[bytes, int]:
        """The last `nbytes` of a job's log and the offset they start at (one transaction)."""

        def fn(tx: Tx) -> tuple[bytes, int] | None:
            size = tx.log_size(job_id)
            if size == 0:
                return None
            start = max(0, size - max(0, nbytes))
            return tx.log_read(job_id, start, size - start), start

        found = self.store.read(fn)
        if found is None:
            return self.legacy.tail(job_id, nbytes) if self.legacy is not None else (b"", 0)
        return found


LogStore = JobLogs | DbLogs
