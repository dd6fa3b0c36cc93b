"""Values and validation: job specs, edits, tags, states. No I/O; of ours, only the schema
registry (columns.py, pure data) is imported.

Everything that enters the server from outside (REST bodies, legacy form fields) is turned
into plain validated values here, so that a bad request fails with a message naming the
field before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import columns, failures, progress

# Job states (stored). PAUSED is only *reported*: a paused job keeps its stored state.
WAITING, PENDING, WORKING, FINISHED, ERROR, PAUSED = (
    "WAITING",
    "PENDING",
    "WORKING",
    "FINISHED",
    "ERROR",
    "PAUSED",
)
JOB_STATES = (WAITING, PENDING, WORKING, FINISHED, ERROR, PAUSED)

# Worker states.
W_WAITING, W_WORKING, W_TIMEOUT, W_STARTING, W_TERMINATED, W_SICK = (
    "WAITING",
    "WORKING",
    "TIMEOUT",
    "STARTING",
    "TERMINATED",
    "SICK",  # failed runs of several jobs: takes none until checked or cleared (docs/failures.md)
)
WORKER_STATES = (W_WAITING, W_WORKING, W_TIMEOUT, W_STARTING, W_TERMINATED, W_SICK)

DEFAULT_PRIORITY = 1000
MAX_PRIORITY = 2**31 - 1
DEFAULT_PROGRESS_PATTERN = "PROGRESS:%percent"
MAX_TEXT = 65536  # longest title/command/dir/env we accept, in characters
MAX_NAME = 255  # users, tags and worker names live in VARCHAR(255) columns (MariaDB refuses more)
MAX_ID = 2**62  # job ids, parents and dependencies: well inside a BIGINT
MAX_UNITS = 65536  # cores or GPUs one job may ask for
MAX_MEMORY_MB = 2**40  # a job's memory request (MB): a petabyte-scale host still fits
_ASCII_INT = re.compile(r"\s*(-?)([0-9]+)\s*")  # not \d: "²" and other digits int() refuses


class ValidationError(ValueError):
    """A value from outside is malformed; the message names the field and says what is wrong."""


# Fields of the job and worker objects as served by the API (documented order), and the
# job fields a client may set at creation or edit: from the schema registry.
JOB_FIELDS = columns.JOB_FIELDS
WORKER_FIELDS = columns.WORKER_FIELDS

# Aliases accepted on input: chapter 8 attribute names and Coalition 4 UI spellings.
JOB_ALIASES = {
    "cmd": "command",
    "env": "environment",
    "globalprogress": "progress_pattern",
    "localprogress": "local_progress_pattern",
}

# Fields a client may set at creation (PUT /api/jobs) or edit (POST /api/jobs): the settable
# columns, and the dependency list (a table of its own).
SETTABLE = (*columns.JOB_SETTABLE, "dependencies")

# Read-only fields that clients commonly send back (a GET object posted as an edit); they
# are accepted at creation only as no-ops when they carry their default, and refused in edits.
READ_ONLY = set(JOB_FIELDS) - set(SETTABLE)


@dataclass(frozen=True)
class JobSpec:
    """A validated job submission. `parent` stays raw: an id, a title or an `a|b` path."""

    parent: int | str = 0
    title: str = ""
    command: str = ""
    dir: str = "."
    environment: str = ""
    paused: bool = False
    retry: int = 0
    timeout: int = 0
    priority: int = DEFAULT_PRIORITY
    affinity: str = ""
    user: str = ""
    url: str = ""
    output: str = ""  # the job's output files (`f_####.png`): thumbnails of the newest
    progress_pattern: str = DEFAULT_PROGRESS_PATTERN
    local_progress_pattern: str = ""
    stalltimeout: int = 0
    minruntime: int = 0
    hostfails: int = 0
    logrules: str = ""
    limits: str = ""  # farm-wide limits it needs while running: "arnold:2,nuke:1"
    first_frame: int = 0  # the frames it covers (last < first: none known)
    last_frame: int = -1
    frame_dep: int = 0  # the job it waits for frame by frame (0: none)
    cores: int = 0  # resources it needs (0: no request; docs/scheduling.md)
    memory: int = 0  # MB
    gpus: int = 0
    exclusive: bool = False  # a whole host
    dependencies: tuple[int, ...] = ()


@dataclass(frozen=True)
class JobEdit:
    """A validated partial edit of one job: only the fields that were sent."""

    values: Mapping[str, Any] = field(default_factory=dict)


def _text(name: str, value: Any, *, allow_none: bool = True) -> str:
    if value is None and allow_none:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValidationError(f"{name} must be a string")
    text = str(value)
    if len(text) > MAX_TEXT:
        raise ValidationError(f"{name} is longer than {MAX_TEXT} characters")
    if "\x00" in text:
        raise ValidationError(f"{name} contains a NUL character")
    return text


def _int(name: str, value: Any, *, lo: int = 0, hi: int = MAX_PRIORITY, lenient: bool = False) -> int:
    if isinstance(value, bool):
        raise ValidationError(f"{name} must be an integer, not a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif lenient and isinstance(value, str) and (digits := _ASCII_INT.fullmatch(value)):
        if len(digits.group(2).lstrip("0")) > 19:  # past any range, and past int()'s digit limit
            raise ValidationError(f"{name} must be between {lo} and {hi}")
        number = int(value)
    elif lenient and isinstance(value, str) and value.strip() == "":
        raise ValidationError(f"{name} is empty")
    else:
        raise ValidationError(f"{name} must be an integer, got {value!r}"[:200])
    if not lo <= number <= hi:
        raise ValidationError(f"{name} must be between {lo} and {hi}, got {number}")
    return number


def _bool(name: str, value: Any, *, lenient: bool = False) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if lenient and isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
    raise ValidationError(f"{name} must be a boolean (true/false or 0/1), got {value!r}"[:200])


def parse_dependencies(value: Any, *, lenient: bool = False) -> tuple[int, ...]:
    """A list of ids, or a string in which every run of digits is an id ("1,3,5", "21 22 23")."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        ids = [_int("dependencies", x, lo=0, hi=MAX_ID, lenient=True) for x in re.findall(r"[0-9]+", value)]
    elif isinstance(value, (list, tuple)):
        ids = [_int("dependencies", v, lo=1, hi=MAX_ID, lenient=True) for v in value]
    elif isinstance(value, int) and not isinstance(value, bool):
        ids = [_int("dependencies", value, lo=1, hi=MAX_ID)]
    else:
        raise ValidationError('dependencies must be a list of job ids or a string like "1,3,5"')
    seen: dict[int, None] = {}
    for job_id in ids:
        if job_id <= 0:
            raise ValidationError(f"dependencies: {job_id} is not a job id")
        seen[job_id] = None
    return tuple(seen)


