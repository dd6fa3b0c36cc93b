"""The EC2 provider under moto (in-process), plus error mapping through botocore's Stubber."""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable
from typing import Any

import pytest

from coalition.cloud.aws import Ec2Provider
from coalition.cloud.base import OWNER_KEY, SPOT_REQUEST_KEY, CloudError, Throttled
from coalition.cloud.config import CloudSettings
from coalition.cloud.userdata import Renderer
from tests.cloud.conftest import AMI, REGION


def provider(session: Any, settings: CloudSettings, farm: str | None = None) -> Ec2Provider:
    assert settings.aws is not None
    r = Renderer(settings)
    return Ec2Provider(
        session.client("ec2"),
        settings.aws,
        farm or settings.farm,
        r.aws_run_instances,
        r.aws_spot_launch_specification,
    )


def describe(ec2: Any, iid: str) -> dict[str, Any]:
    return ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]


def tags(raw: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in raw.get("Tags", [])}


def test_on_demand_launch_is_tagged_and_really_on_demand(
    aws: Any, make_settings: Callable[..., CloudSettings]
) -> None:
    settings = make_settings("aws", {"worker": {"spot": "false"}})
    p = provider(aws, settings)
    payload = Renderer(settings).user_data("cloud-1-0")
    inst = p.launch("cloud-1-0", payload)
    ec2 = aws.client("ec2")
    raw = describe(ec2, inst.id)
    assert tags(raw) == {"Name": "cloud-1-0", OWNER_KEY: "coalition"}
    assert "InstanceLifecycle" not in raw  # spot = false really means on-demand
    assert raw["InstanceType"] == "t3.micro" and raw["ImageId"] == AMI
    sent = ec2.describe_instance_attribute(InstanceId=inst.id, Attribute="userData")["UserData"]["Value"]
    assert base64.b64decode(sent).decode() == payload
    assert [(i.id, i.name, i.state) for i in p.instances()] == [(inst.id, "cloud-1-0", "running")]


def test_spot_through_run_instances(aws: Any, make_settings: Callable[..., CloudSettings]) -> None:
    settings = make_settings("aws")
    inst = provider(aws, settings).launch("cloud-1-0", "#cloud-config\n{}\n")
    assert describe(aws.client("ec2"), inst.id).get("InstanceLifecycle") == "spot"


def test_spot_requests_are_adopted_tagged_and_cancelled(
    aws: Any, make_settings: Callable[..., CloudSettings]
) -> None:
    settings = make_settings("aws", {"worker": {"spotmethod": "request-spot-instances"}})
    p = provider(aws, settings)
    ec2 = aws.client("ec2")
    inst = p.launch("cloud-1-0", "#cloud-config\n{}\n")
    assert inst.spot_request_id.startswith("sir-")
    request = ec2.describe_spot_instance_requests()["SpotInstanceRequests"][0]
    assert tags(request)[OWNER_KEY] == "coalition" and tags(request)["Name"] == "cloud-1-0"
    # moto leaves SpotInstanceRequestId off the instance: our tag records it.
    raw = describe(ec2, inst.id)
    assert tags(raw)[SPOT_REQUEST_KEY] == inst.spot_request_id and tags(raw)["Name"] == "cloud-1-0"
    listed = p.instances()
    assert [(i.id, i.name, i.spot_request_id) for i in listed] == [
        (inst.id, "cloud-1-0", inst.spot_request_id)
    ]
    p.terminate([inst.id])
    assert describe(ec2, inst.id)["State"]["Name"] in ("shutting-down", "terminated")
    live = [
        r
        for r in ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
        if r["State"] in ("open", "active")
    ]
    assert live == []
    assert [i for i in p.instances() if i.state != "gone"] == []  # terminated: listed as gone a while


def test_spot_request_of_an_interrupted_instance_is_cancelled(
    aws: Any, make_settings: Callable[..., CloudSettings]
) -> None:
    settings = make_settings("aws", {"worker": {"spotmethod": "request-spot-instances"}})
    p = provider(aws, settings)
    ec2 = aws.client("ec2")
    inst = p.launch("cloud-1-0", "#cloud-config\n{}\n")
    ec2.terminate_instances(InstanceIds=[inst.id])  # AWS reclaims it: no call of ours
    assert [i for i in p.instances() if i.state != "gone"] == []  # terminated: listed as gone a while
    live = [
        r
        for r in ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
        if r["State"] in ("open", "active")
    ]
    assert live == []


