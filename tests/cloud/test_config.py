"""cloud_aws.ini / cloud_gcloud.ini: documented keys and defaults, new keys, bad values."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from coalition.cloud.config import load, load_aws, load_gcloud
from coalition.cloud.reconcile import make_autoscaler
from tests.cloud.conftest import REPO, write_ini

# Chapter 4 of the 4.0 documentation: every key, with its documented value.
DOCUMENTED = {
    "aws": {
        "authentication": {"keyname": "", "accesskey": "", "secretaccesskey": ""},
        "storage": {
            "name": "",
            "mountpoint": "/mnt/bucket",
            "guerillarenderfilename": "srv/guerilla_render_2.0.0a13_linux64.tar.gz",
            "coalitionfilename": "srv/coalition.tar.gz",
        },
        "coalition": {
            "ip": "",
            "port": "19211",
            "workerinstancemax": "3",
            "workerinstancestartdelay": "30",
            "workerinstanceminimumlifetime": "900",
        },
        "worker": {
            "nameprefix": "cloud-",
            "spot": "true",
            "instancetype": "m3.medium",
            "imageid": "ami-2f40bd40",
            "subnetid": "",
            "iaminstanceprofile": "",
            "securitygroupid": "",
            "availabilityzone": "",
        },
        "spot": {"spotprice": "10", "instancecount": "1", "type": "one-time"},
    },
    "gcloud": {
        "authentication": {"project": "", "keyfile": "", "serviceaccount": "", "scopes": "default"},
        "storage": {"name": "", "mountpoint": "/mnt/bucket", "coalitionpackage": "srv/coalition.tar.gz"},
        "coalition": {
            "ip": "",
            "port": "19211",
            "workerinstancemax": "3",
            "workerinstancestartdelay": "30",
            "workerinstanceminimumlifetime": "900",
        },
        "main_program": {"package": "", "environment": ""},
        "worker": {
            "installdir": "/usr/local/bin",
            "nameprefix": "cloud-",
            "zone": "europe-west1-d",
            "machinetype": "f1-micro",
            "subnet": "default",
            "preemptible": "true",
            "maintenancepolicy": "TERMINATE",
            "image": "debian-8-jessie-v20170308",
            "imageproject": "debian-cloud",
            "bootdisksize": "10",
            "bootdisktype": "pd-standard",
        },
    },
}


# Documented values that cannot boot a Coalition 5 worker (issue 14): the keys stay, their
# defaults are current (Debian 12 found at launch time, sizes for rendering).
BOOTS_TODAY = {
    "aws": {
        ("worker", "instancetype"): "m7i.2xlarge",
        ("worker", "imageid"): "resolve:ssm:/aws/service/debian/release/12/latest/amd64",
    },
    "gcloud": {
        ("worker", "machinetype"): "n2-standard-8",
        ("worker", "image"): "family/debian-12",
        ("worker", "bootdisksize"): "30",
        ("worker", "bootdisktype"): "pd-balanced",
    },
}


@pytest.mark.parametrize("provider", ["aws", "gcloud"])
def test_sample_has_every_documented_key_with_its_default(provider: str) -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "etc" / f"cloud_{provider}.ini", encoding="utf-8")
    for section, keys in DOCUMENTED[provider].items():
        for key, value in keys.items():
            expected = BOOTS_TODAY[provider].get((section, key), value)
            assert parser.get(section, key) == expected, f"{section}.{key}"


@pytest.mark.parametrize("provider", ["aws", "gcloud"])
def test_sample_keys_are_all_known_and_commented(provider: str) -> None:
    warnings: list[str] = []
    load(provider, str(REPO / "etc"), warn=warnings.append)
    assert warnings == []
    lines = (REPO / "etc" / f"cloud_{provider}.ini").read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            above = lines[i - 1]
            assert above.startswith("#") or "=" in above, f"line {i + 1} ({line}) has no comment"


@pytest.mark.parametrize("provider", ["aws", "gcloud"])
def test_empty_file_means_documented_defaults(tmp_path: Path, provider: str) -> None:
    (tmp_path / f"cloud_{provider}.ini").write_text("")
    empty = load(provider, str(tmp_path))
    sample = load(provider, str(REPO / "etc"))
    assert empty.limits == sample.limits
    assert empty.storage == sample.storage
    assert (empty.aws, empty.gce) == (sample.aws, sample.gce)
    assert empty.limits.max_instances == 3 and empty.limits.start_delay == 30
    assert empty.limits.min_lifetime == 900 and empty.limits.name_prefix == "cloud-"


@pytest.mark.parametrize(
    ("text", "spot"),
    [("true", True), ("false", False), ("False", False), ("0", False), ("no", False), ("yes", True)],
)
def test_spot_is_a_real_boolean(tmp_path: Path, text: str, spot: bool) -> None:
    """Coalition 4 read `spot` as a string: "false" was truthy and still meant spot."""
    path = write_ini(tmp_path, "aws", {"worker": {"spot": text}})
    settings = load_aws(str(path))
    assert settings.aws is not None and settings.aws.spot is spot


BAD = [
    ("aws", "coalition", "workerinstancemax", "many", "coalition.workerinstancemax"),
    ("aws", "coalition", "workerinstancemax", "-1", "coalition.workerinstancemax"),
    ("aws", "coalition", "workerinstancestartdelay", "nan", "coalition.workerinstancestartdelay"),
    ("aws", "coalition", "workerinstanceminimumlifetime", "-5", "coalition.workerinstanceminimumlifetime"),
    ("aws", "coalition", "workerinstancebatch", "0", "coalition.workerinstancebatch"),
    ("aws", "coalition", "workerinstanceboottimeout", "0", "coalition.workerinstanceboottimeout"),
    ("aws", "coalition", "autoscaleinterval", "0", "coalition.autoscaleinterval"),
    ("aws", "coalition", "port", "70000", "coalition.port"),
    ("aws", "coalition", "serverurl", "ftp://x", "coalition.serverurl"),
    ("aws", "coalition", "officecidr", "10.0.0.0/33", "coalition.officecidr"),
    ("aws", "coalition", "farm", "My Farm", "coalition.farm"),
    ("aws", "worker", "spot", "maybe", "worker.spot"),
    ("aws", "worker", "spotmethod", "fleet", "worker.spotmethod"),
    ("aws", "worker", "nameprefix", "cloud /", "worker.nameprefix"),
    ("aws", "worker", "priceperhour", "cheap", "worker.priceperhour"),
    ("aws", "spot", "spotprice", "ten", "spot.spotprice"),
    ("aws", "spot", "instancecount", "0", "spot.instancecount"),
    ("aws", "spot", "type", "forever", "spot.type"),
    ("aws", "storage", "mountpoint", "mnt/bucket", "storage.mountpoint"),
    ("aws", "storage", "coalitionfilename", "../etc/passwd", "storage.coalitionfilename"),
    ("aws", "main_program", "environment", "NOT A PAIR", "main_program.environment"),
    ("gcloud", "worker", "preemptible", "sometimes", "worker.preemptible"),
    ("gcloud", "worker", "bootdisksize", "5", "worker.bootdisksize"),
    ("gcloud", "worker", "maintenancepolicy", "MIGRATE", "worker.maintenancepolicy"),
    ("gcloud", "worker", "provisioningmodel", "CHEAP", "worker.provisioningmodel"),
    ("gcloud", "worker", "nameprefix", "Cloud-", "worker.nameprefix"),
    ("gcloud", "worker", "zone", "Europe West", "worker.zone"),
    ("gcloud", "worker", "bootmethod", "magic", "worker.bootmethod"),
]


@pytest.mark.parametrize(
    ("provider", "section", "key", "value", "named"), BAD, ids=[f"{b[3]}->{b[4]}" for b in BAD]
)
def test_bad_value_names_section_and_key(
    tmp_path: Path, provider: str, section: str, key: str, value: str, named: str
) -> None:
    write_ini(tmp_path, provider, {section: {key: value}})
    with pytest.raises(ValueError, match=rf"^{named}: "):
        load(provider, str(tmp_path))


def test_persistent_spot_needs_spot_requests(tmp_path: Path) -> None:
    write_ini(tmp_path, "aws", {"spot": {"type": "persistent"}})
    with pytest.raises(ValueError, match="^spot.type: "):
        load("aws", str(tmp_path))
    write_ini(
        tmp_path, "aws", {"spot": {"type": "persistent"}, "worker": {"spotmethod": "request-spot-instances"}}
    )
    assert load("aws", str(tmp_path)).aws.spot_type == "persistent"  # type: ignore[union-attr]


def test_unknown_keys_warn_and_values_are_literal(tmp_path: Path) -> None:
    write_ini(
        tmp_path,
        "aws",
        {
            "coalition": {"workertokn": "typo", "workertoken": "100%$(x)"},
            "main_program": {"environment": 'A=1 "B=two words" C=%PATH%'},
        },
    )
    warnings: list[str] = []
    settings = load("aws", str(tmp_path), warn=warnings.append)
    assert warnings == ["coalition.workertokn: unknown key, ignored"]
    assert settings.worker_token == "100%$(x)"  # no interpolation
    assert settings.storage.environment == (("A", "1"), ("B", "two words"), ("C", "%PATH%"))


def test_gcloud_provisioning_models(tmp_path: Path) -> None:
    cases = [
        ({}, "SPOT"),  # preemptible = true: SPOT, what preemptible VMs became
        ({"provisioningmodel": "PREEMPTIBLE"}, "PREEMPTIBLE"),
        ({"preemptible": "false", "maintenancepolicy": "MIGRATE"}, "STANDARD"),
        ({"provisioningmodel": "spot"}, "SPOT"),
    ]
    for worker, model in cases:
        write_ini(tmp_path, "gcloud", {"worker": worker})
        gce = load_gcloud(str(tmp_path / "cloud_gcloud.ini")).gce
        assert gce is not None and gce.provisioning_model == model
    write_ini(tmp_path, "gcloud", {"worker": {"provisioningmodel": "STANDARD", "preemptible": "true"}})
    with pytest.raises(ValueError, match="^worker.provisioningmodel: "):
        load("gcloud", str(tmp_path))


def test_affinity_rule_lines_become_offered_tag_sets(tmp_path: Path) -> None:
    write_ini(tmp_path, "aws", {"worker": {"affinity": "linux, guerilla ; linux"}})
    settings = load("aws", str(tmp_path))
    assert settings.worker_affinity == "linux,guerilla\nlinux"
    assert settings.limits.offered == (frozenset({"linux", "guerilla"}), frozenset({"linux"}))


def test_server_url_from_ip_port_or_serverurl(tmp_path: Path) -> None:
    write_ini(tmp_path, "aws", {"coalition": {"ip": "10.1.2.3", "port": "8080"}})
    assert load("aws", str(tmp_path)).server_url == "http://10.1.2.3:8080"
    write_ini(
        tmp_path, "aws", {"coalition": {"ip": "10.1.2.3", "serverurl": "https://farm.example.com:19211/"}}
    )
    assert load("aws", str(tmp_path)).server_url == "https://farm.example.com:19211"


def test_missing_file_and_bad_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cloud_aws.ini"):
        load("aws", str(tmp_path))
    with pytest.raises(ValueError, match="^server.servermode: "):
        load("azure", str(tmp_path))
    (tmp_path / "cloud_aws.ini").write_text("no section header\n")
    with pytest.raises(ValueError, match="cloud_aws.ini"):
        load("aws", str(tmp_path))


def test_make_autoscaler_only_in_cloud_mode_and_with_a_complete_ini(tmp_path: Path) -> None:
    assert make_autoscaler("normal", str(tmp_path), farm=None) is None  # type: ignore[arg-type]
    write_ini(tmp_path, "aws", {})
    with pytest.raises(ValueError, match="^coalition.ip: "):
        make_autoscaler("aws", str(tmp_path), farm=None, provider=object())  # type: ignore[arg-type]


def test_worker_token_comes_from_the_server_ini(tmp_path: Path) -> None:
    write_ini(tmp_path, "aws", {"coalition": {"ip": "10.0.0.1"}, "storage": {"name": "bucket-x"}})
    (tmp_path / "coalition.ini").write_text("[server]\nworkertoken = from-server-ini\n")
    scaler = make_autoscaler("aws", str(tmp_path), farm=None, provider=object())  # type: ignore[arg-type]
    assert scaler is not None and scaler.settings.worker_token == "from-server-ini"
    scaler = make_autoscaler("aws", str(tmp_path), None, provider=object(), worker_token="given")  # type: ignore[arg-type]
    assert scaler is not None and scaler.settings.worker_token == "given"