FRAME_MAX = 2**40
LIMIT_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
MAX_LIMIT_AMOUNT = 1_000_000


def parse_limits(value: Any) -> str:
    """Farm-wide limits a job needs: "nuke:1,arnold:2" (an amount of 1 may be left out), a
    list of such strings, or {"nuke": 1}. Returns the canonical text: lower-case names in
    order, each once ("arnold:2,nuke:1"); "" for none."""
    if value is None or value == "":
        return ""
    if isinstance(value, Mapping):
        parts = [f"{k}:{v}" for k, v in value.items()]
    elif isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        parts = list(value)
    else:
        raise ValidationError('limits must be a string like "nuke:1,arnold:2"')
    out: dict[str, int] = {}
    for part in parts:
        part = str(part).strip()
        if not part:
            continue
        name, sep, amount = part.partition(":")
        name = name.strip().lower()
        if not LIMIT_NAME.fullmatch(name):
            raise ValidationError(
                f"limits: {name[:80]!r} is not a limit name (letters, digits, _ . -; 64 at most)"
            )
        number = _int("limits", amount.strip(), lo=1, hi=MAX_LIMIT_AMOUNT, lenient=True) if sep else 1
        out[name] = out.get(name, 0) + number
    if len(out) > 32:
        raise ValidationError("limits: 32 limits at most")
    return ",".join(f"{k}:{v}" for k, v in sorted(out.items()))


