"""Templates: rendered, then parsed back; hostile values survive YAML and the shell unchanged;
no cloud credential ever reaches an instance."""

from __future__ import annotations

import base64
import configparser
import json
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from coalition.cloud.config import CloudSettings
from coalition.cloud.userdata import (
    Renderer,
    check_cloud_config,
    check_no_credentials,
    environment_dropin,
)
from tests.support import require

HOSTILE_TOKEN = 'a"b\nc$(x)'
HOSTILE = {
    "coalition": {"workertoken": 'a"b\n  c$(x)'},  # an ini continuation line: the value has a newline
    "storage": {"name": "bucket'; touch pwned #", "mountpoint": "/mnt/my bucket/$(touch pwned2)"},
    "main_program": {"package": "srv/guerilla `id`.tar.gz", "environment": "A='x \"y\" $HOME %n' B=\\\\"},
    "worker": {"installdir": "/opt/it's here", "affinity": "linux,a'b;linux"},
}
FAKE_KEYS = {
    "accesskey": "AKIAIOSFODNN7EXAMPLE",
    "secretaccesskey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}


def _ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def _file(doc: dict[str, Any], path: str) -> str:
    return next(f["content"] for f in doc["write_files"] if f["path"] == path)


def test_aws_user_data_is_valid_cloud_config(make_settings: Callable[..., CloudSettings]) -> None:
    text = Renderer(make_settings("aws")).user_data("cloud-1700000000000-0")
    doc = check_cloud_config(text)
    assert text.startswith("#cloud-config\n")
    # exec form: lists, never a shell string
    # The boot script alone starts the worker, after every step worked (it fails closed).
    assert doc["runcmd"] == [["/bin/sh", "/usr/local/lib/coalition/cloud-boot.sh"]]
    ini = _ini(_file(doc, "/etc/coalition/coalition.ini"))
    assert dict(ini["worker"]) == {
        "serverurl": "http://10.0.0.2:19211",
        "name": "cloud-1700000000000-0",
        "workers": "1",
        "interruptions": "aws",
        "token": "s3cret-token",
    }
    boot = _file(doc, "/usr/local/lib/coalition/cloud-boot.sh")
    assert "s3fs" in boot and "iam_role=auto" in boot and "gcsfuse" not in boot
    assert len(text.encode()) < 16 * 1024


def test_hostile_values_round_trip_through_yaml_ini_and_shell(
    make_settings: Callable[..., CloudSettings], tmp_path: Path
) -> None:
    settings = make_settings("aws", HOSTILE)
    assert settings.worker_token == HOSTILE_TOKEN
    doc = yaml.safe_load(Renderer(settings).user_data("cloud-1-0"))
    # The worker reads back exactly the token and rule lines we meant.
    worker = _ini(_file(doc, "/etc/coalition/coalition.ini"))["worker"]
    assert worker["token"] == HOSTILE_TOKEN
    assert worker["affinity"] == "linux,a'b\nlinux"
    # The boot script's variables, as a real shell sees them.
    script = _file(doc, "/usr/local/lib/coalition/cloud-boot.sh")
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    assignments = "\n".join(
        line for line in script.splitlines() if line.split("=")[0].isupper() and "=" in line
    )
    probe = assignments + '\nprintf "%s\\0" "$BUCKET" "$MOUNTPOINT" "$MAIN_PROGRAM" "$INSTALL_DIR"\n'
    run = tmp_path / "run"
    run.mkdir()
    out = subprocess.run(["sh", "-c", probe], capture_output=True, text=True, check=True, cwd=run).stdout
    assert out.split("\0")[:-1] == [
        "bucket'; touch pwned #",
        "/mnt/my bucket/$(touch pwned2)",
        "srv/guerilla `id`.tar.gz",
        "/opt/it's here",
    ]
    assert not any(run.iterdir())  # nothing in the values was executed
    # The environment drop-in, unquoted the way systemd does (C escapes, %% for %).
    dropin = _file(doc, "/etc/systemd/system/coalition-worker.service.d/main-program.conf")
    values = [
        shlex.split(line.partition("=")[2])[0]
        for line in dropin.splitlines()
        if line.startswith("Environment=")
    ]
    assert [v.replace("%%", "%") for v in values] == ['A=x "y" $HOME %n', "B=\\"]


def test_gce_startup_script_round_trips_hostile_values(
    make_settings: Callable[..., CloudSettings], tmp_path: Path
) -> None:
    settings = make_settings("gcloud", HOSTILE)
    script = Renderer(settings).startup_script("cloud-1-0")
    assert script.startswith("#!/bin/sh\n")
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    # Run the part that writes the files, into a scratch directory instead of /etc.
    run = tmp_path / "run"
    run.mkdir()
    head = script.split("\n(\n", 1)[0].replace(" /etc/", f" {run}/etc/")
    subprocess.run(["sh", "-c", head], check=True, cwd=run)
    worker = _ini((run / "etc/coalition/coalition.ini").read_text())["worker"]
    assert worker["token"] == HOSTILE_TOKEN
    assert worker["interruptions"] == "gce"
    assert "gcsfuse" in script and "s3fs" not in script
    assert sorted(p.name for p in run.iterdir()) == ["etc"]  # nothing in the values was executed


def test_no_cloud_credentials_in_anything_an_instance_gets(
    make_settings: Callable[..., CloudSettings], tmp_path: Path
) -> None:
    key = tmp_path / "key.json"
    key.write_text(
        json.dumps(
            {
                "type": "service_account",
                "private_key_id": "0123456789abcdef",
                "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----\n",
            }
        )
    )
    aws = Renderer(make_settings("aws", {"authentication": FAKE_KEYS}))
    spot = make_settings(
        "aws", {"authentication": FAKE_KEYS, "worker": {"spotmethod": "request-spot-instances"}}
    )
    gce = Renderer(make_settings("gcloud", {"authentication": {"keyfile": str(key)}}))
    gce_ci = Renderer(
        make_settings(
            "gcloud", {"authentication": {"keyfile": str(key)}, "worker": {"bootmethod": "cloud-init"}}
        )
    )
    user_data = aws.user_data("cloud-1-0")
    outputs = [
        user_data,
        json.dumps(aws.aws_run_instances()),
        base64.b64decode(Renderer(spot).aws_spot_launch_specification(user_data)["UserData"]).decode(),
        gce.startup_script("cloud-1-0"),
        gce_ci.user_data("cloud-1-0"),
        json.dumps(gce.gce_instance()),
    ]
    secrets = [*FAKE_KEYS.values(), str(key), "0123456789abcdef", "PRIVATE KEY", "MIIEv"]
    for text in outputs:
        for secret in secrets:
            assert secret not in text


def test_credential_guard_refuses_boot_data_with_keys() -> None:
    check_no_credentials("#cloud-config\n{}\n")
    for leak in [
        "AWS_SECRET_ACCESS_KEY=abc",
        "key AKIAIOSFODNN7EXAMPLE",
        "-----BEGIN RSA PRIVATE KEY-----",
        '{"type": "service_account"}',
        "echo bucket:key:secret > /etc/passwd-s3fs",
    ]:
        with pytest.raises(ValueError, match="credential"):
            check_no_credentials(leak)
    with pytest.raises(ValueError, match="credential"):
        check_no_credentials("token = hunter2-long-secret", ["hunter2-long-secret"])


def test_template_overrides_are_checked_too(
    make_settings: Callable[..., CloudSettings], tmp_path: Path
) -> None:
    override = tmp_path / "templates" / "cloud-init"
    override.mkdir(parents=True)
    settings = make_settings("aws", {"coalition": {"templatedir": str(tmp_path / "templates")}})
    cases = {
        "{{ nope | tojson }}\n": "template cloud-init/worker.yaml.j2",  # StrictUndefined, via TypeError
        "{{ nope }}\n": "template cloud-init/worker.yaml.j2",  # StrictUndefined
        "runcmd: [x]\n": "#cloud-config",  # no header
        "#cloud-config\n- a list\n": "mapping",
        "#cloud-config\nkey: [unclosed\n": "not valid YAML",
        "#cloud-config\nx: " + "y" * 17000 + "\n": "16384-byte",
    }
    for body, message in cases.items():
        (override / "worker.yaml.j2").write_text(body)
        with pytest.raises(ValueError, match=message):
            Renderer(settings).user_data("cloud-1-0")


def test_oversized_user_data_is_refused(make_settings: Callable[..., CloudSettings]) -> None:
    env = " ".join(f"V{i}={'x' * 400}" for i in range(45))
    with pytest.raises(ValueError, match="16384-byte EC2 limit"):
        Renderer(make_settings("aws", {"main_program": {"environment": env}})).user_data("cloud-1-0")


def test_cloud_init_schema(make_settings: Callable[..., CloudSettings], tmp_path: Path) -> None:
    cloud_init = shutil.which("cloud-init")
    require(cloud_init is not None, "cloud-init not found (schema check): apt-get install cloud-init")
    assert cloud_init is not None
    documents = {
        "aws": Renderer(make_settings("aws", HOSTILE)).user_data("cloud-1-0"),
        "gce": Renderer(make_settings("gcloud", {"worker": {"bootmethod": "cloud-init"}})).user_data(
            "cloud-1-0"
        ),
        "broken": "#cloud-config\nruncmd: 12\nwrite_files: nope\n",
    }
    for name, text in documents.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        result = subprocess.run(
            [cloud_init, "schema", "--config-file", str(path)], capture_output=True, text=True
        )
        assert (result.returncode == 0) is (name != "broken"), result.stdout + result.stderr


def test_aws_launch_parameters(make_settings: Callable[..., CloudSettings]) -> None:
    on_demand = Renderer(make_settings("aws", {"worker": {"spot": "false"}})).aws_run_instances()
    assert "InstanceMarketOptions" not in on_demand  # spot = false really means on-demand
    spot = Renderer(
        make_settings(
            "aws",
            {
                "worker": {
                    "iaminstanceprofile": "coalition-worker",
                    "securitygroupid": "sg-1, sg-2",
                    "subnetid": "subnet-9",
                },
                "spot": {"spotprice": ""},
            },
        )
    ).aws_run_instances()
    assert spot["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
    }
    assert spot["IamInstanceProfile"] == {"Name": "coalition-worker"}
    assert spot["SecurityGroupIds"] == ["sg-1", "sg-2"] and spot["SubnetId"] == "subnet-9"
    assert "KeyName" not in spot and "Placement" not in spot  # unset keys leave AWS's defaults
    arn = "arn:aws:iam::123456789012:instance-profile/w"
    by_arn = Renderer(make_settings("aws", {"worker": {"iaminstanceprofile": arn}})).aws_run_instances()
    assert (
        by_arn["IamInstanceProfile"] == {"Arn": arn}
        and by_arn["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"] == "10"
    )
    spec = Renderer(
        make_settings("aws", {"worker": {"spotmethod": "request-spot-instances"}})
    ).aws_spot_launch_specification("#cloud-config\n")
    assert spec["ImageId"] and base64.b64decode(spec["UserData"]) == b"#cloud-config\n"
    assert "InstanceMarketOptions" not in spec


@pytest.mark.parametrize(
    ("worker", "scheduling"),
    [
        (
            {"provisioningmodel": "PREEMPTIBLE"},
            {"preemptible": True, "on_host_maintenance": "TERMINATE", "automatic_restart": False},
        ),
        (
            {},  # the default: SPOT
            {
                "provisioning_model": "SPOT",
                "instance_termination_action": "DELETE",
                "on_host_maintenance": "TERMINATE",
                "automatic_restart": False,
            },
        ),
        (
            {"preemptible": "false", "maintenancepolicy": "MIGRATE"},
            {"on_host_maintenance": "MIGRATE", "automatic_restart": True},
        ),
    ],
)
def test_gce_instance_body(
    make_settings: Callable[..., CloudSettings], worker: dict[str, str], scheduling: Any
) -> None:
    body = Renderer(
        make_settings("gcloud", {"worker": {**worker, "bootdisksize": "50", "bootdisktype": "pd-ssd"}})
    ).gce_instance()
    assert body["scheduling"] == scheduling
    assert body["machine_type"] == "zones/europe-west1-b/machineTypes/e2-standard-4"
    disk = body["disks"][0]["initialize_params"]
    assert disk == {
        "source_image": "projects/debian-cloud/global/images/family/debian-12",
        "disk_size_gb": 50,
        "disk_type": "zones/europe-west1-b/diskTypes/pd-ssd",
    }  # no [worker] labels: GceProvider adds the ownership label at launch
    assert (
        body["network_interfaces"][0]["subnetwork"]
        == "projects/test-project/regions/europe-west1/subnetworks/default"
    )
    assert body["service_accounts"][0]["email"] == "workers@test-project.iam.gserviceaccount.com"
    assert "https://www.googleapis.com/auth/devstorage.read_write" in body["service_accounts"][0]["scopes"]


def test_environment_dropin_escapes_for_systemd() -> None:
    text = environment_dropin([("A", 'say "hi" 100% \\o/')])
    assert text.splitlines()[-1] == 'Environment="A=say \\"hi\\" 100%% \\\\o/"'
