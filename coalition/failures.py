"""Pure failure policy: why a run ended, log rules, host blocklists and sick hosts.

No I/O, no clock: callers pass `now` and the rows they read. The use cases
(usecases/runend.py, usecases/pick.py) apply what these functions decide; the worker uses
`stalled()` and the reason texts. See docs/failures.md.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# -- reasons ------------------------------------------------------------------------------------
REASON_LEN = 255  # the events.reason and jobs.reason columns are VARCHAR(255)


def clip(reason: str) -> str:
    """A reason as stored: one line, at most REASON_LEN characters."""
    line = " ".join(reason.split())
    return line if len(line) <= REASON_LEN else line[: REASON_LEN - 3] + "..."


def exit_reason(exit_code: int) -> str:
    """The reason of a run that ended by itself: its exit status, or the signal that ended it
    (negative codes, as Python reports them; 128+N, as a shell does, stays an exit code)."""
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-exit_code} ({name})"
    return f"exit code {exit_code}"


def stall_reason(seconds: float) -> str:
    """The reason of a run killed for printing nothing for `seconds` (stalltimeout)."""
    return f"stalled (no output for {seconds:g} s)"


def timeout_reason(seconds: float) -> str:
    """The reason of a run killed at its `timeout`."""
    return f"timeout ({seconds:g} s)"


def too_fast_reason(elapsed: float, minimum: float) -> str:
    """The reason of a run that exited 0 in less than its `minruntime`."""
    return f"too fast ({elapsed:.1f} s < minruntime {minimum:g} s)"


def rule_reason(rule: LogRule) -> str:
    """The reason of a run decided by a log rule."""
    return f"log rule {rule.name}: {rule.action_text}"


def stalled(last_output: float, stalltimeout: float, now: float) -> bool:
    """Whether a run that last printed at `last_output` is stalled at `now`."""
    return stalltimeout > 0 and now - last_output >= stalltimeout


def too_fast(exit_code: int, elapsed: float, minruntime: float) -> bool:
    """A run that exited 0 faster than `minruntime` found nothing to do: a failure."""
    return exit_code == 0 and minruntime > 0 and elapsed < minruntime


# -- log rules ----------------------------------------------------------------------------------
FAIL, SUCCEED, REQUEUE, SICK, LIMIT = "fail", "succeed", "requeue", "sick", "limit"
ACTIONS = (FAIL, SUCCEED, REQUEUE, SICK, LIMIT)
# Actions that end the run at once (the server tells the worker to kill it).
KILLING = (FAIL, REQUEUE, SICK, LIMIT)
MAX_RULES = 200
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_LIMIT = re.compile(r"limit:([A-Za-z0-9_.\-]{1,64})(?::(\d{1,7}))?")


class RuleError(ValueError):
    """A log rule that cannot be parsed; the message says which line and why."""


@dataclass(frozen=True)
class LogRule:
    """One log rule: when `pattern` matches a line of a run's output, `action` decides."""

    name: str
    action: str
    pattern: re.Pattern[str]
    limit: str = ""  # the named limit lowered (action "limit")
    seconds: int = 0  # for how long (action "limit"; 0: the default hour)

    @property
    def action_text(self) -> str:
        """The action as written."""
        if self.action != LIMIT:
            return self.action
        return f"limit:{self.limit}" + (f":{self.seconds}" if self.seconds else "")


# Shipped presets: the licence and fatal-error messages of common renderers. Each one is
# tested on a sample log (tests/unit/test_failures.py). Licence errors requeue without
# spending a retry (another host or a later try gets a seat); fatal errors fail at once
# (a retry would print the same thing).
_PRESET_RULES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "arnold": (
        (
            "arnold-licence",
            REQUEUE,
            r"(?i)(?:\[clm\]|\[rlm\]|\[ai\]).*licen[cs]e.*(?:not available|failed|error)",
        ),
        ("arnold-fatal", FAIL, r"\bERROR\s*\|.*(?:aborting render|render aborted)"),
    ),
    "vray": (
        (
            "vray-licence",
            REQUEUE,
            r"(?i)(?:could not obtain a licen[cs]e|error connecting to the licen[cs]e server"
            r"|no v-ray licen[cs]e)",
        ),
        ("vray-fatal", FAIL, r"(?i)\[V-Ray\].*(?:fatal error|unhandled exception)"),
    ),
    "nuke": (
        (
            "nuke-licence",
            REQUEUE,
            r"(?i)(?:foundry_license|foundry licen[cs]e|rlm).*(?:no licen[cs]e|not available)",
        ),
        ("nuke-nolicence", REQUEUE, r"(?i)^nuke: no licen[cs]e available"),
        ("nuke-fatal", FAIL, r"(?i)^ERROR: .*(?:cannot open|can't open|read error|no such file)"),
    ),
    "blender": (
        ("blender-oom", REQUEUE, r"(?i)(?:CUDA error: out of memory|system is out of GPU memory)"),
        ("blender-fatal", FAIL, r"(?i)^(?:Error: )?(?:cannot read file|unable to open)\b"),
    ),
    "redshift": (
        (
            "redshift-licence",
            REQUEUE,
            r"(?i)redshift.*(?:licen[cs]e (?:error|not available|checkout failed)"
            r"|unable to (?:obtain|acquire) a licen[cs]e)",
        ),
        ("redshift-oom", REQUEUE, r"(?i)redshift.*out of (?:vram|gpu memory)"),
    ),
    "disk": (("disk-full", REQUEUE, r"(?i)(?:no space left on device|disk quota exceeded)"),),
}
PRESETS: dict[str, str] = {
    name: "\n".join(f"{rule} {action} {regex}" for rule, action, regex in rules)
    for name, rules in _PRESET_RULES.items()
}


