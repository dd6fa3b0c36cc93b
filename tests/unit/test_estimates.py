"""Time left and frame statistics, tested on generated histories against a brute-force
simulation of slots taking frames."""

from __future__ import annotations

import random

import pytest

from coalition.estimates import SIMULATE_UP_TO, spread, time_left


def simulate(mean: float, waiting: int, running_for: list[float]) -> float:
    """Tick by tick: every slot finishes its frame, then takes the next waiting one."""
    slots = [max(0.0, mean - ran) for ran in running_for]
    clock = 0.0
    while True:
        for i, s in enumerate(slots):  # free slots take the next waiting frames
            if s <= 1e-9 and waiting:
                slots[i] = mean
                waiting -= 1
        busy = [s for s in slots if s > 1e-9]
        if not busy:
            return clock
        step = min(busy)
        clock += step
        slots = [max(0.0, s - step) for s in slots]


@pytest.mark.parametrize("seed", range(40))
def test_time_left_matches_a_simulated_farm(seed: int) -> None:
    rng = random.Random(seed)
    times = [rng.uniform(5, 120) for _ in range(rng.randint(1, 30))]
    mean = sum(times) / len(times)
    running = [rng.uniform(0, 2 * mean) for _ in range(rng.randint(1, 8))]
    waiting = rng.randint(0, 200)
    assert time_left(times, waiting, running) == pytest.approx(simulate(mean, waiting, running))


def test_many_waiting_frames_use_the_closed_form_within_a_frame() -> None:
    times = [30.0, 50.0]
    running = [10.0, 35.0, 0.0]
    many = SIMULATE_UP_TO + 5000
    estimate = time_left(times, many, running)
    assert estimate is not None
    assert abs(estimate - simulate(40.0, many, running)) <= 40.0  # at most one frame apart


def test_what_cannot_be_told() -> None:
    assert time_left([], 10, [5.0]) is None  # no finished frame: no mean yet
    assert time_left([30.0], 10, []) is None  # nobody works on the group
    assert time_left([], 0, []) == 0.0  # nothing left
    assert time_left([30.0], 0, [40.0]) == 0.0  # running past the mean: about to end


def test_spread() -> None:
    assert spread([]).as_dict() == {"count": 0, "min": 0.0, "mean": 0.0, "max": 0.0}
    assert spread([3.0, 1.0, 2.0]).as_dict() == {"count": 3, "min": 1.0, "mean": 2.0, "max": 3.0}
