"""The outbox of a slot that holds jobs: in order, in batches of what queued meanwhile."""

from __future__ import annotations

import threading

import pytest

from coalition.worker.outbox import Outbox
from tests.support import wait_for


def test_what_queues_during_a_delivery_goes_in_the_next_batch_in_order() -> None:
    batches: list[list[int]] = []
    gate = threading.Event()

    def deliver(batch: list[int]) -> None:
        batches.append(batch)
        gate.wait(10)  # the first answer is slow: the next results wait for it

    box: Outbox[int] = Outbox(deliver, "t")
    box.put(1)
    wait_for(lambda: batches == [[1]], what="the first batch on its way")
    for item in (2, 3, 4):
        box.put(item)
    assert box.pending() == 4
    gate.set()
    box.settle()
    assert batches == [[1], [2, 3, 4]] and box.pending() == 0
    box.close()


def test_a_failing_delivery_is_logged_and_the_outbox_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[list[str]] = []

    def deliver(batch: list[str]) -> None:
        seen.append(batch)
        if batch == ["bad"]:
            raise RuntimeError("a bug")

    box: Outbox[str] = Outbox(deliver, "t")
    box.put("bad")
    box.settle()
    box.put("good")
    box.close()  # delivers what is queued first
    assert seen == [["bad"], ["good"]]
    assert "delivering 1 result(s) in the background failed" in caplog.text


def test_a_lingering_batch_goes_when_ready_says_so() -> None:
    batches: list[list[int]] = []
    box: Outbox[int] = Outbox(batches.append, "t", ready=lambda queued: queued >= 3, linger=30)
    box.put(1)
    box.put(2)
    assert batches == [] and box.pending() == 2  # waits for a third (up to 30 s)
    box.put(3)
    wait_for(lambda: batches == [[1, 2, 3]], what="the full batch")
    box.close()


def test_settle_sends_a_lingering_batch_at_once() -> None:
    batches: list[list[int]] = []
    box: Outbox[int] = Outbox(batches.append, "t", ready=lambda queued: False, linger=30)
    box.put(1)
    box.settle()  # the slot needs the answers now: no lingering
    assert batches == [[1]]
    box.close()


def test_a_batch_lingers_no_longer_than_linger() -> None:
    batches: list[list[int]] = []
    box: Outbox[int] = Outbox(batches.append, "t", ready=lambda queued: False, linger=0.05)
    box.put(1)
    wait_for(lambda: batches == [[1]], timeout=5, what="the batch after its linger")
    box.close()
