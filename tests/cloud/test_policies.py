"""Least privilege, written down and used (issue 14): every cloud call the code makes is in
the shipped policy of whoever makes it, and the policies grant nothing the code never uses.

AWS: the operator flows run under moto (setup twice, the autoscaler with each launch method,
a boot report, terminations) while a boto3 `before-call` event hook on every client records
(service, operation) and which of our modules made the call. GCE: the fake records every
request, and each is mapped onto the IAM permission Google documents for it.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from coalition.cloud.config import CloudSettings
from coalition.cloud.reconcile import Autoscaler
from coalition.cloud.setup import policy_document, setup_aws, setup_gcloud, worker_bucket_policy
from coalition.cloud.userdata import Renderer
from tests.cloud.conftest import AMI
from tests.cloud.fakes import Clock, FakeFarm, ec2_provider

POLICIES = Path(__file__).resolve().parents[2] / "coalition/templates/policies"
# S3's IAM actions are not named after its operations.
S3_ACTIONS = {
    "HeadBucket": "s3:ListBucket",
    "HeadObject": "s3:GetObject",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
}
# Granted without an API call of their own: RunInstances with an instance profile needs
# iam:PassRole, and the first spot request of an account creates the spot service role.
# CreateSecurityGroup with TagSpecifications needs ec2:CreateTags; DescribeSubnets is used only
# with a [worker] subnetid.
IMPLIED = {
    "aws-server": {"iam:PassRole", "iam:CreateServiceLinkedRole"},
    "aws-setup": {"ec2:CreateTags", "ec2:DescribeSubnets"},
}
# Polled while an operation runs (the fake's operations are done at once).
GCE_IMPLIED = {"compute.zoneOperations.get"}


def actions(policy: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        names = statement["Action"]
        out |= {names} if isinstance(names, str) else set(names)
    return out


@pytest.fixture
def aws_calls(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, set[str]]]:
    """{"aws-server": actions, "aws-setup": actions} made by our code while the test runs."""
    import botocore.client

    calls: dict[str, set[str]] = {"aws-server": set(), "aws-setup": set()}
    create = botocore.client.ClientCreator.create_client

    def hook(model: Any, **_: Any) -> None:
        service = model.service_model.signing_name or model.service_model.endpoint_prefix
        name = (
            S3_ACTIONS.get(model.name, f"s3:{model.name}") if service == "s3" else f"{service}:{model.name}"
        )
        modules = {f.frame.f_globals.get("__name__", "") for f in inspect.stack(0)}
        if "coalition.cloud.setup" in modules:
            calls["aws-setup"].add(name)
        elif modules & {"coalition.cloud.aws", "coalition.cloud.reconcile"}:
            calls["aws-server"].add(name)
        # else: the test itself looking at moto; no policy covers that

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = create(self, *args, **kwargs)
        client.meta.events.register("before-call", hook)
        return client

    monkeypatch.setattr(botocore.client.ClientCreator, "create_client", create_client)
    yield calls


def seed_debian_parameter(region: str) -> str:
    """Debian's public SSM parameter, as AWS publishes it (moto knows only Amazon Linux's)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ssm.models import Parameter, ssm_backends

    name = "/aws/service/debian/release/12/latest/amd64"
    backend = ssm_backends[DEFAULT_ACCOUNT_ID][region]
    backend._parameters[name] = [
        Parameter(
            account_id=DEFAULT_ACCOUNT_ID,
            name=name,
            value=AMI,
            parameter_type="String",
            description=None,
            allowed_pattern=None,
            keyid=None,
            last_modified_date=0,
            version=1,
            data_type="aws:ec2:image",
        )
    ]
    return name


def exercise_aws(aws: Any, settings: CloudSettings, farm: FakeFarm, clock: Clock) -> Autoscaler:
    provider = ec2_provider(aws, settings, clock)
    scaler = Autoscaler(provider, settings, farm, clock)
    farm.ready[frozenset()] = 2
    plan = scaler.tick()
    assert plan is not None and len(plan.launch) == 2, (plan, provider.instances(), farm.ready_jobs_by_tags())
    clock.advance(1000)  # past the boot timeout: both are terminated as failed boots
    scaler.tick()
    return scaler


