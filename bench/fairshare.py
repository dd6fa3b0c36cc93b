"""Fair-share benchmark: the shares reached on a simulated farm.

The real use cases over a real SQLite file, a hand-moved clock, and N simulated slots: each
slot picks (the server's own pick, fair share on), "renders" for a random time, ends its
run, and picks again. Users at the same priority submit very different amounts of work
with different weights. Every simulated second we record how many slots each user holds;
printed (JSON) are each user's mean share of the busy slots once the farm is full, next to
the share scheduling.fair_shares says it should reach (among the users with work left: the
small user's 10 frames are done early), when the small user's last frame finished, and
the same farm without fair share.

    python bench/fairshare.py [--slots 40] [--seconds 600]
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from coalition import scheduling  # noqa: E402
from coalition.joblogs import JobLogs  # noqa: E402
from coalition.model import JobSpec  # noqa: E402
from coalition.store import SqliteStore  # noqa: E402
from coalition.usecases import Context, Settings, UseCases  # noqa: E402
from coalition.usecases.messages import Ping  # noqa: E402

# user: (frames queued, weight). "big" came first with 10,000 frames.
USERS = {"big": (10_000, 1.0), "lead": (2_000, 3.0), "mid": (2_000, 1.0), "small": (10, 1.0)}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def simulate(fair: bool, slots: int, seconds: float, seed: int = 3) -> dict[str, Any]:
    rng = random.Random(seed)
    root = tempfile.mkdtemp(prefix="coal-fair-")
    store = SqliteStore(os.path.join(root, "c.db"))
    store.init()
    clock = Clock()
    weights = tuple((u, w) for u, (_, w) in USERS.items())
    ctx = Context(
        store,
        JobLogs(os.path.join(root, "logs"), 1 << 20),
        Settings(worker_timeout=1e9, fair_share=weights if fair else None),
        clock,
    )
    uc = UseCases.over(ctx)
    for user, (frames, _) in USERS.items():  # submitted in this order, all at priority 1000
        group = uc.operator.submit(JobSpec(title=user, user=user))
        uc.operator.submit_many([JobSpec(parent=group, command="r", user=user) for _ in range(frames)])
    owner: dict[int, str] = {}
    ends: list[tuple[float, int, dict[str, Any]]] = []  # (time, slot, job)
    idle: list[int] = list(range(slots))
    samples: list[dict[str, int]] = []
    finished: dict[str, int] = dict.fromkeys(USERS, 0)
    small_done_at: float | None = None
    started = time.perf_counter()
    picks = 0
    while clock.now < 1_000_000.0 + seconds:
        for slot in list(idle):
            job = uc.workers.pick(Ping(name=f"slot{slot}"))
            picks += 1
            if job is None:
                continue
            idle.remove(slot)
            owner[job["id"]] = job["user"]
            heapq.heappush(ends, (clock.now + rng.uniform(5.0, 15.0), slot, job))
        holding: dict[str, int] = dict.fromkeys(USERS, 0)
        for _, _, job in ends:
            holding[owner[job["id"]]] += 1
        samples.append(holding)
        clock.now += 1.0
        while ends and ends[0][0] <= clock.now:
            _, slot, job = heapq.heappop(ends)
            uc.workers.end(Ping(name=f"slot{slot}"), job["id"], job["event"], 0, b"", None)
            idle.append(slot)
            finished[owner[job["id"]]] += 1
            if small_done_at is None and finished["small"] == USERS["small"][0]:
                small_done_at = clock.now - 1_000_000.0
    elapsed = time.perf_counter() - started
    store.close()
    steady = samples[60:]  # once every slot has had its first runs and small is done
    busy = sum(sum(s.values()) for s in steady) or 1
    return {
        "share": {u: round(sum(s[u] for s in steady) / busy, 3) for u in USERS},
        "picks_per_s_wall": round(picks / elapsed),
        "small_done_after_s": small_done_at,
        "left": {u: USERS[u][0] - finished[u] for u in USERS},
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--slots", type=int, default=40)
    p.add_argument("--seconds", type=float, default=600)
    args = p.parse_args()
    fair = simulate(True, args.slots, args.seconds)
    plain = simulate(False, args.slots, args.seconds)
    left = {u: n for u, n in fair["left"].items() if n > 0}
    target = scheduling.fair_shares(args.slots, left, {u: w for u, (_, w) in USERS.items()})
    print(
        json.dumps(
            {
                "bench": "fairshare",
                "slots": args.slots,
                "simulated_seconds": args.seconds,
                "users": {u: {"queued": n, "weight": w} for u, (n, w) in USERS.items()},
                "target_share": {u: round(n / args.slots, 3) for u, n in target.items()},
                "fair_share_reached": fair["share"],
                "without_fair_share": plain["share"],
                "small_user_done_after_s": {
                    "fair_share": fair["small_done_after_s"],
                    "without": plain["small_done_after_s"],
                },
                "picks_per_s_wall": fair["picks_per_s_wall"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
