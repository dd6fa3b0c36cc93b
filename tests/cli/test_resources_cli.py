"""`coalition add` with resource requests against a real server, and `coalition why` on a job
no worker can run; the mistakes a user makes get one line and exit status 2."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coalition.cli import main


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(["--json", *argv]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    return json.loads(out) if out.strip() else None


def test_add_with_requests_and_frames(make_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    server = make_server()
    url = ["--server", server.url]
    out = cli(
        capsys,
        *url,
        "add",
        "--gpus",
        "1",
        "--memory",
        "8000",
        "--frames",
        "1-4",
        "--chunk",
        "2",
        "--paused",
        "--cmd",
        "render -s {start} -e {end}",
    )
    group = server.job(out["id"])
    assert (group["gpus"], group["memory"], group["cores"], group["exclusive"]) == (1, 8000, 0, 0)
    # The chunks inherit the group's request: no worker here has a GPU.
    server.api("POST", "/api/startjobs", [out["id"]])
    server.worker_call(
        "sync",
        {
            "name": "cpu",
            "resources": {"cores": 8, "memory": 32000},
            "slots": [{"name": "cpu", "pick": True, "free": {"cores": 8, "memory": 32000, "gpus": 0}}],
        },
    )
    why = cli(capsys, *url, "why", str(out["children"][0]))
    assert [r["text"] for r in why["reasons"]] == ["no worker has 1 GPU"]
    single = cli(capsys, *url, "add", "--cores", "4", "--exclusive", "--cmd", "sim")
    job = server.job(single["id"])
    assert (job["cores"], job["exclusive"]) == (4, 1)


@pytest.mark.parametrize("bad", [["--cores", "x"], ["--gpus", "-1"], ["--memory", "1.5"]])
def test_bad_requests_are_one_line(
    make_server: Any, capsys: pytest.CaptureFixture[str], bad: list[str]
) -> None:
    server = make_server()
    assert main(["--server", server.url, "add", *bad, "--cmd", "true"]) == 2
    err = capsys.readouterr().err
    assert "expected a whole number" in err and "Traceback" not in err
    assert server.api("GET", "/api/jobs") == [] or all(
        j["command"] != "true" for j in server.api("GET", "/api/jobs")
    )
