"""Render what a worker instance boots with, and the launch parameters, from templates/.

Templates are data: Jinja (3.1.2 API) with StrictUndefined, every value through `tojson`
(YAML/JSON) or `shquote` (shell). Whatever comes out is parsed and checked here before any
machine boots with it: a `#cloud-config` header, YAML that loads to a mapping, EC2's 16 KiB
user-data limit, and no cloud credential anywhere in it.

Templates are looked up in `[coalition] templatedir` (when set), /etc/coalition/templates,
then the shipped ones, so an operator can override any file without editing the package.
"""

from __future__ import annotations

import base64
import configparser
import io
import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from coalition.cloud.config import CloudSettings

EC2_USER_DATA_LIMIT = 16 * 1024  # bytes, before base64
ROOT_DEVICE = "/dev/xvda"  # Debian's AMIs; replaced by the image's own RootDeviceName at launch
GCE_METADATA_LIMIT = 256 * 1024  # bytes, one metadata value
CLOUD_CONFIG_HEADER = "#cloud-config\n"

# Shapes of cloud credentials, refused in anything we render even if the ini did not name them.
_CREDENTIAL_PATTERNS = (
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"aws_secret_access_key|AWS_SECRET_ACCESS_KEY", re.IGNORECASE),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r'"type"\s*:\s*"service_account"'),  # a GCE service-account key file
    re.compile(r"passwd-s3fs"),  # Coalition 4 wrote its keys there
)


def template_dirs(settings: CloudSettings | None = None) -> list[str]:
    """Where templates are looked up, first match wins."""
    here = Path(__file__).resolve()
    candidates = [
        settings.template_dir if settings is not None else "",
        os.environ.get("COALITION_TEMPLATES", ""),
        "/etc/coalition/templates",
        str(here.parents[1] / "templates"),  # inside the package: a wheel or a checkout
        "/usr/share/coalition/templates",  # the Debian package
    ]
    return [d for d in dict.fromkeys(candidates) if d and os.path.isdir(d)]


def environment(dirs: Sequence[str]) -> jinja2.Environment:
    """The Jinja environment every cloud template renders in."""
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(d) for d in dirs]),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # YAML and shell, not HTML: escaping is tojson's and shquote's job
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["shquote"] = _shquote
    return env


def _shquote(value: Any) -> str:
    if isinstance(value, jinja2.Undefined):
        return shlex.quote(str(value))  # str() of a StrictUndefined raises: never quote ""
    if not isinstance(value, str | int | float):
        raise TypeError(f"shquote takes a string, got {type(value).__name__}")
    return shlex.quote(str(value))


@dataclass(frozen=True)
class WorkerBoot:
    """Everything a worker's boot needs; a dataclass so that a missing field fails in Python."""

    name: str
    provider: str  # aws | gcloud
    server_url: str
    token: str
    affinity: str  # rule lines, newline-separated
    bucket: str
    region: str  # AWS: the bucket's region, for s3fs ("" = s3fs's default)
    mountpoint: str
    bundle: str
    main_program: str
    install_dir: str
    environment: tuple[tuple[str, str], ...]
    interruptions: str = "off"  # aws | gce | off: what the worker watches for a notice


def worker_boot(settings: CloudSettings, name: str) -> WorkerBoot:
    """The boot values of worker `name` under these settings."""
    s = settings.storage
    return WorkerBoot(
        name=name,
        provider=settings.provider,
        server_url=settings.server_url,
        token=settings.worker_token,
        affinity=settings.worker_affinity,
        bucket=s.bucket,
        region=settings.aws.region if settings.aws is not None else "",
        mountpoint=s.mountpoint,
        bundle=s.bundle,
        main_program=s.main_program,
        install_dir=s.install_dir,
        environment=s.environment,
        interruptions=_interruptions(settings),
    )


def _interruptions(settings: CloudSettings) -> str:
    # Only a spot or preemptible worker can get a notice; an on-demand one has no reason to
    # poll the metadata service every few seconds.
    if settings.aws is not None:
        return "aws" if settings.aws.spot else "off"
    if settings.gce is not None:
        return "gce" if settings.gce.provisioning_model != "STANDARD" else "off"
    return "off"


def worker_ini(boot: WorkerBoot) -> str:
    """The worker's /etc/coalition/coalition.ini, written by configparser.

    configparser round-trips any value: a newline becomes an indented continuation line, and
    the worker reads its ini with interpolation off, so '%' and '$' stay literal.
    """
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep serverUrl's case
    section: dict[str, str] = {
        "serverUrl": boot.server_url,
        "name": boot.name,
        "workers": "1",  # one slot per instance: the slot is named after the instance
        # A spot worker watches the instance metadata for an interruption notice and hands its
        # job back, so the job is requeued without spending a retry.
        "interruptions": boot.interruptions,
    }
    if boot.token:
        section["token"] = boot.token
    if boot.affinity:
        section["affinity"] = boot.affinity
    parser["worker"] = section
    out = io.StringIO()
    out.write("# Written at boot by the Coalition cloud autoscaler.\n")
    parser.write(out)
    return out.getvalue()


