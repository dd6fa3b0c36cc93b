"""coalition.ini: finding it, reading it, validating the `[server]` section.

Every documented key keeps its documented name and default (chapter 3.1.3 of the 4.0
documentation); new keys are added beside them. A bad value stops the server with one line
naming the key; an unknown key is a warning (a typo should not stop a farm, but should be
seen).
"""

from __future__ import annotations

import configparser
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

DEFAULT_PATHS = ("coalition.ini", "/etc/coalition/coalition.ini")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the file, section and key."""


def find_config(explicit: str | None, candidates: Sequence[str] = DEFAULT_PATHS) -> str | None:
    """The configuration file to use: -c FILE, else ./coalition.ini, else /etc/coalition/..."""
    if explicit:
        if not os.path.isfile(explicit):
            raise ConfigError(f"{explicit}: no such configuration file")
        return explicit
    for path in candidates:
        if os.path.isfile(path):
            return path
    return None


def read_ini(path: str | None) -> configparser.ConfigParser:
    """Parse an ini file (no interpolation: values may contain % and $)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case: `serverUrl` is spelled that way in the docs
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                parser.read_file(f)
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot parse: {str(exc).splitlines()[0]}") from exc
    return parser


def parse_bool(text: str) -> bool:
    """ini booleans as the documentation writes them: 1/0, true/false, yes/no, on/off."""
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean (use 1/0, true/false)")


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def conv(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
        if not lo <= value <= hi:
            raise ValueError(f"{value} is not between {lo} and {hi}")
        return value

    return conv


def _float(lo: float) -> Callable[[str], float]:
    def conv(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(value):  # nan would turn every comparison off (a deadline never due)
            raise ValueError(f"{text!r} is not a finite number")
        if value < lo:
            raise ValueError(f"{value} is below {lo}")
        return value

    return conv


def _choice(*options: str) -> Callable[[str], str]:
    def conv(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"{text!r} is not one of {', '.join(options)}")
        return value

    return conv


def _text(text: str) -> str:
    return text.strip()


def _urls(text: str) -> tuple[str, ...]:
    urls = tuple(text.replace(",", " ").split())
    for url in urls:
        if not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", url) or len(url) > 320:
            raise ValueError(f"{url[:80]!r} is not an http:// or https:// URL of at most 320 characters")
    return urls


def _raw(text: str) -> str:
    return text  # multi-line values (commandwhitelist) keep their lines


_LDAP_TEMPLATES = tuple(
    f"ldaptemplate{action}job{scope}"
    for action in ("create", "view", "edit", "delete")
    for scope in ("", "global")
)


@dataclass(frozen=True)
class ServerSettings:
    """The validated `[server]` section."""

    port: int = 19211
    listen: str = "0.0.0.0"
    datadir: str = "."
    db_type: str = "sqlite"
    db_sqlite_file: str = "coalition.db"
    db_mysql_host: str = "127.0.0.1"
    db_mysql_port: int = 3306
    db_mysql_user: str = ""
    db_mysql_password: str = ""
    db_mysql_base: str = "base"
    db_mysql_install: bool = True  # documented by Coalition 4; the schema is made by --init
    # New in Coalition 5: "pymysql" (pure Python, the default) or "mysqlclient" (the C client,
    # Debian's python3-mysqldb: less CPU per statement, the faster choice for a busy farm).
    db_mysql_driver: str = "pymysql"
    servermode: str = "normal"
    timeout: float = 10.0
    service: bool = False  # Windows service mode in Coalition 4; systemd does this now
    verbose: bool = False
    notifyafter: int = 10
    decreasepriorityafter: int = 10
    smtphost: str = ""
    smtpport: int = 587
    smtptls: bool = True
    smtpsender: str = ""
    smtplogin: str = ""
    smtppasswd: str = ""
    smtpdomain: str = ""
    ldaphost: str = ""
    ldapunsafeapi: bool = False
    ldapbase: str = ""
    ldaptemplatelogin: str = ""
    ldaptemplatecreatejob: str = ""
    ldaptemplatecreatejobglobal: str = ""
    ldaptemplateviewjob: str = ""
    ldaptemplateviewjobglobal: str = ""
    ldaptemplateeditjob: str = ""
    ldaptemplateeditjobglobal: str = ""
    ldaptemplatedeletejob: str = ""
    ldaptemplatedeletejobglobal: str = ""
    commandwhitelist: str = ""
    # New in Coalition 5.
    ldapbinddn: str = ""  # identity of the permission searches (empty: anonymous)
    ldapbindpassword: str = ""
    ldapcache: float = 30.0  # seconds LDAP answers are cached (0: not cached)
    ldaptimeout: float = 5.0  # seconds to wait for the LDAP server
    ldapcacert: str = ""  # CA bundle for an ldaps:// server
    sessionlifetime: float = 43200.0  # seconds a web login lasts
    smtpcacert: str = ""  # CA bundle for the SMTP server's certificate (STARTTLS)
    notifyinterval: float = 5.0  # seconds between passes of the mail sender
    webhooks: tuple[str, ...] = ()  # URLs told of job, group and worker events (docs/webhooks.md)
    webhooksecret: str = ""  # HMAC-SHA256 key of their signatures
    workertoken: str = ""
    # A file holding the token, read when workertoken is empty: the Debian package makes
    # one at install, so a fresh server is closed to strangers without a secret in a
    # conffile.
    workertokenfile: str = ""
    maxlogsize: int = 64  # MB kept per job log
    # Where job logs live: "files" (<datadir>/logs/<id>.log), "database" (the job_logs table,
    # read and appended by every server), or "auto": the database with MySQL (several
    # servers may share it), files with SQLite (one server).
    logstore: str = "auto"
    requeuelimit: int = 3  # requeues (silent worker, log rule) before a job turns ERROR
    # Worker syncs a second the farm's servers take in all (0: no limit): past that, the
    # server spreads its workers' syncs out (docs/protocol.md, docs/deploy.md).
    syncrate: float = 250.0
    # Failure handling (docs/failures.md).
    hostfails: int = 3  # failed runs of a job on one worker before it is blocked for the job (0: never)
    blockscope: str = "job"  # "group": a block covers every job of the failing job's group
    forgive: float = 3600.0  # seconds after its last failure a block lifts by itself
    sickjobs: int = 3  # different jobs failing on one worker within sickwindow: SICK (0: never)
    sickwindow: float = 900.0
    sickmail: str = ""  # who is told when a worker turns SICK (comma-separated addresses)
    stalltimeout: int = 0  # seconds without output before a run is killed (0: no stall detection)
    minruntime: int = 0  # a run exiting 0 faster than this is a failure (0: off)
    logrules: str = ""  # farm-wide log rules, one a line, after each job's own
    eventretention: float = 90.0  # days of run events kept (0: forever)
    maxbodysize: int = 64  # MB per request body
    threads: int = 32  # HTTP worker threads
    # Slow clients (server/guard.py): seconds for a request's headers, and for its body on
    # top of one second per 64 KB. Longer only for clients on very slow links.
    headertimeout: float = 10.0
    bodytimeout: float = 30.0
    reaperinterval: float = 2.0  # seconds between reaper passes
    discovery: bool = True  # answer UDP discovery broadcasts
    webdir: str = ""
    templatedir: str = ""
    ssl_certificate: str = ""
    ssl_private_key: str = ""
    limitsinterval: float = 30.0  # seconds between runs of the limits' counting commands
    fairshare: str = "off"  # "user": slots shared between users at the same priority
    # `[fairshare]`: (user, weight) of the users whose share is not 1.
    fairshare_weights: tuple[tuple[str, float], ...] = ()
    # `[limits]`: (name, capacity, counting command) of each farm-wide limit (docs/scheduling.md).
    limits: tuple[tuple[str, int, str], ...] = ()
    config_path: str = field(default="", compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def sqlite_path(self) -> str:
        """The SQLite file, relative paths taken from `datadir`."""
        return os.path.join(self.datadir, self.db_sqlite_file)

    @property
    def logs_in_database(self) -> bool:
        """Whether job logs are kept in the database (see `logstore`)."""
        return self.logstore == "database" or (self.logstore == "auto" and self.db_type == "mysql")

    @property
    def logs_dir(self) -> str:
        """Where job logs live: `<datadir>/logs`."""
        return os.path.join(self.datadir, "logs")


_SERVER_TYPES: dict[str, Callable[[str], Any]] = {
    "port": _int(0, 65535),
    "listen": _text,
    "datadir": _text,
    "db_type": _choice("sqlite", "mysql"),
    "db_sqlite_file": _text,
    "db_mysql_host": _text,
    "db_mysql_port": _int(1, 65535),
    "db_mysql_user": _text,
    "db_mysql_password": _raw,
    "db_mysql_base": _text,
    "db_mysql_install": parse_bool,
    "db_mysql_driver": _choice("pymysql", "mysqlclient"),
    "servermode": _choice("normal", "aws", "gcloud"),
    "timeout": _float(0.1),
    "service": parse_bool,
    "verbose": parse_bool,
    "notifyafter": _int(0, 10**9),
    "decreasepriorityafter": _int(0, 10**9),
    "smtphost": _text,
    "smtpport": _int(1, 65535),
    "smtptls": parse_bool,
    "smtpsender": _text,
    "smtplogin": _text,
    "smtppasswd": _raw,
    "smtpdomain": _text,
    "ldaphost": _text,
    "ldapunsafeapi": parse_bool,
    "ldapbase": _text,
    "ldaptemplatelogin": _text,
    "commandwhitelist": _raw,
    "ldapbinddn": _text,
    "ldapbindpassword": _raw,
    "ldapcache": _float(0),
    "ldaptimeout": _float(0.1),
    "ldapcacert": _text,
    "sessionlifetime": _float(60),
    "smtpcacert": _text,
    "notifyinterval": _float(0.05),
    "webhooks": _urls,
    "webhooksecret": _text,
    "workertoken": _text,
    "workertokenfile": _text,
    "maxlogsize": _int(1, 1024 * 1024),
    "logstore": _choice("auto", "files", "database"),
    "requeuelimit": _int(0, 1000),
    "syncrate": _float(0),
    "hostfails": _int(0, 10**6),
    "blockscope": _choice("job", "group"),
    "forgive": _float(0),
    "sickjobs": _int(0, 10**6),
    "sickwindow": _float(1),
    "sickmail": _text,
    "stalltimeout": _int(0, 2**31 - 1),
    "minruntime": _int(0, 2**31 - 1),
    "logrules": _raw,
    "eventretention": _float(0),
    "maxbodysize": _int(1, 4096),
    "threads": _int(2, 1000),
    "headertimeout": _float(0.5),
    "bodytimeout": _float(0.5),
    "reaperinterval": _float(0.05),
    "discovery": parse_bool,
    "webdir": _text,
    "templatedir": _text,
    "ssl_certificate": _text,
    "ssl_private_key": _text,
    "limitsinterval": _float(1.0),
    "fairshare": _choice("off", "user"),
    **{key: _text for key in _LDAP_TEMPLATES},
}
# The documented sample spells this key with a double l; both are accepted.
_SERVER_ALIASES = {"ldaptemplatellogin": "ldaptemplatelogin"}


def load_server_settings(path: str | None, overrides: dict[str, str] | None = None) -> ServerSettings:
    """Read and validate `[server]` from `path` (None: defaults), then apply overrides
    (command-line flags, as strings, validated the same way)."""
    parser = read_ini(path)
    raw: dict[str, str] = dict(parser.items("server")) if parser.has_section("server") else {}
    raw.update(overrides or {})
    values: dict[str, Any] = {}
    warnings: list[str] = []
    where = path or "defaults"
    for key, text in raw.items():
        name = _SERVER_ALIASES.get(key, key)
        conv = _SERVER_TYPES.get(name)
        if conv is None:
            warnings.append(f"{where}: [server] {key}: unknown key, ignored")
            continue
        try:
            values[name] = conv(text)
        except ValueError as exc:
            raise ConfigError(f"{where}: [server] {key}: {exc}") from None
    known = {f.name for f in fields(ServerSettings)}
    assert set(values) <= known
    if not values.get("workertoken") and values.get("workertokenfile"):
        values["workertoken"] = _read_token(values["workertokenfile"], where)
    if values.get("webhooks") and not values.get("webhooksecret"):
        raise ConfigError(f"{where}: [server] webhooks: set webhooksecret too (every delivery is signed)")
    values["limits"] = _limits(parser, where)
    values["fairshare_weights"] = _weights(parser, where)
    settings = ServerSettings(**values, config_path=path or "", warnings=tuple(warnings))
    _check_security(settings, where)
    return settings


_LIMIT_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


def _limits(parser: configparser.ConfigParser, where: str) -> tuple[tuple[str, int, str], ...]:
    """`[limits]`: `nuke = 5` gives a limit its capacity; `nuke.command = CMD` counts the
    licences in use as the licence server sees them (docs/scheduling.md)."""
    if not parser.has_section("limits"):
        return ()
    capacities: dict[str, int] = {}
    commands: dict[str, str] = {}
    for key, text in parser.items("limits"):
        key = key.strip().lower()  # limit names are case-insensitive, as in jobs' `limits`
        name, _, suffix = key.partition(".command") if key.endswith(".command") else (key, "", "")
        if not _LIMIT_NAME.fullmatch(name) or suffix:
            raise ConfigError(f"{where}: [limits] {key}: not a limit name (letters, digits, _ . -)")
        if key.endswith(".command"):
            commands[name] = text.strip()
            continue
        try:
            capacities[name] = _int(0, 10**9)(text)
        except ValueError as exc:
            raise ConfigError(f"{where}: [limits] {key}: {exc}") from None
    for name in commands:
        if name not in capacities:
            raise ConfigError(f"{where}: [limits] {name}.command: give {name} a capacity too")
    return tuple((n, c, commands.get(n, "")) for n, c in sorted(capacities.items()))


def _weights(parser: configparser.ConfigParser, where: str) -> tuple[tuple[str, float], ...]:
    """`[fairshare]`: `alice = 2` gives alice twice the share of a user not named (1)."""
    if not parser.has_section("fairshare"):
        return ()
    out = []
    for user, text in parser.items("fairshare"):
        try:
            out.append((user.strip(), _float(0)(text)))
        except ValueError as exc:
            raise ConfigError(f"{where}: [fairshare] {user}: {exc}") from None
    return tuple(sorted(out))


def _read_token(path: str, where: str) -> str:
    """The worker token kept in `path` (its first line)."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
    except OSError as exc:
        raise ConfigError(f"{where}: [server] workertokenfile: cannot read {path}: {exc.strerror}") from None
    if not token:
        raise ConfigError(f"{where}: [server] workertokenfile: {path} is empty")
    return token


def _check_security(s: ServerSettings, where: str) -> None:
    """Keys that only make sense together: refuse a configuration that would be less
    secure than it looks."""
    from .auth.whitelist import WhitelistError, parse_whitelist

    if bool(s.ssl_certificate) != bool(s.ssl_private_key):
        raise ConfigError(f"{where}: [server] ssl_certificate and ssl_private_key go together")
    for key in ("ssl_certificate", "ssl_private_key", "ldapcacert", "smtpcacert"):
        path = getattr(s, key)
        if path and not os.access(path, os.R_OK):
            raise ConfigError(f"{where}: [server] {key}: cannot read {path}")
    if s.ldaphost:
        if not s.ldaptemplatelogin:
            raise ConfigError(
                f"{where}: [server] ldaphost is set but ldaptemplatelogin is not "
                "(e.g. uid=__login__,ou=people,dc=example,dc=com)"
            )
        if "__login__" not in s.ldaptemplatelogin:
            raise ConfigError(f"{where}: [server] ldaptemplatelogin must contain __login__")
        if not s.workertoken:
            # With logins on, an open /workers/ would still hand out every command and
            # accept forged results from anyone.
            raise ConfigError(
                f"{where}: [server] ldaphost is set but workertoken is empty: the worker routes "
                "would be open to anyone. Set workertoken (and the same [worker] token on workers)"
            )
    from .failures import RuleError, parse_rules

    try:
        parse_rules(s.logrules)
    except RuleError as exc:
        raise ConfigError(f"{where}: [server] logrules: {exc}") from None
    try:
        parse_whitelist(s.commandwhitelist)
    except WhitelistError as exc:
        raise ConfigError(f"{where}: [server] {exc}") from None
