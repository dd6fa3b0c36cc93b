"""The autoscaling policy: a pure function from what the farm and the cloud look like to a Plan.

No I/O, no clock, nothing of ours imported: `reconcile.Autoscaler` gathers the inputs, calls
plan() and carries the Plan out. Tests and bench/autoscale.py call plan() directly.

The rules (issue 6):
* never exceed `max_instances`: every owned instance counts, booting, running or shutting
  down, and so does every launch still in flight (sent, not yet listed by the cloud);
* scale only for jobs a cloud worker could take: a job counts when its effective tags are a
  subset of one of the cloud worker's rule lines; untagged jobs always count;
* a worker or instance that is not ours is never touched: instances come from the provider,
  which lists only those carrying our tag, and a worker is joined to an instance only when its
  name carries our prefix and equals the instance's name;
* an instance whose worker never registered within `boot_timeout` is terminated, as is one
  whose worker fell silent, one whose worker was retired, and one left stopped;
* an idle instance is terminated only once it is `min_lifetime` old, and only while idle
  cloud capacity exceeds the jobs that wait for it;
* launch rounds are at least `start_delay` apart, and none happens while backing off after
  throttling.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# Worker states (DESIGN.md section 1), spelled out: this module imports nothing of ours.
W_WAITING, W_WORKING, W_TIMEOUT, W_STARTING, W_TERMINATED = (
    "WAITING",
    "WORKING",
    "TIMEOUT",
    "STARTING",
    "TERMINATED",
)
# Instance states, as normalised by the providers (coalition.cloud.base).
PENDING, RUNNING, STOPPING, STOPPED = "pending", "running", "stopping", "stopped"


class InstanceView(Protocol):
    """What plan() reads of an instance (coalition.cloud.base.Instance fits)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def launched_at(self) -> float: ...


@dataclass(frozen=True)
class Limits:
    """The knobs of the policy, from cloud_<provider>.ini (keys in the comments)."""

    max_instances: int = 3  # [coalition] workerinstancemax
    start_delay: float = 30.0  # [coalition] workerinstancestartdelay: seconds between launch rounds
    min_lifetime: float = 900.0  # [coalition] workerinstanceminimumlifetime
    boot_timeout: float = 900.0  # [coalition] workerinstanceboottimeout (new)
    batch: int = 10  # [coalition] workerinstancebatch (new): most instances per launch round
    name_prefix: str = "cloud-"  # [worker] nameprefix
    # [worker] affinity (new): the rule lines a cloud worker offers. () takes untagged jobs only.
    offered: tuple[frozenset[str], ...] = ()

    def takes(self, tags: frozenset[str]) -> bool:
        """Could a cloud worker run a job with these effective tags?"""
        return not tags or any(tags <= line for line in self.offered)


@dataclass(frozen=True)
class Backoff:
    """Throttling back-off: no launch before `until`; the delay doubles per failure."""

    failures: int = 0
    until: float = 0.0

    def throttled(self, now: float, base: float = 30.0, cap: float = 900.0) -> Backoff:
        """The state after one more throttled call at `now` (30 s, 60 s, ... capped at 15 min)."""
        delay = min(cap, base * 2**self.failures)
        return Backoff(failures=self.failures + 1, until=now + delay)

    def succeeded(self) -> Backoff:
        """The state after a call went through."""
        return Backoff()


@dataclass(frozen=True)
class Plan:
    """What to do now. `reasons` has one line per decision, for the log and the event table."""

    launch: tuple[str, ...] = ()  # names of the instances to start (one worker each)
    terminate: tuple[str, ...] = ()  # instance ids to terminate
    retire: tuple[str, ...] = ()  # our STARTING worker rows whose instance is gone: mark TERMINATED
    reasons: tuple[str, ...] = ()
    hold: str = ""  # why jobs wait and nothing is launched; "" when not held back


@dataclass(frozen=True)
class _Seen:
    """One owned instance, classified."""

    instance: InstanceView
    worker: Mapping[str, Any] | None

    @property
    def registered(self) -> bool:
        # STARTING is the row the autoscaler creates at launch; the first pick or heartbeat
        # turns it into WAITING or WORKING, which is what "registered" means here.
        return self.worker is not None and self.worker.get("state") in (W_WAITING, W_WORKING, W_TIMEOUT)

    @property
    def busy(self) -> bool:
        w = self.worker
        return w is not None and (w.get("state") == W_WORKING or w.get("current_job") not in (None, 0, ""))

    @property
    def idle(self) -> bool:
        w = self.worker
        return (
            self.instance.state == RUNNING
            and w is not None
            and w.get("state") == W_WAITING
            and not self.busy
            and bool(w.get("active", True))
        )


def demand(ready: Mapping[frozenset[str], int], limits: Limits) -> tuple[int, int]:
    """(jobs a cloud worker could take, jobs it could not) among the ready ones."""
    takeable = sum(n for tags, n in ready.items() if n > 0 and limits.takes(frozenset(tags)))
    total = sum(n for n in ready.values() if n > 0)
    return takeable, total - takeable


def instance_names(prefix: str, now: float, count: int) -> tuple[str, ...]:
    """Fresh, unique, DNS-safe names: prefix + launch time in ms + index (Coalition 4: prefix + time)."""
    stamp = int(now * 1000)
    return tuple(f"{prefix}{stamp}-{i}" for i in range(count))