def environment_dropin(pairs: Iterable[tuple[str, str]]) -> str:
    """A systemd drop-in giving the worker service the main program's environment.

    systemd unquotes "..." with C escapes and expands %-specifiers in Environment=, hence the
    escaping; $ is not expanded there.
    """
    lines = ["# The main program's environment ([main_program] environment).", "[Service]"]
    for name, value in pairs:
        text = f"{name}={value}".replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
        lines.append(f'Environment="{text}"')
    return "\n".join(lines) + "\n"


class Renderer:
    """Renders the templates for one farm's settings."""

    def __init__(self, settings: CloudSettings, dirs: Sequence[str] | None = None):
        self.settings = settings
        dirs = list(dirs) if dirs is not None else template_dirs(settings)
        if not dirs:
            raise ValueError("no template directory found (set [coalition] templatedir)")
        self.env = environment(dirs)

    def _render(self, template: str, context: Mapping[str, Any]) -> str:
        try:
            return self.env.get_template(template).render(**context)
        except jinja2.TemplateNotFound:
            raise ValueError(f"template {template} not found") from None
        except (jinja2.UndefinedError, TypeError) as exc:
            # With StrictUndefined, `{{ missing | tojson }}` raises TypeError, not UndefinedError.
            raise ValueError(f"template {template}: {exc}") from None

    def _boot_context(self, name: str) -> dict[str, Any]:
        boot = worker_boot(self.settings, name)
        ctx = asdict(boot)
        ctx["worker_ini"] = worker_ini(boot)
        ctx["environment_dropin"] = environment_dropin(boot.environment)
        return ctx

    def boot_script(self, name: str) -> str:
        """The shell script that mounts the bucket and installs the worker."""
        return self._render("cloud-init/boot.sh.j2", self._boot_context(name))

    def user_data(self, name: str) -> str:
        """The #cloud-config document worker `name` boots with, validated."""
        ctx = self._boot_context(name)
        ctx["boot_script"] = self._render("cloud-init/boot.sh.j2", ctx)
        text = self._render("cloud-init/worker.yaml.j2", ctx)
        check_cloud_config(text, limit=EC2_USER_DATA_LIMIT if self.settings.provider == "aws" else None)
        check_no_credentials(text, self.secrets())
        return text

    def startup_script(self, name: str) -> str:
        """The GCE startup script (for images without cloud-init), validated."""
        text = self._render("gcloud/startup-script.sh.j2", self._boot_context(name))
        if not text.startswith("#!/bin/sh\n"):
            raise ValueError("gcloud/startup-script.sh.j2: does not start with #!/bin/sh")
        if len(text.encode()) > GCE_METADATA_LIMIT:
            raise ValueError("gcloud/startup-script.sh.j2: over GCE's 256 KiB metadata value limit")
        check_no_credentials(text, self.secrets())
        return text

    def boot_payload(self, name: str) -> str:
        """What the provider hands the instance: user-data, or a GCE startup script."""
        gce = self.settings.gce
        if gce is not None and gce.boot_method == "startup-script":
            return self.startup_script(name)
        return self.user_data(name)

    def secrets(self) -> list[str]:
        """Credential values from the ini (and the key file's content) that must never be rendered."""
        out: list[str] = []
        aws, gce = self.settings.aws, self.settings.gce
        if aws is not None:
            out += [aws.access_key, aws.secret_key]
        if gce is not None and gce.keyfile:
            out.append(gce.keyfile)
            try:
                with open(gce.keyfile, encoding="utf-8") as f:
                    key = json.load(f)
                out += [str(key.get("private_key", "")), str(key.get("private_key_id", ""))]
            except (OSError, ValueError, AttributeError):
                pass  # an unreadable key file cannot leak through us
        return [s for s in out if s]

    # -- launch parameters ---------------------------------------------------------------------

    def _aws_context(self) -> dict[str, Any]:
        aws = self.settings.aws
        if aws is None:
            raise ValueError("not an AWS configuration")
        profile = aws.iam_instance_profile
        market: dict[str, Any] = {}
        if aws.spot and aws.spot_method == "run-instances":
            options: dict[str, Any] = {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            }
            if aws.spot_price:
                options["MaxPrice"] = aws.spot_price
            market = {"MarketType": "spot", "SpotOptions": options}
        return {
            "image_id": aws.image_id,
            "instance_type": aws.instance_type,
            "key_name": aws.key_name,
            "subnet_id": aws.subnet_id,
            "security_group_ids": list(aws.security_group_ids),
            "iam_instance_profile": ({"Arn": profile} if profile.startswith("arn:") else {"Name": profile})
            if profile
            else {},
            "availability_zone": aws.availability_zone,
            "market_options": market,
            # The root volume; Ec2Provider puts the image's real root device name in at launch.
            "root_device": ROOT_DEVICE,
            "volume": {
                "VolumeSize": aws.volume_size,
                "VolumeType": aws.volume_type,
                "Encrypted": aws.volume_encrypted,
                "KmsKeyId": aws.volume_kms_key,
                "DeleteOnTermination": True,
            },
        }

    def aws_run_instances(self) -> dict[str, Any]:
        """Keyword arguments of ec2.run_instances, less name, count, tags and user-data."""
        text = self._render("aws/run-instances.yaml.j2", self._aws_context())
        params = yaml.safe_load(text)
        if not isinstance(params, dict):
            raise ValueError("aws/run-instances.yaml.j2: not a mapping")
        return prune(params)

    def aws_spot_launch_specification(self, user_data: str) -> dict[str, Any]:
        """The LaunchSpecification of ec2.request_spot_instances (UserData base64, as the API wants)."""
        ctx = self._aws_context()
        ctx["user_data_base64"] = base64.b64encode(user_data.encode()).decode()
        text = self._render("aws/spot-launch-specification.json.j2", ctx)
        try:
            spec = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"aws/spot-launch-specification.json.j2: not JSON: {exc}") from None
        return prune(spec)

    def gce_instance(self) -> dict[str, Any]:
        """The compute_v1.Instance fields of a worker, less name, labels and metadata."""
        gce = self.settings.gce
        if gce is None:
            raise ValueError("not a GCE configuration")
        image = gce.image
        if not image.startswith(("projects/", "https://")):  # a name, or family/NAME
            image = f"projects/{gce.image_project}/global/images/{image}"
        if gce.provisioning_model == "SPOT":
            scheduling = {
                "provisioning_model": "SPOT",
                "instance_termination_action": "DELETE",  # a preempted worker is gone, not stopped
                "on_host_maintenance": "TERMINATE",
                "automatic_restart": False,
            }
        elif gce.provisioning_model == "PREEMPTIBLE":
            scheduling = {"preemptible": True, "on_host_maintenance": "TERMINATE", "automatic_restart": False}
        else:
            scheduling = {"on_host_maintenance": gce.maintenance_policy, "automatic_restart": True}
        subnet = gce.subnet
        if "/" not in subnet:
            subnet = f"projects/{gce.project}/regions/{gce.region}/subnetworks/{subnet}"
        ctx = {
            "zone": gce.zone,
            "machine_type": gce.machine_type,
            "scheduling": scheduling,
            "source_image": image,
            "boot_disk_size_gb": gce.boot_disk_size_gb,
            "boot_disk_type": gce.boot_disk_type,
            "subnetwork": subnet,
            # Workers need the internet (apt, gcsfuse) unless their subnet has Cloud NAT.
            "access_configs": [{"name": "External NAT", "type_": "ONE_TO_ONE_NAT"}]
            if gce.external_ip
            else [],
            "service_accounts": [{"email": gce.service_account or "default", "scopes": list(gce.scopes)}],
            "network_tags": list(gce.network_tags),
            "disk_labels": dict(gce.labels),
        }
        text = self._render("gcloud/instance.yaml.j2", ctx)
        body = yaml.safe_load(text)
        if not isinstance(body, dict):
            raise ValueError("gcloud/instance.yaml.j2: not a mapping")
        return prune(body)


