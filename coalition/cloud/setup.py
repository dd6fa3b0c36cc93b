"""`coalition cloud setup`: make sure a cloud account has what a farm needs.

AWS (chapter 4 of the 4.0 documentation): the bucket, the security groups sg-coalition (the
server: TCP `port` from sg-worker and from the office CIDR) and sg-worker (TCP `port` from
sg-coalition), the workers' instance profile (read-write on the bucket, nothing else), and the
worker bundle and main program in the bucket. GCE: the bucket, a firewall rule letting the
workers and the office reach the server, and the uploads.

Every step first looks, then acts only if something is missing or different, so running it
twice changes nothing the second time; with dry_run it only says what it would do.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coalition.cloud import bundle as bundles
from coalition.cloud.base import CloudError
from coalition.cloud.config import CloudSettings
from coalition.cloud.gcs import GcsBucket, md5_hex

# AWS refuses group names starting with "sg-" (that prefix is for ids), so the groups the
# documentation calls sg-coalition and sg-worker carry those as their Name tags.
SERVER_GROUP = ("coalition-server", "sg-coalition")
WORKER_GROUP = ("coalition-worker", "sg-worker")
WORKER_PROFILE = "coalition-worker"
SERVER_NETWORK_TAG = "coalition-server"
GCE_FIREWALL = "coalition-server"


@dataclass(frozen=True)
class Step:
    """One line of the setup report."""

    action: str  # exists | up to date | create | authorize | upload | update | missing | note
    what: str
    detail: str = ""

    def line(self, dry_run: bool) -> str:
        action = self.action
        if dry_run and action in ("create", "authorize", "upload", "update"):
            action = "would " + action
        text = f"  {action:<16} {self.what}"
        return f"{text}  ({self.detail})" if self.detail else text


class Report:
    """Collects steps and prints them as they happen."""

    def __init__(self, dry_run: bool, out: Callable[[str], None]):
        self.dry_run = dry_run
        self.out = out
        self.steps: list[Step] = []

    def __call__(self, action: str, what: str, detail: str = "") -> None:
        step = Step(action, what, detail)
        self.steps.append(step)
        self.out(step.line(self.dry_run))

    @property
    def changes(self) -> int:
        return sum(1 for s in self.steps if s.action in ("create", "authorize", "upload", "update"))


def bundle_bytes(path: str, worker_bundle: bool = True) -> bytes:
    """The bytes to upload for `path`: a file as is, or a directory's worker .debs as a tar.gz.

    A worker bundle holds python3-coalition and coalition-worker only (coalition.cloud.bundle):
    from a directory the other packages are left out, a ready-made file holding the server is
    refused (ValueError). The archive is reproducible (sorted, zeroed times and owners), so an
    unchanged directory gives the same md5 and a second setup uploads nothing.
    """
    if not os.path.isdir(path):
        with open(path, "rb") as f:
            data = f.read()
        if worker_bundle:
            bundles.check_file(path, data)
        return data
    if not worker_bundle:
        raise ValueError(f"{path}: a directory; the main program is one file (a tarball)")
    debs, _ = bundles.select_debs(path)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in debs:
            info = tar.gettarinfo(os.path.join(path, name), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(os.path.join(path, name), "rb") as f:
                tar.addfile(info, f)
    return gzip.compress(raw.getvalue(), mtime=0)


def _note_skipped(local: str, report: Report) -> None:
    """Say which packages of a build directory stay out of the worker bundle."""
    if os.path.isdir(local):
        _, skipped = bundles.select_debs(local)
        if skipped:
            report("note", f"left out of the worker bundle: {', '.join(skipped)}", "workers need no more")


def _uploads(
    settings: CloudSettings, bundle: str | None, main_program: str | None
) -> list[tuple[str, str | None, str, bytes | None]]:
    """(bucket key, local file or None, the option that uploads it, its bytes) for each upload.

    The bytes are read (and a worker bundle checked) before setup changes anything, so a
    refused bundle leaves the account as it was.
    """
    out = [(settings.storage.bundle, bundle, "--bundle")]
    if settings.storage.main_program:
        out.append((settings.storage.main_program, main_program, "--main-program"))
    elif main_program:
        raise ValueError("--main-program given but no main program key is set ([main_program] package)")
    return [
        (key, local, option, None if local is None else bundle_bytes(local, option == "--bundle"))
        for key, local, option in out
    ]


# -- AWS -------------------------------------------------------------------------------------------


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def setup_aws(
    settings: CloudSettings,
    session: Any,
    *,
    dry_run: bool = False,
    bundle: str | None = None,
    main_program: str | None = None,
    office_cidr: str | None = None,
    endpoint_url: str | None = None,
    out: Callable[[str], None] = print,
) -> Report:
    """Ensure the AWS side of the farm; `session` is a boto3 Session."""
    aws = settings.aws
    if aws is None:
        raise ValueError("not an AWS configuration")
    if not settings.storage.bucket:
        raise ValueError("storage.name: empty: set the bucket name")
    uploads = _uploads(settings, bundle, main_program)
    report = Report(dry_run, out)
    region = session.region_name or "us-east-1"
    s3 = session.client("s3", endpoint_url=endpoint_url)
    ec2 = session.client("ec2", endpoint_url=endpoint_url)
    iam = session.client("iam", endpoint_url=endpoint_url)
    out(
        f"coalition cloud setup aws: region {region}, farm {settings.farm}"
        + (" (dry run)" if dry_run else "")
    )

    _aws_bucket(s3, settings.storage.bucket, region, aws.bucket_kms_key, report)
    vpc = _aws_vpc(ec2, aws.subnet_id, report)
    server_sg = _aws_group(ec2, vpc, SERVER_GROUP, settings.farm, report)
    worker_sg = _aws_group(ec2, vpc, WORKER_GROUP, settings.farm, report)
    port = settings.port
    cidr = office_cidr if office_cidr is not None else settings.office_cidr
    _aws_ingress(ec2, server_sg, SERVER_GROUP[1], port, report, group=(worker_sg, WORKER_GROUP[1]))
    if cidr:
        _aws_ingress(ec2, server_sg, SERVER_GROUP[1], port, report, cidr=cidr)
    else:
        report("note", "no office CIDR", "set [coalition] officecidr or --office-cidr to reach the web page")
    _aws_ingress(ec2, worker_sg, WORKER_GROUP[1], port, report, group=(server_sg, SERVER_GROUP[1]))
    profile = _aws_profile(iam, aws.iam_instance_profile or WORKER_PROFILE, settings.storage.bucket, report)
    for key, local, option, data in uploads:
        _aws_upload(s3, settings.storage.bucket, key, local, option, data, report)

    hints = []
    if worker_sg and worker_sg not in aws.security_group_ids:
        hints.append(f"securitygroupid = {worker_sg}")
    if profile and aws.iam_instance_profile != profile:
        hints.append(f"iaminstanceprofile = {profile}")
    if hints:
        report("note", "set in [worker] of cloud_aws.ini: " + ", ".join(hints))
    out(f"{report.changes} change(s){' to make' if dry_run else ''}")
    return report


_PUBLIC_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def bucket_encryption(kms_key: str) -> dict[str, Any]:
    """The bucket's default encryption: SSE-KMS with `kms_key`, else SSE-S3 (AES-256)."""
    rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    if kms_key:
        rule = {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key},
            "BucketKeyEnabled": True,  # one KMS call per object set, not per s3fs request
        }
    return {"Rules": [rule]}


