"""Keeping slow and idle clients from starving the server (issue 12: slowloris).

cheroot serves each request on a thread of a fixed pool, and a thread reading a request's
headers blocks until they are complete: 40 connections that send a header line every few
seconds held all 32 threads, and every route stopped, the worker protocol included (an attack
longer than the heartbeat timeout marked every worker TIMEOUT). Two measures, both working
with Debian 12's cheroot 9 and with newer ones (public attributes only):

* **An elastic pool.** When fewer than `spare` threads are idle, a helper thread adds a batch
  (up to `max_threads`), so connections stuck in their headers cost a blocked thread each
  instead of the farm's service; idle threads above the configured count are retired later.
  The helper does the growing: cheroot's `grow` waits for each new thread, and the thread
  that accepts connections must never wait.
* **Deadlines on reading.** A request's headers must arrive within `headertimeout` seconds
  in all, and its body at a bounded pace (`bodytimeout` seconds, plus one per 64 KB); past
  that, the connection's socket is shut down, which ends the blocked read (cheroot's own
  timeout is per `recv`, so a client sending a byte every 9 s kept a thread for ever).

Both are visible in /metrics (`coalition_http_threads`, `coalition_http_cut_total`), so an
operator sees an attack, and a test sees a thread come back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from cheroot.server import HTTPConnection, HTTPRequest

from .sockio import SocketReader, SocketWriter

log = logging.getLogger("coalition.server")

SHRINK_AFTER = 60.0  # seconds of calm before idle extra threads are retired


@dataclass(frozen=True)
class ReadLimits:
    """How long a client may take to send a request (`[server] headertimeout, bodytimeout`).

    The defaults are far below any real client's pace: after 30 s a body must average
    64 KB/s (half a megabit), so a 64 MB heartbeat may take 17 minutes, while a connection
    that trickles holds its thread for seconds, not for ever."""

    header_timeout: float = 10.0  # seconds for a request line and all its headers
    body_timeout: float = 30.0  # seconds any body may take, on top of its pace
    body_rate: int = 64 * 1024  # bytes/s a body must keep up after body_timeout

    def body_seconds(self, size: int) -> float:
        """The time a body of `size` bytes (unknown: -1) may take to arrive."""
        return self.body_timeout + max(size, 0) / self.body_rate


class Deadlines:
    """Sockets to shut down when their read deadline passes (one watchdog thread)."""

    def __init__(self, tick: float = 0.25):
        self.tick = tick
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, socket.socket, str]] = {}
        self._next = 0
        self.cut: dict[str, int] = {"headers": 0, "body": 0}  # connections cut, by what was late
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self, sock: Any, seconds: float, what: str) -> int:
        """Shut `sock` down in `seconds` unless disarmed (`what` is late then: "headers" or
        "body"); returns a handle for disarm()."""
        with self._lock:
            self._next += 1
            self._armed[self._next] = (time.monotonic() + seconds, sock, what)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="read-deadlines", daemon=True)
                self._thread.start()
            return self._next

    def counts(self) -> dict[str, int]:
        """Connections cut so far, by what was late: {"headers": n, "body": n}."""
        with self._lock:
            return dict(self.cut)

    def disarm(self, handle: int) -> None:
        """The read finished in time."""
        with self._lock:
            self._armed.pop(handle, None)

    def stop(self) -> None:
        """End the watchdog thread."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.tick):  # a periodic check, not a synchronisation
            now = time.monotonic()
            with self._lock:
                due = [(h, s, w) for h, (t, s, w) in self._armed.items() if t <= now]
                for handle, _, what in due:
                    del self._armed[handle]
                    self.cut[what] = self.cut.get(what, 0) + 1
            for _, sock, _ in due:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # the blocked recv returns: cheroot closes


DEADLINES = Deadlines()
_current = threading.local()  # the socket of the request this thread serves


# cheroot answers a protocol version it does not speak (`HTTP/2.0`, `HTTP/0.9` in a request
# line) with 505 and a transfer coding it does not know with 501. Both are the client's doing,
# and the bar for any input is no 5xx (issue 12): a 400 that says what was wrong.
_CLIENT_FAULTS = {
    "505": "unsupported HTTP version in the request line: this server speaks HTTP/1.0 and HTTP/1.1",
    "501": "unsupported Transfer-Encoding: only chunked is accepted",
}


# A body nobody read (the request was refused before: 404, 405, 401) that cheroot may still
# read and drop to keep the connection open: a small POST refused with a 401 keeps its
# connection (a browser sees the answer, not a reset); a bigger body closes it instead.
DRAIN_MAX = 64 * 1024


