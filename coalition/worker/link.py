"""The worker's side of the HTTP protocol (docs/protocol.md section 1), and its retry policy.

Two kinds of failure matter to the agent: `Unreachable` (no answer, a 5xx, a proxy error:
try again later, the result must survive) and `Refused` (a 4xx: the server understood and
said no; retrying the same request will not help, except for a wrong token, which an operator
may fix while we wait).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import requests

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


def error_text(response: requests.Response) -> str:
    """The `error` field of a JSON error body, else the start of the body, else the reason."""
    try:
        body = response.json()
        if isinstance(body, dict) and body.get("error"):
            return str(body["error"])
    except ValueError:
        pass
    text = (response.text or "").strip()
    return text.splitlines()[0][:200] if text else (response.reason or "")


class ServerLink:
    """POSTs JSON to `/workers/<route>` on one server. One per thread (a requests Session)."""

    def __init__(
        self,
        url: str,
        token: str = "",
        cacert: str = "",
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers["Content-Type"] = "application/json"
        if token:
            self.session.headers[TOKEN_HEADER] = token
        if cacert:
            self.session.verify = cacert

    def call(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` to /workers/<route>; the decoded JSON answer, or Unreachable/Refused."""
        try:
            response = self.session.post(f"{self.url}/workers/{route}", json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise Unreachable(str(exc).splitlines()[0][:300]) from None
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise Unreachable(f"HTTP {response.status_code}: {error_text(response)}")
        if response.status_code >= 400:
            raise Refused(response.status_code, error_text(response))
        try:
            answer = response.json()
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
        """Drop pooled connections."""
        self.session.close()


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