def _aws_bucket(s3: Any, bucket: str, region: str, kms_key: str, report: Report) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
        exists = True
        report("exists", f"bucket s3://{bucket}")
    except Exception as exc:
        if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise CloudError(
                f"bucket {bucket}: {_code(exc) or exc} (a name owned by another account?)"
            ) from None
        exists = False
        report("create", f"bucket s3://{bucket}", f"{region}, no public access, encrypted")
        if not report.dry_run:
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if region != "us-east-1":  # us-east-1 refuses an explicit LocationConstraint
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            s3.create_bucket(**kwargs)
    # An existing bucket is brought to the same state: no public access, default encryption.
    block = _get_or_none(lambda: s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"])
    if block != _PUBLIC_BLOCK:
        if exists:
            report("update", f"bucket s3://{bucket}: block all public access")
        if not report.dry_run:
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=_PUBLIC_BLOCK)
    wanted = bucket_encryption(kms_key)
    current = _get_or_none(
        lambda: s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    )
    if not _same_encryption(current, wanted):
        if exists:
            report("update", f"bucket s3://{bucket}: default encryption", kms_key or "SSE-S3 (AES-256)")
        if not report.dry_run:
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=wanted)


def _get_or_none(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except Exception as exc:
        if _code(exc) in (
            "NoSuchPublicAccessBlockConfiguration",
            "ServerSideEncryptionConfigurationNotFoundError",
            "NoSuchBucket",
            "404",
        ):
            return None
        raise


def _same_encryption(current: Any, wanted: dict[str, Any]) -> bool:
    if not current:
        return False
    have = [r.get("ApplyServerSideEncryptionByDefault", {}) for r in current.get("Rules", [])]
    want = [r["ApplyServerSideEncryptionByDefault"] for r in wanted["Rules"]]
    return have == want


def _aws_vpc(ec2: Any, subnet_id: str, report: Report) -> str:
    if subnet_id:
        subnets = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"]
        vpc = subnets[0]["VpcId"]
        report("exists", f"vpc {vpc}", f"of subnet {subnet_id}")
        return vpc
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise ValueError("worker.subnetid: empty and this region has no default VPC")
    report("exists", f"vpc {vpcs[0]['VpcId']}", "the default VPC")
    return vpcs[0]["VpcId"]


def _aws_group(ec2: Any, vpc: str, names: tuple[str, str], farm: str, report: Report) -> str:
    group_name, doc_name = names
    found = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [group_name]}, {"Name": "vpc-id", "Values": [vpc]}]
    )["SecurityGroups"]
    if found:
        report("exists", f"security group {doc_name}", found[0]["GroupId"])
        return found[0]["GroupId"]
    report("create", f"security group {doc_name}", f"{group_name} in {vpc}")
    if report.dry_run:
        return ""
    reply = ec2.create_security_group(
        GroupName=group_name,
        Description=f"Coalition render farm: {doc_name}",
        VpcId=vpc,
        TagSpecifications=[
            {
                "ResourceType": "security-group",
                "Tags": [{"Key": "Name", "Value": doc_name}, {"Key": "coalition-farm", "Value": farm}],
            }
        ],
    )
    return reply["GroupId"]


