"""The GCE provider with the real google-cloud-compute client against the local fake endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from coalition.cloud.base import OWNER_KEY, CloudError, Throttled
from coalition.cloud.config import CloudSettings
from coalition.cloud.gce import GceProvider
from coalition.cloud.userdata import Renderer

ZONE_PATH = "/compute/v1/projects/test-project/zones/europe-west1-b/instances"


def provider(client: Any, settings: CloudSettings, farm: str | None = None) -> GceProvider:
    assert settings.gce is not None
    key = "startup-script" if settings.gce.boot_method == "startup-script" else "user-data"
    return GceProvider(client, settings.gce, farm or settings.farm, Renderer(settings).gce_instance, key)


def sent(fake: Any, name: str) -> dict[str, Any]:
    return next(b for m, p, b in fake.requests if m == "POST" and p == ZONE_PATH and b["name"] == name)


def disk_labels(body: dict[str, Any]) -> dict[str, str]:
    return body["disks"][0]["initializeParams"]["labels"]


def test_launch_sends_a_spot_worker_labelled_as_ours(
    gce_fake: Any, gce_client: Any, make_settings: Callable[..., CloudSettings]
) -> None:
    settings = make_settings("gcloud")
    payload = Renderer(settings).boot_payload("cloud-1-0")
    inst = provider(gce_client, settings).launch("cloud-1-0", payload)
    assert (inst.id, inst.name) == ("cloud-1-0", "cloud-1-0")
    body = sent(gce_fake, "cloud-1-0")
    assert body["labels"] == {OWNER_KEY: "coalition"}
    assert body["metadata"]["items"] == [{"key": "startup-script", "value": payload}]
    assert body["scheduling"] == {  # SPOT by default (issue 14)
        "provisioningModel": "SPOT",
        "instanceTerminationAction": "DELETE",
        "onHostMaintenance": "TERMINATE",
        "automaticRestart": False,
    }
    assert disk_labels(body) == {OWNER_KEY: "coalition"}
    assert body["machineType"] == "zones/europe-west1-b/machineTypes/e2-standard-4"
    disk = body["disks"][0]
    assert disk["boot"] and disk["autoDelete"]
    assert disk["initializeParams"]["sourceImage"] == "projects/debian-cloud/global/images/family/debian-12"
    assert body["serviceAccounts"][0]["email"] == "workers@test-project.iam.gserviceaccount.com"
    assert body["networkInterfaces"][0]["accessConfigs"] == [
        {"name": "External NAT", "type": "ONE_TO_ONE_NAT"}
    ]
    assert body["tags"] == {"items": ["coalition-worker"]}
    listed = provider(gce_client, settings).instances()
    assert [(i.id, i.state, i.machine_type) for i in listed] == [("cloud-1-0", "pending", "e2-standard-4")]
    assert listed[0].launched_at > 0


def test_spot_model_and_cloud_init_boot(
    gce_fake: Any, gce_client: Any, make_settings: Callable[..., CloudSettings]
) -> None:
    settings = make_settings("gcloud", {"worker": {"provisioningmodel": "SPOT", "bootmethod": "cloud-init"}})
    payload = Renderer(settings).boot_payload("cloud-1-0")
    assert payload.startswith("#cloud-config\n")
    provider(gce_client, settings).launch("cloud-1-0", payload)
    body = sent(gce_fake, "cloud-1-0")
    assert body["scheduling"]["provisioningModel"] == "SPOT"
    assert body["scheduling"]["instanceTerminationAction"] == "DELETE"
    assert body["metadata"]["items"][0]["key"] == "user-data"


def test_states_ownership_and_terminate(
    gce_fake: Any, gce_client: Any, make_settings: Callable[..., CloudSettings]
) -> None:
    settings = make_settings("gcloud")
    ours, theirs = provider(gce_client, settings), provider(gce_client, settings, farm="other")
    ours.launch("cloud-1-0", "x")
    ours.launch("cloud-1-1", "x")
    theirs.launch("cloud-1-2", "x")
    gce_fake.instances["hand-made"] = {
        "name": "hand-made",
        "status": "RUNNING",
        "machineType": "zones/z/machineTypes/n1",
    }
    gce_fake.set_status("cloud-1-0", "RUNNING")
    gce_fake.set_status("cloud-1-1", "TERMINATED")  # a preempted VM: stopped, still there
    assert {(i.name, i.state) for i in ours.instances()} == {
        ("cloud-1-0", "running"),
        ("cloud-1-1", "stopped"),
    }
    ours.terminate(["cloud-1-0", "cloud-1-1", "already-gone"])
    assert sorted(gce_fake.instances) == ["cloud-1-2", "hand-made"]
    assert ours.instances() == []


def test_a_retried_insert_is_not_a_second_machine(
    gce_fake: Any, gce_client: Any, make_settings: Callable[..., CloudSettings]
) -> None:
    p = provider(gce_client, make_settings("gcloud"))
    p.launch("cloud-1-0", "x")
    p.launch("cloud-1-0", "x")  # 409 alreadyExists: taken as done
    assert list(gce_fake.instances) == ["cloud-1-0"]


@pytest.mark.parametrize(
    ("inject", "kind", "uncertain"),
    [
        (lambda f: f.fault("POST", "/instances$", 429, "rateLimitExceeded"), Throttled, False),
        (lambda f: f.fault("POST", "/instances$", 403, "quotaExceeded"), Throttled, False),
        (lambda f: f.fail_operation("ZONE_RESOURCE_POOL_EXHAUSTED"), Throttled, False),
        (lambda f: f.fault("POST", "/instances$", 400, "invalid"), CloudError, False),
        (lambda f: f.fault("POST", "/instances$", 500, "backendError"), CloudError, True),
    ],
    ids=["429", "quota", "zone-exhausted", "400", "500"],
)
def test_launch_errors_are_classified(
    gce_fake: Any,
    gce_client: Any,
    make_settings: Callable[..., CloudSettings],
    inject: Any,
    kind: type,
    uncertain: bool,
) -> None:
    inject(gce_fake)
    with pytest.raises(kind) as info:
        provider(gce_client, make_settings("gcloud")).launch("cloud-1-0", "x")
    assert info.value.uncertain is uncertain
    assert "cloud-1-0" not in gce_fake.instances


def test_listing_errors(gce_fake: Any, gce_client: Any, make_settings: Callable[..., CloudSettings]) -> None:
    gce_fake.fault("GET", "/instances$", 429, "rateLimitExceeded")
    with pytest.raises(Throttled):
        provider(gce_client, make_settings("gcloud")).instances()
