"""The worker's side of the HTTP protocol (docs/protocol.md section 1), and its retry policy.

Two kinds of failure matter to the agent: `Unreachable` (no answer, a 5xx, a proxy error:
try again later, the result must survive) and `Refused` (a 4xx: the server understood and
said no; retrying the same request will not help, except for a wrong token, which an operator
may fix while we wait).

The link speaks HTTP/1.1 itself over one kept-alive connection per slot: it is on every
job's path (one endjob per job, which also brings the next job). requests cost about five
times http.client's CPU per call there, and http.client sends the headers and the body in
two writes, which costs the server a second read and the call a quarter of its wall time
(0.65 ms against 0.38 ms a call on loopback). What a worker needs of HTTP is small: a POST
with a length, and an answer with a length or in chunks (a proxy may chunk it). Proxy
variables are ignored: workers talk to their farm's server directly.
"""

from __future__ import annotations

import copy
import json
import random
import socket
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

TOKEN_HEADER = "X-Coalition-Token"
# (connect, read) seconds. A short connect timeout keeps heartbeats flowing to the agent loop
# when the server's host is down; the read timeout covers a busy server's slow answer.
DEFAULT_TIMEOUT = (3.05, 30.0)
MAX_LINE = 65536  # longest status or header line taken from a server
MAX_HEADERS = 100


class LinkError(Exception):
    """A request to the server failed."""


class Unreachable(LinkError):
    """No usable answer (connection refused, timeout, 5xx): try again later."""


