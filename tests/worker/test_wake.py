"""The worker's wake-up listener (worker/wake.py): our token wakes the courier, nothing else
does, and a flood of wake-ups brings a few syncs forward, not hundreds."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from coalition.worker import wake
from coalition.worker.wake import WakeListener
from tests.support import wait_for
from tests.worker.helpers import wait_state


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_the_servers_datagram_with_our_token_wakes_us() -> None:
    woken = threading.Event()
    listener = WakeListener(("127.0.0.1", 9), woken.set).start()
    try:
        where = listener.describe()
        assert where["ip"] == "127.0.0.1" and where["port"] == listener.port
        assert len(where["token"]) == 32
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"coalition-wake " + b"0" * 32, ("127.0.0.1", listener.port))  # not ours
            sender.sendto(b"hello", ("127.0.0.1", listener.port))
            sender.sendto(wake.PREFIX + where["token"].encode(), ("127.0.0.1", listener.port))
        wait_for(woken.is_set, timeout=5, what="the wake-up")
        assert listener.wakes == 1
    finally:
        listener.close()


def test_wrong_tokens_are_ignored_and_wake_ups_are_rate_limited_not_lost() -> None:
    clock = Clock()
    calls: list[float] = []
    listener = WakeListener(("127.0.0.1", 9), lambda: calls.append(clock.now), clock)
    try:
        good = wake.PREFIX + listener.token.encode()
        assert not listener.take(good[:-1] + b"x")
        assert not listener.take(b"")
        assert listener.due() is None  # nothing kept
        assert listener.take(good)
        assert calls == [50.0]
        # A second wake-up right after (a submission, then the start of its group): kept.
        assert listener.take(good)
        assert listener.take(good)  # a flood of them makes one sync, later
        assert calls == [50.0] and listener.due() == pytest.approx(wake.MIN_GAP)
        assert not listener.fire()  # not yet
        clock.now += wake.MIN_GAP
        assert listener.due() == 0.0
        assert listener.fire()
        assert calls == [50.0, 50.0 + wake.MIN_GAP] and listener.due() is None
    finally:
        listener.close()


def test_a_wake_up_that_came_too_soon_is_acted_on_by_the_listener_thread() -> None:
    woken: list[float] = []
    listener = WakeListener(("127.0.0.1", 9), lambda: woken.append(time.monotonic())).start()
    try:
        token = wake.PREFIX + listener.token.encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(token, ("127.0.0.1", listener.port))
            wait_for(lambda: len(woken) == 1, timeout=5, what="the first wake-up")
            sender.sendto(token, ("127.0.0.1", listener.port))
        wait_for(lambda: len(woken) == 2, timeout=5, what="the kept wake-up, MIN_GAP later")
        assert woken[1] - woken[0] >= wake.MIN_GAP * 0.9
    finally:
        listener.close()


def test_close_ends_the_listening_thread() -> None:
    listener = WakeListener(("127.0.0.1", 9), lambda: None).start()
    listener.close()
    wait_for(lambda: not listener.running(), timeout=5, what="the listener's thread to end")


def test_an_idle_worker_starts_a_submitted_job_at_once_not_at_its_next_sync(
    make_server: Any, make_worker: Any
) -> None:
    # A long silence timeout and a 30 s `sleep`: an idle worker syncs a minute apart, so only
    # a wake-up can start the job within the few seconds allowed below.
    server = make_server(timeout=600)
    worker = make_worker(server.url, sleep=30, name="sleepy")
    wait_for(lambda: "sleepy" in {w["name"] for w in server.api("GET", "/api/workers")}, timeout=20,
             what="the worker's first (idle) sync")  # fmt: skip
    wait_for(lambda: "working for" in worker.log(), timeout=20, what="the worker to start")
    submitted = time.monotonic()
    job_id = server.submit(command="true", title="wake me")
    wait_state(server, job_id, "FINISHED", timeout=10)
    assert time.monotonic() - submitted < 10  # not the minute of the idle cadence
    # The group, paused then started (as bench/e2e.py does): two changes, two wake-ups.
    group = server.api("PUT", "/api/jobs", {"title": "later", "paused": True})
    child = server.submit(command="true", title="child", parent=group)
    server.api("POST", "/api/startjobs", [group])
    wait_state(server, child, "FINISHED", timeout=10)