class _HeldWrite:
    """Stands for a connection's writer while cheroot writes a response's head."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> int:
        self.data += bytes(data)
        return len(data)


class GuardedRequest(HTTPRequest):
    """cheroot's request, with a total deadline on its request line and headers, and none of
    cheroot's unbounded reads of a body nobody asked for."""

    limits: ClassVar[ReadLimits] = ReadLimits()

    def parse_request(self) -> None:
        """Read the request line and headers, shut down past the deadline."""
        sock = self.conn.socket
        _current.sock = sock
        _current.limits = self.limits
        handle = DEADLINES.arm(sock, self.limits.header_timeout, "headers")
        try:
            super().parse_request()
        finally:
            DEADLINES.disarm(handle)

    _head = b""  # the response's head, held back to go out with its body in one write

    def send_headers(self) -> None:
        """cheroot's, but it reads an unread body to its end (in one piece, before answering)
        only up to DRAIN_MAX bytes and within the body deadline: 4 GB sent to an unknown
        route cost 4 GB, and a body trickled there held the thread past every deadline.

        The head is not written here but with the body's first bytes (write): cheroot wrote
        them apart, two system calls and often two packets per answer, which was a large part
        of a worker-protocol request's cost."""
        remaining = int(getattr(self.rfile, "remaining", 0) or 0)
        unfinished_chunks = self.chunked_read and not getattr(self.rfile, "closed", True)
        if remaining > DRAIN_MAX or unfinished_chunks:
            self.close_connection = True  # cheroot then answers and closes, reading nothing
        held = _HeldWrite() if not self.chunked_write else None
        real = self.conn.wfile
        if held is not None:
            self.conn.wfile = held
        try:
            if remaining and not self.close_connection:
                with body_deadline(remaining):
                    super().send_headers()
            else:
                super().send_headers()
        finally:
            self.conn.wfile = real
        if held is not None:
            self._head = held.data

    def write(self, chunk: bytes) -> None:
        """The body's bytes, after the held head (chunked answers are not held)."""
        head, self._head = self._head, b""
        if head:
            self.conn.wfile.write(head + chunk)
        else:
            super().write(chunk)

    def respond(self) -> None:
        """cheroot's; an answer with an empty body sends its held head at the end."""
        self._head = b""
        # A worker that just reported a run's end is about to report the next one (a farm
        # of short jobs): its connection stays on this thread a moment (see `watch_next`).
        self.conn.watch_next = self.path.startswith(WATCH_PATHS) if self.path else False
        super().respond()
        head, self._head = self._head, b""
        if head:
            self.conn.wfile.write(head)

    def simple_response(self, status: Any, msg: Any = "") -> None:
        """cheroot's own answers (400 on a malformed request line, 408, 413, 414...) in the
        house format, `{"error": "..."}`, rather than plain text."""
        status = str(status)
        if status[:3] in _CLIENT_FAULTS:
            status, msg = "400 Bad Request", _CLIENT_FAULTS[status[:3]]
        text = msg.decode("latin-1") if isinstance(msg, bytes) else str(msg or status)
        body = json.dumps({"error": text or status}).encode()
        head = [f"{self.server.protocol} {status}", f"Content-Length: {len(body)}"]
        head.append("Content-Type: application/json")
        if status[:3] in ("413", "414"):
            self.close_connection = True
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        with contextlib.suppress(OSError):  # the client may be gone: nothing to tell it then
            self.conn.wfile.write(data)


