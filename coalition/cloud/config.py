"""cloud_aws.ini and cloud_gcloud.ini, parsed into frozen values.

Every key of chapter 4 of the 4.0 documentation keeps its name and its documented default;
new keys are listed in etc/cloud_aws.ini and etc/cloud_gcloud.ini with a comment each. A bad
value raises ValueError naming `section.key`; an unknown key is reported through `warn`
(a typo should be seen, but should not stop a farm).

Coalition 4 read `spot` as a string, so `spot=false` still meant spot: here booleans are
parsed, and `false` means on-demand.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from coalition.cloud.policy import Limits

T = TypeVar("T")

PROVIDERS = ("aws", "gcloud")
SPOT_METHODS = ("run-instances", "request-spot-instances")
GCE_MODELS = ("STANDARD", "PREEMPTIBLE", "SPOT")
GCE_BOOT_METHODS = ("startup-script", "cloud-init")
DEFAULT_PORT = 19211
LEGACY_MAIN_PROGRAM = "srv/guerilla_render_2.0.0a13_linux64.tar.gz"  # the documented default
# Defaults that boot a Coalition 5 worker today (issue 14): the documented ones (a 2016 Debian 9
# AMI, debian-8-jessie, m3.medium, f1-micro) cannot run Python 3.11. Images are found at launch
# time, never hard-coded: Debian's public SSM parameter on AWS, the debian-12 family on GCE.
# Sizes are for rendering: 8 vCPUs and 32 GiB, current generations with spot capacity.
DEBIAN_12_SSM = "resolve:ssm:/aws/service/debian/release/12/latest/amd64"
AWS_INSTANCE_TYPE = "m7i.2xlarge"
GCE_MACHINE_TYPE = "n2-standard-8"
GCE_IMAGE = "family/debian-12"
VOLUME_TYPES = ("gp3", "gp2", "io1", "io2", "st1", "sc1", "standard")

# GCE instance names and label values: RFC 1035, lowercase. A prefix must leave room for
# the 13-digit time stamp and index instance_names() appends.
_GCE_NAME = re.compile(r"^[a-z]([-a-z0-9]*)?$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{1,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GCE_SCOPE_DEFAULT = (
    # gcloud's "default" scopes, but with read-write storage: workers write renders to the bucket.
    "https://www.googleapis.com/auth/devstorage.read_write",
    "https://www.googleapis.com/auth/logging.write",
    "https://www.googleapis.com/auth/monitoring.write",
    "https://www.googleapis.com/auth/servicecontrol",
    "https://www.googleapis.com/auth/service.management.readonly",
    "https://www.googleapis.com/auth/trace.append",
)


@dataclass(frozen=True)
class Storage:
    """The bucket that carries the worker bundle and the main program, mounted on every worker."""

    bucket: str  # [storage] name
    mountpoint: str  # [storage] mountpoint
    bundle: str  # key of the worker bundle: [storage] coalitionfilename (aws) / coalitionpackage (gcloud)
    main_program: str  # key of the main program package ("" = none)
    environment: tuple[tuple[str, str], ...]  # [main_program] environment, parsed
    install_dir: str  # [worker] installdir: where the main program is unpacked


@dataclass(frozen=True)
class AwsSettings:
    """The AWS side of cloud_aws.ini."""

    region: str = ""  # "" = boto3's default chain (AWS_DEFAULT_REGION, ~/.aws/config)
    key_name: str = ""
    access_key: str = ""  # server-side only; never rendered into user-data
    secret_key: str = ""
    spot: bool = True
    spot_method: str = "run-instances"
    instance_type: str = AWS_INSTANCE_TYPE
    image_id: str = DEBIAN_12_SSM  # an AMI id, or resolve:ssm:PARAMETER (resolved at launch)
    subnet_id: str = ""
    iam_instance_profile: str = ""
    security_group_ids: tuple[str, ...] = ()
    availability_zone: str = ""
    spot_price: str = "10"  # max USD/hour; "" = capped at the on-demand price
    spot_type: str = "one-time"
    instance_count: int = 1
    volume_size: int = 30  # GiB of the root volume: the OS, the worker, the main program, caches
    volume_type: str = "gp3"
    volume_encrypted: bool = True
    volume_kms_key: str = ""  # "" = the account's default EBS key
    tags: tuple[tuple[str, str], ...] = ()  # [worker] tags: on instances, volumes, spot requests
    bucket_kms_key: str = ""  # [storage] kmskey: SSE-KMS for the bucket ("" = SSE-S3, AES-256)


@dataclass(frozen=True)
class GceSettings:
    """The GCE side of cloud_gcloud.ini."""

    project: str = ""
    keyfile: str = ""  # server-side only; never rendered into user-data
    service_account: str = ""  # the workers' identity (gcsfuse uses it): no key on the instance
    scopes: tuple[str, ...] = _GCE_SCOPE_DEFAULT
    zone: str = "europe-west1-d"
    machine_type: str = GCE_MACHINE_TYPE
    subnet: str = "default"
    network: str = "default"
    provisioning_model: str = "SPOT"
    maintenance_policy: str = "TERMINATE"
    image: str = GCE_IMAGE
    image_project: str = "debian-cloud"
    boot_disk_size_gb: int = 30
    boot_disk_type: str = "pd-balanced"
    boot_method: str = "startup-script"
    external_ip: bool = True
    network_tags: tuple[str, ...] = ("coalition-worker",)
    labels: tuple[tuple[str, str], ...] = ()  # [worker] labels: on VMs and their disks
    bucket_kms_key: str = ""  # [storage] kmskey: the bucket's default CMEK ("" = Google-managed)

    @property
    def region(self) -> str:
        """europe-west1-d -> europe-west1."""
        return self.zone.rsplit("-", 1)[0]


@dataclass(frozen=True)
class CloudSettings:
    """Everything the autoscaler, the templates and `coalition cloud` need from the ini."""

    provider: str  # "aws" | "gcloud"
    path: str
    farm: str  # value of the ownership tag/label: instances of other farms are never touched
    server_ip: str
    port: int
    server_url: str  # "" until [coalition] ip or serverurl is set
    worker_token: str
    worker_affinity: str  # rule lines (newline-separated) written into the worker's ini
    office_cidr: str
    tick_interval: float
    template_dir: str
    price_per_hour: float
    limits: Limits
    storage: Storage
    aws: AwsSettings | None = None
    gce: GceSettings | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def require_launchable(self) -> None:
        """Raise ValueError naming the first key a launch cannot do without."""
        if not self.server_url:
            raise ValueError("coalition.ip: empty: set the address workers use to reach the server")
        if not self.storage.bucket:
            raise ValueError("storage.name: empty: set the bucket that holds the worker bundle")
        if not self.storage.bundle:
            key = "coalitionfilename" if self.provider == "aws" else "coalitionpackage"
            raise ValueError(f"storage.{key}: empty: set the key of the worker bundle in the bucket")
        if self.aws is not None and not self.aws.image_id:
            raise ValueError("worker.imageid: empty")
        if self.gce is not None and not self.gce.project:
            raise ValueError("authentication.project: empty")


class _Ini:
    """Typed access to one parsed ini file; remembers which keys were read."""

    def __init__(self, parser: configparser.ConfigParser):
        self.parser = parser
        self.used: set[tuple[str, str]] = set()

    def raw(self, section: str, key: str, default: str) -> str:
        self.used.add((section, key))
        if self.parser.has_option(section, key):
            return self.parser.get(section, key).strip()
        return default

    def get(self, section: str, key: str, default: str, parse: Callable[[str], T]) -> T:
        text = self.raw(section, key, default)
        try:
            return parse(text)
        except ValueError as exc:
            raise ValueError(f"{section}.{key}: {exc}") from None

    def unknown(self) -> list[str]:
        return [
            f"{section}.{key}: unknown key, ignored"
            for section in self.parser.sections()
            for key in self.parser.options(section)
            if (section, key) not in self.used
        ]


# -- value parsers: each raises ValueError with what was expected -----------------------------


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise ValueError(f"expected a number >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise ValueError(f"expected a number >= 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):  # also refuses nan
        raise ValueError(f"expected zero or more seconds, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise ValueError("expected more than zero seconds")
    return value


def _price(text: str) -> float:
    if text == "":
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a price per hour, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise ValueError(f"expected a price >= 0, got {text!r}")
    return value


def _spot_price(text: str) -> str:
    if text:
        _price(text)
    return text  # boto3 wants the price as a string


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _port(text: str) -> int:
    value = _positive(text)
    if value > 65535:
        raise ValueError(f"expected a port number (1-65535), got {value}")
    return value


def _choice(*choices: str, upper: bool = False) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.upper() if upper else text.lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return value

    return parse


def _optional(parse: Callable[[str], str]) -> Callable[[str], str]:
    return lambda text: parse(text) if text else ""


def _plain(text: str) -> str:
    # Values end up in tags, file names and shell words (quoted, but still): no control chars.
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError(f"control characters are not allowed, got {text!r}")
    return text


def _multiline(text: str) -> str:
    # Like _plain, but a token or rule lines may go on over indented continuation lines.
    _plain(text.replace("\n", " "))
    return text


def _path(text: str) -> str:
    _plain(text)
    if text and not text.startswith("/"):
        raise ValueError(f"expected an absolute path, got {text!r}")
    return text


def _bucket_key(text: str) -> str:
    _plain(text)
    if text.startswith("/") or ".." in text.split("/"):
        raise ValueError(f"expected a key inside the bucket (like srv/coalition.tar.gz), got {text!r}")
    return text


def _farm(text: str) -> str:
    if not _LABEL_VALUE.match(text):
        raise ValueError(f"expected 1-63 characters among a-z 0-9 _ - (a GCE label value), got {text!r}")
    return text


def _prefix(provider: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not text or any(c.isspace() or c == "/" for c in text):
            raise ValueError(f"expected a non-empty prefix without spaces or slashes, got {text!r}")
        if provider == "gcloud" and (not _GCE_NAME.match(text) or len(text) > 40):
            raise ValueError(f"GCE names need a lowercase prefix like 'cloud-' (a-z, 0-9, -), got {text!r}")
        return text

    return parse


def _url(text: str) -> str:
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected a URL like http://server:{DEFAULT_PORT}, got {text!r}")
    return text.rstrip("/")


def _cidr(text: str) -> str:
    if not text:
        return ""
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise ValueError(f"expected a CIDR such as 203.0.113.0/24, got {text!r}") from None


def _list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.replace(" ", ",").split(",") if part.strip())


def _affinity(text: str) -> str:
    # Rule lines are separated by ';' (one ini line) or by continuation lines.
    lines = []
    for line in text.replace(";", "\n").split("\n"):
        tags = [t.strip() for t in line.split(",") if t.strip()]
        if tags:
            lines.append(",".join(dict.fromkeys(tags)))
    return "\n".join(lines)


def _environment(text: str) -> tuple[tuple[str, str], ...]:
    # Coalition 4 syntax: space-separated NAME=VALUE words; shell-style quotes allow spaces.
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot split {text!r}: {exc}") from None
    pairs = []
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or not _ENV_NAME.match(name):
            raise ValueError(f"expected NAME=VALUE words, got {word!r}")
        _plain(value)
        pairs.append((name, value))
    return tuple(pairs)


def _tags(text: str) -> tuple[tuple[str, str], ...]:
    # key=value pairs separated by commas: "team=lighting, project=forest"
    pairs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ValueError(f"expected key=value pairs separated by commas, got {item!r}")
        _plain(key + value)
        if key.lower().startswith("aws:") or key in ("Name", "coalition-farm", "coalition-spot-request"):
            raise ValueError(f"tag {key!r} is reserved (AWS or Coalition sets it)")
        pairs.append((key, value))
    return tuple(pairs)


def _labels(text: str) -> tuple[tuple[str, str], ...]:
    pairs = _tags(text)
    for key, value in pairs:
        if not re.match(r"^[a-z][a-z0-9_-]{0,62}$", key) or not re.match(r"^[a-z0-9_-]{0,63}$", value):
            raise ValueError(
                f"GCE labels are lowercase a-z 0-9 _ - (keys start with a letter), got {key}={value}"
            )
    return pairs


def _volume_size(text: str) -> int:
    value = _positive(text)
    if value < 8:
        raise ValueError(f"expected at least 8 GiB (a Debian 12 AMI's snapshot), got {value}")
    return value


def _scopes(text: str) -> tuple[str, ...]:
    scopes: list[str] = []
    for item in _list(text):
        if item == "default":
            scopes.extend(_GCE_SCOPE_DEFAULT)
        elif item.startswith("https://"):
            scopes.append(item)
        else:  # short names, as gcloud accepts them: cloud-platform, devstorage.read_write...
            scopes.append("https://www.googleapis.com/auth/" + item)
    return tuple(dict.fromkeys(scopes))


def _gce_name(text: str) -> str:
    if not re.match(r"^[a-z][-a-z0-9]{0,62}$", text):
        raise ValueError(f"expected a lowercase GCE name, got {text!r}")
    return text


def _disk_size(text: str) -> int:
    value = _positive(text)
    if value < 10:
        raise ValueError(f"GCE boot disks are at least 10 GB, got {value}")
    return value


# -- loading ------------------------------------------------------------------------------------


def read_ini(path: str) -> configparser.ConfigParser:
    """Parse an ini file with no interpolation (a '%' in a value is just a '%')."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: {str(exc).splitlines()[0]}") from None
    return parser


