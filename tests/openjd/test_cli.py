"""`coalition submit`, the installed command, against a real server process: templates, job
bundles as Deadline Cloud's submitters export them, and one line per problem, never a
traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.cli.test_commands import run
from tests.conftest import ServerProcess
from tests.openjd.conftest import tasks, wait_job

BAD = """\
specificationVersion: jobtemplate-2023-09
name: Bad
steps:
  - name: A
    script:
      actions:
        onRun:
          command: echo
          args: [1]
          timeout: -3
"""

BUNDLE_VALUES = """\
parameterValues:
- name: deadline:priority
  value: 75
- name: deadline:targetTaskRunStatus
  value: SUSPENDED
- name: deadline:maxRetriesPerTask
  value: 5
- name: deadline:maxFailedTasksCount
  value: 20
- name: EndFrame
  value: 4
- name: OutputDir
  value: out
"""


def submit(server: ServerProcess, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run("--server", server.url, "submit", *argv, cwd=cwd)


def test_a_template_with_parameters(server: ServerProcess, samples: Path, tmp_path: Path) -> None:
    done = submit(
        server,
        str(samples / "ffmpeg.yaml"),
        "-p", "InputFile=frames/in.%04d.png", "-p", "OutputDir=/render/out", "-p", "EndFrame=24",
        "--priority", "1200", "--title", "review of shot 12", "--retry", "2",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "1: review of shot 12 (3 steps, 4 tasks)\n" and done.stderr == ""
    group = server.job(1)
    assert (group["title"], group["priority"]) == ("review of shot 12", 1200)
    assert all(t["retry"] == 2 for t in tasks(server, 1))
    values = server.worker_call("openjd", {"name": "w", "job": 1})["parameters"]
    assert values["InputFile"]["value"] == str(tmp_path / "frames/in.%04d.png")  # the submitter's cwd
    assert values["EndFrame"] == {"type": "INT", "value": "24"}


def test_a_deadline_cloud_job_bundle(server: ServerProcess, samples: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "template.yaml").write_text((samples / "blender-ffmpeg.yaml").read_text())
    (bundle / "parameter_values.yaml").write_text(BUNDLE_VALUES)
    (bundle / "asset_references.yaml").write_text("assetReferences: {inputs: {}, outputs: {}}\n")
    done = submit(server, str(bundle), "-p", "JobName=from a bundle", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["title"] == "from a bundle" and answer["tasks"] == 2
    assert "deadline:maxFailedTasksCount = 20: no Coalition equivalent, left out" in done.stderr
    assert "asset_references.yaml: not used" in done.stderr
    group = server.job(answer["id"])
    assert (group["priority"], group["paused"]) == (1500, 1)  # 75 x 20; SUSPENDED
    assert all(t["retry"] == 5 for t in tasks(server, answer["id"]))
    values = server.worker_call("openjd", {"name": "w", "job": answer["id"]})["parameters"]
    # Relative PATH defaults from the bundle's directory, relative values from the cwd.
    assert values["BlenderFile"]["value"] == str(bundle / "scene/blender_scene.blend")
    assert values["OutputDir"]["value"] == str(tmp_path / "out")
    assert values["EndFrame"]["value"] == "4" and values["JobName"]["value"] == "from a bundle"


def test_problems_are_one_line_each(server: ServerProcess, samples: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BAD)
    done = submit(server, "bad.yaml", cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "coalition: error: bad.yaml:9: steps[0] -> script -> actions -> onRun -> args[0]: String required",
        "coalition: error: bad.yaml:10: steps[0] -> script -> actions -> onRun -> timeout: "
        "timeout must be a positive integer",
    ]
    missing = "Values missing for required job parameters: EndFrame, InputFile, OutputDir"
    for argv, message in [
        (["ffmpeg.yaml", "-p", "EndFrame=x", "-p", "InputFile=i", "-p", "OutputDir=o"],
         "ffmpeg.yaml: Value (x) for parameter EndFrame must an integer or integer string."),
        (["ffmpeg.yaml"], f"ffmpeg.yaml: {missing}"),
        (["ffmpeg.yaml", "-p", "Bad"], "-p 'Bad': expected NAME=VALUE"),
        (["missing.yaml"], f"{samples / 'missing.yaml'}: no such file or directory"),
        ([str(tmp_path)], f"{tmp_path}: no template.yaml or template.yml or template.json in this bundle "
                          "directory"),
    ]:  # fmt: skip
        done = submit(server, *argv, cwd=samples)
        assert (done.returncode, done.stderr) == (1, f"coalition: error: {message}\n"), argv
    assert server.api("GET", "/api/jobs") == []


def test_check_describes_the_job_and_submits_nothing(server: ServerProcess, samples: Path) -> None:
    done = submit(server, "--check", "host-requirements.yaml", cwd=samples)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "host-requirements.yaml: a valid job template (DemoHostRequirements)",
        "  step StepOne: 1 task [cores 1; memory 256; linux or macos; "
        "host_config=HostConfigA or host_config=HostConfigC]",
        "  step StepTwo: 1 task [cores 4; memory 8192; linux; host_config=HostConfigB]",
    ]
    assert "coalition: note: step StepOne: amount.worker.vcpu max 1 is not enforced" in done.stderr
    done = submit(server, "--check", "ffmpeg.yaml", cwd=samples)
    assert done.returncode == 1
    assert "  parameter EndFrame INT (required)" in done.stdout.splitlines()
    assert (
        done.stderr
        == "coalition: error: Values missing for required job parameters: EndFrame, InputFile, OutputDir\n"
    )
    assert server.api("GET", "/api/jobs") == []


def test_a_server_without_the_extra(make_server: Any, hide_openjd: Any, samples: Path) -> None:
    hide_openjd()
    server = make_server()
    done = submit(server, "stdout-messages.yaml", cwd=samples)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(
        "coalition: error: Open Job Description support is not installed: pip install 'coalition[openjd]'"
    )
    assert len(done.stderr.splitlines()) == 1


def test_what_is_submitted_runs(farm: tuple[ServerProcess, Any], samples: Path) -> None:
    server, _ = farm
    done = submit(server, "stdout-messages.yaml", cwd=samples)
    assert done.returncode == 0, done.stderr
    wait_job(server, 1, "FINISHED")
