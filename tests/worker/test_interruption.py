"""Spot (AWS IMDSv2) and preemption (GCE) watchers against the local fake metadata service."""

from __future__ import annotations

import threading
from typing import Any

from coalition.worker.interruption import AwsWatcher, GceWatcher, watch, watchers_for


def test_aws(metadata: Any) -> None:
    w = AwsWatcher(metadata.url)
    assert w.available()
    assert w.notice() is None
    metadata.aws_notice = True
    assert w.notice() == "AWS spot terminate at 2030-01-01T00:00:00Z"


def test_aws_token_refresh(metadata: Any) -> None:
    w = AwsWatcher(metadata.url)
    w._token = "expired"  # the fake answers 401: a new token is fetched once
    assert w.notice() is None
    assert metadata.token_requests == 1


def test_gce(metadata: Any) -> None:
    w = GceWatcher(metadata.url)
    assert w.available()
    assert w.notice() is None
    metadata.gce_preempted = True
    assert w.notice() == "GCE preemption"


def test_auto_detection(metadata: Any) -> None:
    nothing = "http://127.0.0.1:9"  # the discard port: nothing listens
    assert [w.name for w in watchers_for("auto", metadata.url, nothing)] == ["aws"]
    assert [w.name for w in watchers_for("auto", nothing, metadata.url)] == ["gce"]
    assert watchers_for("auto", nothing, nothing) == []
    assert watchers_for("off", metadata.url, metadata.url) == []
    assert [w.name for w in watchers_for("gce", nothing, nothing)] == ["gce"]  # forced: kept, with a warning


def test_watch_reports_once(metadata: Any) -> None:
    notices: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(target=watch, args=([GceWatcher(metadata.url)], notices.append, stop, 0.05))
    thread.start()
    metadata.gce_preempted = True
    thread.join(10)
    assert notices == ["GCE preemption"]