def _common(ini: _Ini, provider: str, path: str, bundle_key: str) -> dict[str, Any]:
    """The sections both files share: [coalition], [storage], [main_program], part of [worker]."""
    g = ini.get
    port = g("coalition", "port", str(DEFAULT_PORT), _port)
    ip = g("coalition", "ip", "", _plain)
    url = g("coalition", "serverurl", "", _url) or (f"http://{ip}:{port}" if ip else "")
    offered = g("worker", "affinity", "", lambda t: _affinity(_multiline(t)))
    limits = Limits(
        max_instances=g("coalition", "workerinstancemax", "3", _count),
        start_delay=g("coalition", "workerinstancestartdelay", "30", _seconds),
        min_lifetime=g("coalition", "workerinstanceminimumlifetime", "900", _seconds),
        boot_timeout=g("coalition", "workerinstanceboottimeout", "900", _positive_seconds),
        batch=g("coalition", "workerinstancebatch", "10", _positive),
        name_prefix=g("worker", "nameprefix", "cloud-", _prefix(provider)),
        boot_failure_limit=g("coalition", "workerinstancebootfailures", "5", _count),
        boot_backoff=g("coalition", "workerinstancebootbackoff", "60", _positive_seconds),
        offered=tuple(frozenset(line.split(",")) for line in offered.split("\n") if line),
    )
    return {
        "provider": provider,
        "path": path,
        "farm": g("coalition", "farm", "coalition", _farm),
        "server_ip": ip,
        "port": port,
        "server_url": url,
        "worker_token": g("coalition", "workertoken", "", _multiline),
        "worker_affinity": offered,
        "office_cidr": g("coalition", "officecidr", "", _cidr),
        "tick_interval": g("coalition", "autoscaleinterval", "10", _positive_seconds),
        "template_dir": g("coalition", "templatedir", "", _path),
        "price_per_hour": g("worker", "priceperhour", "", _price),
        "limits": limits,
        "storage_partial": {
            "bucket": g("storage", "name", "", _plain),
            "mountpoint": g("storage", "mountpoint", "/mnt/bucket", _path),
            "bundle": g("storage", bundle_key, "srv/coalition.tar.gz", _bucket_key),
            "environment": g("main_program", "environment", "", _environment),
            "install_dir": g("worker", "installdir", "/usr/local/bin", _path),
        },
    }


