"""Spot and preemption notices, from the instance metadata service.

* AWS: `GET /latest/meta-data/spot/instance-action` answers 404 until the instance is to be
  stopped or terminated (about two minutes ahead), then a JSON `{"action": ..., "time": ...}`.
  IMDSv2 needs a session token first (`PUT /latest/api/token`).
* GCE: `GET /computeMetadata/v1/instance/preempted` (header `Metadata-Flavor: Google`)
  answers `TRUE` once the instance is being preempted (about 30 seconds ahead).

On a notice the agent stops taking jobs and hands its running jobs back as interrupted, so the
server requeues them without spending a retry. The base URLs are settings, so tests point
them at a local fake.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

import requests

log = logging.getLogger("coalition.worker")

PROBE_TIMEOUT = 1.0  # the metadata service answers in milliseconds where it exists
TOKEN_TTL = 21600  # seconds: the IMDSv2 maximum


class Watcher(Protocol):
    """One provider's notice check."""

    name: str

    def available(self) -> bool:
        """Whether this host has this provider's metadata service (asked once, at start)."""
        ...

    def notice(self) -> str | None:
        """A description of the interruption notice, or None when there is none."""
        ...


class AwsWatcher:
    """EC2 spot interruption notice through IMDSv2."""

    name = "aws"

    def __init__(self, base_url: str, session: requests.Session | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.session = session or _session()
        self._token = ""

    def _fetch_token(self) -> str:
        response = self.session.put(
            f"{self.base}/latest/api/token",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL)},
            timeout=PROBE_TIMEOUT,
        )
        response.raise_for_status()
        return response.text.strip()

    def available(self) -> bool:
        try:
            self._token = self._fetch_token()
        except requests.RequestException:
            return False
        return bool(self._token)

    def notice(self) -> str | None:
        for _attempt in range(2):
            if not self._token:
                self._token = self._fetch_token()
            response = self.session.get(
                f"{self.base}/latest/meta-data/spot/instance-action",
                headers={"X-aws-ec2-metadata-token": self._token},
                timeout=PROBE_TIMEOUT * 5,
            )
            if response.status_code == 401:  # token expired: get a new one, once
                self._token = ""
                continue
            if response.status_code == 404:
                return None
            response.raise_for_status()
            try:
                body = response.json()
                return f"AWS spot {body.get('action', 'interruption')} at {body.get('time', '?')}"
            except ValueError:
                return f"AWS spot interruption: {response.text.strip()[:100]}"
        return None


class GceWatcher:
    """GCE preemption (also Spot VMs) through the `preempted` metadata value."""

    name = "gce"
    headers = {"Metadata-Flavor": "Google"}

    def __init__(self, base_url: str, session: requests.Session | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.session = session or _session()

    def _get(self, timeout: float) -> requests.Response:
        return self.session.get(
            f"{self.base}/computeMetadata/v1/instance/preempted", headers=self.headers, timeout=timeout
        )

    def available(self) -> bool:
        try:
            response = self._get(PROBE_TIMEOUT)
        except requests.RequestException:
            return False
        # The real service signs its answers with this header; anything else is not GCE.
        return response.ok and response.headers.get("Metadata-Flavor") == "Google"

    def notice(self) -> str | None:
        response = self._get(PROBE_TIMEOUT * 5)
        response.raise_for_status()
        return "GCE preemption" if response.text.strip().upper() == "TRUE" else None


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # the metadata service is link-local: never through a proxy
    return session


def watchers_for(mode: str, aws_url: str, gce_url: str) -> list[Watcher]:
    """The watchers a mode asks for (`auto` keeps those whose service answers)."""
    if mode == "off":
        return []
    candidates: list[Watcher] = []
    if mode in ("auto", "aws"):
        candidates.append(AwsWatcher(aws_url))
    if mode in ("auto", "gce"):
        candidates.append(GceWatcher(gce_url))
    found = [w for w in candidates if w.available()]
    for w in candidates:
        if mode != "auto" and w not in found:
            log.warning("interruptions: the %s metadata service does not answer; watching anyway", w.name)
            found.append(w)
    return found


def watch(
    watchers: list[Watcher],
    on_notice: Callable[[str], None],
    stop: threading.Event,
    interval: float,
) -> None:
    """Poll every `interval` s until a notice (reported once to `on_notice`) or `stop`."""
    errors_logged: set[str] = set()
    while not stop.is_set():
        for watcher in watchers:
            try:
                reason = watcher.notice()
            except requests.RequestException as exc:
                if watcher.name not in errors_logged:  # a flapping metadata service must not flood the log
                    log.warning("interruptions: %s metadata query failed: %s", watcher.name, exc)
                    errors_logged.add(watcher.name)
                continue
            if reason:
                log.warning("interruption notice: %s", reason)
                on_notice(reason)
                return
        stop.wait(interval)