def test_only_our_farm_is_listed_or_terminated(aws: Any, make_settings: Callable[..., CloudSettings]) -> None:
    settings = make_settings("aws")
    ours, theirs = provider(aws, settings), provider(aws, settings, farm="other-farm")
    ec2 = aws.client("ec2")
    mine = ours.launch("cloud-1-0", "#cloud-config\n{}\n")
    other = theirs.launch("cloud-1-1", "#cloud-config\n{}\n")
    # A machine someone started by hand, named like ours but without our tag.
    hand = ec2.run_instances(
        ImageId=AMI,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "cloud-1-2"}]}],
    )["Instances"][0]["InstanceId"]
    assert [i.id for i in ours.instances()] == [mine.id]
    assert [i.id for i in theirs.instances()] == [other.id]
    ours.terminate([mine.id])
    assert describe(ec2, other.id)["State"]["Name"] == "running"
    assert describe(ec2, hand)["State"]["Name"] == "running"


def test_terminating_what_is_gone_is_fine(aws: Any, make_settings: Callable[..., CloudSettings]) -> None:
    p = provider(aws, make_settings("aws"))
    inst = p.launch("cloud-1-0", "#cloud-config\n{}\n")
    p.terminate([inst.id])
    p.terminate([inst.id])
    p.terminate(["i-00000000000000000"])
    p.terminate([])


# -- error mapping (botocore Stubber: exact error codes moto cannot produce) ---------------------


def stubbed(settings: CloudSettings) -> tuple[Ec2Provider, Any]:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("ec2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    r = Renderer(settings)
    assert settings.aws is not None
    p = Ec2Provider(client, settings.aws, settings.farm, r.aws_run_instances, r.aws_spot_launch_specification)
    return p, stub


@pytest.mark.parametrize(
    ("code", "status", "kind", "uncertain"),
    [
        ("RequestLimitExceeded", 503, Throttled, False),
        ("InsufficientInstanceCapacity", 500, Throttled, False),
        ("MaxSpotInstanceCountExceeded", 400, Throttled, False),
        ("InvalidParameterValue", 400, CloudError, False),
        ("InternalError", 500, CloudError, True),
    ],
)
def test_launch_errors_are_classified(
    make_settings: Callable[..., CloudSettings], code: str, status: int, kind: type, uncertain: bool
) -> None:
    p, stub = stubbed(make_settings("aws"))
    stub.add_response("describe_images", {"Images": [{"ImageId": AMI, "RootDeviceName": "/dev/xvda"}]})
    stub.add_client_error("run_instances", service_error_code=code, http_status_code=status)
    with stub, pytest.raises(kind) as info:
        p.launch("cloud-1-0", "#cloud-config\n{}\n")
    assert info.value.uncertain is uncertain
    assert code in str(info.value)
    stub.assert_no_pending_responses()


def test_an_open_spot_request_counts_as_a_pending_instance(
    make_settings: Callable[..., CloudSettings],
) -> None:
    settings = make_settings("aws", {"worker": {"spotmethod": "request-spot-instances"}})
    p, stub = stubbed(settings)
    created = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    request = {
        "SpotInstanceRequestId": "sir-open1",
        "State": "open",
        "Type": "one-time",
        "CreateTime": created,
        "Tags": [{"Key": "Name", "Value": "cloud-1-0"}, {"Key": OWNER_KEY, "Value": "coalition"}],
        "LaunchSpecification": {"InstanceType": "t3.micro"},
    }
    foreign = {**request, "SpotInstanceRequestId": "sir-other", "Tags": [{"Key": OWNER_KEY, "Value": "x"}]}
    stub.add_response("describe_spot_instance_requests", {"SpotInstanceRequests": [request, foreign]})
    stub.add_response("describe_instances", {"Reservations": []})
    with stub:
        listed = p.instances()
    assert [(i.id, i.name, i.state, i.launched_at) for i in listed] == [
        ("sir-open1", "cloud-1-0", "pending", created.timestamp())
    ]
    # Terminating it cancels the request (nothing else to terminate).
    stub.add_response(
        "cancel_spot_instance_requests",
        {"CancelledSpotInstanceRequests": [{"SpotInstanceRequestId": "sir-open1", "State": "cancelled"}]},
        {"SpotInstanceRequestIds": ["sir-open1"]},
    )
    with stub:
        p.terminate(["sir-open1"])
    stub.assert_no_pending_responses()
