"""Per-frame statistics and time left of a group. Pure functions over plain figures.

A group's frames are its children. Its time left is the makespan of what remains, shared by
the slots working on it now: each running frame needs about the mean frame time minus what
it already ran, and each waiting frame a whole mean frame time, taken by whichever slot frees
up first. Until one frame has finished (no mean yet), or while no slot works on the group
(nobody to share the work), the time left cannot be told: None.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

SIMULATE_UP_TO = 20000  # waiting frames handed out one by one; past this, the closed form


@dataclass(frozen=True)
class Spread:
    """Min, mean and max of some figures (all 0 for none)."""

    count: int
    min: float
    mean: float
    max: float

    def as_dict(self) -> dict[str, float]:
        """For the API."""
        return {
            "count": self.count,
            "min": round(self.min, 3),
            "mean": round(self.mean, 3),
            "max": round(self.max, 3),
        }


def spread(values: Sequence[float]) -> Spread:
    """Min, mean and max of `values`."""
    if not values:
        return Spread(0, 0.0, 0.0, 0.0)
    return Spread(len(values), min(values), math.fsum(values) / len(values), max(values))


def time_left(frame_times: Sequence[float], waiting: int, running_for: Sequence[float]) -> float | None:
    """Seconds until the group's remaining frames are done.

    `frame_times` are the finished frames' run times, `waiting` the frames not started yet,
    `running_for` how long each running frame has run so far (one per slot on the group).
    """
    if waiting <= 0 and not running_for:
        return 0.0
    if not frame_times or not running_for:
        return None
    mean = math.fsum(frame_times) / len(frame_times)
    free_at = sorted(max(0.0, mean - ran) for ran in running_for)
    if waiting <= SIMULATE_UP_TO:
        heapq.heapify(free_at)
        for _ in range(waiting):
            heapq.heapreplace(free_at, free_at[0] + mean)
        return max(free_at)
    # Many frames: the slots stay busy to the end, so the work divides evenly (to a frame).
    slots = len(free_at)
    rounds = math.ceil((waiting + sum(t / mean for t in free_at)) / slots) if mean > 0 else 0
    return max(max(free_at), rounds * mean)