def _aws_ingress(
    ec2: Any,
    group_id: str,
    group_label: str,
    port: int,
    report: Report,
    *,
    group: tuple[str, str] | None = None,
    cidr: str | None = None,
) -> None:
    source = group[1] if group else str(cidr)
    what = f"{group_label}: tcp/{port} from {source}"
    if group_id and (not group or group[0]):
        current = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]["IpPermissions"]
        for perm in current:
            if perm.get("IpProtocol") != "tcp" or perm.get("FromPort") != port or perm.get("ToPort") != port:
                continue
            if group and any(p.get("GroupId") == group[0] for p in perm.get("UserIdGroupPairs", [])):
                report("exists", what)
                return
            if cidr and any(r.get("CidrIp") == cidr for r in perm.get("IpRanges", [])):
                report("exists", what)
                return
    report("authorize", what)
    if report.dry_run:
        return
    wanted: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
    if group:
        wanted["UserIdGroupPairs"] = [{"GroupId": group[0], "Description": f"Coalition: {group[1]}"}]
    else:
        wanted["IpRanges"] = [{"CidrIp": str(cidr), "Description": "Coalition: office"}]
    try:
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[wanted])
    except Exception as exc:
        if _code(exc) != "InvalidPermission.Duplicate":  # a race with another setup: fine
            raise


def worker_bucket_policy(bucket: str, settings: CloudSettings | None = None) -> dict[str, Any]:
    """What a worker may do: read and write its bucket (s3fs), nothing else.

    Rendered from templates/policies/aws-worker.json.j2, the document shipped for operators.
    """
    from coalition.cloud.userdata import environment, template_dirs

    text = (
        environment(template_dirs(settings)).get_template("policies/aws-worker.json.j2").render(bucket=bucket)
    )
    return json.loads(text)


