"""The `coalition` command against a real server (and a real worker where jobs must run)."""

from __future__ import annotations

import getpass
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from coalition.cli import main
from tests.support import wait_for
from tests.worker.helpers import wait_state

BIN = Path(sys.executable).parent / "coalition"


def run(
    *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed console script if there is one, else `python -m coalition`."""
    command = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "coalition"]
    return subprocess.run(
        [*command, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """main() in-process with --json; the decoded output."""
    assert main(["--json", *argv]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    return json.loads(out) if out.strip() else None


def test_documented_control_py_invocation(server: Any, tmp_path: Path) -> None:
    # Exactly as chapter 9.1 writes it, through a shell, with the installed console script
    # (or a stand-in for it when the package is not installed in this environment).
    bin_dir = BIN.parent
    if not BIN.exists():
        bin_dir = tmp_path
        (tmp_path / "coalition").write_text(
            f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m coalition "$@"\n'
        )
        (tmp_path / "coalition").chmod(0o755)
    line = f'coalition --cmd="echo toto" --priority=1000 --affinity="linux" --retry=10 {server.url} add'
    done = subprocess.run(
        line,
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": str(bin_dir) + os.pathsep + os.environ["PATH"]},
    )
    assert done.returncode == 0, done.stderr
    job_id = int(done.stdout.strip())
    job = server.job(job_id)
    assert (job["command"], job["priority"], job["affinity"], job["retry"]) == (
        "echo toto",
        1000,
        "linux",
        10,
    )


def test_legacy_list_and_remove(server: Any) -> None:
    job_id = server.submit(command="true", title="old style")
    listed = run("--json", server.url, "list")
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)] == [job_id]
    assert run("-i", str(job_id), server.url, "remove").returncode == 0
    assert server.api("GET", "/api/jobs") == []


def test_add_options_and_env(server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    parent = server.submit(title="shots")
    out = cli(
        capsys,
        "--server",
        server.url,
        "add",
        "-c",
        "render",
        "-d",
        "/tmp",
        "-t",
        "frame 1",
        "-p",
        "7",
        "-r",
        "2",
        "-a",
        "linux,gpu",
        "-T",
        "60",
        "-P",
        "shots",
        "--user",
        "alice",
        "--url",
        "http://x/1.png",
        "--env",
        "A=1",
        "--env",
        "B=two words",
        "--globalprogress",
        "P:%one",
        "--localprogress",
        "L:%one",
        "--paused",
    )
    job = server.job(out["id"])
    assert job["parent"] == parent and job["state"] == "PAUSED" and job["title"] == "frame 1"
    assert (job["dir"], job["priority"], job["retry"], job["timeout"], job["user"]) == (
        "/tmp",
        7,
        2,
        60,
        "alice",
    )
    assert job["environment"] == "A=1\\nB=two words" and job["url"] == "http://x/1.png"
    assert (job["progress_pattern"], job["local_progress_pattern"]) == ("P:%one", "L:%one")
    words = cli(capsys, "--server", server.url, "add", "--", "echo", "it's", "two words")
    assert server.job(words["id"])["command"] == shlex.join(["echo", "it's", "two words"])


def test_frames_make_a_group(server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = cli(
        capsys,
        "--server",
        server.url,
        "add",
        "--frames",
        "1-1000",
        "--chunk",
        "10",
        "--cmd",
        "render -s {start} -e {end}",
        "-p",
        "50",
    )
    group = server.job(out["id"])
    assert group["total"] == 100 and group["priority"] == 50 and group["state"] == "WAITING"
    children = server.api("GET", f"/api/jobs/{out['id']}/children")
    assert len(children) == 100 and children[0]["command"] == "render -s 1 -e 10"
    assert (
        children[-1]["command"] == "render -s 991 -e 1000"
        and children[-1]["title"] == "render -s 991 -e 1000"
    )


def test_list_show_state_commands(server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    a = server.submit(command="true", title="a")
    b = server.submit(command="true", title="b")
    assert [j["id"] for j in cli(capsys, "--server", server.url, "list")] == [a, b]
    assert cli(capsys, "--server", server.url, "show", str(a))["title"] == "a"
    cli(capsys, "--server", server.url, "pause", str(a), str(b))
    assert {server.job(i)["state"] for i in (a, b)} == {"PAUSED"}
    cli(capsys, "--server", server.url, "start", str(a))
    assert server.job(a)["state"] == "WAITING"
    cli(capsys, "--server", server.url, "reset", "--errors", str(a))
    cli(capsys, "--server", server.url, "delete", str(b))
    assert [j["id"] for j in cli(capsys, "--server", server.url, "list", "--state", "WAITING")] == [a]
    # Human output: a table with a header.
    assert main(["--server", server.url, "list"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == [
        "ID",
        "STATE",
        "PROGRESS",
        "PRIORITY",
        "WORKER",
        "TITLE",
    ]


def test_errors_are_one_line(server: Any) -> None:
    missing = run("--server", server.url, "show", "999")
    assert missing.returncode == 1
    assert missing.stderr == "coalition: error: job 999 not found (GET /api/jobs/999)\n"
    bad = run("--server", server.url, "add", "-c", "x", "-D", "999")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1


def test_server_from_environment_and_ini(server: Any, tmp_path: Path) -> None:
    server.submit(command="true")
    assert run("--json", "list", env={"COALITION_SERVER": server.url}).returncode == 0
    (tmp_path / "coalition.ini").write_text(f"[worker]\nserverUrl = {server.url}\n")
    env = {k: v for k, v in os.environ.items() if k != "COALITION_SERVER"}
    done = subprocess.run(
        [sys.executable, "-m", "coalition", "--json", "list"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0 and len(json.loads(done.stdout)) == 1


def test_wait_log_workers_events_with_a_worker(
    server: Any, make_worker: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    make_worker(server.url, name="cliw")
    out = cli(
        capsys,
        "--server",
        server.url,
        "add",
        "--frames",
        "1-6",
        "--chunk",
        "2",
        "--cmd",
        "echo frame {start}; echo PROGRESS:100",
    )
    assert main(["--server", server.url, "wait", str(out["id"]), "--interval", "0.1"]) == 0
    assert capsys.readouterr().out.strip() == f"job {out['id']}: FINISHED"
    child = out["children"][0]
    assert main(["--server", server.url, "log", "-f", str(child), "--interval", "0.1"]) == 0
    assert "frame 1\n" in capsys.readouterr().out
    workers = cli(capsys, "--server", server.url, "workers")
    assert [w["name"] for w in workers] == ["cliw"]
    events = cli(capsys, "--server", server.url, "events", "--job", str(child))
    assert [(e["worker"], e["state"]) for e in events] == [("cliw", "FINISHED")]
    failing = cli(capsys, "--server", server.url, "add", "-c", "exit 1", "-r", "0")
    assert main(["--server", server.url, "wait", str(failing["id"]), "-q", "--interval", "0.1"]) == 1
    assert capsys.readouterr().out == f"job {failing['id']}: ERROR\n"
    wait_state(server, failing["id"], "ERROR")
    cli(capsys, "--server", server.url, "workers", "stop", "cliw")
    assert server.api("GET", "/api/workers")[0]["active"] == 0
    paused = cli(capsys, "--server", server.url, "add", "-c", "true", "--paused")
    assert (
        main(["--server", server.url, "wait", str(paused["id"]), "--timeout", "0.3", "--interval", "0.1"])
        == 3
    )


def test_progress_preset_counts_frames_of_the_chunk_with_a_worker(
    server: Any, make_worker: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A stand-in renderer printing Blender's status lines: frame 1 done, frame 2 at sample 8/16.
    go = tmp_path / "go"
    script = (
        "printf 'Fra:1 Mem:1M | Scene, ViewLayer | Finished\\n"
        "Fra:{start} Mem:1M | Scene, ViewLayer | Sample 8/16\\n';"
        f" while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.05; done"
    )
    make_worker(server.url, name="blenderish")
    out = cli(
        capsys, "--server", server.url, "add", "--frames", "2-5", "--chunk", "4", "--progress", "blender",
        "--cmd", script,
    )  # fmt: skip
    [child] = out["children"]
    job = server.job(child)
    assert job["progress_pattern"] == "@blender[2-5]"
    # Frame 2 is the chunk's first: 0 frames done + half of frame 2, of 4 frames.
    wait_for(lambda: server.job(child)["progress"] == pytest.approx(0.5 / 4), what="the progress figure")
    go.write_text("")
    wait_state(server, child, "FINISHED")
    # Nobody gave --user: the job belongs to whoever ran the command.
    assert server.job(out["id"])["user"] == job["user"] == getpass.getuser()


def test_progress_preset_mistakes_are_one_line(server: Any) -> None:
    unknown = run("--server", server.url, "add", "-c", "true", "--progress", "maya")
    assert unknown.returncode == 2 and "unknown preset 'maya'" in unknown.stderr
    both = run("--server", server.url, "add", "-c", "true", "--progress", "kick", "--globalprogress", "%one")
    assert both.returncode == 2 and "not both" in both.stderr
    # Through the API, an unknown preset is a 400 that names the field.
    answer = run("--server", server.url, "add", "-c", "true", "--globalprogress", "@maya")
    assert answer.returncode == 1 and "progress_pattern: unknown progress preset @maya" in answer.stderr


def test_show_gives_frame_figures_and_time_left_with_a_worker(
    server: Any, make_worker: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Frame 1 ends at once; frames 2-4 wait for a file, so the group is seen half-way.
    gate = tmp_path / "gate"
    cmd = f"[ {{start}} = 1 ] || while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.02; done; sleep 0.2"
    out = cli(capsys, "--server", server.url, "add", "--frames", "1-4", "--cmd", cmd)
    make_worker(server.url, name="stats")
    group = out["id"]

    def halfway() -> dict[str, Any] | None:
        stats = server.api("GET", f"/api/jobs/{group}/stats")
        return stats if stats["time"]["count"] == 1 and stats["running"] == 1 else None

    stats = wait_for(halfway, what="one frame done and one running")
    # One slot, frames of about 0.2 s: frame 2 runs (up to the gate), 3 and 4 wait.
    assert stats["waiting"] == 2 and stats["time_left"] is not None and stats["time_left"] >= 0.2
    assert [f["state"] for f in stats["frames"]] == ["FINISHED", "WORKING", "WAITING", "WAITING"]
    gate.write_text("")
    assert main(["--server", server.url, "wait", str(group), "--interval", "0.1"]) == 0
    capsys.readouterr()
    stats = server.api("GET", f"/api/jobs/{group}/stats")
    assert stats["frame_count"] == 4 and stats["time"]["count"] == 4 and stats["time_left"] == 0
    spread = stats["time"]
    assert 0.2 <= spread["min"] <= spread["mean"] <= spread["max"]
    # The same in `coalition show`, for people.
    assert main(["--server", server.url, "show", str(group)]) == 0
    text = capsys.readouterr().out
    assert "frames: 4 (4 finished, 0 running, 0 waiting)" in text and "time left: 0 s" in text
    assert "frame time: min " in text and "peak memory: " in text
    # A job alone is its own frame; an unknown id is a clear 404.
    assert server.api("GET", f"/api/jobs/{stats['frames'][0]['id']}/stats")["frame_count"] == 1
    assert server.api("GET", "/api/jobs/999999/stats", expect=404)["error"] == "job 999999 not found"
