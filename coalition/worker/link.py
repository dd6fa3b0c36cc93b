"""The worker's side of the HTTP protocol (docs/protocol.md section 1), and its retry policy.

Two kinds of failure matter to the agent: `Unreachable` (no answer, a 5xx, a proxy error:
try again later, the result must survive) and `Refused` (a 4xx: the server understood and
said no; retrying the same request will not help, except for a wrong token, which an operator
may fix while we wait).

The link uses the standard library's http.client over one kept-alive connection per slot:
it is on every job's path (one endjob per job, which also brings the next job), and requests
costs about five times its CPU per call there (bench/e2e.py). Proxy variables are ignored:
workers talk to their farm's server directly.
"""

from __future__ import annotations

import http.client
import json
import random
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

TOKEN_HEADER = "X-Coalition-Token"
# (connect, read) seconds. A short connect timeout keeps heartbeats flowing to the agent loop
# when the server's host is down; the read timeout covers a busy server's slow answer.
DEFAULT_TIMEOUT = (3.05, 30.0)


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
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self._headers[TOKEN_HEADER] = token
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        connect_timeout, read_timeout = self.timeout
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=connect_timeout, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=connect_timeout)
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(read_timeout)
        return conn

    def _post(self, path: str, data: bytes) -> tuple[int, str, bytes]:
        for attempt in (1, 2):
            reused = self._conn is not None
            try:
                if self._conn is None:
                    self._conn = self._connect()
                self._conn.request("POST", path, data, self._headers)
                response = self._conn.getresponse()
                payload = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, response.reason, payload
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                # A kept-alive connection the server closed meanwhile fails at once: one new
                # connection is tried. Resending is safe: the server ignores a duplicate.
                stale = isinstance(
                    exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
                )
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

    def close(self) -> None:
        """Drop the connection (the next call opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


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
