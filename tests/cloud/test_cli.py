"""`coalition cloud setup|render-user-data|status`, through argparse as the CLI runs them."""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from coalition.cloud import cli
from coalition.cloud.config import CloudSettings
from tests.cloud.conftest import BASE, write_ini


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="coalition")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    d = tmp_path / "etc"
    d.mkdir()
    write_ini(
        d, "aws", {**BASE["aws"], "coalition": {**BASE["aws"]["coalition"], "officecidr": "203.0.113.0/24"}}
    )
    write_ini(
        d,
        "gcloud",
        {**BASE["gcloud"], "coalition": {**BASE["gcloud"]["coalition"], "officecidr": "203.0.113.0/24"}},
    )
    return d


@pytest.fixture
def debs(tmp_path: Path) -> Path:
    d = tmp_path / "debs"
    d.mkdir()
    (d / "python3-coalition_5.0.0_all.deb").write_bytes(b"!<arch>\nfake python3-coalition")
    (d / "coalition-worker_5.0.0_all.deb").write_bytes(b"!<arch>\nfake coalition-worker")
    (d / "README").write_text("not packed")
    return d


def test_setup_aws_dry_run_changes_nothing(aws: Any, config_dir: Path, capsys: Any) -> None:
    assert run("cloud", "setup", "aws", "--dry-run", "--config-dir", str(config_dir)) == 0
    out = capsys.readouterr().out
    assert "(dry run)" in out
    for line in [
        "would create     bucket s3://coalition-test-bucket",
        "would create     security group sg-coalition",
        "would create     security group sg-worker",
        "would authorize  sg-coalition: tcp/19211 from sg-worker",
        "would authorize  sg-coalition: tcp/19211 from 203.0.113.0/24",
        "would authorize  sg-worker: tcp/19211 from sg-coalition",
        "would create     instance profile coalition-worker",
        "missing          s3://coalition-test-bucket/srv/coalition.tar.gz",
    ]:
        assert line in out, out
    assert aws.client("s3").list_buckets()["Buckets"] == []
    groups = aws.client("ec2").describe_security_groups()["SecurityGroups"]
    assert {g["GroupName"] for g in groups} == {"default"}


def test_setup_aws_creates_then_changes_nothing(aws: Any, config_dir: Path, debs: Path, capsys: Any) -> None:
    argv = ("cloud", "setup", "aws", "--config-dir", str(config_dir), "--bundle", str(debs))
    assert run(*argv) == 0
    first = capsys.readouterr().out
    assert "create           bucket s3://coalition-test-bucket" in first
    assert "upload           s3://coalition-test-bucket/srv/coalition.tar.gz" in first
    assert "set in [worker] of cloud_aws.ini: securitygroupid = sg-" in first
    ec2 = aws.client("ec2")
    groups = {g["GroupName"]: g for g in ec2.describe_security_groups()["SecurityGroups"]}
    server, worker = groups["coalition-server"], groups["coalition-worker"]
    sources = {
        (p["IpProtocol"], p["FromPort"], p["ToPort"], g.get("GroupId") or g.get("CidrIp"))
        for p in server["IpPermissions"]
        for g in p.get("UserIdGroupPairs", []) + p.get("IpRanges", [])
    }
    assert sources == {("tcp", 19211, 19211, worker["GroupId"]), ("tcp", 19211, 19211, "203.0.113.0/24")}
    back = worker["IpPermissions"]
    assert [(p["FromPort"], [g["GroupId"] for g in p["UserIdGroupPairs"]]) for p in back] == [
        (19211, [server["GroupId"]])
    ]
    iam = aws.client("iam")
    profile = iam.get_instance_profile(InstanceProfileName="coalition-worker")["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == ["coalition-worker"]
    policy = iam.get_role_policy(RoleName="coalition-worker", PolicyName="coalition-bucket")["PolicyDocument"]
    assert "arn:aws:s3:::coalition-test-bucket/*" in json.dumps(policy)
    body = (
        aws.client("s3").get_object(Bucket="coalition-test-bucket", Key="srv/coalition.tar.gz")["Body"].read()
    )
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert sorted(tar.getnames()) == ["coalition-worker_5.0.0_all.deb", "python3-coalition_5.0.0_all.deb"]
    # Second run: everything is there, nothing changes.
    assert run(*argv) == 0
    second = capsys.readouterr().out
    assert (
        "0 change(s)" in second
        and "up to date       s3://coalition-test-bucket/srv/coalition.tar.gz" in second
    )


def test_setup_gcloud_against_the_fake(
    gce_fake: Any, gce_client: Any, config_dir: Path, debs: Path, capsys: Any
) -> None:
    base = ("cloud", "setup", "gcloud", "--config-dir", str(config_dir), "--endpoint", gce_fake.url)
    assert run(*base, "--dry-run", "--bundle", str(debs)) == 0
    dry = capsys.readouterr().out
    assert "would create     bucket gs://coalition-test-bucket" in dry
    assert (
        "would create     firewall coalition-server: tcp/19211 from coalition-worker, 203.0.113.0/24" in dry
    )
    assert gce_fake.buckets == {} and gce_fake.firewalls == {}
    assert run(*base, "--bundle", str(debs)) == 0
    capsys.readouterr()
    rule = gce_fake.firewalls["coalition-server"]
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["19211"]}]
    assert rule["sourceTags"] == ["coalition-worker"] and rule["targetTags"] == ["coalition-server"]
    assert rule["network"] == "projects/test-project/global/networks/default"
    assert ("coalition-test-bucket", "srv/coalition.tar.gz") in gce_fake.objects
    assert run(*base, "--bundle", str(debs)) == 0
    assert "0 change(s)" in capsys.readouterr().out
    # A changed office network updates the rule.
    assert run(*base, "--office-cidr", "198.51.100.7/32") == 0
    assert "update           firewall coalition-server" in capsys.readouterr().out
    assert gce_fake.firewalls["coalition-server"]["sourceRanges"] == ["198.51.100.7/32"]


