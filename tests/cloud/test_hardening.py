"""Hardened instances and buckets (issue 14), checked on what moto and the GCE fake received."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from coalition.cloud.aws import Ec2Provider
from coalition.cloud.base import OWNER_KEY, CloudError
from coalition.cloud.config import CloudSettings
from coalition.cloud.setup import setup_aws
from coalition.cloud.userdata import Renderer
from tests.cloud.conftest import AMI
from tests.cloud.fakes import Clock, ec2_provider
from tests.cloud.test_policies import seed_debian_parameter

TAGS = {"worker": {"tags": "team=lighting, costcentre=4711"}}


def provider(aws: Any, settings: CloudSettings) -> Ec2Provider:
    return ec2_provider(aws, settings, Clock(time.time()))


def describe(aws: Any, iid: str) -> dict[str, Any]:
    return aws.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]


def root_volume(aws: Any, raw: dict[str, Any]) -> dict[str, Any]:
    ec2 = aws.client("ec2")
    mapping = next(m for m in raw["BlockDeviceMappings"] if m["DeviceName"] == raw["RootDeviceName"])
    return ec2.describe_volumes(VolumeIds=[mapping["Ebs"]["VolumeId"]])["Volumes"][0]


@pytest.mark.parametrize("method", ["run-instances", "request-spot-instances"])
def test_every_launch_method_gives_an_encrypted_root_imdsv2_and_our_tags(
    aws: Any, make_settings: Callable[..., CloudSettings], method: str
) -> None:
    settings = make_settings("aws", {"worker": {**TAGS["worker"], "spotmethod": method, "volumesize": "40"}})
    p = provider(aws, settings)
    sent: dict[str, Any] = {}
    p.ec2.meta.events.register("provide-client-params.ec2.*", lambda params, **_: sent.update(params))
    inst = p.launch("cloud-1-0", "#cloud-config\n{}\n")
    raw = describe(aws, inst.id)
    assert raw["MetadataOptions"]["HttpTokens"] == "required"  # IMDSv2 only, whichever method
    tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
    assert tags["team"] == "lighting" and tags["costcentre"] == "4711" and tags[OWNER_KEY] == "coalition"
    if method == "run-instances":
        volume = root_volume(aws, raw)
        assert volume["Encrypted"] is True and volume["Size"] == 40 and volume["VolumeType"] == "gp3"
        assert len(raw["BlockDeviceMappings"]) == 1  # the root volume resized, not a second one
        assert {t["Key"]: t["Value"] for t in volume.get("Tags", [])}["team"] == "lighting"
    else:  # moto ignores a spot specification's volumes: check what was asked for
        spec = next(v for k, v in sent.items() if k == "LaunchSpecification")
        assert spec["BlockDeviceMappings"] == [
            {
                "DeviceName": raw["RootDeviceName"],  # the image's own root device
                "Ebs": {
                    "VolumeSize": 40,
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ]
        request = aws.client("ec2").describe_spot_instance_requests()["SpotInstanceRequests"][0]
        assert {t["Key"]: t["Value"] for t in request["Tags"]}["costcentre"] == "4711"


def test_launch_parameters_ask_for_encryption_unless_told_not_to(
    make_settings: Callable[..., CloudSettings],
) -> None:
    params = Renderer(make_settings("aws")).aws_run_instances()
    assert params["BlockDeviceMappings"] == [
        {
            "DeviceName": "/dev/xvda",
            "Ebs": {"VolumeSize": 30, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True},
        }
    ]
    plain = Renderer(make_settings("aws", {"worker": {"volumeencrypted": "false"}})).aws_run_instances()
    assert plain["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is False
    keyed = Renderer(make_settings("aws", {"worker": {"volumekmskey": "alias/render"}})).aws_run_instances()
    assert keyed["BlockDeviceMappings"][0]["Ebs"]["KmsKeyId"] == "alias/render"
    with pytest.raises(ValueError, match="worker.tags: tag 'coalition-farm' is reserved"):
        make_settings("aws", {"worker": {"tags": "coalition-farm=other"}})
    with pytest.raises(ValueError, match="worker.volumekmskey"):
        make_settings("aws", {"worker": {"volumekmskey": "k", "volumeencrypted": "false"}})


def test_the_default_image_is_debian_12_from_ssm(
    aws: Any, make_settings: Callable[..., CloudSettings]
) -> None:
    default = make_settings("aws", {"worker": {"imageid": ""}}, base=True)
    assert default.aws is not None  # "" is refused at launch; the shipped default is the parameter
    settings = make_settings(
        "aws", {"worker": {"imageid": "resolve:ssm:/aws/service/debian/release/12/latest/amd64"}}
    )
    p = provider(aws, settings)
    with pytest.raises(CloudError, match="ParameterNotFound|not found"):
        p.launch("cloud-1-0", "#cloud-config\n{}\n")  # Debian's parameter is not there yet
    seed_debian_parameter(aws.region_name)
    inst = p.launch("cloud-1-1", "#cloud-config\n{}\n")
    assert describe(aws, inst.id)["ImageId"] == AMI


def test_setup_encrypts_and_closes_the_bucket_even_an_existing_one(
    aws: Any, make_settings: Callable[..., CloudSettings]
) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(
        Bucket="coalition-test-bucket", CreateBucketConfiguration={"LocationConstraint": aws.region_name}
    )
    lines: list[str] = []
    setup_aws(make_settings("aws"), aws, out=lines.append)
    assert any("update" in line and "default encryption" in line for line in lines), lines
    rule = s3.get_bucket_encryption(Bucket="coalition-test-bucket")["ServerSideEncryptionConfiguration"][
        "Rules"
    ][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket="coalition-test-bucket")["PublicAccessBlockConfiguration"]
    assert all(block.values())
    lines.clear()
    setup_aws(make_settings("aws", {"storage": {"kmskey": "alias/farm"}}), aws, out=lines.append)
    rule = s3.get_bucket_encryption(Bucket="coalition-test-bucket")["ServerSideEncryptionConfiguration"][
        "Rules"
    ][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": "alias/farm",
    }
    lines.clear()
    setup_aws(make_settings("aws", {"storage": {"kmskey": "alias/farm"}}), aws, out=lines.append)
    assert not any("update" in line and "bucket" in line for line in lines), lines  # idempotent


def test_gcloud_setup_prevents_public_access_and_grants_the_workers_exactly_object_use(
    gce_fake: Any, gce_client: Any, make_settings: Callable[..., CloudSettings]
) -> None:
    from coalition.cloud.cli import _gce_clients
    from coalition.cloud.gcs import GcsBucket
    from coalition.cloud.setup import setup_gcloud

    settings = make_settings("gcloud", {"worker": {"labels": "team=lighting"}})
    assert settings.gce is not None
    firewalls, session = _gce_clients(settings, gce_fake.url)
    bucket = GcsBucket(session, "coalition-test-bucket", "test-project", gce_fake.url)
    gce_fake.buckets["coalition-test-bucket"] = {"name": "coalition-test-bucket", "iamConfiguration": {}}
    lines: list[str] = []
    setup_gcloud(settings, firewalls, bucket, out=lines.append)
    meta = gce_fake.buckets["coalition-test-bucket"]
    assert meta["iamConfiguration"]["publicAccessPrevention"] == "enforced"
    assert meta["iamConfiguration"]["uniformBucketLevelAccess"] == {"enabled": True}
    bindings = gce_fake.bucket_iam["coalition-test-bucket"]["bindings"]
    worker = "serviceAccount:workers@test-project.iam.gserviceaccount.com"
    assert [b["role"] for b in bindings if worker in b["members"]] == ["roles/storage.objectUser"]
    lines.clear()
    setup_gcloud(settings, firewalls, bucket, out=lines.append)
    assert "0 change(s)" in lines[-1], lines


def test_gce_labels_go_on_the_vm_and_its_disks(
    gce_fake: Any, gce_client: Any, make_settings: Callable[..., CloudSettings]
) -> None:
    from coalition.cloud.gce import GceProvider

    settings = make_settings("gcloud", {"worker": {"labels": "team=lighting, show=forest"}})
    assert settings.gce is not None
    GceProvider(gce_client, settings.gce, settings.farm, Renderer(settings).gce_instance).launch(
        "cloud-1-0", "#!/bin/sh\n"
    )
    vm = gce_fake.instances["cloud-1-0"]
    wanted = {"team": "lighting", "show": "forest", OWNER_KEY: "coalition"}
    assert vm["labels"] == wanted and vm["disks"][0]["initializeParams"]["labels"] == wanted
    with pytest.raises(ValueError, match="GCE labels are lowercase"):
        make_settings("gcloud", {"worker": {"labels": "Team=x"}})
