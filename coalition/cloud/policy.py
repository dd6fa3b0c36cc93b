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
  throttling;
* a boot that fails (the instance stopped or vanished before its worker registered, or no
  worker after `boot_timeout`) is recorded once, with the instance's own reason when it gave
  one; after failed boots launches back off exponentially, one probe instance per round, and
  stop after `boot_failure_limit` failures in a row until a boot works or an operator clears
  the record (issue 14).
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
PENDING, RUNNING, STOPPING, STOPPED, GONE = "pending", "running", "stopping", "stopped", "gone"


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
    # [coalition] workerinstancebootfailures (new): failed boots in a row that stop launching
    # until an operator clears them (0: never stop, only back off).
    boot_failure_limit: int = 5
    # [coalition] workerinstancebootbackoff (new): the wait after the first failed boot; it
    # doubles with each further one, up to boot_backoff_max.
    boot_backoff: float = 60.0
    boot_backoff_max: float = 3600.0

    def takes(self, tags: frozenset[str]) -> bool:
        """Could a cloud worker run a job with these effective tags? (scheduling.tags_met's
        rule, repeated here because the policy imports nothing of ours: a tag `a or b` is met
        by a line offering a or b.)"""

        def met(tag: str, line: frozenset[str]) -> bool:
            return tag in line or (" or " in tag and any(a in line for a in tag.split(" or ")))

        return not tags or any(all(met(t, line) for t in tags) for line in self.offered)


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
class BootFailure:
    """One failed boot: when it was noticed, the instance's name, and why."""

    at: float
    name: str
    reason: str


@dataclass(frozen=True)
class BootBackoff:
    """The launch back-off that failed boots call for (derived, never stored)."""

    failures: int = 0  # failed boots in a row (since the last boot that worked or a clear)
    until: float = 0.0  # no launch before this
    stopped: bool = False  # the limit is reached: no launch until a clear

    @property
    def active(self) -> bool:
        """Are boots failing (so launches go one probe at a time)?"""
        return self.failures > 0


def boot_backoff(failures: Sequence[BootFailure], limits: Limits) -> BootBackoff:
    """The back-off after these failed boots in a row: 60 s, 120 s, ... then stop at the limit."""
    n = len(failures)
    if n == 0:
        return BootBackoff()
    if limits.boot_failure_limit and n >= limits.boot_failure_limit:
        return BootBackoff(n, float("inf"), True)
    delay = min(limits.boot_backoff_max, limits.boot_backoff * 2 ** (n - 1))
    return BootBackoff(n, max(f.at for f in failures) + delay, False)


@dataclass(frozen=True)
class Plan:
    """What to do now. `reasons` has one line per decision, for the log and the event table."""

    launch: tuple[str, ...] = ()  # names of the instances to start (one worker each)
    terminate: tuple[str, ...] = ()  # instance ids to terminate
    retire: tuple[str, ...] = ()  # our STARTING worker rows whose instance is gone: mark TERMINATED
    reasons: tuple[str, ...] = ()
    hold: str = ""  # why jobs wait and nothing is launched; "" when not held back
    boot_failed: tuple[BootFailure, ...] = ()  # failed boots noticed now: record each once
    boot_ok: str = ""  # an instance whose worker registered after boots failed: the record resets
    boot_stopped: bool = False  # this plan's failures reached the limit: launches stop now


@dataclass(frozen=True)
class _Seen:
    """One owned instance, classified."""

    instance: InstanceView
    worker: Mapping[str, Any] | None

    @property
    def starting(self) -> bool:
        # Only the autoscaler writes STARTING, and it turns the row TERMINATED when it gives up
        # on the instance: so a failed boot is counted once, by whichever server sees it first.
        return self.worker is not None and self.worker.get("state") == W_STARTING

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