class Refused(LinkError):
    """The server answered 4xx; `status` is the HTTP code, the message its `error` text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def error_text(payload: bytes, reason: str = "") -> str:
    """The `error` field of a JSON error body, else the start of the body, else the reason."""
    try:
        body = json.loads(payload)
        if isinstance(body, dict) and body.get("error"):
            return str(body["error"])
    except ValueError:
        pass
    text = payload.decode("utf-8", "replace").strip()
    return text.splitlines()[0][:200] if text else reason


class ServerLink:
    """POSTs JSON to `/workers/<route>` on one server. One per thread (one connection)."""

    def __init__(
        self,
        url: str,
        token: str = "",
        cacert: str = "",
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not a server URL: {url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._context = ssl.create_default_context(cafile=cacert or None) if self._https else None
        self.timeout = timeout
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            if any(c in token for c in "\r\n"):
                raise ValueError("the worker token must be one line")
            headers[TOKEN_HEADER] = token
        self._header_lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._conn: _Connection | None = None

    def twin(self) -> ServerLink:
        """A link to the same server with the same settings, on a connection of its own (a
        link serves one thread at a time)."""
        other = copy.copy(self)
        other._conn = None
        return other

    def _connect(self) -> _Connection:
        connect_timeout, read_timeout = self.timeout
        sock = socket.create_connection((self._host, self._port), timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_hostname=self._host)
            sock.settimeout(read_timeout)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock)

    def _post(self, path: str, data: bytes) -> tuple[int, str, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"Content-Length: {len(data)}\r\n{self._header_lines}\r\n"
        ).encode("latin-1")
        for attempt in (1, 2):
            reused = self._conn is not None
            try:
                if self._conn is None:
                    self._conn = self._connect()
                status, reason, payload, keep = self._conn.exchange(head + data)
                if not keep:
                    self.close()
                return status, reason, payload
            except (OSError, ProtocolError) as exc:
                self.close()
                # A kept-alive connection the server closed meanwhile fails at once: one new
                # connection is tried. Resending is safe: the server ignores a duplicate.
                stale = isinstance(exc, (_Closed, BrokenPipeError, ConnectionResetError))
                if reused and stale and attempt == 1:
                    continue
                raise Unreachable(f"{self.url}: {exc or type(exc).__name__}") from None
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def call(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` to /workers/<route>; the decoded JSON answer, or Unreachable/Refused."""
        status, reason, payload = self._post(f"{self._prefix}/workers/{route}", json.dumps(body).encode())
        if status >= 500 or status in (408, 429):
            raise Unreachable(f"HTTP {status}: {error_text(payload, reason)}")
        if status >= 400:
            raise Refused(status, error_text(payload, reason))
        try:
            answer = json.loads(payload)
        except ValueError:
            raise Unreachable(f"not a JSON answer from {self.url} (a proxy?)") from None
        if not isinstance(answer, dict):
            raise Unreachable(f"unexpected answer from {self.url}: {str(answer)[:100]}")
        return answer

    def pickjob(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Ask for a job: the job object, or None when there is nothing to do."""
        job = self.call("pickjob", body).get("job")
        return job if isinstance(job, dict) else None

    def heartbeat(self, body: dict[str, Any]) -> dict[str, Any]:
        """Report progress/log; the answer says `kill` and `stop`."""
        return self.call("heartbeat", body)

    def endjob(self, body: dict[str, Any]) -> dict[str, Any]:
        """Report the end of a run; with `pick` the answer carries the next `job`."""
        return self.call("endjob", body)

    def sync(self, body: dict[str, Any]) -> dict[str, Any]:
        """Every slot's heartbeat or pick in one request; the answer has one entry per slot
        (`kill`, `stop`, `job`) and `next`, the seconds until the next sync."""
        return self.call("sync", body)

    def close(self) -> None:
        """Drop the connection (the next call opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as we speak it."""


class _Closed(ProtocolError):
    """The connection ended before an answer began (a kept-alive connection gone stale)."""


class _Connection:
    """One socket: send a whole request in one write, read one answer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def _line(self) -> bytes:
        line = self.rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise ProtocolError("a header line is too long")
        return line

    def exchange(self, request: bytes) -> tuple[int, str, bytes, bool]:
        """Send `request`; the answer's status, reason, body and whether to keep the
        connection."""
        self.sock.sendall(request)
        while True:
            line = self._line()
            if not line:
                raise _Closed("the server closed the connection")
            version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/1.") or not code.isdigit() or len(code) != 3:
                raise ProtocolError(f"not an HTTP answer: {line[:60]!r}")
            status = int(code)
            headers = self._headers()
            if status >= 200:
                break
            # 1xx (a proxy's 100 Continue): the real answer follows.
        length = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
        if chunked:
            body = self._chunked()
        elif length is not None:
            if not length.strip().isdigit():
                raise ProtocolError(f"bad Content-Length: {length[:30]!r}")
            body = self._exactly(int(length))
        else:
            body, keep = self.rfile.read(), False  # the body ends with the connection
        return status, reason, body, keep

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            line = self._line()
            if line in (b"\r\n", b"\n"):
                return headers
            if not line:
                raise ProtocolError("the connection ended inside the headers")
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        raise ProtocolError("too many header lines")

    def _exactly(self, size: int) -> bytes:
        data = self.rfile.read(size)
        if len(data) != size:
            raise ProtocolError("the connection ended inside the answer")
        return data

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size: {size_text[:20]!r}") from None
            if size == 0:
                while self._line() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(self._exactly(size))
            self._line()  # the CRLF after the chunk

    def close(self) -> None:
        """Close the socket."""
        try:
            self.rfile.close()
        finally:
            self.sock.close()


class Backoff:
    """Capped exponential backoff with jitter (so a farm does not reconnect in lockstep)."""

    def __init__(
        self,
        initial: float = 0.5,
        cap: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.1,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self._rand = rand
        self._next = initial
        self.failures = 0

    def next(self) -> float:
        """The delay before the next attempt (grows until `cap`)."""
        delay = self._next
        self._next = min(self.cap, self._next * self.factor)
        self.failures += 1
        return jittered(delay, self.jitter, self._rand)

    def reset(self) -> None:
        """The last attempt succeeded: start small again."""
        self._next = self.initial
        self.failures = 0


def jittered(seconds: float, fraction: float = 0.1, rand: Callable[[], float] = random.random) -> float:
    """`seconds` +- `fraction` (Coalition 4 added +-10% to every wait)."""
    return max(0.0, seconds * (1.0 + fraction * (2.0 * rand() - 1.0)))
