"""The pure autoscaling policy, table-driven: one row per rule of issue 6."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from coalition.cloud.base import Instance
from coalition.cloud.policy import Backoff, Limits, Plan, demand, instance_names, plan

NOW = 100_000.0
LIMITS = Limits(
    max_instances=3,
    start_delay=30,
    min_lifetime=900,
    boot_timeout=600,
    batch=10,
    name_prefix="cloud-",
    offered=(frozenset({"linux"}), frozenset({"linux", "nuke"})),
)
UNTAGGED = frozenset()
LINUX = frozenset({"linux"})


def inst(name: str, state: str = "running", age: float = 1000, iid: str | None = None) -> Instance:
    return Instance(id=iid or f"i-{name}", name=name, state=state, launched_at=NOW - age)


def worker(
    name: str,
    state: str = "WAITING",
    job: int | None = None,
    ping_age: float = 1,
    active: bool = True,
    age: float = 1000,
) -> dict[str, Any]:
    return {
        "name": name,
        "state": state,
        "ping_time": NOW - ping_age,
        "start_time": NOW - age,
        "current_job": job,
        "active": active,
    }


@dataclass
class Case:
    id: str
    ready: dict[frozenset[str], int] = field(default_factory=dict)
    instances: list[Instance] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)
    limits: Limits = LIMITS
    last_launch: float | None = None
    backoff: Backoff = Backoff()
    inflight: dict[str, float] = field(default_factory=dict)
    launch: int = 0
    terminate: tuple[str, ...] = ()
    retire: tuple[str, ...] = ()
    hold: str = ""  # a substring the hold reason must contain ("" = no hold)
    reason: str = ""  # a substring some reason must contain


CASES = [
    Case("idle farm does nothing"),
    Case("untagged jobs launch one instance each", ready={UNTAGGED: 2}, launch=2),
    Case("batch caps a round", ready={UNTAGGED: 5}, limits=replace(LIMITS, batch=2), launch=2),
    Case("never more than the maximum", ready={UNTAGGED: 10}, launch=3, reason="0/3"),
    Case(
        "instances shutting down still count against the maximum",
        ready={UNTAGGED: 10},
        instances=[inst("cloud-a", "stopping"), inst("cloud-b", "running")],
        workers=[worker("cloud-b", "WORKING", job=1)],
        launch=1,
    ),
    Case(
        "at the maximum: hold",
        ready={UNTAGGED: 5},
        instances=[inst(f"cloud-{n}") for n in "abc"],
        workers=[worker(f"cloud-{n}", "WORKING", job=1) for n in "abc"],
        hold="workerinstancemax",
    ),
    Case(
        "maximum zero disables launching",
        ready={UNTAGGED: 5},
        limits=replace(LIMITS, max_instances=0),
        hold="workerinstancemax",
    ),
    Case(
        "launches in flight count as capacity",
        ready={UNTAGGED: 2},
        inflight={"cloud-x": NOW - 5, "cloud-y": NOW - 5},
    ),
    Case(
        "launches in flight count against the maximum",
        ready={UNTAGGED: 9},
        inflight={"cloud-x": NOW - 5, "cloud-y": NOW - 5},
        launch=1,
    ),
    Case(
        "an in-flight launch past the boot timeout no longer counts",
        ready={UNTAGGED: 9},
        inflight={"cloud-x": NOW - 600},
        launch=3,
    ),
    Case(
        "an in-flight launch that is listed is counted once",
        ready={UNTAGGED: 9},
        instances=[inst("cloud-x", "pending", age=5)],
        inflight={"cloud-x": NOW - 5},
        launch=2,
    ),
    Case(
        "only jobs a cloud worker could take count",
        ready={
            LINUX: 1,
            frozenset({"linux", "nuke"}): 1,
            frozenset({"windows"}): 4,
            frozenset({"nuke", "maya"}): 2,
        },
        launch=2,
    ),
    Case(
        "jobs no cloud worker takes launch nothing, and say so",
        ready={frozenset({"windows"}): 4},
        reason="need tags no cloud worker offers",
    ),
    Case(
        "without offered tags, only untagged jobs count",
        ready={LINUX: 3, UNTAGGED: 1},
        limits=replace(LIMITS, offered=()),
        launch=1,
    ),
    Case(
        "booting instances are capacity",
        ready={UNTAGGED: 2},
        instances=[inst("cloud-a", "pending", age=30), inst("cloud-b", "running", age=60)],
        workers=[worker("cloud-b", "STARTING")],
    ),
    Case(
        "an idle registered worker is capacity",
        ready={UNTAGGED: 1},
        instances=[inst("cloud-a", age=100)],
        workers=[worker("cloud-a")],
    ),
    Case(
        "a busy worker is not capacity",
        ready={UNTAGGED: 1},
        instances=[inst("cloud-a", age=100)],
        workers=[worker("cloud-a", "WORKING", job=7)],
        launch=1,
    ),
    Case(
        "a stopped (inactive) worker is not capacity, and is not terminated",
        ready={UNTAGGED: 1},
        instances=[inst("cloud-a", age=5000)],
        workers=[worker("cloud-a", active=False)],
        launch=1,
    ),
    Case("start delay holds the next round", ready={UNTAGGED: 1}, last_launch=NOW - 29, hold="start delay"),
    Case("start delay passed", ready={UNTAGGED: 1}, last_launch=NOW - 30, launch=1),
    Case(
        "throttled: back off",
        ready={UNTAGGED: 1},
        backoff=Backoff(failures=2, until=NOW + 5),
        hold="backing off",
    ),
    Case("back-off over", ready={UNTAGGED: 1}, backoff=Backoff(failures=2, until=NOW), launch=1),
    Case(
        "never registered within the boot timeout: terminate",
        instances=[inst("cloud-a", "running", age=600), inst("cloud-b", "pending", age=700)],
        workers=[worker("cloud-a", "STARTING", age=600)],
        terminate=("i-cloud-a", "i-cloud-b"),
        reason="boot timeout",
    ),
    Case(
        "still within the boot timeout: wait",
        instances=[inst("cloud-a", "running", age=599)],
        workers=[worker("cloud-a", "STARTING", age=599)],
    ),
    Case(
        # Issue 14: no longer relaunched in the same second; boot back-off (test_boot_backoff.py).
        "a stuck instance is terminated; the next launch backs off",
        ready={UNTAGGED: 1},
        instances=[inst("cloud-a", "running", age=601)],
        workers=[worker("cloud-a", "STARTING")],
        terminate=("i-cloud-a",),
        hold="boot back-off for 60s",
    ),
    Case(
        "idle past the minimum lifetime: terminate",
        instances=[inst("cloud-a", age=900)],
        workers=[worker("cloud-a")],
        terminate=("i-cloud-a",),
        reason="idle",
    ),
    Case(
        "idle but younger than the minimum lifetime: keep",
        instances=[inst("cloud-a", age=899)],
        workers=[worker("cloud-a")],
    ),
    Case(
        "idle and old, but a job waits for it: keep",
        ready={UNTAGGED: 1},
        instances=[inst("cloud-a", age=5000)],
        workers=[worker("cloud-a")],
    ),
    Case(
        "idle and old, and the waiting job is not for it: terminate",
        ready={frozenset({"windows"}): 1},
        instances=[inst("cloud-a", age=5000)],
        workers=[worker("cloud-a")],
        terminate=("i-cloud-a",),
    ),
    Case(
        "only the surplus goes, oldest first",
        ready={UNTAGGED: 1},
        instances=[inst("cloud-a", age=3000), inst("cloud-b", age=2000), inst("cloud-c", age=1000)],
        workers=[worker("cloud-a"), worker("cloud-b"), worker("cloud-c")],
        terminate=("i-cloud-a", "i-cloud-b"),
    ),
    Case(
        "booting capacity makes an old idle instance surplus",
        instances=[inst("cloud-a", age=3000), inst("cloud-b", "pending", age=10)],
        workers=[worker("cloud-a")],
        ready={UNTAGGED: 1},
        terminate=("i-cloud-a",),
    ),
    Case(
        "a busy worker is never terminated",
        instances=[inst("cloud-a", age=5000)],
        workers=[worker("cloud-a", "WORKING", job=3)],
    ),
    Case(
        "a worker silent past the boot timeout: terminate its instance",
        instances=[inst("cloud-a", age=5000)],
        workers=[worker("cloud-a", "TIMEOUT", ping_age=600)],
        terminate=("i-cloud-a",),
        reason="silent",
    ),
    Case(
        "a worker silent for a moment: keep, but it is no capacity",
        ready={UNTAGGED: 1},
        instances=[inst("cloud-a", age=5000)],
        workers=[worker("cloud-a", "TIMEOUT", ping_age=60)],
        launch=1,
    ),
    Case(
        "a TERMINATED worker whose instance still runs: terminate again",
        instances=[inst("cloud-a", age=100)],
        workers=[worker("cloud-a", "TERMINATED")],
        terminate=("i-cloud-a",),
    ),
    Case(
        "a stopped (preempted) instance is deleted",
        instances=[inst("cloud-a", "stopped", age=100)],
        workers=[worker("cloud-a", "TIMEOUT")],
        terminate=("i-cloud-a",),
    ),
    Case(
        "workers that are not ours are never touched",
        ready={UNTAGGED: 1},
        workers=[
            worker("render01"),
            worker("render02", "STARTING", age=5000),
            worker("cloudy", "STARTING", age=9999),
        ],
        launch=1,
    ),
    Case(
        "an owned instance without our prefix never joins a worker row",
        instances=[inst("render01", age=5000)],
        workers=[worker("render01")],
        terminate=("i-render01",),
        reason="no worker registered",
    ),
    Case(
        "our STARTING row whose instance vanished is retired after the boot timeout",
        workers=[worker("cloud-gone", "STARTING", age=600), worker("cloud-young", "STARTING", age=10)],
        retire=("cloud-gone",),
    ),
    Case(
        "our row in another state without an instance is left to the server's timeout",
        workers=[worker("cloud-gone", "WAITING", age=5000), worker("cloud-x", "TIMEOUT", age=5000)],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_policy(case: Case) -> None:
    result = plan(
        ready=case.ready,
        instances=case.instances,
        workers=case.workers,
        limits=case.limits,
        now=NOW,
        last_launch=case.last_launch,
        backoff=case.backoff,
        inflight=case.inflight,
    )
    assert len(result.launch) == case.launch, result.reasons
    assert sorted(result.terminate) == sorted(case.terminate), result.reasons
    assert result.retire == case.retire, result.reasons
    if case.hold:
        assert case.hold in result.hold, result.hold
    else:
        assert result.hold == ""
    if case.reason:
        assert any(case.reason in r for r in result.reasons), result.reasons
    # Every decision carries a reason.
    assert len(result.reasons) >= bool(result.launch) + len(result.terminate) + len(result.retire)
    for name in result.launch:
        assert name.startswith(case.limits.name_prefix)


def test_names_are_unique_and_dns_safe() -> None:
    names = instance_names("cloud-", NOW, 50)
    assert len(set(names)) == 50
    assert all(n.replace("-", "").isalnum() and n == n.lower() for n in names)
    assert set(instance_names("cloud-", NOW + 0.001, 5)).isdisjoint(instance_names("cloud-", NOW, 5))


def test_demand_splits_takeable_jobs() -> None:
    ready = {UNTAGGED: 2, LINUX: 3, frozenset({"gpu"}): 4, frozenset({"linux", "x"}): 0}
    assert demand(ready, LIMITS) == (5, 4)


def test_backoff_doubles_and_caps() -> None:
    b = Backoff()
    delays = []
    for _ in range(8):
        b = b.throttled(NOW)
        delays.append(b.until - NOW)
    assert delays[:4] == [30, 60, 120, 240]
    assert max(delays) == 900
    assert b.succeeded() == Backoff()


def _random_state(rng: random.Random, limits: Limits) -> dict[str, Any]:
    states = ["pending", "running", "running", "running", "stopping", "stopped"]
    wstates = ["STARTING", "WAITING", "WORKING", "TIMEOUT", "TERMINATED", None]
    count = rng.randint(0, limits.max_instances)
    instances, workers, inflight = [], [], {}
    for i in range(count):
        name = f"cloud-{i}"
        instances.append(inst(name, rng.choice(states), age=rng.uniform(0, 3000)))
        ws = rng.choice(wstates)
        if ws:
            workers.append(worker(name, ws, job=rng.choice([None, 5]), ping_age=rng.uniform(0, 1200)))
    for i in range(rng.randint(0, max(0, limits.max_instances - count))):
        inflight[f"cloud-f{i}"] = NOW - rng.uniform(0, 1200)
    workers += [worker(f"lan{i}", rng.choice(["WAITING", "WORKING"])) for i in range(rng.randint(0, 3))]
    ready = {
        frozenset(rng.sample(["linux", "nuke", "gpu"], rng.randint(0, 2))): rng.randint(0, 40)
        for _ in range(3)
    }
    return {"instances": instances, "workers": workers, "inflight": inflight, "ready": ready}


def test_maximum_holds_for_any_input() -> None:
    rng = random.Random(6)
    for _ in range(3000):
        limits = replace(LIMITS, max_instances=rng.randint(0, 12), batch=rng.randint(1, 20))
        state = _random_state(rng, limits)
        result: Plan = plan(limits=limits, now=NOW, **state)
        listed = {i.name for i in state["instances"]}
        in_flight = [
            n for n, t in state["inflight"].items() if n not in listed and NOW - t < limits.boot_timeout
        ]
        assert len(state["instances"]) + len(in_flight) + len(result.launch) <= max(
            limits.max_instances, len(state["instances"]) + len(in_flight)
        )
        # Not ours: never terminated, never retired.
        assert not any(n.startswith("lan") for n in result.retire)
        assert set(result.terminate) <= {i.id for i in state["instances"]}
        # Busy instances are never terminated.
        busy = {w["name"] for w in state["workers"] if w["state"] == "WORKING"}
        assert not any(
            i.name in busy and i.id in result.terminate and i.state == "running" for i in state["instances"]
        )


def test_spot_interruption_replaces_the_worker() -> None:
    """An interrupted spot instance vanishes mid-job; its job comes back; a replacement starts."""
    limits = replace(LIMITS, max_instances=2)
    a, b = inst("cloud-a", age=2000), inst("cloud-b", age=2000)
    busy = [worker("cloud-a", "WORKING", job=1), worker("cloud-b", "WORKING", job=2)]
    # Tick 1: both busy, one more job waits: at the maximum.
    p1 = plan(ready={UNTAGGED: 1}, instances=[a, b], workers=busy, limits=limits, now=NOW)
    assert p1.launch == () and "workerinstancemax" in p1.hold
    # Tick 2: AWS reclaims cloud-b (shutting down); its worker is still WORKING on the server.
    b_going = replace(b, state="stopping")
    p2 = plan(ready={UNTAGGED: 1}, instances=[a, b_going], workers=busy, limits=limits, now=NOW + 10)
    assert p2.launch == () and p2.terminate == ()
    # Tick 3: cloud-b is gone; the server timed its worker out and requeued job 2 (no retry spent).
    timed_out = [busy[0], worker("cloud-b", "TIMEOUT", ping_age=70)]
    p3 = plan(ready={UNTAGGED: 2}, instances=[a], workers=timed_out, limits=limits, now=NOW + 80)
    assert len(p3.launch) == 1 and p3.terminate == () and p3.retire == ()
    # Tick 4: the replacement is booting; it covers one job, the maximum stops a second launch.
    c = inst(p3.launch[0], "pending", age=10)
    p4 = plan(
        ready={UNTAGGED: 2},
        instances=[a, c],
        workers=[*timed_out, worker(c.name, "STARTING")],
        limits=limits,
        now=NOW + 90,
        last_launch=NOW + 80,
    )
    assert p4.launch == () and "workerinstancemax" in p4.hold