def policy_document(name: str) -> dict[str, Any]:
    """One of the shipped IAM policy documents (templates/policies/NAME.json), parsed."""
    from coalition.cloud.userdata import template_dirs

    for d in template_dirs():
        path = os.path.join(d, "policies", f"{name}.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return json.load(f)
    raise ValueError(f"policies/{name}.json: not found in the template directories")


def _aws_profile(iam: Any, profile: str, bucket: str, report: Report) -> str:
    if profile.startswith("arn:"):
        report("note", f"instance profile {profile}", "an ARN: not checked")
        return profile
    try:
        iam.get_instance_profile(InstanceProfileName=profile)
        report("exists", f"instance profile {profile}")
        return profile
    except Exception as exc:
        if _code(exc) != "NoSuchEntity":
            raise
    report("create", f"instance profile {profile}", f"role {profile}: read-write on s3://{bucket} only")
    if report.dry_run:
        return profile
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    try:
        iam.create_role(RoleName=profile, AssumeRolePolicyDocument=json.dumps(trust))
    except Exception as exc:
        if _code(exc) != "EntityAlreadyExists":
            raise
    iam.put_role_policy(
        RoleName=profile,
        PolicyName="coalition-bucket",
        PolicyDocument=json.dumps(worker_bucket_policy(bucket)),
    )
    iam.create_instance_profile(InstanceProfileName=profile)
    iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=profile)
    return profile


def _aws_upload(
    s3: Any, bucket: str, key: str, local: str | None, option: str, data: bytes | None, report: Report
) -> None:
    where = f"s3://{bucket}/{key}"
    try:
        etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    except Exception as exc:
        if _code(exc) not in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
            raise
        etag = None
    if local is None:
        if etag is None:
            report("missing", where, f"{option} uploads it")
        else:
            report("exists", where)
        return
    assert data is not None
    if option == "--bundle":
        _note_skipped(local, report)
    if etag == md5_hex(data):  # single-part uploads: the ETag is the md5
        report("up to date", where, local)
        return
    report("upload" if etag is None else "update", where, f"{local}, {len(data)} bytes")
    if not report.dry_run:
        s3.put_object(Bucket=bucket, Key=key, Body=data)


# -- GCE -------------------------------------------------------------------------------------------


def setup_gcloud(
    settings: CloudSettings,
    firewalls: Any,
    bucket: GcsBucket,
    *,
    dry_run: bool = False,
    bundle: str | None = None,
    main_program: str | None = None,
    office_cidr: str | None = None,
    out: Callable[[str], None] = print,
) -> Report:
    """Ensure the GCE side of the farm; `firewalls` is a compute_v1.FirewallsClient."""
    gce = settings.gce
    if gce is None:
        raise ValueError("not a GCE configuration")
    if not gce.project:
        raise ValueError("authentication.project: empty")
    if not settings.storage.bucket:
        raise ValueError("storage.name: empty: set the bucket name")
    uploads = _uploads(settings, bundle, main_program)
    report = Report(dry_run, out)
    out(
        f"coalition cloud setup gcloud: project {gce.project}, farm {settings.farm}"
        + (" (dry run)" if dry_run else "")
    )

    exists = bucket.exists()
    if exists:
        report("exists", f"bucket gs://{bucket.bucket}")
        _gcs_hardening(bucket, gce.bucket_kms_key, report)
    else:
        report("create", f"bucket gs://{bucket.bucket}", f"{gce.region}, uniform access, no public access")
        if not dry_run:
            bucket.create(gce.region, gce.bucket_kms_key)
    _gcs_worker_access(bucket, gce.service_account, exists or not dry_run, report)

    cidr = office_cidr if office_cidr is not None else settings.office_cidr
    _gce_firewall(firewalls, settings, cidr, report)
    if not cidr:
        report("note", "no office CIDR", "set [coalition] officecidr or --office-cidr to reach the web page")
    report("note", f"the server VM needs the network tag {SERVER_NETWORK_TAG}")

    for key, local, option, data in uploads:
        where = f"gs://{bucket.bucket}/{key}"
        md5 = bucket.md5(key) if bucket.exists() or not dry_run else None
        if local is None:
            report("missing" if md5 is None else "exists", where, "" if md5 else f"{option} uploads it")
            continue
        assert data is not None
        if option == "--bundle":
            _note_skipped(local, report)
        if md5 == md5_hex(data):
            report("up to date", where, local)
            continue
        report("upload" if md5 is None else "update", where, f"{local}, {len(data)} bytes")
        if not dry_run:
            bucket.upload(key, data)
    out(f"{report.changes} change(s){' to make' if dry_run else ''}")
    return report