def load_aws(path: str, warn: Callable[[str], None] = lambda message: None) -> CloudSettings:
    """Read cloud_aws.ini."""
    ini = _Ini(read_ini(path))
    g = ini.get
    common = _common(ini, "aws", path, "coalitionfilename")
    # Coalition 4 named the main program after Guerilla Render; [main_program] package (new for
    # AWS, as in cloud_gcloud.ini) wins when set.
    legacy = g("storage", "guerillarenderfilename", LEGACY_MAIN_PROGRAM, _bucket_key)
    storage = Storage(
        main_program=g("main_program", "package", "", _bucket_key) or legacy,
        **common.pop("storage_partial"),
    )
    spot_type = g("spot", "type", "one-time", _choice("one-time", "persistent"))
    aws = AwsSettings(
        region=g("authentication", "region", "", _plain),
        key_name=g("authentication", "keyname", "", _plain),
        access_key=g("authentication", "accesskey", "", _plain),
        secret_key=g("authentication", "secretaccesskey", "", _plain),
        spot=g("worker", "spot", "true", _bool),
        spot_method=g("worker", "spotmethod", "run-instances", _choice(*SPOT_METHODS)),
        instance_type=g("worker", "instancetype", AWS_INSTANCE_TYPE, _plain),
        image_id=g("worker", "imageid", DEBIAN_12_SSM, _plain),
        subnet_id=g("worker", "subnetid", "", _plain),
        iam_instance_profile=g("worker", "iaminstanceprofile", "", _plain),
        security_group_ids=g("worker", "securitygroupid", "", _list),
        availability_zone=g("worker", "availabilityzone", "", _plain),
        spot_price=g("spot", "spotprice", "10", _spot_price),
        spot_type=spot_type,
        instance_count=g("spot", "instancecount", "1", _positive),
        volume_size=g("worker", "volumesize", "30", _volume_size),
        volume_type=g("worker", "volumetype", "gp3", _choice(*VOLUME_TYPES)),
        volume_encrypted=g("worker", "volumeencrypted", "true", _bool),
        volume_kms_key=g("worker", "volumekmskey", "", _plain),
        tags=g("worker", "tags", "", _tags),
        bucket_kms_key=g("storage", "kmskey", "", _plain),
    )
    if aws.volume_kms_key and not aws.volume_encrypted:
        raise ValueError("worker.volumekmskey: set, but worker.volumeencrypted is false")
    if aws.spot and aws.spot_type == "persistent" and aws.spot_method == "run-instances":
        raise ValueError(
            "spot.type: persistent needs worker.spotmethod = request-spot-instances "
            "(run-instances spot workers are one-time and terminate on interruption)"
        )
    warnings = tuple(ini.unknown())
    for w in warnings:
        warn(w)
    return CloudSettings(storage=storage, aws=aws, warnings=warnings, **common)