def parse_parent(value: Any, *, lenient: bool = False) -> int | str:
    """An id, or a title / `a|b` path of titles (resolved later against the store)."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValidationError("parent must be a job id or a title")
    if isinstance(value, int):
        if not 0 <= value <= MAX_ID:
            raise ValidationError(f"parent must be a job id (0 to {MAX_ID}), got {value}")
        return value
    if isinstance(value, str):
        if re.fullmatch(r"\s*[0-9]+\s*", value):
            return _int("parent", value, lo=0, hi=MAX_ID, lenient=True)
        return _text("parent", value)
    raise ValidationError("parent must be a job id or a title")


def normalise_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """Map chapter 8 / legacy attribute names to the API's field names."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ValidationError(f"field names must be strings, got {key!r}")
        out[JOB_ALIASES.get(key, key)] = value
    return out


def parse_job_spec(data: Any, *, lenient: bool = False) -> JobSpec:
    """Validate a job submission (PUT /api/jobs body, or legacy form fields with lenient=True).

    Unknown fields are refused, so a typo ("priorty") does not silently create a job with a
    default value. Read-only fields a client copied from a GET object are ignored.
    """
    if not isinstance(data, Mapping):
        raise ValidationError("a job must be a JSON object")
    values = normalise_keys(data)
    unknown = sorted(k for k in values if k not in SETTABLE and k not in READ_ONLY)
    if unknown:
        raise ValidationError(f"unknown field(s): {', '.join(unknown)}")
    kw: dict[str, Any] = {}
    for key, value in values.items():
        if key in READ_ONLY:
            continue
        kw[key] = _field(key, value, lenient=lenient)
    state = kw.pop("state", None)
    if state == PAUSED:
        kw["paused"] = True
    if "first_frame" in kw and "last_frame" not in kw:
        kw["last_frame"] = kw["first_frame"]  # one frame
    return JobSpec(**kw)


def parse_job_edit(data: Any) -> JobEdit:
    """Validate the attributes of one job in a POST /api/jobs edit map."""
    if not isinstance(data, Mapping):
        raise ValidationError("each job edit must be a JSON object of field: value")
    values = normalise_keys(data)
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("id",):
            continue
        if key not in SETTABLE:
            if key in READ_ONLY:
                raise ValidationError(f"{key} is read-only")
            raise ValidationError(f"unknown field: {key}")
        out[key] = _field(key, value, lenient=False)
    return JobEdit(out)


def _field(key: str, value: Any, *, lenient: bool) -> Any:
    if key == "parent":
        return parse_parent(value, lenient=lenient)
    if key == "dependencies":
        return parse_dependencies(value, lenient=lenient)
    if key == "limits":
        return parse_limits(value)
    if key in ("first_frame", "last_frame"):
        return _int(key, value, lo=-FRAME_MAX, hi=FRAME_MAX, lenient=lenient)
    if key == "frame_dep":
        return _int(key, value, lo=0, hi=MAX_ID, lenient=lenient)
    if key in ("retry", "timeout"):
        return _int(key, value, lo=0, hi=2**31 - 1, lenient=lenient)
    if key == "priority":
        return _int(key, value, lo=0, hi=MAX_PRIORITY, lenient=lenient)
    if key in ("stalltimeout", "minruntime", "hostfails"):  # -1: off for this job
        return _int(key, value, lo=-1, hi=2**31 - 1, lenient=lenient)
    if key == "logrules":
        text = "\n".join(_text(key, v) for v in value) if isinstance(value, list) else _text(key, value)
        try:
            failures.parse_rules(text)
        except failures.RuleError as exc:
            raise ValidationError(f"logrules: {exc}") from None
        return text
    if key in ("cores", "gpus"):
        return _int(key, value, lo=0, hi=MAX_UNITS, lenient=lenient)
    if key == "memory":
        return _int(key, value, lo=0, hi=MAX_MEMORY_MB, lenient=lenient)
    if key in ("paused", "exclusive"):
        return _bool(key, value, lenient=lenient)
    if key == "state":
        state = _text(key, value).strip().upper()
        if state not in (WAITING, PAUSED, PENDING, ""):
            raise ValidationError(f"state must be WAITING or PAUSED, got {value!r}"[:200])
        return state or WAITING
    if key == "dir":
        text = _text(key, value)
        return text if text else "."
    if key in ("progress_pattern", "local_progress_pattern"):
        text = _text(key, value)
        try:
            progress.check(text)
        except progress.PatternError as exc:
            raise ValidationError(f"{key}: {exc}") from None
        return text if text or key != "progress_pattern" else DEFAULT_PROGRESS_PATTERN
    if key == "user":
        return check_name(key, _text(key, value))
    if key == "affinity":
        text = _text(key, value)
        check_tags(key, parse_tags(text))
        return text
    return _text(key, value)


