"""The GCE provider: Compute Engine through an injected compute_v1.InstancesClient.

google-cloud-compute is optional (Debian does not package it), so it is imported only when a
GCE farm is really used. Workers are preemptible or SPOT VMs with maintenance TERMINATE
(see userdata.Renderer.gce_instance); ownership is the `coalition-farm` label. The instance
name is the id: GCE names are unique in a zone, which also makes a retried insert harmless
(409 alreadyExists is taken as success).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from coalition.cloud.base import (
    OWNER_KEY,
    PENDING,
    RUNNING,
    STOPPED,
    STOPPING,
    CloudError,
    Instance,
    Throttled,
    boot_failure_line,
)
from coalition.cloud.config import GceSettings

log = logging.getLogger("coalition.cloud.gce")

_STATES = {
    "PROVISIONING": PENDING,
    "STAGING": PENDING,
    "RUNNING": RUNNING,
    "STOPPING": STOPPING,
    "SUSPENDING": STOPPING,
    "REPAIRING": STOPPING,
    "SUSPENDED": STOPPED,
    "TERMINATED": STOPPED,  # GCE's TERMINATED is "stopped": a preempted VM, still allocated
}
# Operation error codes and HTTP reasons that mean "not now": back off, do not hammer.
THROTTLE_CODES = frozenset(
    {
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
        "QUOTA_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "rateLimitExceeded",
        "userRateLimitExceeded",
        "quotaExceeded",
    }
)


def compute_v1() -> Any:
    """The google.cloud.compute_v1 module, or a CloudError saying how to get it."""
    try:
        from google.cloud import compute_v1 as module
    except ImportError:
        raise CloudError("GCE needs google-cloud-compute: pip install 'coalition[gce]'") from None
    return module


def error_from(exc: Exception, action: str) -> CloudError:
    """Map a google.api_core exception (or a failed operation) onto CloudError/Throttled."""
    status = getattr(exc, "code", None)
    status = status if isinstance(status, int) else 0
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    codes = {str(getattr(exc, "reason", "") or "")}
    # A failed operation carries its error codes (ZONE_RESOURCE_POOL_EXHAUSTED...) on itself.
    operation = getattr(exc, "response", None)
    for err in getattr(getattr(operation, "error", None), "errors", None) or []:
        codes.add(str(getattr(err, "code", "")))
    message = f"{action}: {text}"
    if status in (429, 503) or codes & THROTTLE_CODES or any(c in text for c in THROTTLE_CODES):
        return Throttled(message)
    return CloudError(message, uncertain=status == 0 or status >= 500)


def _timestamp(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class GceProvider:
    """Lists, launches and terminates this farm's worker VMs in one zone."""

    def __init__(
        self,
        client: Any,
        settings: GceSettings,
        farm: str,
        body: Callable[[], dict[str, Any]],
        metadata_key: str = "startup-script",
        op_timeout: float = 120.0,
    ):
        """`client` is a compute_v1.InstancesClient; `body()` the instance fields rendered from
        templates/gcloud/instance.yaml.j2; `metadata_key` is where the boot payload goes
        (startup-script for images without cloud-init, user-data for those with it)."""
        self.client = client
        self.settings = settings
        self.farm = farm
        self.body = body
        self.metadata_key = metadata_key
        self.op_timeout = op_timeout

    def instances(self) -> list[Instance]:
        """Our VMs in the zone (by label), whatever their state."""
        try:
            pager = self.client.list(
                request={
                    "project": self.settings.project,
                    "zone": self.settings.zone,
                    "filter": f'labels.{OWNER_KEY} = "{self.farm}"',
                }
            )
            found = []
            for vm in pager:
                labels = dict(vm.labels)
                if labels.get(OWNER_KEY) != self.farm:
                    continue  # ownership is checked here too, not left to the filter alone
                found.append(
                    Instance(
                        id=vm.name,
                        name=vm.name,
                        state=_STATES.get(vm.status, STOPPING),
                        launched_at=_timestamp(vm.creation_timestamp),
                        machine_type=vm.machine_type.rsplit("/", 1)[-1],
                        zone=self.settings.zone,
                    )
                )
            return found
        except CloudError:
            raise
        except Exception as exc:
            raise error_from(exc, "list instances") from exc

    def instance_body(self, name: str, user_data: str) -> dict[str, Any]:
        """The complete compute_v1.Instance fields launch() inserts (name, labels, boot payload)."""
        fields = dict(self.body())
        fields["name"] = name
        # The ini's [worker] labels, and ours, on the VM and on its disks (billing reports).
        labels = {**dict(self.settings.labels), OWNER_KEY: self.farm}
        fields["labels"] = labels
        for disk in fields.get("disks", []):
            disk.setdefault("initialize_params", {})["labels"] = labels
        fields["metadata"] = {"items": [{"key": self.metadata_key, "value": user_data}]}
        return fields

    def launch(self, name: str, user_data: str) -> Instance:
        """Insert VM `name` and wait (op_timeout at most) for GCE to accept it."""
        compute = compute_v1()
        fields = self.instance_body(name, user_data)
        try:
            op = self.client.insert(
                project=self.settings.project,
                zone=self.settings.zone,
                instance_resource=compute.Instance(fields),
            )
            op.result(timeout=self.op_timeout)
        except Exception as exc:
            if getattr(exc, "code", None) == 409 or "alreadyExists" in str(exc):
                log.info("%s exists already (a retried insert): taking it", name)
            else:
                raise error_from(exc, f"launch {name}") from exc
        log.info("launched %s (%s)", name, self.settings.provisioning_model.lower())
        return Instance(
            id=name,
            name=name,
            state=PENDING,
            launched_at=0.0,
            machine_type=self.settings.machine_type,
            zone=self.settings.zone,
        )

    def boot_report(self, instance: Instance) -> str:
        """The FAILED line of the VM's serial port 1 ("" if none or unreadable)."""
        try:
            reply = self.client.get_serial_port_output(
                project=self.settings.project, zone=self.settings.zone, instance=instance.id
            )
        except Exception as exc:  # the report only improves a message
            log.info(
                "no serial port output for %s: %s",
                instance.name,
                str(exc).splitlines()[0] if str(exc) else exc,
            )
            return ""
        return boot_failure_line(reply.contents or "")

    def terminate(self, ids: Sequence[str]) -> None:
        """Delete these VMs; ones already gone are fine."""
        ops = []
        for name in dict.fromkeys(ids):
            try:
                ops.append(
                    self.client.delete(project=self.settings.project, zone=self.settings.zone, instance=name)
                )
            except Exception as exc:
                if getattr(exc, "code", None) == 404 or type(exc).__name__ == "NotFound":
                    continue
                raise error_from(exc, f"terminate {name}") from exc
        for op in ops:  # deletes run in parallel on GCE's side; wait for them afterwards
            try:
                op.result(timeout=self.op_timeout)
            except Exception as exc:
                if type(exc).__name__ != "NotFound":
                    raise error_from(exc, "terminate") from exc
        if ops:
            log.info("deleted %s", ", ".join(ids))


def make_client(settings: GceSettings, api_endpoint: str | None = None) -> Any:
    """An InstancesClient: credentials from [authentication] keyfile, else the default ones
    (the server's own service account on GCE)."""
    compute = compute_v1()
    kwargs: dict[str, Any] = {"transport": "rest"}
    if settings.keyfile:
        from google.oauth2 import service_account

        kwargs["credentials"] = service_account.Credentials.from_service_account_file(
            settings.keyfile, scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
    if api_endpoint:
        from google.api_core.client_options import ClientOptions

        kwargs["client_options"] = ClientOptions(api_endpoint=api_endpoint)
    return compute.InstancesClient(**kwargs)
