"""The autoscaler: read the farm and the cloud, call the pure policy, carry the plan out.

The server runs Autoscaler.tick() every `[coalition] autoscaleinterval` seconds under its
database lease (one autoscaler across server replicas), and POST /api/terminateworkers calls
Autoscaler.terminate(). Every decision is logged and recorded as a farm event.

The only state kept here is short-lived and rebuilt from the cloud: launches still in flight
(sent, not yet listed), the last launch round, and the throttling back-off. A server that
takes the lease over starts empty and reads everything else from the cloud. Failed boots are
different: they are recorded in the database (Farm.record_boot_failure), because the boot
back-off must hold across restarts and replicas until a boot works or an operator clears it.

Every decision is a log line on the `coalition.cloud` logger (launches, holds, terminations at
INFO; failed boots and stopped launching at WARNING) and an event with the same text.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from coalition.cloud import policy
from coalition.cloud.base import GONE, INSTANCE_STATES, CloudError, Farm, Instance, Provider, Throttled
from coalition.cloud.config import CloudSettings, load, read_ini

log = logging.getLogger("coalition.cloud")

W_STARTING, W_TERMINATED = "STARTING", "TERMINATED"
MAX_REPORTS = 20  # console reads per tick: a mass failure is reported by its first instances


class Autoscaler:
    """Starts and stops this farm's cloud workers within the limits of its settings."""

    def __init__(
        self,
        provider: Provider,
        settings: CloudSettings,
        farm: Farm,
        clock: Callable[[], float] = time.time,
        boot_payload: Callable[[str], str] | None = None,
    ):
        """`boot_payload(name)` renders what instance `name` boots with (default: the templates)."""
        self.provider = provider
        self.settings = settings
        self.farm = farm
        self.clock = clock
        if boot_payload is None:
            from coalition.cloud.userdata import Renderer

            boot_payload = Renderer(settings).boot_payload
        self.boot_payload = boot_payload
        self.inflight: dict[str, float] = {}
        self.last_launch: float | None = None
        self.backoff = policy.Backoff()
        self._last_note = ""  # hold/notes repeat every tick: record them only when they change
        # Our instances by state at the last listing that worked (every state, 0 for none):
        # None until the cloud was read once. The server exports it (/metrics).
        self.seen: dict[str, int] | None = None

    @property
    def interval(self) -> float:
        """How often the server should call tick(), in seconds."""
        return self.settings.tick_interval

    def tick(self) -> policy.Plan | None:
        """One round: plan, terminate, launch. Returns the plan (None when the cloud could not be read)."""
        now = self.clock()
        try:
            instances = self.provider.instances()
        except CloudError as exc:
            self._failed(exc, now, "list instances")
            return None
        self.seen = {state: 0 for state in INSTANCE_STATES}
        for inst in instances:
            self.seen[inst.state] = self.seen.get(inst.state, 0) + 1
        ready = self.farm.ready_jobs_by_tags()
        workers = self.farm.workers()
        listed = {i.name for i in instances}
        limits = self.settings.limits
        self.inflight = {
            n: t for n, t in self.inflight.items() if n not in listed and now - t < limits.boot_timeout
        }
        # The cloud remembers launches too: after a restart or a lease hand-over the start delay
        # still holds, measured from the newest instance.
        newest = max((i.launched_at for i in instances), default=None)
        last = max((t for t in (self.last_launch, newest) if t is not None), default=None)
        failures = [policy.BootFailure(t, n, r) for t, n, r in self.farm.boot_failures()]
        plan = policy.plan(
            ready=ready,
            instances=instances,
            workers=workers,
            limits=limits,
            now=now,
            last_launch=last,
            backoff=self.backoff,
            inflight=self.inflight,
            boot_failures=failures,
            boot_reports=self._boot_reports(policy.boot_suspects(instances, workers, limits, now)),
        )
        self._record_reasons(plan)
        if plan.boot_ok:
            self.farm.record_boot_ok(plan.boot_ok)
        for failure in plan.boot_failed:
            self._boot_failed(failure)
        if plan.terminate:
            self._terminate(plan.terminate, instances, now)
        for name in plan.retire:
            self.farm.set_worker_state(name, W_TERMINATED)
        if plan.launch:
            self._launch(plan.launch, now)
        return plan

    def clear_backoff(self, by: str) -> int:
        """Resume launching after failed boots (the operator's clear); how many were forgotten."""
        n = self.farm.clear_boot_backoff(by)
        log.warning("cloud: boot back-off cleared by %s (%d failed boot(s) forgotten)", by, n)
        return n

    def _boot_reports(self, suspects: Sequence[policy.InstanceView]) -> dict[str, str]:
        """What the failed instances printed about their boot (their console), where anything."""
        read = getattr(self.provider, "boot_report", None)
        if read is None:
            return {}
        out = {}
        for inst in list(suspects)[:MAX_REPORTS]:
            try:
                text = read(inst)
            except Exception:  # a report only improves a message: never let it stop a tick
                log.exception("cloud: cannot read the console of %s", inst.name)
                continue
            if text:
                out[inst.name] = text
        return out

    def _boot_failed(self, failure: policy.BootFailure) -> None:
        # TERMINATED at once: the failure is counted once, and the row shows the worker is gone.
        self.farm.set_worker_state(failure.name, W_TERMINATED)
        log.warning("cloud: boot failed: %s: %s", failure.name, failure.reason)
        try:
            self.farm.record_boot_failure(failure.name, failure.reason)
        except Exception:
            log.exception("cannot record the failed boot of %s", failure.name)

    def terminate(self, names: Sequence[str]) -> list[str]:
        """Terminate the instances of these workers (the web page's Terminate button).

        Only workers running on an instance we own are touched; returns their names.
        """
        try:
            instances = self.provider.instances()
        except CloudError as exc:
            self._event(f"cloud: cannot terminate {', '.join(names)}: {exc}")
            raise
        wanted = set(names)
        targets = [
            i
            for i in instances
            if i.name in wanted and i.name.startswith(self.settings.limits.name_prefix) and i.state != GONE
        ]
        for name in sorted(wanted - {i.name for i in targets}):
            log.info("cloud: %s is not one of our instances; not terminated", name)
        if not targets:
            return []
        self._event(f"cloud: terminate {', '.join(i.name for i in targets)}: requested by an operator")
        self._terminate([i.id for i in targets], instances, self.clock())
        return sorted(i.name for i in targets)

    # -- carrying a plan out --------------------------------------------------------------------

    def _terminate(self, ids: Sequence[str], instances: Sequence[Instance], now: float) -> None:
        by_id = {i.id: i for i in instances}
        try:
            self.provider.terminate(list(ids))
        except CloudError as exc:
            self._failed(exc, now, "terminate " + ", ".join(by_id[i].name if i in by_id else i for i in ids))
            return
        prefix = self.settings.limits.name_prefix
        for iid in ids:
            inst = by_id.get(iid)
            if inst is not None and inst.name.startswith(prefix):
                self.farm.set_worker_state(inst.name, W_TERMINATED)

    def _launch(self, names: Sequence[str], now: float) -> None:
        self.last_launch = now
        for name in names:
            try:
                payload = self.boot_payload(name)
            except ValueError as exc:  # a template problem: every launch would fail the same way
                self._event(f"cloud: cannot launch {name}: {exc}")
                return
            try:
                self.provider.launch(name, payload)
            except CloudError as exc:
                if exc.uncertain:
                    # It may exist: count it against the maximum until the cloud says otherwise.
                    self.inflight[name] = now
                self._failed(exc, now, f"launch {name}")
                return  # the rest of the round waits for the next tick
            self.inflight[name] = now
            self.backoff = self.backoff.succeeded()
            self.farm.create_worker(name, W_STARTING)

    def _failed(self, exc: CloudError, now: float, action: str) -> None:
        if isinstance(exc, Throttled):
            self.backoff = self.backoff.throttled(now)
            self._event(
                f"cloud: {action} throttled ({exc}); no launch for {self.backoff.until - now:.0f}s "
                f"({self.backoff.failures} in a row)"
            )
        else:
            self._event(f"cloud: {action} failed: {exc}")

    def _record_reasons(self, plan: policy.Plan) -> None:
        notes = [r for r in plan.reasons if r.startswith(("hold:", "note:"))]
        for reason in plan.reasons:
            if reason.startswith("boot failed:"):
                continue  # _boot_failed logs it and records it as a boot failure event
            if reason not in notes:
                warn = reason.startswith("boot back-off: launches stopped")
                self._event("cloud: " + reason, logging.WARNING if warn else logging.INFO)
        summary = " / ".join(notes)
        if summary != self._last_note:
            self._last_note = summary
            if summary:
                self._event("cloud: " + summary)

    def _event(self, message: str, level: int = logging.INFO) -> None:
        log.log(level, "%s", message)
        try:
            self.farm.record_event(message)
        except Exception:  # an event that cannot be written must not stop the autoscaler
            log.exception("cannot record event %r", message)


