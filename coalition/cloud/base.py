"""The cloud interfaces: an owned instance, a provider of instances, and the farm we scale.

The cloud is the source of truth for instances: a provider lists only instances that carry
our ownership tag (AWS) or label (GCE), so the database never keeps a shadow list that could
drift from what is really running (and billed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# Tag (AWS) and label (GCE) keys. GCE label keys allow only [a-z0-9_-], so both clouds use
# dashes where AWS alone would have used a colon.
OWNER_KEY = "coalition-farm"
SPOT_REQUEST_KEY = "coalition-spot-request"

# Normalised instance states (providers map their own vocabulary onto these).
PENDING = "pending"  # requested or booting: will cost money, cannot work yet
RUNNING = "running"
STOPPING = "stopping"  # shutting down or being deleted: still counts against the maximum
STOPPED = "stopped"  # halted but still allocated (a preempted GCE VM): must be deleted
GONE = "gone"  # terminated, still listed by the cloud for a while (EC2): costs nothing
INSTANCE_STATES = (PENDING, RUNNING, STOPPING, STOPPED, GONE)

# The line a failed boot prints on the instance's console (templates/cloud-init/boot.sh.j2).
BOOT_FAILED_MARK = "coalition-cloud-boot: FAILED: "


def boot_failure_line(console: str) -> str:
    """The reason of the last failed boot in a console log ("" when it reports none)."""
    found = ""
    for line in console.splitlines():
        at = line.find(BOOT_FAILED_MARK)
        if at >= 0:
            found = line[at + len(BOOT_FAILED_MARK) :].strip()
    return found[:500]


@dataclass(frozen=True)
class Instance:
    """One cloud instance (or an unfulfilled spot request) that carries our ownership tag.

    `name` is also the name of the worker running on it: the user-data writes it into the
    worker's coalition.ini, so policy joins instances and workers on it.
    """

    id: str  # EC2 instance id, an open spot request id ("sir-..."), or the GCE instance name
    name: str
    state: str  # one of INSTANCE_STATES
    launched_at: float  # unix time the instance (or its spot request) was created
    machine_type: str = ""
    spot_request_id: str = ""  # AWS: the spot request to cancel when the instance goes
    zone: str = ""


class CloudError(Exception):
    """A provider call failed.

    `uncertain` is True when the call may nevertheless have taken effect (a timeout, a 5xx):
    the autoscaler then counts a launch as in flight until the cloud lists it or the boot
    timeout passes, so that an ambiguous failure can never push the farm past its maximum.
    """

    def __init__(self, message: str, *, uncertain: bool = False):
        super().__init__(message)
        self.uncertain = uncertain


class Throttled(CloudError):
    """The cloud refused for now (rate limit, capacity, quota): retry later, with back-off."""


class Provider(Protocol):
    """Lists, launches and terminates the instances this farm owns on one cloud."""

    def instances(self) -> list[Instance]:
        """Every instance (and open spot request) carrying our ownership tag and not yet gone.

        Instances of other farms, and machines that are not ours, are never returned.
        Raises CloudError (Throttled when rate-limited).
        """
        ...

    def launch(self, name: str, user_data: str) -> Instance:
        """Start one worker instance named `name`, tagged as ours, booting with `user_data`.

        Must be idempotent on `name` where the cloud allows it (EC2 ClientToken, GCE's unique
        names), so a retried call cannot start a second machine. Raises CloudError.
        """
        ...

    def terminate(self, ids: Sequence[str]) -> None:
        """Terminate these instances (ids from instances()); cancel their spot requests too.

        Ids that are already gone are not an error. Raises CloudError.
        """
        ...

    def boot_report(self, instance: Instance) -> str:
        """Why this instance's boot failed, as its boot script printed it on the console.

        Reads the console (EC2 GetConsoleOutput, GCE serial port 1) and returns the reason of
        the last "coalition-cloud-boot: FAILED: " line, or "" when there is none or the console
        cannot be read (never raises: the report only improves a message).
        """
        ...


class Farm(Protocol):
    """The farm as the autoscaler sees it; the server implements it over its database."""

    def ready_jobs_by_tags(self) -> dict[frozenset[str], int]:
        """Pickable leaf jobs (WAITING, not paused, dependencies met), counted by effective tag set.

        An untagged job is counted under frozenset().
        """
        ...

    def workers(self) -> list[dict[str, Any]]:
        """Every worker row as a dict with keys name, state, ping_time, start_time, current_job, active.

        `ping_time` and `start_time` are unix times (ping_time None or 0 before the first
        ping); `current_job` is a job id or None; `active` is False for a stopped worker.
        """
        ...

    def create_worker(self, name: str, state: str) -> None:
        """Create the worker row `name` in `state` (STARTING for an instance just launched).

        An existing row is reset to `state` rather than duplicated.
        """
        ...

    def set_worker_state(self, name: str, state: str) -> None:
        """Set the state of worker `name` (TERMINATED when its instance is terminated)."""
        ...

    def record_event(self, message: str) -> None:
        """Record one autoscaler decision in the farm's event log (shown by /api/events)."""
        ...

    def boot_failures(self) -> list[tuple[float, str, str]]:
        """The failed boots in a row: (time, instance name, reason), oldest first.

        Those recorded since the last boot that worked (record_boot_ok) or the last
        clear_boot_backoff; kept in the database so every server replica sees the same back-off.
        """
        ...

    def record_boot_failure(self, name: str, reason: str) -> None:
        """Record that instance `name` failed to boot, and why (an event the web page shows)."""
        ...

    def record_boot_ok(self, name: str) -> None:
        """Record that a boot worked again (instance `name` registered): the failures reset."""
        ...

    def clear_boot_backoff(self, by: str) -> int:
        """An operator resumes launching: forget the failures in a row; returns how many.

        `by` names who cleared it (a user name, "cli"), for the event log.
        """
        ...