def plan(
    *,
    ready: Mapping[frozenset[str], int],
    instances: Sequence[InstanceView],
    workers: Iterable[Mapping[str, Any]],
    limits: Limits,
    now: float,
    last_launch: float | None = None,
    backoff: Backoff = Backoff(),
    inflight: Mapping[str, float] | None = None,
) -> Plan:
    """Decide launches and terminations.

    ready: pickable job counts keyed by effective tag set; instances: what the provider lists
    (ours only); workers: every worker row (dicts: name, state, ping_time, start_time,
    current_job, active); last_launch: time of the last launch round; backoff: throttling
    state; inflight: names launched (or attempted with an uncertain outcome) at a time, that
    the cloud may not list yet.
    """
    prefix = limits.name_prefix
    by_name = {w["name"]: w for w in workers if str(w.get("name", "")).startswith(prefix)}
    listed_names = {i.name for i in instances}
    # Launches the cloud does not list yet still count, until the boot timeout says they failed.
    unlisted = {
        n: t for n, t in (inflight or {}).items() if n not in listed_names and now - t < limits.boot_timeout
    }
    reasons: list[str] = []
    terminate: list[str] = []
    seen = [_Seen(i, by_name.get(i.name) if i.name.startswith(prefix) else None) for i in instances]

    # 1. Unhealthy instances go, whatever their age: they cost money and do no work.
    booting = 0
    healthy: list[_Seen] = []
    for s in seen:
        inst, w = s.instance, s.worker
        age = now - inst.launched_at
        if inst.state == STOPPING:
            continue  # already going; still counted against the maximum below
        if inst.state == STOPPED:
            terminate.append(inst.id)
            reasons.append(f"terminate {inst.name} ({inst.id}): instance is stopped (preempted?)")
        elif w is not None and w.get("state") == W_TERMINATED:
            terminate.append(inst.id)
            reasons.append(f"terminate {inst.name} ({inst.id}): its worker is TERMINATED")
        elif not s.registered:
            if age >= limits.boot_timeout:
                terminate.append(inst.id)
                reasons.append(
                    f"terminate {inst.name} ({inst.id}): no worker registered "
                    f"{age:.0f}s after launch (boot timeout {limits.boot_timeout:.0f}s)"
                )
            else:
                booting += 1
        elif w is not None and w.get("state") == W_TIMEOUT:
            silent = now - float(w.get("ping_time") or inst.launched_at)
            if silent >= limits.boot_timeout:
                terminate.append(inst.id)
                reasons.append(f"terminate {inst.name} ({inst.id}): worker silent for {silent:.0f}s")
        else:
            healthy.append(s)

    # 2. Demand against capacity: idle registered workers plus instances on their way.
    takeable, untakeable = demand(ready, limits)
    idle = [s for s in healthy if s.idle]
    capacity = len(idle) + booting + len(unlisted)
    if untakeable and takeable <= capacity:
        reasons.append(f"note: {untakeable} ready job(s) need tags no cloud worker offers")

    # 3. Surplus idle capacity: terminate the oldest idle instances past the minimum lifetime.
    surplus = capacity - takeable
    if surplus > 0:
        old_enough = sorted(
            (s for s in idle if now - s.instance.launched_at >= limits.min_lifetime),
            key=lambda s: (s.instance.launched_at, s.instance.name),
        )
        for s in old_enough[:surplus]:
            terminate.append(s.instance.id)
            reasons.append(
                f"terminate {s.instance.name} ({s.instance.id}): idle, "
                f"{now - s.instance.launched_at:.0f}s old, {takeable} job(s) for {capacity} idle/booting"
            )

    # 4. Launch for the deficit, within the maximum, the start delay and the back-off.
    launch: tuple[str, ...] = ()
    hold = ""
    deficit = takeable - capacity
    if deficit > 0:
        owned = len(instances) + len(unlisted)
        headroom = limits.max_instances - owned
        if headroom <= 0:
            hold = f"{deficit} job(s) wait; {owned} instance(s) = workerinstancemax {limits.max_instances}"
        elif now < backoff.until:
            hold = f"{deficit} job(s) wait; throttled, backing off for {backoff.until - now:.0f}s"
        elif last_launch is not None and now - last_launch < limits.start_delay:
            left = limits.start_delay - (now - last_launch)
            hold = f"{deficit} job(s) wait; next launch round in {left:.0f}s (start delay)"
        else:
            count = min(deficit, headroom, max(1, limits.batch))
            launch = instance_names(prefix, now, count)
            reasons.append(
                f"launch {count} instance(s) ({launch[0]}{'..' if count > 1 else ''}): "
                f"{takeable} job(s) ready for cloud workers, {capacity} idle/booting, "
                f"{owned}/{limits.max_instances} instance(s)"
            )
    if hold:
        reasons.append("hold: " + hold)

    # 5. STARTING rows (only the autoscaler writes that state) whose instance vanished before
    # registering: their launch failed late or a spot request was reclaimed.
    retire = tuple(
        sorted(
            name
            for name, w in by_name.items()
            if w.get("state") == W_STARTING
            and name not in listed_names
            and name not in unlisted
            and now - float(w.get("start_time") or 0) >= limits.boot_timeout
        )
    )
    for name in retire:
        reasons.append(f"retire {name}: STARTING but its instance is gone")

    return Plan(launch=launch, terminate=tuple(terminate), retire=retire, reasons=tuple(reasons), hold=hold)
