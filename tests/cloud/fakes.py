"""In-memory stand-ins for the autoscaler's collaborators: the farm (the server's database) and a
cloud whose calls can be made to fail, time out, or lie about what they did."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from coalition.cloud.base import PENDING, RUNNING, STOPPING, CloudError, Instance
from tests.support import Clock

__all__ = ["Clock", "FakeCloud", "FakeFarm"]


@dataclass
class FakeFarm:
    """The Farm protocol over plain dicts: jobs are counted by tag set, workers are rows."""

    clock: Clock
    ready: dict[frozenset[str], int] = field(default_factory=dict)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    boots: list[tuple[str, float, str, str]] = field(default_factory=list)  # (kind, time, name, reason)

    def ready_jobs_by_tags(self) -> dict[frozenset[str], int]:
        return {k: v for k, v in self.ready.items() if v}

    def workers(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.rows.values()]

    def create_worker(self, name: str, state: str) -> None:
        self.rows[name] = {
            "name": name,
            "state": state,
            "ping_time": None,
            "start_time": self.clock(),
            "current_job": None,
            "active": True,
        }

    def set_worker_state(self, name: str, state: str) -> None:
        if name in self.rows:
            self.rows[name]["state"] = state

    def record_event(self, message: str) -> None:
        self.events.append(message)

    def boot_failures(self) -> list[tuple[float, str, str]]:
        out: list[tuple[float, str, str]] = []
        for kind, t, name, reason in self.boots:
            out = out + [(t, name, reason)] if kind == "failed" else []
        return out

    def record_boot_failure(self, name: str, reason: str) -> None:
        self.boots.append(("failed", self.clock(), name, reason))

    def record_boot_ok(self, name: str) -> None:
        self.boots.append(("ok", self.clock(), name, ""))

    def clear_boot_backoff(self, by: str) -> int:
        n = len(self.boot_failures())
        self.boots.append(("cleared", self.clock(), by, ""))
        return n

    # -- what the server would do as workers talk to it ----------------------------------------

    def register(self, name: str, busy_with: int | None = None) -> None:
        """Worker `name` pings (and maybe picks a job)."""
        row = self.rows.setdefault(
            name, {"name": name, "start_time": self.clock(), "active": True, "current_job": None}
        )
        row.update(ping_time=self.clock(), state="WORKING" if busy_with else "WAITING", current_job=busy_with)

    def pick(self, name: str, tags: frozenset[str] = frozenset(), job: int = 1) -> None:
        self.ready[tags] -= 1
        self.register(name, busy_with=job)


class FakeCloud:
    """A Provider with a switchboard of failures.

    fail: errors raised by the next calls of an operation (consumed in order);
    ghost_launches: an uncertain launch failure still creates the instance, listed only after
    `listing_lag` more calls of instances() (eventual consistency).
    """

    def __init__(self, clock: Clock):
        self.clock = clock
        self.vms: dict[str, Instance] = {}
        self.fail: dict[str, list[CloudError]] = {"instances": [], "launch": [], "terminate": []}
        self.ghost_launches = False
        self.listing_lag = 0
        self._hidden: dict[str, int] = {}
        self.calls: list[tuple[str, Any]] = []
        self.payloads: dict[str, str] = {}
        self.consoles: dict[str, str] = {}  # instance name -> console output
        self.foreign = Instance("i-foreign", "cloud-not-ours", RUNNING, 0.0)  # never listed: not our tag

    def _maybe_fail(self, op: str) -> None:
        if self.fail[op]:
            raise self.fail[op].pop(0)

    def instances(self) -> list[Instance]:
        self.calls.append(("instances", None))
        self._maybe_fail("instances")
        for name in list(self._hidden):
            self._hidden[name] -= 1
            if self._hidden[name] < 0:
                del self._hidden[name]
        return [i for i in self.vms.values() if i.name not in self._hidden]

    def launch(self, name: str, user_data: str) -> Instance:
        self.calls.append(("launch", name))
        if self.fail["launch"]:
            exc = self.fail["launch"].pop(0)
            if self.ghost_launches and exc.uncertain:
                self._create(name, user_data)
                self._hidden[name] = self.listing_lag
            raise exc
        inst = self._create(name, user_data)
        if self.listing_lag:
            self._hidden[name] = self.listing_lag
        return inst

    def _create(self, name: str, user_data: str) -> Instance:
        inst = Instance(f"i-{len(self.vms):04d}", name, PENDING, self.clock())
        self.vms[inst.id] = inst
        self.payloads[name] = user_data
        return inst

    def terminate(self, ids: Sequence[str]) -> None:
        self.calls.append(("terminate", tuple(ids)))
        self._maybe_fail("terminate")
        for iid in ids:
            self.vms.pop(iid, None)

    def boot_report(self, instance: Instance) -> str:
        from coalition.cloud.base import boot_failure_line

        self.calls.append(("boot_report", instance.name))
        return boot_failure_line(self.consoles.get(instance.name, ""))

    # -- what the cloud does on its own ----------------------------------------------------------

    def power_off(self, name: str, console: str = "") -> None:
        """The instance halts itself (a failed boot): GCE lists it stopped."""
        from coalition.cloud.base import STOPPED

        self.consoles[name] = console
        for iid, inst in self.vms.items():
            if inst.name == name:
                self.vms[iid] = replace(inst, state=STOPPED)

    def boot(self, name: str) -> None:
        for iid, inst in self.vms.items():
            if inst.name == name:
                self.vms[iid] = replace(inst, state=RUNNING)

    def interrupt(self, name: str) -> None:
        """A spot interruption: the instance goes away without asking us."""
        for iid, inst in list(self.vms.items()):
            if inst.name == name:
                self.vms[iid] = replace(inst, state=STOPPING)

    def reap(self) -> None:
        for iid, inst in list(self.vms.items()):
            if inst.state == STOPPING:
                del self.vms[iid]

    def by_name(self, name: str) -> Instance | None:
        return next((i for i in self.vms.values() if i.name == name), None)

    @property
    def names(self) -> list[str]:
        return sorted(i.name for i in self.vms.values())


def ec2_provider(aws: Any, settings: Any, clock: Clock) -> Any:
    """The real Ec2Provider over moto's clients, with the templates of `settings`."""
    from coalition.cloud.aws import Ec2Provider
    from coalition.cloud.userdata import Renderer

    assert settings.aws is not None
    r = Renderer(settings)
    return Ec2Provider(
        aws.client("ec2"),
        settings.aws,
        settings.farm,
        r.aws_run_instances,
        r.aws_spot_launch_specification,
        ssm=aws.client("ssm"),
        clock=clock,
    )