def load_gcloud(path: str, warn: Callable[[str], None] = lambda message: None) -> CloudSettings:
    """Read cloud_gcloud.ini."""
    ini = _Ini(read_ini(path))
    g = ini.get
    common = _common(ini, "gcloud", path, "coalitionpackage")
    storage = Storage(
        main_program=g("main_program", "package", "", _bucket_key),
        **common.pop("storage_partial"),
    )
    preemptible = g("worker", "preemptible", "true", _bool)
    model = g("worker", "provisioningmodel", "", _optional(_choice(*GCE_MODELS, upper=True)))
    if not model:
        # SPOT is what preemptible VMs became (same price, no 24-hour limit): preemptible = true
        # asks for it unless provisioningmodel = PREEMPTIBLE keeps the legacy kind.
        model = "SPOT" if preemptible else "STANDARD"
    elif model == "STANDARD" and preemptible and ini.parser.has_option("worker", "preemptible"):
        raise ValueError("worker.provisioningmodel: STANDARD contradicts worker.preemptible = true")
    policy = g("worker", "maintenancepolicy", "TERMINATE", _choice("TERMINATE", "MIGRATE", upper=True))
    if model != "STANDARD" and policy != "TERMINATE":
        raise ValueError(f"worker.maintenancepolicy: must be TERMINATE for {model} instances, got {policy}")
    gce = GceSettings(
        project=g("authentication", "project", "", _plain),
        keyfile=g("authentication", "keyfile", "", _plain),
        service_account=g("authentication", "serviceaccount", "", _plain),
        scopes=g("authentication", "scopes", "default", _scopes),
        zone=g("worker", "zone", "europe-west1-d", _gce_name),
        machine_type=g("worker", "machinetype", GCE_MACHINE_TYPE, _plain),
        subnet=g("worker", "subnet", "default", _plain),
        network=g("worker", "network", "default", _plain),
        provisioning_model=model,
        maintenance_policy=policy,
        image=g("worker", "image", GCE_IMAGE, _plain),
        image_project=g("worker", "imageproject", "debian-cloud", _plain),
        boot_disk_size_gb=g("worker", "bootdisksize", "30", _disk_size),
        boot_disk_type=g("worker", "bootdisktype", "pd-balanced", _gce_name),
        boot_method=g("worker", "bootmethod", "startup-script", _choice(*GCE_BOOT_METHODS)),
        external_ip=g("worker", "externalip", "true", _bool),
        network_tags=g("worker", "networktags", "coalition-worker", _list),
        labels=g("worker", "labels", "", _labels),
        bucket_kms_key=g("storage", "kmskey", "", _plain),
    )
    warnings = tuple(ini.unknown())
    for w in warnings:
        warn(w)
    return CloudSettings(storage=storage, gce=gce, warnings=warnings, **common)


def load(
    servermode: str, config_dir: str, warn: Callable[[str], None] = lambda message: None
) -> CloudSettings:
    """Load cloud_<servermode>.ini from `config_dir` (servermode is aws or gcloud)."""
    if servermode not in PROVIDERS:
        raise ValueError(f"server.servermode: expected one of {', '.join(PROVIDERS)}, got {servermode!r}")
    path = os.path.join(config_dir, f"cloud_{servermode}.ini")
    loader = load_aws if servermode == "aws" else load_gcloud
    return loader(path, warn)