def test_every_aws_call_is_in_the_shipped_policies(
    aws: Any, aws_calls: dict[str, set[str]], make_settings: Callable[..., CloudSettings], tmp_path: Path
) -> None:
    region = aws.region_name
    seed_debian_parameter(region)
    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / "python3-coalition_5.0.0_all.deb").write_bytes(b"!<arch>\n")
    (debs / "coalition-worker_5.0.0_all.deb").write_bytes(b"!<arch>\n")
    for _ in range(2):  # a fresh account, then one with everything in place
        setup_aws(make_settings("aws"), aws, bundle=str(debs), out=lambda line: None)
    for method in ("run-instances", "request-spot-instances"):
        clock = Clock(time.time())  # moto stamps launches with the real time
        settings = make_settings(
            "aws",
            {
                "worker": {
                    "spotmethod": method,
                    "imageid": "resolve:ssm:/aws/service/debian/release/12/latest/amd64",
                },
                "coalition": {"workerinstanceboottimeout": "600", "workerinstancestartdelay": "0"},
            },
        )
        exercise_aws(aws, settings, FakeFarm(clock), clock)
    used = aws_calls
    assert "ec2:RunInstances" in used["aws-server"] and "ec2:RequestSpotInstances" in used["aws-server"]
    assert "ec2:GetConsoleOutput" in used["aws-server"] and "ssm:GetParameter" in used["aws-server"]
    assert "s3:PutEncryptionConfiguration" in used["aws-setup"]
    for name in ("aws-server", "aws-setup"):
        granted = actions(json.loads((POLICIES / f"{name}.json").read_text()))
        assert used[name] <= granted, f"{name}.json lacks {sorted(used[name] - granted)}"
        # ... and grants nothing the code does not use (least privilege).
        assert granted <= used[name] | IMPLIED[name], (
            f"{name}.json grants unused {sorted(granted - used[name])}"
        )


def test_shipped_documents_are_what_setup_uses() -> None:
    assert policy_document("aws-server") == json.loads((POLICIES / "aws-server.json").read_text())
    worker = worker_bucket_policy("my-bucket")
    assert actions(worker) == {
        "s3:ListBucket",
        "s3:GetBucketLocation",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
    }
    assert {s["Resource"] for s in worker["Statement"]} == {
        "arn:aws:s3:::my-bucket",
        "arn:aws:s3:::my-bucket/*",
    }
    # Termination is limited to instances that carry our ownership tag.
    server = policy_document("aws-server")
    guarded = next(s for s in server["Statement"] if "ec2:TerminateInstances" in s["Action"])
    assert "aws:ResourceTag/coalition-farm" in json.dumps(guarded["Condition"])


# -- GCE ---------------------------------------------------------------------------------------