def parse_rules(text: str, *, where: str = "") -> tuple[LogRule, ...]:
    """Parse rules, one a line: `NAME ACTION REGEX` (the regex is the rest of the line,
    Python syntax, searched in each output line), or `@PRESET` for a shipped preset; blank
    lines and `#` comments are skipped. ACTION is fail, succeed, requeue, sick or
    limit:NAME[:SECONDS]. Raises RuleError saying which line is wrong."""
    rules: list[LogRule] = []
    prefix = f"{where}: " if where else ""
    for number, raw in enumerate(text.replace("\r", "").split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            preset = PRESETS.get(line[1:].strip().lower())
            if preset is None:
                raise RuleError(
                    f"{prefix}line {number}: unknown preset {line!r} (known: "
                    f"{', '.join('@' + p for p in sorted(PRESETS))})"[:300]
                )
            rules.extend(parse_rules(preset, where=line))
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise RuleError(f"{prefix}line {number}: expected NAME ACTION REGEX, got {line!r}"[:300])
        name, action, pattern = parts
        if not _NAME.fullmatch(name):
            raise RuleError(f"{prefix}line {number}: a rule name is 1-64 letters, digits, '_', '.' or '-'")
        limit, seconds = "", 0
        m = _LIMIT.fullmatch(action)
        if m:
            action, limit, seconds = LIMIT, m.group(1), int(m.group(2) or 0)
        elif action not in ACTIONS:
            raise RuleError(
                f"{prefix}line {number}: unknown action {action!r} (known: fail, succeed, "
                "requeue, sick, limit:NAME[:SECONDS])"[:300]
            )
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise RuleError(f"{prefix}line {number}: rule {name}: bad regex: {exc}") from None
        rules.append(LogRule(name, action, compiled, limit, seconds))
    if len(rules) > MAX_RULES:
        raise RuleError(f"{prefix}more than {MAX_RULES} rules")
    return tuple(rules)


def match_rules(rules: Sequence[LogRule], text: str) -> LogRule | None:
    """The first rule (in order) that matches a line of `text`, else None. Lines are tried
    in order; for one line the earliest rule wins."""
    if not rules or not text:
        return None
    for line in text.splitlines():
        for rule in rules:
            if rule.pattern.search(line):
                return rule
    return None


def rule_by_name(rules: Iterable[LogRule], name: str) -> LogRule | None:
    """The rule called `name` (verdicts are stored by name)."""
    return next((r for r in rules if r.name == name), None)


# -- blocklists and sick hosts ------------------------------------------------------------------
@dataclass(frozen=True)
class FailurePolicy:
    """The farm's failure settings (`[server]` in coalition.ini)."""

    hostfails: int = 3  # failures of a job on one host before the host is blocked for it (0: never)
    blockscope: str = "job"  # "job": the failing job only; "group": every job of its parent group
    forgive: float = 3600.0  # seconds after the last failure a block is lifted by itself
    sickjobs: int = 3  # different jobs failing on one host within sickwindow: SICK (0: never)
    sickwindow: float = 900.0
    stalltimeout: int = 0  # farm default for jobs that set none (0: no stall detection)
    minruntime: float = 0.0  # farm default for jobs that set none
    rules: tuple[LogRule, ...] = ()  # farm-wide log rules, after each job's own


def effective(job_value: float, farm_value: float) -> float:
    """A job's own setting wins; 0 means "the farm's"; a negative value turns it off."""
    if job_value < 0:
        return 0
    return job_value if job_value > 0 else farm_value


def block_scope(policy: FailurePolicy, job_id: int, parent: int) -> int:
    """The id a host's failures are counted and blocked on: the job, or its parent group."""
    if policy.blockscope == "group" and parent:
        return parent
    return job_id


def blocked_until(failures: int, threshold: int, last_failure: float, forgive: float) -> float:
    """When a host's block for a job ends (0: not blocked). `threshold` 0 never blocks."""
    if threshold <= 0 or failures < threshold:
        return 0.0
    return last_failure + forgive if forgive > 0 else float("inf")


def is_sick(distinct_jobs: int, policy: FailurePolicy) -> bool:
    """A host whose runs failed in `distinct_jobs` different jobs within the window is sick;
    failing one job many times is that job's problem (the blocklist), not the host's."""
    return policy.sickjobs > 1 and distinct_jobs >= policy.sickjobs


def key_range(h_key: str) -> tuple[str, str]:
    """The range of ordering keys of a job and everything under it (keys are hex: '~' sorts
    after every digit), so the pick can seek past a blocked group in one step."""
    return h_key, h_key + "~"
