"""Fixtures of the cloud tests: ini files from the shipped samples, moto, and the GCE fake.

No test here reaches a real cloud: moto intercepts every boto3 call in-process (with fake
credentials set first), and Google clients are pointed at a fake on 127.0.0.1.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from coalition.cloud.config import CloudSettings, load

REPO = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
AMI = "ami-12c6146b"  # one of moto's built-in images

Sections = dict[str, dict[str, str]]


def write_ini(config_dir: Path, provider: str, values: Sections | None = None) -> Path:
    """cloud_<provider>.ini in config_dir: the shipped sample with `values` set over it."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "etc" / f"cloud_{provider}.ini", encoding="utf-8")
    for section, keys in (values or {}).items():
        if not parser.has_section(section):
            parser.add_section(section)
        for key, value in keys.items():
            parser.set(section, key, value)
    path = config_dir / f"cloud_{provider}.ini"
    with open(path, "w", encoding="utf-8") as f:
        parser.write(f)
    return path


BASE: dict[str, Sections] = {
    "aws": {
        "authentication": {"region": REGION},
        "storage": {"name": "coalition-test-bucket"},
        "coalition": {"ip": "10.0.0.2", "workertoken": "s3cret-token"},
        "worker": {"imageid": AMI, "instancetype": "t3.micro"},
    },
    "gcloud": {
        "authentication": {
            "project": "test-project",
            "serviceaccount": "workers@test-project.iam.gserviceaccount.com",
        },
        "storage": {"name": "coalition-test-bucket"},
        "coalition": {"ip": "10.132.0.2", "workertoken": "s3cret-token"},
        "worker": {"zone": "europe-west1-b", "image": "family/debian-12", "machinetype": "e2-standard-4"},
    },
}


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., CloudSettings]:
    """make_settings("aws", {"worker": {"spot": "false"}}) -> CloudSettings (from a real ini file)."""

    def make(provider: str, values: Sections | None = None, base: bool = True) -> CloudSettings:
        merged: Sections = {s: dict(k) for s, k in BASE[provider].items()} if base else {}
        for section, keys in (values or {}).items():
            merged.setdefault(section, {}).update(keys)
        write_ini(tmp_path, provider, merged)
        return load(provider, str(tmp_path))

    return make


# -- moto ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _moto() -> Iterator[None]:
    """One moto for the session (starting it costs a second); tests reset what they use."""
    from moto import mock_aws

    saved = {k: os.environ.get(k) for k in _FAKE_AWS_ENV}
    os.environ.update(_FAKE_AWS_ENV)  # fake credentials first: nothing may reach a real account
    mock = mock_aws()
    mock.start()
    try:
        yield
    finally:
        mock.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@pytest.fixture
def aws(_moto: None) -> Any:
    """A boto3 Session on a clean moto (EC2 and SSM of the region, S3 and IAM reset)."""
    import boto3
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.iam.models import iam_backends
    from moto.s3.models import s3_backends
    from moto.ssm.models import ssm_backends

    ec2_backends[DEFAULT_ACCOUNT_ID][REGION].reset()
    ssm_backends[DEFAULT_ACCOUNT_ID][REGION].reset()  # a test may seed Debian's public parameter
    s3_backends[DEFAULT_ACCOUNT_ID]["global"].reset()
    iam_backends[DEFAULT_ACCOUNT_ID]["global"].reset()
    return boto3.session.Session(region_name=REGION)


# -- the GCE fake -------------------------------------------------------------------------------


@pytest.fixture
def gce_fake() -> Iterator[Any]:
    """A fake Compute (and Storage) REST endpoint on 127.0.0.1."""
    from tests.cloud.gce_fake import FakeGoogle

    fake = FakeGoogle()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def gce_client(gce_fake: Any) -> Any:
    """A real compute_v1.InstancesClient talking to the fake."""
    from coalition.cloud.gce import compute_v1
    from tests.support import require

    try:
        compute_v1()
    except Exception:
        require(False, "google-cloud-compute is not installed: pip install 'coalition[gce]'")
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import compute_v1 as compute

    return compute.InstancesClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=gce_fake.url),
    )