def prune(value: Any) -> Any:
    """Drop empty strings, lists and mappings (unset ini keys) recursively; keep False and 0."""
    if isinstance(value, dict):
        out = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in ("", None, [], {})}
    if isinstance(value, list):
        items = [prune(v) for v in value]
        return [v for v in items if v not in ("", None, [], {})]
    return value


def check_cloud_config(text: str, limit: int | None = EC2_USER_DATA_LIMIT) -> dict[str, Any]:
    """Parse a #cloud-config document; raise ValueError unless it is one (and fits `limit` bytes)."""
    if not text.startswith(CLOUD_CONFIG_HEADER):
        raise ValueError("user-data does not start with #cloud-config")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"user-data is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise ValueError("user-data is not a YAML mapping")
    size = len(text.encode())
    if limit is not None and size > limit:
        raise ValueError(f"user-data is {size} bytes, over the {limit}-byte EC2 limit")
    return doc


def check_no_credentials(text: str, secrets: Iterable[str] = ()) -> None:
    """Raise ValueError if `text` holds a cloud credential (defence in depth: none is ever passed)."""
    for secret in secrets:
        # Very short values would match by accident; real keys are long, and the patterns
        # below catch their usual shapes anyway.
        if len(secret) >= 8 and secret in text:
            raise ValueError("refusing to render a cloud credential into instance boot data")
    for pattern in _CREDENTIAL_PATTERNS:
        if pattern.search(text):
            raise ValueError(f"refusing boot data that looks like it holds a credential ({pattern.pattern})")
