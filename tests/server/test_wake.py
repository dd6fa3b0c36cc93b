"""The server's wake-ups of idle workers (server/wake.py): what a sync may say, whom a change
wakes, and how often."""

from __future__ import annotations

import pytest

from coalition.server import wake
from coalition.server.wake import Listener, Waker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


TOKEN = "a" * 32


def test_a_wake_address_is_used_only_if_the_request_came_from_it() -> None:
    listener = wake.parse({"ip": "10.0.0.5", "port": 4000, "token": TOKEN}, "10.0.0.5", 5.0)
    assert listener == Listener("10.0.0.5", 4000, TOKEN, 5.0)
    # A proxy or NAT in between: the datagram would go to someone else.
    assert wake.parse({"ip": "10.0.0.5", "port": 4000, "token": TOKEN}, "10.0.0.9", 5.0) is None
    # A server listening on "::" sees an IPv4 worker as ::ffff:10.0.0.5: the same address.
    mapped = wake.parse({"ip": "10.0.0.5", "port": 4000, "token": TOKEN}, "::ffff:10.0.0.5", 5.0)
    assert mapped == Listener("10.0.0.5", 4000, TOKEN, 5.0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.5:4000", "wake must be an object"),
        ({"ip": "", "port": 4000, "token": TOKEN}, "wake.ip"),
        ({"ip": "render01", "port": 4000, "token": TOKEN}, "wake.ip"),
        ({"ip": 10, "port": 4000, "token": TOKEN}, "wake.ip"),
        ({"ip": "10.0.0.5", "port": 0, "token": TOKEN}, "wake.port"),
        ({"ip": "10.0.0.5", "port": 70000, "token": TOKEN}, "wake.port"),
        ({"ip": "10.0.0.5", "port": True, "token": TOKEN}, "wake.port"),
        ({"ip": "10.0.0.5", "port": 4000, "token": "short"}, "wake.token"),
        ({"ip": "10.0.0.5", "port": 4000, "token": "x" * 20 + "; rm"}, "wake.token"),
    ],
)
def test_a_malformed_wake_is_refused_with_what_is_wrong(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        wake.parse(value, "10.0.0.5", 0.0)


def sent_to(waker: Waker) -> list[int]:
    ports: list[int] = []
    waker.wake_now(lambda item: ports.append(item.port))
    return ports


def test_a_change_wakes_the_idle_workers_once_until_they_sync_again() -> None:
    clock = Clock()
    waker = Waker(clock)
    waker.idle("a", Listener("127.0.0.1", 1, TOKEN, clock.now))
    waker.idle("b", Listener("127.0.0.1", 2, TOKEN, clock.now))
    waker.idle("c", Listener("127.0.0.1", 3, TOKEN, clock.now))
    waker.busy("c")  # it got a job
    assert sorted(sent_to(waker)) == [1, 2]
    clock.now += 0.1
    assert sent_to(waker) == []  # woken, and not synced since
    waker.idle("a", Listener("127.0.0.1", 1, TOKEN, clock.now))  # a synced: still idle
    assert sent_to(waker) == [1]
    assert sent_to(waker) == []
    clock.now += wake.WAKE_GAP  # a datagram may have been lost: each once more after the gap
    assert sorted(sent_to(waker)) == [1, 2]


def test_a_silent_worker_is_forgotten() -> None:
    clock = Clock()
    waker = Waker(clock)
    waker.idle("a", Listener("127.0.0.1", 1, TOKEN, clock.now))
    clock.now += wake.FORGET_AFTER + 1
    assert sent_to(waker) == [] and waker.known() == 0


def test_wake_ups_are_rationed_across_a_big_idle_farm() -> None:
    clock = Clock()
    waker = Waker(clock)
    for port in range(1, 201):
        waker.idle(f"h{port}", Listener("127.0.0.1", port, TOKEN, clock.now - port / 1000))
    first = sent_to(waker)
    # The most recently seen first, at most WAKE_MAX at once.
    assert first == list(range(1, wake.WAKE_MAX + 1))
    assert sent_to(waker) == []  # the budget is spent: the others sync at their cadence
    clock.now += wake.WAKE_GAP / 2
    assert len(sent_to(waker)) == wake.WAKE_MAX // 2  # refilled with time


def test_choose_prefers_recent_and_skips_the_just_woken() -> None:
    listeners = {
        "old": Listener("127.0.0.1", 1, TOKEN, 10.0),
        "new": Listener("127.0.0.1", 2, TOKEN, 20.0),
        "woken": Listener("127.0.0.1", 3, TOKEN, 15.0, woken=20.5),
    }
    assert wake.choose(listeners, 21.0) == ["new", "old"]
    assert wake.choose(listeners, 21.0, most=1) == ["new"]


def test_the_waker_remembers_a_bounded_number_of_idle_workers() -> None:
    clock = Clock()
    waker = Waker(clock, max_known=3)
    for port in range(1, 6):  # a flood of made-up hosts
        waker.idle(f"h{port}", Listener("127.0.0.1", port, TOKEN, clock.now))
    assert waker.known() == 3
    waker.idle("h1", Listener("127.0.0.1", 1, TOKEN, clock.now + 1))  # a known one still updates
    clock.now += wake.FORGET_AFTER + 0.5  # h2 and h3 are forgotten at the next wake-up
    assert sent_to(waker) == [1] and waker.known() == 1
    waker.idle("h4", Listener("127.0.0.1", 4, TOKEN, clock.now))
    assert waker.known() == 2