def make_provider(settings: CloudSettings, endpoint: str | None = None) -> Provider:
    """The provider for these settings, with a real SDK client (imported lazily)."""
    from coalition.cloud.userdata import Renderer

    renderer = Renderer(settings)
    if settings.aws is not None:
        from coalition.cloud import aws

        session = aws.make_session(settings.aws)
        return aws.Ec2Provider(
            session.client("ec2", endpoint_url=endpoint),
            settings.aws,
            settings.farm,
            renderer.aws_run_instances,
            renderer.aws_spot_launch_specification,
            ssm=session.client("ssm", endpoint_url=endpoint),
        )
    if settings.gce is not None:
        from coalition.cloud import gce

        key = "startup-script" if settings.gce.boot_method == "startup-script" else "user-data"
        return gce.GceProvider(
            gce.make_client(settings.gce, api_endpoint=endpoint),
            settings.gce,
            settings.farm,
            renderer.gce_instance,
            key,
        )
    raise ValueError(f"no provider for {settings.provider}")


def make_autoscaler(
    servermode: str,
    config_dir: str,
    farm: Farm,
    clock: Callable[[], float] = time.time,
    *,
    worker_token: str | None = None,
    endpoint: str | None = None,
    provider: Provider | None = None,
    warn: Callable[[str], None] | None = None,
) -> Autoscaler | None:
    """The autoscaler for `servermode`, or None when the server is not in a cloud mode.

    Loads cloud_<servermode>.ini from `config_dir`. `worker_token` is the server's
    `[server] workertoken` (when None, it is read from config_dir/coalition.ini, and
    `[coalition] workertoken` of the cloud ini wins when set). `endpoint` points the SDK at
    another URL (moto_server, the GCE fake). Raises ValueError for a bad or incomplete ini and
    CloudError when the SDK is missing.
    """
    if servermode not in ("aws", "gcloud"):
        return None
    settings = load(servermode, config_dir, warn or (lambda message: log.warning("%s", message)))
    if not settings.worker_token:
        token = worker_token if worker_token is not None else server_token(config_dir)
        if token:
            settings = replace(settings, worker_token=token)
    settings.require_launchable()
    if provider is None:
        provider = make_provider(settings, endpoint)
    return Autoscaler(provider, settings, farm, clock)


def server_token(config_dir: str) -> str:
    """`[server] workertoken` of config_dir/coalition.ini, else the token in its
    `workertokenfile` (the Debian package makes one at install); "" without either."""
    path = os.path.join(config_dir, "coalition.ini")
    if not os.path.isfile(path):
        return ""
    parser = read_ini(path)
    token = parser.get("server", "workertoken", fallback="").strip()
    token_file = parser.get("server", "workertokenfile", fallback="").strip()
    if token or not token_file:
        return token
    try:
        with open(token_file, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""  # unreadable here (`coalition cloud` run as another user): the server says why
