"""Turning a job into a command line: environment, $(VAR) expansion, runcommand quoting."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from coalition.worker.runner import expand, fill_runcommand, job_environment, prepare

HOSTILE = [
    "plain",
    "with space",
    "it's",
    'say "hi"',
    "$(touch PWNED)",
    "`touch PWNED`",
    "a; touch PWNED #",
    "$HOME ${IFS} \\ \\n",
    "'\"'\"'",
    "new\nline",
    "",
]


def sh(line: str, cwd: Path) -> str:
    return subprocess.run(line, shell=True, cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_environment_pairs_over_the_worker_environment() -> None:
    env = job_environment(
        {"PATH": "/bin", "A": "old"}, "A=1\\nB=x=y\\nbroken\\n C =3", {"COALITION_JOB_ID": "7"}
    )
    assert env == {"PATH": "/bin", "A": "1", "B": "x=y", "C": "3", "COALITION_JOB_ID": "7"}
    assert job_environment({"X": "1"}, "None") == {"X": "1"}  # Coalition 4 stored "None"


def test_expand_repeats_and_reports_unknown_variables() -> None:
    notes: list[str] = []
    env = {"ROOT": "$(BASE)/proj", "BASE": "/mnt", "X_DRIVE": "/net/x"}
    assert expand("$(ROOT)/shot $(NOPE)!", env, notes) == "/mnt/proj/shot !"
    assert notes == ["undefined variable $(NOPE) expanded to an empty string"]
    assert expand("x:\\shots", env, []) == "/net/x\\shots"  # drive letters, any case
    assert expand("echo X:", env, []) == "echo X:"  # only a leading drive letter
    assert expand("X:/a", env, [], posix=False) == "X:/a"  # Windows keeps its drives


def test_expand_stops_on_a_loop() -> None:
    notes: list[str] = []
    expand("$(A)", {"A": "$(A)x"}, notes)
    assert "a loop" in notes[0]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(
    "template",
    [
        "printf '%s|%s' __user__ __dir__",
        'sh -c \'printf "%s|%s" "$0" "$1"\' __user__ __dir__',
        "sh -c 'printf \"%s|%s\" __user__ __dir__'",
        "sh -c \"printf '%s|%s' __user__ __dir__\"",
    ],
)
def test_user_and_dir_are_one_literal_word_wherever_they_appear(
    template: str, value: str, tmp_path: Path
) -> None:
    out = sh(fill_runcommand(template, value, value + "/d", "unused"), tmp_path)
    assert out == f"{value}|{value}/d"
    assert not list(tmp_path.glob("PWNED*"))


@pytest.mark.parametrize("value", HOSTILE[:-2])
@pytest.mark.parametrize(
    "template",
    ["sh -c __cmd__", "sh -c 'cd / && __cmd__'", 'sh -c "cd / && __cmd__"', "env X=1 sh -c __cmd__ --"],
)
def test_cmd_stays_the_jobs_shell_code(template: str, value: str, tmp_path: Path) -> None:
    # The command is shell code by design; what matters is that it reaches the inner shell
    # intact, whatever quotes it holds, and cannot break out of the template's own quoting.
    command = "printf '%s' " + shlex.quote(value)
    assert sh(fill_runcommand(template, "u", "/", command), tmp_path) == value
    assert not list(tmp_path.glob("PWNED*"))


def test_placeholders_are_substituted_once() -> None:
    # A value holding a placeholder name must not be substituted again.
    line = fill_runcommand("echo __user__ __dir__", "__dir__", "/d", "c")
    assert line == "echo __dir__ /d"


def test_prepare(tmp_path: Path) -> None:
    job = {"id": 1, "command": "render $(SHOT)", "dir": str(tmp_path), "environment": "SHOT=12", "user": "u"}
    ready = prepare(job, {"PATH": "/bin"}, posix=True)
    assert (ready.command, ready.cwd, ready.error) == ("render 12", str(tmp_path), "")
    assert ready.env["SHOT"] == "12"
    missing = prepare({**job, "dir": str(tmp_path / "nope")}, {})
    assert missing.error.startswith("directory not found")
    wrapped = prepare({**job, "dir": str(tmp_path / "nope")}, {}, runcommand="sudo -u __user__ sh -c __cmd__")
    assert wrapped.error == "" and wrapped.cwd is None  # the wrapper may see dirs we cannot
    assert wrapped.command == "sudo -u u sh -c 'export SHOT=12; render 12'"
    assert prepare({**job, "command": "  "}, {}).error == "the job has no command"
    windows = prepare({**job, "dir": "X:\\shots", "environment": f"X_DRIVE={tmp_path}"}, {})
    assert windows.error == f"directory not found: {tmp_path}/shots"


def test_the_job_environment_reaches_only_the_job_not_its_wrapper(tmp_path: Path) -> None:
    # A root worker's `sudo` must be the worker's: a job's PATH or LD_PRELOAD laid over the
    # wrapper's environment made "may submit jobs" into "root on every worker".
    job = {
        "id": 3,
        "command": 'echo "$MARK|$PATH|$LD_PRELOAD|$COALITION_JOB_ID"',
        "dir": str(tmp_path),
        "environment": "PATH=/shared/evil:/usr/bin:/bin\\nLD_PRELOAD=/shared/evil.so\\nMARK=it's\\nA-B=x",
        "user": "u",
    }
    base = {"PATH": "/usr/bin:/bin", "HOME": "/root"}
    ready = prepare(job, base, "sudo -u __user__ -E -- sh -c __cmd__", {"COALITION_JOB_ID": "3"})
    assert ready.env == {**base, "COALITION_JOB_ID": "3"}  # the wrapper's: the worker's own
    assert "not a shell variable name" in ready.notes[0]
    inner = shlex.split(ready.command)[-1]  # what the job's own shell runs
    out = subprocess.run(["/bin/sh", "-c", inner], env={}, capture_output=True, text=True).stdout
    assert out == "it's|/shared/evil:/usr/bin:/bin|/shared/evil.so|3\n"
    quoted = prepare(job, base, "sudo -u __user__ -E -- sh -c 'cd __dir__; __cmd__'", {})
    assert "LD_PRELOAD" not in quoted.env and sh(
        quoted.command.replace("sudo -u u -E -- ", ""), tmp_path
    ) == ("it's|/shared/evil:/usr/bin:/bin|/shared/evil.so|\n")
