"""The autoscaler's glue: plans carried out against a fake farm and a cloud that misbehaves, and
once against moto with the real EC2 provider."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from coalition.cloud.base import CloudError, Throttled
from coalition.cloud.config import CloudSettings
from coalition.cloud.reconcile import Autoscaler
from tests.cloud.fakes import Clock, FakeCloud, FakeFarm

ANY = frozenset()


@pytest.fixture
def rig(
    make_settings: Callable[..., CloudSettings],
) -> Callable[..., tuple[Autoscaler, FakeCloud, FakeFarm, Clock]]:
    def build(**coalition: str) -> tuple[Autoscaler, FakeCloud, FakeFarm, Clock]:
        values = {
            "workerinstancemax": "3",
            "workerinstancestartdelay": "30",
            "workerinstanceminimumlifetime": "900",
            "workerinstanceboottimeout": "600",
            **coalition,
        }
        settings = make_settings("aws", {"coalition": values})
        clock = Clock()
        cloud, farm = FakeCloud(clock), FakeFarm(clock)
        return Autoscaler(cloud, settings, farm, clock), cloud, farm, clock

    return build


def test_a_waiting_job_starts_a_worker_that_is_terminated_when_idle(rig: Any) -> None:
    scaler, cloud, farm, clock = rig()
    farm.ready[ANY] = 1
    plan = scaler.tick()
    assert plan is not None and len(plan.launch) == 1
    name = plan.launch[0]
    assert cloud.names == [name]
    assert farm.rows[name]["state"] == "STARTING"
    assert cloud.payloads[name].startswith("#cloud-config\n") and f"name = {name}" in cloud.payloads[name]
    assert any(e.startswith("cloud: launch 1 instance(s)") for e in farm.events)
    # It boots, registers and runs the job; nothing else happens meanwhile.
    clock.advance(120)
    cloud.boot(name)
    farm.pick(name)
    assert scaler.tick() is not None and cloud.names == [name]
    # Job done; idle but young: kept.
    clock.advance(300)
    farm.register(name)
    assert scaler.tick().terminate == ()  # type: ignore[union-attr]
    # Past the minimum lifetime: terminated, and its worker marked TERMINATED.
    clock.advance(900)
    plan = scaler.tick()
    assert plan is not None and len(plan.terminate) == 1
    assert cloud.names == []
    assert farm.rows[name]["state"] == "TERMINATED"
    assert any("idle" in e and name in e for e in farm.events)


def test_uncertain_launch_failures_never_push_past_the_maximum(rig: Any) -> None:
    """Every launch times out, yet the instance exists and is listed only 3 ticks later."""
    scaler, cloud, farm, clock = rig(workerinstancestartdelay="0", workerinstancebatch="10")
    farm.ready[ANY] = 50
    cloud.ghost_launches = True
    cloud.listing_lag = 3
    for _ in range(40):
        cloud.fail["launch"] = [CloudError("timed out", uncertain=True)] * 10
        scaler.tick()
        assert len(cloud.vms) <= 3
        clock.advance(10)
    assert len(cloud.vms) == 3


def test_definite_launch_failures_launch_nothing_and_retry(rig: Any) -> None:
    scaler, cloud, farm, clock = rig(workerinstancestartdelay="0")
    farm.ready[ANY] = 2
    cloud.fail["launch"] = [CloudError("InvalidParameterValue")]
    scaler.tick()
    assert cloud.vms == {} and scaler.inflight == {}
    assert any("failed: InvalidParameterValue" in e for e in farm.events)
    clock.advance(10)
    scaler.tick()
    assert len(cloud.vms) == 2


def test_throttling_backs_off(rig: Any) -> None:
    scaler, cloud, farm, clock = rig(workerinstancestartdelay="0", workerinstancemax="10")
    farm.ready[ANY] = 3
    cloud.fail["launch"] = [Throttled("RequestLimitExceeded")]
    scaler.tick()
    launches = lambda: sum(1 for c in cloud.calls if c[0] == "launch")  # noqa: E731
    assert launches() == 1 and scaler.backoff.failures == 1
    for _ in range(2):  # 30 s back-off: ticks at +10 and +20 launch nothing
        clock.advance(10)
        plan = scaler.tick()
        assert plan is not None and "backing off" in plan.hold
    assert launches() == 1
    clock.advance(10)
    scaler.tick()
    assert len(cloud.vms) == 3 and scaler.backoff.failures == 0
    # Throttled again twice in a row: the delay doubles.
    farm.ready[ANY] = 6
    cloud.fail["launch"] = [Throttled("x"), Throttled("x")]
    clock.advance(30)
    scaler.tick()
    assert scaler.backoff.until - clock() == 30
    clock.advance(30)
    scaler.tick()
    assert scaler.backoff.until - clock() == 60


def test_listing_failure_changes_nothing(rig: Any) -> None:
    scaler, cloud, farm, clock = rig()
    farm.ready[ANY] = 3
    cloud.fail["instances"] = [CloudError("connection reset", uncertain=True)]
    assert scaler.tick() is None
    assert cloud.vms == {} and farm.rows == {}
    cloud.fail["instances"] = [Throttled("Throttling")]
    assert scaler.tick() is None and scaler.backoff.failures == 1


def test_instances_that_never_register_are_replaced_one_probe_at_a_time(rig: Any) -> None:
    scaler, cloud, farm, clock = rig(workerinstancestartdelay="0")
    farm.ready[ANY] = 10
    seen: set[str] = set()
    for _ in range(200):  # 2000 s: three boot timeouts
        scaler.tick()
        assert len(cloud.vms) <= 3
        seen |= set(cloud.names)
        clock.advance(10)
    # 3 at t=0, all failed at 600 s; back-off 240 s, a probe at 840 s fails at 1440 s; back-off
    # 480 s, the next probe at 1920 s. Before issue 14: 9 or more, relaunched in the same second.
    assert len(seen) == 5, sorted(seen)
    assert [n for _, n, _ in farm.boot_failures()] == sorted(seen)[:4]
    assert all("no worker registered" in r for _, _, r in farm.boot_failures())
    assert all(farm.rows[n]["state"] == "TERMINATED" for n in seen - set(cloud.names))


def test_terminate_button_touches_only_our_instances(rig: Any) -> None:
    scaler, cloud, farm, clock = rig()
    farm.ready[ANY] = 2
    names = scaler.tick().launch  # type: ignore[union-attr]
    farm.register("render01")  # a LAN worker
    farm.rows["cloud-not-ours"] = {
        "name": "cloud-not-ours",
        "state": "WAITING",
    }  # prefix, but no instance of ours
    done = scaler.terminate([names[0], "render01", "cloud-not-ours"])
    assert done == [names[0]]
    assert cloud.names == [names[1]]
    assert farm.rows[names[0]]["state"] == "TERMINATED"
    assert farm.rows["render01"]["state"] == "WAITING" and farm.rows["cloud-not-ours"]["state"] == "WAITING"
    assert any("requested by an operator" in e for e in farm.events)
    assert scaler.terminate(["render01"]) == []


def test_hold_reasons_are_recorded_once(rig: Any) -> None:
    scaler, cloud, farm, clock = rig(workerinstancemax="0")
    farm.ready[ANY] = 5
    for _ in range(5):
        scaler.tick()
        clock.advance(10)
    holds = [e for e in farm.events if "hold:" in e]
    assert len(holds) == 1 and "workerinstancemax" in holds[0]


def test_spot_interruption_requeues_and_replaces(rig: Any) -> None:
    scaler, cloud, farm, clock = rig(workerinstancestartdelay="0")
    farm.ready[ANY] = 2
    a, b = scaler.tick().launch  # type: ignore[union-attr]
    clock.advance(100)
    for n in (a, b):
        cloud.boot(n)
        farm.pick(n)
    scaler.tick()
    # AWS reclaims b; the server notices its silence and puts its job back (no retry spent).
    cloud.interrupt(b)
    clock.advance(10)
    assert scaler.tick().launch == ()  # type: ignore[union-attr]
    cloud.reap()
    farm.rows[b]["state"] = "TIMEOUT"
    farm.ready[ANY] += 1
    clock.advance(60)
    plan = scaler.tick()
    assert plan is not None and len(plan.launch) == 1 and plan.terminate == ()
    assert len(cloud.vms) == 2 and farm.rows[b]["state"] == "TIMEOUT"


def test_a_template_error_stops_the_round(rig: Any) -> None:
    scaler, cloud, farm, clock = rig()

    def broken(name: str) -> str:
        raise ValueError("template cloud-init/worker.yaml.j2: 'x' is undefined")

    scaler.boot_payload = broken
    farm.ready[ANY] = 2
    scaler.tick()
    assert cloud.vms == {} and any("cannot launch" in e for e in farm.events)


def test_event_recording_failure_does_not_stop_scaling(rig: Any) -> None:
    scaler, cloud, farm, clock = rig()

    def broken(message: str) -> None:
        raise RuntimeError("database is locked")

    farm.record_event = broken  # type: ignore[method-assign]
    farm.ready[ANY] = 1
    scaler.tick()
    assert len(cloud.vms) == 1


def test_start_delay_survives_a_restart(rig: Any) -> None:
    """A new autoscaler (another server took the lease) reads the last launch from the cloud."""
    scaler, cloud, farm, clock = rig()
    farm.ready[ANY] = 1
    scaler.tick()
    fresh = Autoscaler(cloud, scaler.settings, farm, clock, boot_payload=scaler.boot_payload)
    farm.ready[ANY] = 5
    clock.advance(10)
    plan = fresh.tick()
    assert plan is not None and plan.launch == () and "start delay" in plan.hold


def test_with_moto_and_spot_requests(aws: Any, make_settings: Callable[..., CloudSettings]) -> None:
    """A job waits: a spot request; the worker registers and works; idle past the minimum
    lifetime: the instance is terminated and its spot request cancelled."""
    from coalition.cloud.aws import Ec2Provider
    from coalition.cloud.userdata import Renderer

    settings = make_settings("aws", {"worker": {"spotmethod": "request-spot-instances"}})
    settings = replace(settings, limits=replace(settings.limits, min_lifetime=60))
    r = Renderer(settings)
    assert settings.aws is not None
    ec2 = aws.client("ec2")
    p = Ec2Provider(ec2, settings.aws, settings.farm, r.aws_run_instances, r.aws_spot_launch_specification)
    clock = Clock(time.time())  # moto stamps LaunchTime with the real time
    farm = FakeFarm(clock)
    scaler = Autoscaler(p, settings, farm, clock)
    farm.ready[ANY] = 1
    (name,) = scaler.tick().launch  # type: ignore[union-attr]
    requests = ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
    assert len(requests) == 1
    farm.pick(name)
    clock.advance(30)
    scaler.tick()
    farm.register(name)  # job finished
    clock.advance(120)
    plan = scaler.tick()
    assert plan is not None and len(plan.terminate) == 1
    instance = ec2.describe_instances(InstanceIds=[plan.terminate[0]])["Reservations"][0]["Instances"][0]
    assert instance["State"]["Name"] in ("shutting-down", "terminated")
    live = [
        q
        for q in ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
        if q["State"] in ("open", "active")
    ]
    assert live == []
    assert farm.rows[name]["state"] == "TERMINATED"
