"""`coalition` and failure handling against a real server (issue 16): the options of `add`,
the reason in `show` and `events`, `blocks`, `unblock` and `workers clearsick`. The worker is
scripted through the protocol (what a real one does is tests/worker/test_failures_e2e.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coalition.cli import main
from tests.cli.test_commands import run


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(["--json", *argv]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    return json.loads(out) if out.strip() else None


def fail_on(server: Any, worker: str, job_id: int) -> None:
    job = server.worker_call("pickjob", {"name": worker})["job"]
    assert job["id"] == job_id
    server.worker_call("endjob", {"name": worker, "job_id": job_id, "event": job["event"], "exit_code": 4})


def test_add_show_blocks_unblock(make_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    server = make_server(sickjobs=0)
    url = ["--server", server.url]
    out = cli(
        capsys,
        *url,
        "add",
        "--retry",
        "5",
        "--stalltimeout",
        "600",
        "--minruntime",
        "5",
        "--hostfails",
        "1",
        "--logrules",
        "@nuke",
        "--logrules",
        "done succeed ^render complete$",
        "--",
        "render",
        "shot",
    )
    job_id = out["id"] if isinstance(out, dict) else int(out)
    job = server.job(job_id)
    assert (job["stalltimeout"], job["minruntime"], job["hostfails"]) == (600, 5, 1)
    assert job["logrules"] == "@nuke\ndone succeed ^render complete$"
    fail_on(server, "badhost", job_id)
    # `coalition show` says why the last run ended; `coalition events` too.
    assert main([*url, "show", str(job_id)]) == 0
    assert "reason: exit code 4" in capsys.readouterr().out.splitlines()
    assert main([*url, "events", "--job", str(job_id)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "REASON" and lines[1].endswith("exit code 4")
    # The block, listed and lifted.
    [block] = cli(capsys, *url, "blocks", "--job", str(job_id))
    assert (block["worker"], block["failures"], block["reason"]) == ("badhost", 1, "exit code 4")
    assert main([*url, "blocks"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["JOB", "WORKER", "FAILURES", "UNTIL", "LAST", "REASON"]
    assert table[1].split()[:3] == [str(job_id), "badhost", "1"]
    assert cli(capsys, *url, "blocks", "--worker", "nobody") == []
    assert main([*url, "unblock", str(job_id), "badhost"]) == 0
    assert capsys.readouterr().out == f"job {job_id}: 1 block(s) lifted\n"
    assert cli(capsys, *url, "blocks") == []


def test_clearsick_and_mistakes(make_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    server = make_server(sickjobs=2)
    for title in ("a", "b"):
        fail_on(server, "w1", server.submit(command="x", title=title))
    assert server.api("GET", "/api/workers/w1")["state"] == "SICK"
    assert main(["--server", server.url, "workers"]) == 0
    assert "SICK" in capsys.readouterr().out
    cli(capsys, "--server", server.url, "workers", "clearsick", "w1")
    assert server.api("GET", "/api/workers/w1")["state"] == "WAITING"
    bad = run("--server", server.url, "add", "--logrules", "x explode y", "--", "true")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert "logrules: line 1: unknown action 'explode'" in bad.stderr
    missing = run("--server", server.url, "unblock", "999")
    assert missing.returncode == 1 and "job 999 not found" in missing.stderr
    unknown = run("--server", server.url, "workers", "clearsick", "nosuch")
    assert unknown.returncode == 1 and "nosuch" in unknown.stderr