# (method, path pattern) of the Compute and Storage JSON APIs -> the permissions they need.
GCE_PERMISSIONS: list[tuple[str, str, set[str]]] = [
    (
        "POST",
        "/zones/[^/]+/instances$",
        {
            "compute.instances.create",
            "compute.disks.create",
            "compute.subnetworks.use",
            "compute.subnetworks.useExternalIp",
            "compute.instances.setMetadata",
            "compute.instances.setLabels",
            "compute.disks.setLabels",
            "compute.instances.setTags",
            "compute.instances.setServiceAccount",
        },
    ),
    ("GET", "/zones/[^/]+/instances$", {"compute.instances.list"}),
    ("GET", "/zones/[^/]+/instances/[^/]+/serialPort$", {"compute.instances.getSerialPortOutput"}),
    ("GET", "/zones/[^/]+/instances/[^/]+$", {"compute.instances.get"}),
    ("DELETE", "/zones/[^/]+/instances/[^/]+$", {"compute.instances.delete"}),
    ("GET", "/zones/[^/]+/operations/", {"compute.zoneOperations.get"}),
    ("GET", "/global/operations/", {"compute.globalOperations.get"}),
    ("GET", "/global/firewalls/", {"compute.firewalls.get"}),
    ("POST", "/global/firewalls$", {"compute.firewalls.create", "compute.networks.updatePolicy"}),
    ("PATCH", "/global/firewalls/", {"compute.firewalls.update", "compute.networks.updatePolicy"}),
    ("GET", "^/storage/v1/b/[^/]+$", {"storage.buckets.get"}),
    ("POST", "^/storage/v1/b$", {"storage.buckets.create"}),
    ("PATCH", "^/storage/v1/b/[^/]+$", {"storage.buckets.update"}),
    ("GET", "^/storage/v1/b/[^/]+/iam$", {"storage.buckets.getIamPolicy"}),
    ("PUT", "^/storage/v1/b/[^/]+/iam$", {"storage.buckets.setIamPolicy"}),
    ("GET", "^/storage/v1/b/[^/]+/o/", {"storage.objects.get"}),
    ("POST", "^/upload/storage/v1/b/[^/]+/o$", {"storage.objects.create", "storage.objects.delete"}),
]


def gce_permissions(requests: list[tuple[str, str, Any]]) -> set[str]:
    import re

    out: set[str] = set()
    for method, path, _ in requests:
        found = [perms for m, pattern, perms in GCE_PERMISSIONS if m == method and re.search(pattern, path)]
        assert found, f"no permission mapped for {method} {path}"
        out |= found[0]
    return out


def listed(name: str) -> set[str]:
    lines = (POLICIES / f"{name}.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_every_gce_call_is_in_the_shipped_role_lists(
    gce_fake: Any, gce_client: Any, make_settings: Callable[..., CloudSettings], tmp_path: Path
) -> None:
    from coalition.cloud.cli import _gce_clients
    from coalition.cloud.gce import GceProvider
    from coalition.cloud.gcs import GcsBucket

    settings = make_settings("gcloud")
    assert settings.gce is not None
    firewalls, session = _gce_clients(settings, gce_fake.url)  # as the CLI makes them
    bucket = GcsBucket(session, settings.storage.bucket, settings.gce.project, gce_fake.url)
    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / "python3-coalition_5.0.0_all.deb").write_bytes(b"!<arch>\n")
    (debs / "coalition-worker_5.0.0_all.deb").write_bytes(b"!<arch>\n")
    for _ in range(2):
        setup_gcloud(
            settings, firewalls, bucket, bundle=str(debs), office_cidr="203.0.113.0/24", out=lambda line: None
        )
    setup_calls = gce_permissions(gce_fake.requests)
    gce_fake.requests.clear()
    clock = Clock()
    provider = GceProvider(gce_client, settings.gce, settings.farm, Renderer(settings).gce_instance)
    scaler = Autoscaler(provider, settings, FakeFarm(clock), clock)
    scaler.farm.ready[frozenset()] = 1  # type: ignore[attr-defined]
    name = scaler.tick().launch[0]  # type: ignore[union-attr]
    gce_fake.set_status(name, "TERMINATED")  # its boot failed and it powered off
    gce_fake.serial[name] = "coalition-cloud-boot: FAILED: cannot unpack the main program x.tar.gz\n"
    plan = scaler.tick()
    assert plan is not None and plan.boot_failed[0].reason == "cannot unpack the main program x.tar.gz"
    server_calls = gce_permissions(gce_fake.requests)
    assert server_calls <= listed("gce-server"), sorted(server_calls - listed("gce-server"))
    assert setup_calls <= listed("gce-setup"), sorted(setup_calls - listed("gce-setup"))
    assert listed("gce-server") <= server_calls | GCE_IMPLIED, sorted(listed("gce-server") - server_calls)
