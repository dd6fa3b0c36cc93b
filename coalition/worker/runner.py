"""Turning a picked job into a command line, a directory and an environment. Pure functions.

The rules are Coalition 4's, minus its bugs:

* the job's `environment` (KEY=VALUE pairs separated by the two characters backslash-n)
  is laid over the worker's own environment;
* `$(VAR)` is expanded in the command and the directory, repeatedly, from that environment;
  an unknown variable becomes "" and a line in the job's log says so;
* on POSIX hosts a leading drive letter `X:` is first rewritten to `$(X_DRIVE)`, so the same
  job runs on Windows and on Linux given an `X_DRIVE` variable, and backslashes in the
  directory become slashes;
* `runcommand` wraps the command; its placeholders `__user__`, `__dir__` and `__cmd__` are
  shell-quoted for the place where they appear (Coalition 4 pasted them raw: shell injection
  through a job's dir or user);
* with a `runcommand`, the job's pairs reach the job's own shell only: the wrapper is looked up
  and started with the worker's environment, and `__cmd__` begins with `export` statements.
  Laid over the wrapper's environment, a job's `PATH` chose which `sudo` a root worker ran and
  its `LD_PRELOAD` was loaded into it: "may submit jobs" became "root on every worker".
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from coalition.model import parse_env

_VAR = re.compile(r"\$\(([^()]*)\)")
_DRIVE = re.compile(r"^([A-Za-z]):")
_PLACEHOLDER = re.compile(r"__(user|dir|cmd)__")
_SHELL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_EXPANSION_ROUNDS = 32  # a variable that refers to itself must not loop for ever


@dataclass(frozen=True)
class Prepared:
    """A job ready to start: a shell command line, where to run it, with what environment."""

    command: str
    cwd: str | None
    env: dict[str, str]
    notes: list[str] = field(default_factory=list)  # lines for the job's log (expansion errors...)
    error: str = ""  # set when the job cannot start at all


def job_environment(
    base: Mapping[str, str], environment: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The worker's environment, then the job's pairs over it, then `extra` (COALITION_*)."""
    env = dict(base)
    env.update(parse_env(environment))
    if extra:
        env.update(extra)
    return env


def export_prefix(pairs: Mapping[str, str], notes: list[str]) -> str:
    """Shell statements that set `pairs` in the job's own shell, before its command.

    A name that a shell cannot export (`A-B`, `1X`) is left out with a note in the job's log:
    POSIX shells refuse it, and an `env` program would have to be looked up in a PATH.
    """
    parts: list[str] = []
    for name, value in pairs.items():
        if _SHELL_NAME.match(name):
            parts.append(f"export {name}={shlex.quote(value)}; ")
        else:
            notes.append(f"environment variable {name!r} not set: not a shell variable name")
    return "".join(parts)


def expand(text: str, env: Mapping[str, str], notes: list[str], posix: bool = True) -> str:
    """Coalition 4's `$(VAR)` expansion (with the `X:` -> `$(X_DRIVE)` rewrite on POSIX)."""
    if posix:
        text = _DRIVE.sub(lambda m: f"$({m.group(1).upper()}_DRIVE)", text, count=1)
    missing: list[str] = []

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in env:
            return env[name]
        missing.append(name)
        return ""

    for _ in range(MAX_EXPANSION_ROUNDS):
        new = _VAR.sub(one, text)
        if new == text:
            break
        text = new
    else:
        notes.append(f"variable expansion stopped after {MAX_EXPANSION_ROUNDS} rounds (a loop?)")
    for name in dict.fromkeys(missing):
        notes.append(f"undefined variable $({name}) expanded to an empty string")
    return text


def _escape_double(text: str) -> str:
    # Inside "...", a shell still interprets \ $ ` and ".
    return re.sub(r'([\\$`"])', r"\\\1", text)


def _escape_single(text: str) -> str:
    # Inside '...', nothing is special but the closing quote: close, escaped quote, reopen.
    return text.replace("'", "'\\''")


def fill_runcommand(template: str, user: str, directory: str, command: str) -> str:
    """Substitute `__user__`, `__dir__`, `__cmd__` in a runcommand, quoted for their context.

    * Unquoted in the template, each becomes exactly one shell word (shlex.quote):
      `sudo -u __user__ -E -- sh -c __cmd__`.
    * Inside '...' or "..." the template passes them to an inner shell
      (`sh -c 'cd __dir__; __cmd__'`): `__user__` and `__dir__` become one quoted word of the
      inner shell, `__cmd__` stays the job's shell code, and all are escaped so that they
      cannot close the template's quotes.
    """
    values = {"user": user, "dir": directory, "cmd": command}
    out: list[str] = []
    quote = ""  # "", "'" or '"': the template's quoting state at this point
    i = 0
    while i < len(template):
        match = _PLACEHOLDER.match(template, i)
        if match:
            name = match.group(1)
            value = values[name]
            word = value if name == "cmd" else shlex.quote(value)
            if quote == "'":
                out.append(_escape_single(word))
            elif quote == '"':
                out.append(_escape_double(word))
            else:
                out.append(shlex.quote(value))
            i = match.end()
            continue
        char = template[i]
        if char == "\\" and quote != "'" and i + 1 < len(template):
            out.append(template[i : i + 2])
            i += 2
            continue
        if char in ("'", '"'):
            if not quote:
                quote = char
            elif quote == char:
                quote = ""
        out.append(char)
        i += 1
    return "".join(out)


def prepare(
    job: Mapping[str, Any],
    base_env: Mapping[str, str],
    runcommand: str = "",
    extra_env: Mapping[str, str] | None = None,
    posix: bool = os.name == "posix",
) -> Prepared:
    """Everything needed to start `job` (a pickjob answer), or an error saying why not."""
    notes: list[str] = []
    pairs = parse_env(str(job.get("environment") or ""))
    env = job_environment(base_env, str(job.get("environment") or ""), extra_env)
    command = expand(str(job.get("command") or ""), env, notes, posix)
    directory = expand(str(job.get("dir") or "."), env, notes, posix) or "."
    if posix:
        directory = directory.replace("\\", "/")
    if not command.strip():
        return Prepared("", None, env, notes, error="the job has no command")
    if runcommand:
        # The wrapper changes directory itself (maybe as another user who alone can see it);
        # still start it there when we can, for wrappers that do not.
        # The job's pairs are set by its own shell, inside the wrapper, and the wrapper starts
        # with the worker's environment (and our COALITION_* variables, which it may pass on).
        inner = export_prefix({**pairs, **(extra_env or {})}, notes) + command
        line = fill_runcommand(runcommand, str(job.get("user") or ""), directory, inner)
        cwd = directory if os.path.isdir(directory) else None
        wrapper_env = job_environment(base_env, "", extra_env)
        return Prepared(line, cwd, wrapper_env, notes)
    if not os.path.isdir(directory):
        # Coalition 4 ran the job in whatever directory the worker was in: a render writing
        # its frames to the wrong place is worse than a clear error.
        return Prepared(command, None, env, notes, error=f"directory not found: {directory}")
    return Prepared(command, directory, env, notes)