def check_name(field: str, text: str) -> str:
    """A user or worker name: what a VARCHAR(255) holds, on every backend alike."""
    if len(text) > MAX_NAME:
        raise ValidationError(f"{field} is longer than {MAX_NAME} characters")
    return text


def check_tags(field: str, tags: Iterable[str]) -> None:
    """Tag names of an affinity: each what the tag registry's VARCHAR(255) holds, and no
    `|` (it separates the tags from the resource request in a tag set's key)."""
    for tag in tags:
        if len(tag) > MAX_NAME:
            raise ValidationError(f"{field}: a tag is longer than {MAX_NAME} characters")
        if "|" in tag:
            raise ValidationError(f"{field}: a tag name cannot contain '|' ({tag[:40]!r})")


def parse_tags(affinity: str) -> list[str]:
    """Comma-separated tag names, blanks dropped, order and duplicates normalised."""
    seen: dict[str, None] = {}
    for part in affinity.split(","):
        tag = part.strip()
        if tag:
            seen[tag] = None
    return list(seen)


def parse_rule_lines(text: str) -> list[list[str]]:
    """A worker's affinity: one rule per line, each a comma-separated tag set."""
    lines = []
    for line in text.replace("\r", "").split("\n"):
        tags = parse_tags(line)
        if tags:
            lines.append(tags)
    return lines


def format_rule_lines(lines: Iterable[Iterable[str]]) -> str:
    """The inverse of parse_rule_lines: newline-separated, comma-joined."""
    return "\n".join(",".join(line) for line in lines)


def parse_env(environment: str) -> dict[str, str]:
    """Chapter 8 environment: KEY=VALUE pairs separated by the two characters backslash-n."""
    env: dict[str, str] = {}
    if not environment or environment == "None":  # Coalition 4 stored "None" for no env
        return env
    for pair in environment.split("\\n"):
        if "=" in pair:
            key, value = pair.split("=", 1)
            if key.strip():
                env[key.strip()] = value
    return env


def parse_names(data: Any, what: str = "worker names") -> list[str]:
    """A JSON list of names (workers), as taken by DELETE/stop/start routes."""
    if not isinstance(data, list) or not all(isinstance(x, str) and x for x in data):
        raise ValidationError(f"expected a JSON list of {what}")
    return list(dict.fromkeys(data))


def parse_ids(data: Any) -> list[int]:
    """A JSON list of job ids, as taken by DELETE/reset/start/pause routes."""
    if isinstance(data, int) and not isinstance(data, bool):
        data = [data]
    if not isinstance(data, list):
        raise ValidationError("expected a JSON list of job ids")
    return list(dict.fromkeys(_int("job id", x, lo=1, hi=2**62, lenient=True) for x in data))


WORKER_EDITABLE = ("affinity", "active")


def parse_worker_edit(data: Any) -> dict[str, Any]:
    """Validate the attributes of one worker in a POST /api/workers edit map."""
    if not isinstance(data, Mapping):
        raise ValidationError("each worker edit must be a JSON object of field: value")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "name":
            continue
        if key == "affinity":
            lines = parse_rule_lines(_text(key, value))
            check_tags(key, (tag for line in lines for tag in line))
            out[key] = format_rule_lines(lines)
        elif key == "active":
            out[key] = _bool(key, value, lenient=True)
        elif key in WORKER_FIELDS:
            raise ValidationError(f"worker field {key} is read-only")
        else:
            raise ValidationError(f"unknown worker field: {key}")
    return out