def test_render_user_data(config_dir: Path, capsys: Any) -> None:
    assert run("cloud", "render-user-data", "aws", "--config-dir", str(config_dir), "--name", "cloud-7") == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert any("name = cloud-7" in f["content"] for f in doc["write_files"])
    argv = (
        "cloud",
        "render-user-data",
        "aws",
        "--config-dir",
        str(config_dir),
        "--name",
        "cloud-7",
        "--params",
    )
    assert run(*argv) == 0
    params = json.loads(capsys.readouterr().out)
    assert params["InstanceType"] == "t3.micro"
    # The whole request (issue 14: --params used to leave out the tags and the user-data).
    assert "name = cloud-7" in params["UserData"] and params["ClientToken"] == "cloud-7"
    tags = {t["Key"]: t["Value"] for t in params["TagSpecifications"][0]["Tags"]}
    assert tags == {"Name": "cloud-7", "coalition-farm": "coalition"}
    assert (
        run(
            "cloud",
            "render-user-data",
            "gcloud",
            "--config-dir",
            str(config_dir),
            "--name",
            "cloud-7",
            "--params",
        )
        == 0
    )
    body = json.loads(capsys.readouterr().out)
    assert body["labels"] == {"coalition-farm": "coalition"} and body["name"] == "cloud-7"
    assert body["metadata"]["items"][0]["key"] == "startup-script"
    assert run("cloud", "render-user-data", "gcloud", "--config-dir", str(config_dir)) == 0
    assert capsys.readouterr().out.startswith("#!/bin/sh\n")


@pytest.fixture
def api_workers() -> Iterator[Callable[[list[dict[str, Any]]], str]]:
    """A tiny stand-in for the server's GET /api/workers, on 127.0.0.1."""
    served: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            out = json.dumps(served).encode()
            self.send_response(200 if self.path == "/api/workers" else 404)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=lambda: server.serve_forever(poll_interval=0.05), daemon=True).start()

    def serve(workers: list[dict[str, Any]]) -> str:
        served[:] = workers
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    server.shutdown()
    server.server_close()


def test_status(
    aws: Any, config_dir: Path, make_settings: Callable[..., CloudSettings], api_workers: Any, capsys: Any
) -> None:
    from coalition.cloud.reconcile import make_provider

    write_ini(config_dir, "aws", {**BASE["aws"], "worker": {**BASE["aws"]["worker"], "priceperhour": "0.5"}})
    settings = make_settings("aws")
    p = make_provider(settings)
    p.launch("cloud-1-0", "#cloud-config\n{}\n")
    p.launch("cloud-1-1", "#cloud-config\n{}\n")
    url = api_workers(
        [
            {"name": "cloud-1-0", "state": "WORKING", "current_job": 42},
            {"name": "render01", "state": "WAITING"},
        ]
    )
    assert run("cloud", "status", "aws", "--config-dir", str(config_dir), "--server", url) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "ID", "STATE", "TYPE", "UPTIME", "WORKER", "JOB", "COST"]
    rows = {line.split()[0]: line.split() for line in out[1:3]}
    assert rows["cloud-1-0"][2:4] == ["running", "t3.micro"] and rows["cloud-1-0"][5:7] == ["WORKING", "42"]
    assert rows["cloud-1-1"][5] == "-"
    assert out[3].startswith("2 instance(s) (2 running)") and "estimated cost" in out[3]
    assert "render01" not in "\n".join(out)


def test_status_without_a_server_still_lists_instances(aws: Any, config_dir: Path, capsys: Any) -> None:
    assert (
        run("cloud", "status", "aws", "--config-dir", str(config_dir), "--server", "http://127.0.0.1:9") == 0
    )
    captured = capsys.readouterr()
    assert "0 instance(s)" in captured.out and "cannot read" in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("cloud", "status", "aws", "--config-dir", "/nonexistent"), "cloud_aws.ini"),
        (("cloud", "render-user-data", "aws", "--config-dir", "{empty}"), "coalition.ip: empty"),
        (("cloud", "setup", "aws", "--config-dir", "{empty}", "--dry-run"), "storage.name: empty"),
    ],
)
def test_errors_are_one_line_and_exit_1(
    tmp_path: Path, argv: tuple[str, ...], message: str, capsys: Any
) -> None:
    (tmp_path / "cloud_aws.ini").write_text("[coalition]\n")
    argv = tuple(a.replace("{empty}", str(tmp_path)) for a in argv)
    assert run(*argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("coalition cloud: error: ") and message in err


def test_bare_cloud_prints_usage(capsys: Any) -> None:
    assert run("cloud") == 2
    assert "setup" in capsys.readouterr().err
