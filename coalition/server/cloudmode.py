"""Cloud mode (`servermode = aws | gcloud`): the autoscaler runs in the server under the
database lease "autoscaler" (one server of a scale-out farm does it), and
POST /api/terminateworkers terminates instances through it."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .app import ServerApp

log = logging.getLogger("coalition.cloud")

AUTOSCALE_INTERVAL = 10.0  # seconds between autoscaler passes


def enable(app: ServerApp) -> None:
    """Wire the autoscaler into a server whose servermode is a cloud mode; no-op otherwise."""
    settings = app.settings
    if settings.servermode not in ("aws", "gcloud"):
        return
    from ..cloud.reconcile import make_autoscaler

    config_dir = (
        os.path.dirname(os.path.abspath(settings.config_path)) if settings.config_path else os.getcwd()
    )
    endpoint = os.environ.get("COALITION_CLOUD_ENDPOINT") or None  # moto_server or the GCE fake, in tests
    autoscaler = make_autoscaler(
        settings.servermode,
        config_dir,
        app.uc.cloud,
        app.clock,
        worker_token=settings.workertoken,
        endpoint=endpoint,
    )
    if autoscaler is None:
        return
    default = float(getattr(autoscaler, "interval", AUTOSCALE_INTERVAL))  # [coalition] autoscaleinterval
    interval = float(os.environ.get("COALITION_AUTOSCALE_INTERVAL", default))
    # Every autoscaler decision is a log line (docs/cloud.md): they are INFO records, and the
    # server logs at WARNING unless verbose, so this one logger speaks up on its own.
    cloud_log = logging.getLogger("coalition.cloud")
    if cloud_log.getEffectiveLevel() > logging.INFO:
        cloud_log.setLevel(logging.INFO)
    # The instances it saw go to /metrics from the server that ran the pass; they are dropped
    # once older than the lease, so that after a hand-over only the new holder reports them.
    fresh_for = app.lease_ttl(interval)

    def tick() -> None:
        try:
            autoscaler.tick()
        finally:
            if autoscaler.seen is not None:
                app.metrics.cloud_instances(autoscaler.seen, fresh_for)

    app.add_periodic("autoscaler", interval, tick)

    def terminate(names: list[str]) -> None:
        autoscaler.terminate(names)

    app.terminate = terminate
    log.warning(
        "cloud mode %s: autoscaler every %gs (config in %s)", settings.servermode, interval, config_dir
    )