def boot_suspects(
    instances: Sequence[InstanceView], workers: Iterable[Mapping[str, Any]], limits: Limits, now: float
) -> list[InstanceView]:
    """Instances plan() will count as failed boots: the ones whose own report is worth reading.

    Our STARTING workers whose instance stopped or is gone, or is still booting past the boot
    timeout. Few at a time, so the caller can afford one console read each.
    """
    by_name = {w["name"]: w for w in workers if str(w.get("name", "")).startswith(limits.name_prefix)}
    out = []
    for inst in instances:
        s = _Seen(inst, by_name.get(inst.name) if inst.name.startswith(limits.name_prefix) else None)
        if s.starting and (
            inst.state in (STOPPED, GONE)
            or (inst.state != STOPPING and now - inst.launched_at >= limits.boot_timeout)
        ):
            out.append(inst)
    return out


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
    boot_failures: Sequence[BootFailure] = (),
    boot_reports: Mapping[str, str] | None = None,
) -> Plan:
    """Decide launches and terminations.

    ready: pickable job counts keyed by effective tag set; instances: what the provider lists
    (ours only); workers: every worker row (dicts: name, state, ping_time, start_time,
    current_job, active); last_launch: time of the last launch round; backoff: throttling
    state; inflight: names launched (or attempted with an uncertain outcome) at a time, that
    the cloud may not list yet; boot_failures: the failed boots in a row recorded so far (since
    the last boot that worked, or an operator's clear); boot_reports: what failed instances
    said about their boot (instance name -> the FAILED line of its console), where known.
    """
    prefix = limits.name_prefix
    reports = boot_reports or {}
    by_name = {w["name"]: w for w in workers if str(w.get("name", "")).startswith(prefix)}
    listed_names = {i.name for i in instances}
    # Launches the cloud does not list yet still count, until the boot timeout says they failed.
    unlisted = {
        n: t for n, t in (inflight or {}).items() if n not in listed_names and now - t < limits.boot_timeout
    }
    reasons: list[str] = []
    terminate: list[str] = []
    failed: list[BootFailure] = []
    seen = [_Seen(i, by_name.get(i.name) if i.name.startswith(prefix) else None) for i in instances]

    def boot_failed(inst: InstanceView, what: str) -> None:
        why = reports.get(inst.name) or what
        failed.append(BootFailure(now, inst.name, why))
        reasons.append(f"boot failed: {inst.name} ({inst.id}): {why}")

    # 0. Boots work again: a worker registered on an instance launched after the last failure.
    last_failure = max((f.at for f in boot_failures), default=None)
    boot_ok = ""
    if last_failure is not None:
        fresh = sorted(
            s.instance.name for s in seen if s.registered and s.instance.launched_at > last_failure
        )
        if fresh:
            boot_ok = fresh[0]
            reasons.append(
                f"boot back-off reset: {boot_ok} registered after {len(boot_failures)} failed boot(s)"
            )
            boot_failures = ()

    # 1. Unhealthy instances go, whatever their age: they cost money and do no work.
    booting = 0
    healthy: list[_Seen] = []
    for s in seen:
        inst, w = s.instance, s.worker
        age = now - inst.launched_at
        if inst.state == GONE:
            # Terminated, still listed by the cloud for a while: costs nothing, counts for nothing,
            # but if its worker never registered the boot failed (it powered itself off).
            if s.starting:
                boot_failed(inst, "the instance shut down before its worker registered")
            continue
        if inst.state == STOPPING:
            continue  # already going; still counted against the maximum below
        if inst.state == STOPPED:
            terminate.append(inst.id)
            if s.starting:
                boot_failed(inst, "the instance stopped before its worker registered")
            reasons.append(f"terminate {inst.name} ({inst.id}): instance is stopped (preempted?)")
        elif w is not None and w.get("state") == W_TERMINATED:
            terminate.append(inst.id)
            reasons.append(f"terminate {inst.name} ({inst.id}): its worker is TERMINATED")
        elif not s.registered:
            if age >= limits.boot_timeout:
                terminate.append(inst.id)
                if s.starting:
                    boot_failed(inst, f"no worker registered {age:.0f}s after launch")
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
    live = [i for i in instances if i.state != GONE]

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

    # 5 (before 4: a vanished STARTING row is a failed boot, which the launch must see).
    # STARTING rows (only the autoscaler writes that state) whose instance vanished before
    # registering: their launch failed late, the instance terminated itself after a failed
    # boot and the cloud no longer lists it, or a spot request was reclaimed.
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
        failed.append(BootFailure(now, name, reports.get(name) or "its instance vanished before registering"))
        reasons.append(f"retire {name}: STARTING but its instance is gone (counted as a failed boot)")

    # 4. Launch for the deficit, within the maximum, the start delay and both back-offs.
    boot = boot_backoff([*boot_failures, *failed], limits)
    stopped_now = boot.stopped and not boot_backoff(boot_failures, limits).stopped
    if stopped_now:
        last = failed[-1] if failed else None
        reasons.append(
            f"boot back-off: launches stopped after {boot.failures} failed boot(s) in a row"
            + (f" (last: {last.name}: {last.reason})" if last else "")
            + "; `coalition cloud clear-backoff` resumes them"
        )
    elif failed and not boot.stopped:
        reasons.append(
            f"boot back-off: {boot.failures} failed boot(s) in a row; next launch (one probe instance) "
            f"in {boot.until - now:.0f}s"
        )
    launch: tuple[str, ...] = ()
    hold = ""
    deficit = takeable - capacity
    if deficit > 0:
        owned = len(live) + len(unlisted)
        headroom = limits.max_instances - owned
        if headroom <= 0:
            hold = f"{deficit} job(s) wait; {owned} instance(s) = workerinstancemax {limits.max_instances}"
        elif boot.stopped:
            hold = (
                f"{deficit} job(s) wait; launches stopped after {boot.failures} failed boot(s) in a row "
                "(coalition cloud clear-backoff)"
            )
        elif now < boot.until:
            # The same text every tick of the wait (it is recorded only when it changes).
            last_at = max(f.at for f in [*boot_failures, *failed])
            hold = (
                f"{deficit} job(s) wait; {boot.failures} failed boot(s) in a row: "
                f"boot back-off for {boot.until - last_at:.0f}s"
            )
        elif now < backoff.until:
            hold = f"{deficit} job(s) wait; throttled, backing off for {backoff.until - now:.0f}s"
        elif last_launch is not None and now - last_launch < limits.start_delay:
            left = limits.start_delay - (now - last_launch)
            hold = f"{deficit} job(s) wait; next launch round in {left:.0f}s (start delay)"
        elif boot.active and booting + len(unlisted) > 0:
            # Boots are failing: one probe at a time, and none while one is still booting.
            hold = f"{deficit} job(s) wait; {boot.failures} failed boot(s): a probe instance is booting"
        else:
            count = min(deficit, headroom, max(1, limits.batch))
            if boot.active:
                count = 1  # a probe: the next boot may fail the same way
            launch = instance_names(prefix, now, count)
            reasons.append(
                f"launch {count} instance(s) ({launch[0]}{'..' if count > 1 else ''}): "
                f"{takeable} job(s) ready for cloud workers, {capacity} idle/booting, "
                f"{owned}/{limits.max_instances} instance(s)"
                + (f"; a probe after {boot.failures} failed boot(s)" if boot.active else "")
            )
    if hold:
        reasons.append("hold: " + hold)

    return Plan(
        launch=launch,
        terminate=tuple(terminate),
        retire=retire,
        reasons=tuple(reasons),
        hold=hold,
        boot_failed=tuple(failed),
        boot_ok=boot_ok,
        boot_stopped=stopped_now,
    )
