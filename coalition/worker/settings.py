"""The `[worker]` section of coalition.ini, validated into one frozen value.

Every documented Coalition 4 key keeps its name and meaning (`serverUrl workers name sleep cpus
startup verbose runcommand logfile`); the new keys are listed in KEYS below and in
docs/worker.md. A bad value is one error line naming the key; an unknown key is a warning
(a typo should not silently fall back to a default, but it should not stop a farm either).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from coalition import config
from coalition.model import format_rule_lines, parse_rule_lines
from coalition.openjd import pathmap

from . import resources

DEFAULT_PORT = 19211
CONFIG_PATHS = config.DEFAULT_PATHS  # where an ini is looked for without -c (tests narrow it)
SHUTDOWN_MODES = ("finish", "handback")
INTERRUPTION_MODES = ("auto", "aws", "gce", "off")
OPENJD_MODES = ("auto", "off")


class SettingsError(ValueError):
    """A configuration value is wrong; the message names the key and fits on one line."""


@dataclass(frozen=True)
class WorkerSettings:
    """Everything the agent needs to know, after the ini file and the command line."""

    server_url: str = ""  # empty: discover the server by UDP broadcast
    workers: int = 1  # fixed slots (with packing off)
    packing: bool = False  # `workers = auto` (load_settings' default): as many jobs as fit
    name: str = field(default_factory=socket.gethostname)
    sleep: float = 2.0  # seconds between heartbeats, and between picks when idle
    cpus: int | None = None  # cpus per slot: workers = cpu count // cpus (overridden by -w)
    startup: str = ""  # shell command run once before the first pick
    verbose: bool = False
    runcommand: str = ""  # wrapper with __user__ __dir__ __cmd__, each shell-quoted
    logfile: str = ""  # empty or "-": stderr (journald under systemd)
    token: str = ""  # sent as X-Coalition-Token
    affinity: str = ""  # rule lines, newline-separated (sent with pickjob)
    cacert: str = ""  # CA bundle to verify an https server
    shutdown: str = "handback"  # what SIGTERM does with a running job: finish | handback
    broadcast: str = "255.255.255.255"  # discovery address
    port: int = DEFAULT_PORT  # discovery port, and the HTTP port of a discovered server
    interruptions: str = "auto"  # spot/preemption watch: auto | aws | gce | off
    aws_metadata: str = "http://169.254.169.254"
    gce_metadata: str = "http://169.254.169.254"  # an IP: no DNS wait off GCE
    interruption_poll: float = 5.0  # AWS gives a two-minute notice; polling every 5 s is its advice
    killgrace: float = 10.0  # seconds between SIGTERM and SIGKILL of a job's process group
    spooldir: str = ""  # where logs spool while the server is away; empty: the temp directory
    checkcommand: str = ""  # run by a SICK slot; exit 0 clears it (docs/failures.md)
    checkinterval: float = 60.0  # seconds between check commands while SICK
    cores: int | None = None  # what the host offers to jobs; None: detected (resources.py)
    memory: int | None = None  # MB
    gpus: tuple[str, ...] | None = None  # device ids
    gpureserve: str = "auto"  # keep GPUs for GPU jobs: auto | on | off (docs/scheduling.md)
    # Open Job Description tasks (docs/openjd.md): `auto` takes them where openjd-sessions is
    # installed, `off` never; an idle slot keeps its OpenJD session (its environments) open
    # `openjd_linger` seconds for the next task of the same step.
    openjd: str = "auto"
    openjd_linger: float = 30.0
    # Path-mapping rules for OpenJD tasks: (format, source, destination), the file's first.
    pathmapping: tuple[pathmap.Rule, ...] = ()
    pathmappingfile: tuple[pathmap.Rule, ...] = ()
    # Listen for the server's wake-ups when idle (worker/wake.py): a job submitted to an idle
    # farm starts at once instead of at the next sync. `off`: syncs only.
    wake: bool = True

    def path_rules(self) -> tuple[pathmap.Rule, ...]:
        """Every path-mapping rule: `pathmappingfile`'s, then `pathmapping`'s."""
        return self.pathmappingfile + self.pathmapping

    def slot_names(self, cores: int | None = None) -> list[str]:
        """Fixed slots: `name` for one, `name-1` .. `name-N` for N. Packing: `name`, then
        `name-2` ... up to one per core (`cores`: the host's, detected when None)."""
        if self.packing and cores is None:
            cores = self.cores if self.cores is not None else resources.detect_cores()
        return resources.slot_names(self.name, self.workers, self.packing, cores or 1)


def _positive_int(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise ValueError(f"expected a number >= 1, got {value}")
    return value


def _workers(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    return _positive_int(text)


def _amount(text: str) -> int | None:
    if text.strip().lower() in ("", "auto"):
        return None  # detected
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number or auto, got {text!r}") from None
    if value < 0:
        raise ValueError(f"expected a number >= 0, got {value}")
    return value


def _gpus(text: str) -> tuple[str, ...] | None:
    if text.strip().lower() in ("", "auto"):
        return None  # detected
    return resources.parse_gpus(text)


def _optional_positive_int(text: str) -> int | None:
    if text.strip() in ("", "None", "none"):
        return None
    return _positive_int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):  # also refuses nan
        raise ValueError(f"expected a positive number of seconds, got {text!r}")
    return value


def _grace(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise ValueError(f"expected zero or a positive number of seconds, got {text!r}")
    return value


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected 0/1, true/false or yes/no, got {text!r}")


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise ValueError(f"expected a port number (1-65535), got {value}")
    return value


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        low = text.strip().lower()
        if low not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return low

    return parse


def _text(text: str) -> str:
    return text.strip()


def _token(text: str) -> str:
    token = text.strip()
    if any(c in token for c in "\r\n"):
        raise ValueError("must be one line (it is sent as an HTTP header)")
    return token


def _name(text: str) -> str:
    name = text.strip()
    if not name:
        raise ValueError("must not be empty")
    if any(c.isspace() for c in name) or "/" in name:
        raise ValueError(f"a worker name has no spaces or slashes, got {text!r}")
    return name


def _affinity(text: str) -> str:
    # Rule lines come as ini continuation lines or separated by ';' on one line.
    return format_rule_lines(parse_rule_lines(text.replace(";", "\n")))


def _path_rules(text: str) -> tuple[pathmap.Rule, ...]:
    return pathmap.parse_rules(text)


def _path_rules_file(text: str) -> tuple[pathmap.Rule, ...]:
    path = text.strip()
    if not path:
        return ()
    try:
        with open(path, encoding="utf-8") as f:
            content = f.read()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return pathmap.parse_document(content)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _url(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    return normalise_url(text)


def normalise_url(text: str, default_port: int = DEFAULT_PORT) -> str:
    """`host`, `host:port` or a full URL -> `scheme://host:port` with no trailing slash."""
    text = text.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
        parts = urlsplit(text)
        if parts.port is None and parts.hostname:
            text = f"{text}:{default_port}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected a URL like http://server:{default_port}, got {text!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    return text


# ini key (lower case, as configparser stores it) -> (dataclass field, parser)
KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "serverurl": ("server_url", _url),
    "workers": ("workers", _workers),
    "name": ("name", _name),
    "sleep": ("sleep", _seconds),
    "cpus": ("cpus", _optional_positive_int),
    "startup": ("startup", _text),
    "verbose": ("verbose", _bool),
    "runcommand": ("runcommand", _text),
    "logfile": ("logfile", _text),
    "token": ("token", _token),
    "affinity": ("affinity", _affinity),
    "cacert": ("cacert", _text),
    "shutdown": ("shutdown", _choice(*SHUTDOWN_MODES)),
    "broadcast": ("broadcast", _text),
    "port": ("port", _port),
    "interruptions": ("interruptions", _choice(*INTERRUPTION_MODES)),
    "aws_metadata": ("aws_metadata", _url),
    "gce_metadata": ("gce_metadata", _url),
    "interruption_poll": ("interruption_poll", _seconds),
    "killgrace": ("killgrace", _grace),
    "spooldir": ("spooldir", _text),
    "checkcommand": ("checkcommand", _text),
    "checkinterval": ("checkinterval", _seconds),
    "cores": ("cores", _amount),
    "memory": ("memory", _amount),
    "gpus": ("gpus", _gpus),
    "gpureserve": ("gpureserve", _choice("auto", "on", "off")),
    "openjd": ("openjd", _choice(*OPENJD_MODES)),
    "openjd_linger": ("openjd_linger", _grace),
    "pathmapping": ("pathmapping", _path_rules),
    "pathmappingfile": ("pathmappingfile", _path_rules_file),
    "wake": ("wake", _bool),
}


def find_config(path: str | None) -> str | None:
    """The ini file to read: `path` (must exist), else ./coalition.ini, else /etc/coalition/."""
    try:
        return config.find_config(path, CONFIG_PATHS)
    except config.ConfigError as exc:
        raise SettingsError(str(exc)) from None


def read_section(path: str | None) -> dict[str, str]:
    """The raw `[worker]` key/values of an ini file ({} without a file or a section)."""
    if path is None:
        return {}
    try:
        parser = config.read_ini(path)
    except (OSError, config.ConfigError) as exc:
        raise SettingsError(str(exc).splitlines()[0]) from None
    if not parser.has_section("worker"):
        return {}
    return dict(parser.items("worker"))


def parse_section(values: Mapping[str, str], warn: Callable[[str], None]) -> dict[str, Any]:
    """Validate raw `[worker]` values into dataclass fields; unknown keys go to `warn`."""
    out: dict[str, Any] = {}
    for key, raw in values.items():
        spec = KEYS.get(key.lower())
        if spec is None:
            warn(f"[worker] {key}: unknown key, ignored")
            continue
        fieldname, parse = spec
        try:
            out[fieldname] = parse(raw)
        except ValueError as exc:
            raise SettingsError(f"[worker] {key}: {exc}") from None
    return out


def load_settings(
    path: str | None,
    overrides: Mapping[str, Any] | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> WorkerSettings:
    """Read the ini (see find_config), then apply command-line overrides (field: value).

    `workers` is `auto` (packing: as many jobs as fit, the default) or a number of fixed
    slots; `cpus` sizes the fixed slot count (cpu count // cpus) unless `workers` came from
    the command line.
    """
    fields = parse_section(read_section(find_config(path)), warn)
    overrides = dict(overrides or {})
    fields.update({k: v for k, v in overrides.items() if v is not None})
    workers = fields.pop("workers", None)
    if workers is None and not fields.get("cpus"):
        workers = "auto"
    if workers == "auto":
        fields.update(packing=True, workers=1)
    elif workers is not None:
        fields.update(packing=False, workers=workers)
    settings = WorkerSettings(**fields)
    if settings.cpus and overrides.get("workers") is None:
        settings = replace(settings, packing=False, workers=max(1, (os.cpu_count() or 1) // settings.cpus))
    return settings
