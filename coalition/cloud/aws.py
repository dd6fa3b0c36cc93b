"""The AWS provider: EC2 through an injected boto3 client.

Three ways to start a worker, by `[worker] spot` and `[worker] spotmethod`:
* on-demand: run_instances with no market options (`spot = false` really means on-demand);
* spot through run_instances with InstanceMarketOptions (the default `spotmethod`): one call,
  the instance carries our tags from its first second, and a one-time request closes itself;
* spot through request_spot_instances with the launch specification rendered from
  templates/aws/ (Coalition 4's way). Such a request is tagged, its instance is not: we copy
  our tags and the request id onto the instance as soon as the cloud fulfils it. Until then
  the open request itself is listed as a pending instance, so it counts against the maximum.

Whichever way an instance was started, terminating it cancels its spot request first, so a
persistent request cannot start a replacement behind our back. The request id is read from
the instance, or from our `coalition-spot-request` tag (moto leaves SpotInstanceRequestId out).
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from coalition.cloud.base import (
    GONE,
    OWNER_KEY,
    PENDING,
    RUNNING,
    SPOT_REQUEST_KEY,
    STOPPED,
    STOPPING,
    CloudError,
    Instance,
    Throttled,
    boot_failure_line,
)
from coalition.cloud.config import AwsSettings

log = logging.getLogger("coalition.cloud.aws")

# EC2 error codes that mean "not now": rate limits, capacity and quotas. All are retried
# after a back-off instead of being hammered every tick.
THROTTLE_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InstanceLimitExceeded",
        "MaxSpotInstanceCountExceeded",
        "SpotMaxPriceTooLow",
        "VcpuLimitExceeded",
        "Unavailable",
        "ServiceUnavailable",
    }
)
_STATES = {
    "pending": PENDING,
    "running": RUNNING,
    "shutting-down": STOPPING,
    "stopping": STOPPING,
    "stopped": STOPPED,
    # Listed for about an hour after termination: an instance whose boot failed terminates
    # itself (it powers off; shutdown behaviour terminate), and this is how we see it went.
    "terminated": GONE,
}
_SPOT_LIVE = ("open", "active")
SSM_PREFIX = "resolve:ssm:"
IMAGE_CACHE_S = 3600.0  # a new Debian point release is picked up within the hour


def error_from(exc: Exception, action: str) -> CloudError:
    """Map a botocore exception onto CloudError/Throttled, keeping one line of message."""
    code = ""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    else:
        status = 0
    message = f"{action}: {code or type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if code in THROTTLE_CODES:
        return Throttled(message)
    # No answer, or a 5xx: the request may have been carried out.
    uncertain = not code or status >= 500
    return CloudError(message, uncertain=uncertain)


def _console_text(output: str) -> str:
    """EC2 returns the console base64-encoded (botocore leaves it so); moto sends plain text."""
    try:
        return base64.b64decode(output, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return output


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", []) or []}


def _timestamp(value: Any) -> float:
    return value.timestamp() if hasattr(value, "timestamp") else float(value or 0)


class Ec2Provider:
    """Lists, launches and terminates this farm's worker instances on EC2."""

    def __init__(
        self,
        client: Any,
        settings: AwsSettings,
        farm: str,
        run_params: Callable[[], dict[str, Any]],
        spot_spec: Callable[[str], dict[str, Any]],
        ssm: Any = None,
        clock: Callable[[], float] = time.time,
    ):
        """`client` is boto3.client("ec2"); `run_params()` gives the run_instances keyword
        arguments and `spot_spec(user_data)` the spot launch specification (both rendered
        from templates/aws/ by userdata.Renderer); `ssm` is boto3.client("ssm"), needed when
        the image is a `resolve:ssm:` parameter (the default: Debian 12's public one)."""
        self.ec2 = client
        self.settings = settings
        self.farm = farm
        self.run_params = run_params
        self.spot_spec = spot_spec
        self.ssm = ssm
        self.clock = clock
        self._images: dict[str, tuple[float, str, str]] = {}  # image setting -> (when, AMI, root)

    # -- Provider -------------------------------------------------------------------------------

    def instances(self) -> list[Instance]:
        """Our instances, and our spot requests that no instance fulfils yet."""
        try:
            # Spot requests are listed whenever spot is on, not only with request-spot-instances:
            # requests left open by an earlier spotmethod still count, and still get cancelled.
            requests = self._spot_requests() if self.settings.spot else []
            adopted = self._adopt_fulfilled(requests)
            found = self._describe_instances()
        except CloudError:
            raise
        except Exception as exc:  # botocore ClientError, EndpointConnectionError...
            raise error_from(exc, "list instances") from exc
        have = {i.id for i in found if i.state != GONE}
        stale = []
        for req in requests:
            rid, iid = req["SpotInstanceRequestId"], req.get("InstanceId")
            if iid and iid in have:
                continue
            if iid and iid not in adopted:
                # Its instance is gone (interrupted, or terminated outside Coalition). A one-time
                # request is spent; cancel it so that it is not left behind as "active".
                if req.get("Type", "one-time") == "one-time":
                    stale.append(rid)
                continue
            # Open (not fulfilled yet), or fulfilled a moment ago and not listed under our tag
            # yet: either way it will cost money, so it counts against the maximum.
            found.append(
                Instance(
                    id=iid or rid,
                    name=_tags(req).get("Name", rid),
                    state=PENDING,
                    launched_at=_timestamp(req.get("CreateTime")),
                    machine_type=req.get("LaunchSpecification", {}).get("InstanceType", ""),
                    spot_request_id=rid,
                )
            )
        if stale:
            self._cancel(stale)
        return found

    def launch(self, name: str, user_data: str) -> Instance:
        """Start one instance named `name` (idempotent on `name` through ClientToken)."""
        try:
            if self._uses_spot_requests():
                return self._request_spot(name, user_data)
            return self._run_instance(name, user_data)
        except CloudError:
            raise
        except Exception as exc:
            raise error_from(exc, f"launch {name}") from exc

    def terminate(self, ids: Sequence[str]) -> None:
        """Cancel the spot requests of these instances, then terminate the instances."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return
        request_ids = [i for i in ids if i.startswith("sir-")]
        instance_ids = [i for i in ids if not i.startswith("sir-")]
        try:
            if instance_ids:
                for inst in self._describe(instance_ids):
                    rid = inst.get("SpotInstanceRequestId") or _tags(inst).get(SPOT_REQUEST_KEY)
                    if rid:
                        request_ids.append(rid)
            if request_ids:
                # Cancel first: a persistent request would otherwise start a replacement.
                self._cancel(request_ids)
            if instance_ids:
                self._terminate_existing(instance_ids)
        except CloudError:
            raise
        except Exception as exc:
            raise error_from(exc, "terminate " + ", ".join(ids)) from exc

    def boot_report(self, instance: Instance) -> str:
        """The FAILED line of the instance's console output ("" if none or unreadable)."""
        if instance.id.startswith("sir-"):
            return ""  # an unfulfilled request has no console
        try:
            reply = self.ec2.get_console_output(InstanceId=instance.id)
        except Exception as exc:  # the report only improves a message
            log.info(
                "no console output for %s: %s", instance.name, str(exc).splitlines()[0] if str(exc) else exc
            )
            return ""
        return boot_failure_line(_console_text(reply.get("Output") or ""))

    # -- helpers --------------------------------------------------------------------------------

    def _uses_spot_requests(self) -> bool:
        return self.settings.spot and self.settings.spot_method == "request-spot-instances"

    def _owner_tags(self, name: str, extra: Iterable[tuple[str, str]] = ()) -> list[dict[str, str]]:
        # The ini's [worker] tags first: ours win (config refuses those keys anyway).
        tags = {**dict(self.settings.tags), "Name": name, OWNER_KEY: self.farm, **dict(extra)}
        return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]  # sorted: stable for tests

    def image(self) -> tuple[str, str]:
        """(AMI id, its root device name) of the configured image, looked up at most hourly.

        `resolve:ssm:NAME` is read from SSM (Debian publishes its current images there), so a
        farm boots today's Debian 12 without anyone editing an AMI id. The root device name
        comes from the image, so the volume settings apply to the root volume, not a new one.
        """
        wanted = self.settings.image_id
        cached = self._images.get(wanted)
        if cached and self.clock() - cached[0] < IMAGE_CACHE_S:
            return cached[1], cached[2]
        ami = wanted
        if wanted.startswith(SSM_PREFIX):
            if self.ssm is None:
                raise CloudError(f"image {wanted}: no SSM client to resolve it")
            ami = self.ssm.get_parameter(Name=wanted[len(SSM_PREFIX) :])["Parameter"]["Value"]
        images = self.ec2.describe_images(ImageIds=[ami]).get("Images", [])
        if not images:
            raise CloudError(f"image {ami} ({wanted}): not found in this region")
        root = images[0].get("RootDeviceName") or ""
        self._images[wanted] = (self.clock(), ami, root)
        return ami, root

    def _with_image(self, params: dict[str, Any]) -> dict[str, Any]:
        ami, root = self.image()
        params = {**params, "ImageId": ami}
        if root and params.get("BlockDeviceMappings"):
            params["BlockDeviceMappings"] = [{**params["BlockDeviceMappings"][0], "DeviceName": root}]
        return params

    def launch_request(self, name: str, user_data: str, resolve: bool = True) -> tuple[str, dict[str, Any]]:
        """(EC2 operation, its complete parameters) that launch() sends for worker `name`.

        Tags and user-data included (`coalition cloud render-user-data --params` prints this);
        with resolve=False the image stays as configured (no API call).
        """
        fix = self._with_image if resolve else (lambda params: params)
        if self._uses_spot_requests():
            s = self.settings
            params: dict[str, Any] = {
                "InstanceCount": 1,  # one request per worker: each instance boots with its own name
                "Type": s.spot_type,
                "LaunchSpecification": fix(self.spot_spec(user_data)),
                "ClientToken": name[:64],
                "TagSpecifications": [
                    {"ResourceType": "spot-instances-request", "Tags": self._owner_tags(name)}
                ],
            }
            if s.spot_price:
                params["SpotPrice"] = s.spot_price
            return "request_spot_instances", params
        params = fix(dict(self.run_params()))
        params.update(
            MinCount=1,
            MaxCount=1,
            UserData=user_data,  # boto3 base64-encodes it for run_instances
            ClientToken=name[:64],  # a retried call returns the same instance instead of a second
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": self._owner_tags(name)},
                {"ResourceType": "volume", "Tags": self._owner_tags(name)},
            ],
        )
        return "run_instances", params

    def _run_instance(self, name: str, user_data: str) -> Instance:
        _, params = self.launch_request(name, user_data)
        reply = self.ec2.run_instances(**params)
        raw = reply["Instances"][0]
        market = "spot" if "InstanceMarketOptions" in params else "on-demand"
        log.info("launched %s as %s (%s)", name, raw["InstanceId"], market)
        return self._instance(raw, name)

    def _request_spot(self, name: str, user_data: str) -> Instance:
        s = self.settings
        _, params = self.launch_request(name, user_data)
        reply = self.ec2.request_spot_instances(**params)
        req = reply["SpotInstanceRequests"][0]
        rid = req["SpotInstanceRequestId"]
        log.info("requested spot instance %s as %s", name, rid)
        iid = req.get("InstanceId")
        if iid:  # fulfilled at once (moto always does): adopt the instance now
            self._tag_instance(iid, name, rid)
            return Instance(iid, name, PENDING, _timestamp(req.get("CreateTime")), s.instance_type, rid)
        return Instance(rid, name, PENDING, _timestamp(req.get("CreateTime")), s.instance_type, rid)

    def _cancel(self, request_ids: list[str]) -> None:
        ids = sorted(set(request_ids))
        try:
            self.ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=ids)
        except Exception as exc:
            if "InvalidSpotInstanceRequestID" not in str(exc):
                raise
        log.info("cancelled spot requests %s", ", ".join(ids))

    def _tag_instance(self, instance_id: str, name: str, request_id: str) -> None:
        tags = self._owner_tags(name, [(SPOT_REQUEST_KEY, request_id)])
        self.ec2.create_tags(Resources=[instance_id], Tags=tags)
        # A spot launch specification cannot ask for IMDSv2 (it has no MetadataOptions): require
        # it the moment we adopt the instance. The boot script runs before this at the earliest
        # with IMDSv1 still open; set the account default (docs/cloud.md) to close that window.
        self.ec2.modify_instance_metadata_options(
            InstanceId=instance_id, HttpTokens="required", HttpEndpoint="enabled", HttpPutResponseHopLimit=1
        )

    def _spot_requests(self) -> list[dict[str, Any]]:
        filters = [
            {"Name": f"tag:{OWNER_KEY}", "Values": [self.farm]},
            {"Name": "state", "Values": list(_SPOT_LIVE)},
        ]
        reply = self.ec2.describe_spot_instance_requests(Filters=filters)
        # Filter again: ownership must not depend on a fake (or a future API) honouring filters.
        return [
            r
            for r in reply.get("SpotInstanceRequests", [])
            if _tags(r).get(OWNER_KEY) == self.farm and r.get("State") in _SPOT_LIVE
        ]

    def _adopt_fulfilled(self, requests: list[dict[str, Any]]) -> set[str]:
        """Tag the instances our requests started (AWS does not copy request tags to them)."""
        candidates = {r["InstanceId"]: r for r in requests if r.get("InstanceId")}
        if not candidates:
            return set()
        adopted = set()
        for inst in self._describe(list(candidates)):
            iid = inst["InstanceId"]
            if inst["State"]["Name"] in ("terminated",):
                continue
            adopted.add(iid)
            if _tags(inst).get(OWNER_KEY) != self.farm or SPOT_REQUEST_KEY not in _tags(inst):
                req = candidates[iid]
                self._tag_instance(iid, _tags(req).get("Name", iid), req["SpotInstanceRequestId"])
        return adopted

    def _describe(self, ids: list[str]) -> list[dict[str, Any]]:
        out = []
        try:
            pages = self.ec2.get_paginator("describe_instances").paginate(InstanceIds=ids)
            for page in pages:
                for reservation in page["Reservations"]:
                    out.extend(reservation["Instances"])
        except Exception as exc:
            if "InvalidInstanceID" not in str(exc):
                raise
            # Some are gone already: look them up one by one.
            for iid in ids:
                try:
                    reply = self.ec2.describe_instances(InstanceIds=[iid])
                except Exception as inner:
                    if "InvalidInstanceID" in str(inner):
                        continue
                    raise
                for reservation in reply["Reservations"]:
                    out.extend(reservation["Instances"])
        return out

    def _describe_instances(self) -> list[Instance]:
        filters = [
            {"Name": f"tag:{OWNER_KEY}", "Values": [self.farm]},
            {"Name": "instance-state-name", "Values": list(_STATES)},
        ]
        out = []
        for page in self.ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                for raw in reservation["Instances"]:
                    tags = _tags(raw)
                    if tags.get(OWNER_KEY) != self.farm or raw["State"]["Name"] not in _STATES:
                        continue  # ownership is checked here too, not left to the filter alone
                    out.append(self._instance(raw, tags.get("Name", raw["InstanceId"])))
        return out

    def _instance(self, raw: dict[str, Any], name: str) -> Instance:
        return Instance(
            id=raw["InstanceId"],
            name=name,
            state=_STATES.get(raw["State"]["Name"], STOPPING),
            launched_at=_timestamp(raw.get("LaunchTime")),
            machine_type=raw.get("InstanceType", ""),
            spot_request_id=raw.get("SpotInstanceRequestId") or _tags(raw).get(SPOT_REQUEST_KEY, ""),
            zone=raw.get("Placement", {}).get("AvailabilityZone", ""),
        )

    def _terminate_existing(self, ids: list[str]) -> None:
        try:
            self.ec2.terminate_instances(InstanceIds=ids)
        except Exception as exc:
            if "InvalidInstanceID" not in str(exc):
                raise
            live = [i["InstanceId"] for i in self._describe(ids) if i["State"]["Name"] != "terminated"]
            if live:
                self.ec2.terminate_instances(InstanceIds=live)
        log.info("terminated %s", ", ".join(ids))


def make_client(settings: AwsSettings, endpoint_url: str | None = None) -> Any:
    """A boto3 EC2 client for these settings (boto3 imported here: it is an optional extra)."""
    return _session(settings).client("ec2", endpoint_url=endpoint_url)


def _session(settings: AwsSettings) -> Any:
    try:
        import boto3
    except ImportError:
        raise CloudError(
            "AWS needs boto3: pip install 'coalition[aws]' or apt install python3-boto3"
        ) from None
    kwargs: dict[str, str] = {}
    if settings.region:
        kwargs["region_name"] = settings.region
    # Keys from the ini are for this server's API calls only (an instance profile is better);
    # they never reach a worker.
    if settings.access_key and settings.secret_key:
        kwargs["aws_access_key_id"] = settings.access_key
        kwargs["aws_secret_access_key"] = settings.secret_key
    return boto3.session.Session(**kwargs)


def make_session(settings: AwsSettings) -> Any:
    """The boto3 Session for these settings (for `coalition cloud setup`, which needs s3 and iam too)."""
    return _session(settings)