# What a worker does with the bucket through gcsfuse: list, read, write, delete objects. Nothing
# on the bucket itself (no IAM, no settings): roles/storage.objectUser is exactly that.
WORKER_BUCKET_ROLE = "roles/storage.objectUser"


def _gcs_hardening(bucket: GcsBucket, kms_key: str, report: Report) -> None:
    meta = bucket.metadata()
    iam = meta.get("iamConfiguration", {})
    patch: dict[str, Any] = {}
    if iam.get("publicAccessPrevention") != "enforced" or not iam.get("uniformBucketLevelAccess", {}).get(
        "enabled"
    ):
        patch["iamConfiguration"] = {
            "uniformBucketLevelAccess": {"enabled": True},
            "publicAccessPrevention": "enforced",
        }
    if kms_key and meta.get("encryption", {}).get("defaultKmsKeyName") != kms_key:
        patch["encryption"] = {"defaultKmsKeyName": kms_key}
    if not patch:
        return
    report("update", f"bucket gs://{bucket.bucket}", ", ".join(sorted(patch)))
    if not report.dry_run:
        bucket.patch(patch)


def _gcs_worker_access(bucket: GcsBucket, account: str, readable: bool, report: Report) -> None:
    if not account:
        report(
            "note",
            "workers use the default compute service account",
            f"set [authentication] serviceaccount to grant it {WORKER_BUCKET_ROLE} on the bucket only",
        )
        return
    member = f"serviceAccount:{account}"
    what = f"gs://{bucket.bucket}: {WORKER_BUCKET_ROLE} for {account}"
    policy = bucket.iam_policy() if readable else {"bindings": []}
    bindings = policy.setdefault("bindings", [])
    for b in bindings:
        if b.get("role") == WORKER_BUCKET_ROLE and member in b.get("members", []):
            report("exists", what)
            return
    report("authorize", what)
    if report.dry_run:
        return
    binding = next(
        (b for b in bindings if b.get("role") == WORKER_BUCKET_ROLE and not b.get("condition")), None
    )
    if binding is None:
        bindings.append({"role": WORKER_BUCKET_ROLE, "members": [member]})
    else:
        binding.setdefault("members", []).append(member)
    bucket.set_iam_policy(policy)


def _gce_firewall(firewalls: Any, settings: CloudSettings, cidr: str, report: Report) -> None:
    from coalition.cloud.gce import compute_v1

    gce = settings.gce
    assert gce is not None
    compute = compute_v1()
    network = gce.network if "/" in gce.network else f"projects/{gce.project}/global/networks/{gce.network}"
    wanted: dict[str, Any] = {
        "name": GCE_FIREWALL,
        "network": network,
        "direction": "INGRESS",
        "allowed": [{"I_p_protocol": "tcp", "ports": [str(settings.port)]}],
        "source_tags": sorted(gce.network_tags),
        "source_ranges": [cidr] if cidr else [],
        "target_tags": [SERVER_NETWORK_TAG],
        "description": "Coalition: workers and the office reach the server",
    }
    sources = ", ".join([*wanted["source_tags"], *wanted["source_ranges"]])
    what = f"firewall {GCE_FIREWALL}: tcp/{settings.port} from {sources}"
    try:
        current = firewalls.get(project=gce.project, firewall=GCE_FIREWALL)
    except Exception as exc:
        if getattr(exc, "code", None) != 404 and type(exc).__name__ != "NotFound":
            raise
        current = None
    if current is not None:
        same = (
            sorted(current.source_tags) == wanted["source_tags"]
            and sorted(current.source_ranges) == sorted(wanted["source_ranges"])
            and list(current.target_tags) == wanted["target_tags"]
            and [(a.I_p_protocol, list(a.ports)) for a in current.allowed] == [("tcp", [str(settings.port)])]
        )
        if same:
            report("exists", what)
            return
        report("update", what)
        if not report.dry_run:
            firewalls.patch(
                project=gce.project, firewall=GCE_FIREWALL, firewall_resource=compute.Firewall(wanted)
            ).result(timeout=120)
        return
    report("create", what)
    if not report.dry_run:
        firewalls.insert(project=gce.project, firewall_resource=compute.Firewall(wanted)).result(timeout=120)