class GuardedConnection(HTTPConnection):
    """cheroot's connection, reading its requests through GuardedRequest, and, on plain TCP,
    through sockio's reader and writer instead of cheroot's pure-Python io."""

    def __init__(self, server: Any, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(server, sock, *args, **kwargs)
        if type(sock) is socket.socket:  # TLS connections keep cheroot's own
            self.rfile = SocketReader(sock)
            self.wfile = SocketWriter(sock)

    # Set by its last request: see `watch_next()`. (Not cheroot's own `linger`, which is
    # about closing the socket.)
    watch_next = False

    RequestHandlerClass = GuardedRequest


@contextlib.contextmanager
def body_deadline(size: int) -> Iterator[None]:
    """Bound the time reading a body of `size` bytes (unknown: -1) on this thread's request."""
    sock = getattr(_current, "sock", None)
    if sock is None:  # not under cheroot (a test calling a handler directly)
        yield
        return
    limits = getattr(_current, "limits", ReadLimits())
    handle = DEADLINES.arm(sock, limits.body_seconds(size), "body")
    try:
        yield
    finally:
        DEADLINES.disarm(handle)


class ElasticPool:
    """Grows cheroot's thread pool when idle threads run short; retires extras when calm."""

    def __init__(self, pool: Any, max_threads: int, spare: int = 8, batch: int = 16):
        self.pool = pool
        self.base = int(pool.min)
        self.max_threads = max_threads
        self.spare = spare
        self.batch = batch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_growth = time.monotonic()
        pool.max = max_threads
        self._put = pool.put
        pool.put = self.put
        threading.Thread(target=self._run, name="elastic-pool", daemon=True).start()

    def put(self, conn: Any) -> None:
        """Queue a connection for a thread; wake the helper if the idle threads run short."""
        self._put(conn)
        if self.pool.idle < self.spare:
            self._wake.set()

    def stop(self) -> None:
        """End the helper thread."""
        self._stop.set()
        self._wake.set()

    def threads(self) -> dict[str, int]:
        """The pool's threads now: {"busy": serving or reading a request, "idle": waiting}."""
        total = len(self.pool._threads)  # noqa: SLF001 - cheroot keeps no public count
        idle = min(int(self.pool.idle), total)
        return {"busy": total - idle, "idle": idle}

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(SHRINK_AFTER / 4)  # woken by put(); the timeout drives shrinking
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._adjust()
            except Exception:  # noqa: BLE001 - the helper must outlive one bad adjustment
                log.exception("cannot resize the HTTP thread pool")

    def _adjust(self) -> None:
        size = len(self.pool._threads)  # noqa: SLF001 - cheroot keeps no public count
        while self.pool.idle < self.spare and size < self.max_threads:
            self.pool.grow(min(self.batch, self.max_threads - size))
            grown = len(self.pool._threads)  # noqa: SLF001
            if grown == size:
                break
            if size == self.base:
                log.warning("HTTP threads all busy: growing the pool past %d (slow clients?)", self.base)
            size = grown
            self._last_growth = time.monotonic()
        extra = min(self.pool.idle - self.spare, size - self.base)
        if extra > 0 and time.monotonic() - self._last_growth > SHRINK_AFTER:
            self.pool.shrink(extra)


WATCH_PATHS = (b"/workers/endjob",)
WATCH_SECONDS = 0.02


def watch_next(put_conn: Callable[[Any], None], seconds: float = WATCH_SECONDS) -> Callable[[Any], None]:
    """cheroot's `put_conn`, but a connection marked `watch_next` is first watched for `seconds`
    by the thread that served it, which serves the next request itself if one comes.

    A kept-alive connection otherwise goes back to the connection manager's selector, whose
    thread wakes on the next request and queues it for a pool thread: two thread hand-overs
    per request, a third of an endjob's latency on a busy 2-core server (bench/e2e.py). The
    thread waits without the GIL; a connection that stays quiet goes to the selector as
    before."""

    def put(conn: Any) -> None:
        # A stopping server serves nothing more: cheroot's put_conn then closes the connection.
        while getattr(conn, "watch_next", False) and getattr(conn.server, "ready", False):
            conn.watch_next = False
            try:
                poller = select.poll()
                poller.register(conn.socket.fileno(), select.POLLIN)
                ready = bool(poller.poll(seconds * 1000))
            except (OSError, ValueError):  # closed meanwhile
                ready = False
            if not ready:
                break
            try:
                keep = conn.communicate()  # marks it again after another endjob
            except Exception:  # noqa: BLE001 - as cheroot's own loop: drop this connection only
                log.debug("error serving a watched connection", exc_info=True)
                keep = False
            if not keep:
                conn.close()
                return
        put_conn(conn)

    return put


FD_RESERVE = 256  # descriptors kept for the database, logs, new connections and the rest
FD_WANTED = 65536


def keepalive_room(reserve: int = FD_RESERVE, wanted: int = FD_WANTED) -> int:
    """How many idle kept-alive connections the server may hold: what its file descriptors
    allow, less a reserve. The soft limit is raised to the hard one first (up to `wanted`):
    systemd leaves 1,024 soft and 524,288 hard.

    cheroot keeps at most 10 idle connections by default and closes every further one after
    its answer: on a farm of more than a few workers, nearly every sync and endjob paid a new
    TCP connection on both sides (bench/heartbeats.py at 1,250 worker processes: accepting,
    setting up and closing connections were a fifth of the server's Python time)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # a container may refuse: keep the limit we have
    if soft == resource.RLIM_INFINITY:
        soft = wanted
    return max(10, soft - reserve)


def install(httpserver: Any, max_threads: int, limits: ReadLimits | None = None) -> ElasticPool:
    """Guard a started cheroot server: deadlines on new connections, an elastic pool."""
    # cheroot makes a request of its connection class's RequestHandlerClass: this server's
    # read limits ride on a subclass of each (one server per process; no global to patch).
    request = type("GuardedRequest", (GuardedRequest,), {"limits": limits or ReadLimits()})
    attrs = {"RequestHandlerClass": request}
    httpserver.ConnectionClass = type("GuardedConnection", (GuardedConnection,), attrs)
    httpserver.put_conn = watch_next(httpserver.put_conn)
    httpserver.keep_alive_conn_limit = keepalive_room()
    return ElasticPool(httpserver.requests, max_threads)
