"""Studio scheduling through a real server process: `[limits]` in the ini (a counting
command run under a lease), the limits routes, jobs' limits and frame dependencies in the
API and in `coalition add`, `why` in the API and the CLI, and the bad paths (400s naming
the field, never a 500)."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from coalition.cli import main
from tests.conftest import ServerProcess
from tests.support import wait_for


def limited_server(make_server: Any, tmp_path: Any, **keys: Any) -> ServerProcess:
    """A server whose ini has `[limits]`: nuke 2, arnold 3 counted by a command."""
    count = tmp_path / "arnold-count"
    count.write_text("0\n")
    server = make_server(start=False, limitsinterval=1, **keys)
    with open(server.ini_path, "a") as ini:
        command = f"{sys.executable} -c \"print(open('{count}').read())\""
        ini.write(f"[limits]\nnuke = 2\narnold = 3\narnold.command = {command}\n")
    server.count_file = count
    return server.start()


def cli(capsys: pytest.CaptureFixture[str], server: ServerProcess, *argv: str) -> Any:
    assert main(["--json", "--server", server.url, *argv]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    return json.loads(out) if out.strip() else None


def pick(server: ServerProcess, name: str) -> dict[str, Any] | None:
    return server.worker_call("pickjob", {"name": name})["job"]


def end(server: ServerProcess, name: str, job: dict[str, Any]) -> None:
    server.worker_call("endjob", {"name": name, "job_id": job["id"], "event": job["event"], "exit_code": 0})


def test_limits_from_the_ini_the_api_and_a_command(make_server: Any, tmp_path: Any) -> None:
    server = limited_server(make_server, tmp_path)
    limits = {r["name"]: r for r in server.api("GET", "/api/limits")}
    assert (limits["nuke"]["capacity"], limits["arnold"]["capacity"]) == (2, 3)
    assert limits["arnold"]["counted_by_command"] and not limits["nuke"]["counted_by_command"]
    ids = server.api(
        "PUT", "/api/jobs", [{"title": f"n{i}", "command": "true", "limits": "nuke"} for i in range(3)]
    )
    assert server.job(ids[0])["limits"] == "nuke:1"
    first, second = pick(server, "w1"), pick(server, "w2")
    assert first is not None and second is not None and pick(server, "w3") is None
    why = server.api("GET", f"/api/jobs/{ids[2]}/why")
    assert why["reasons"][0]["text"] == "waiting for limit nuke (2/2 in use, needs 1)"
    # The web page's API edits limits too; a bigger capacity lets the third run.
    assert server.api("POST", "/api/webfrontend/limits", {"nuke": 3})[0]["capacity"] == 3
    assert pick(server, "w3") is not None
    # Licences used outside the farm, counted by the ini's command on its period.
    server.count_file.write_text("3\n")
    arnold = server.submit(title="a", command="true", limits="arnold:1")
    wait_for(
        lambda: {r["name"]: r for r in server.api("GET", "/api/limits")}["arnold"]["external"] == 3,
        timeout=20,
        what="the command's count",
    )
    assert pick(server, "w4") is None
    assert "arnold (3/3 in use" in server.api("GET", f"/api/jobs/{arnold}/why")["reasons"][0]["text"]
    server.count_file.write_text("1\n")
    wait_for(lambda: pick(server, "w4") is not None, timeout=20, what="room in arnold")
    server.api("DELETE", "/api/limits/nuke")
    assert "nuke" not in {r["name"] for r in server.api("GET", "/api/limits")}


def test_bad_limits_and_frame_deps_are_400s_naming_the_field(server: ServerProcess) -> None:
    server.api("POST", "/api/limits", {"nuke": 1})
    cases = [
        ("PUT", "/api/jobs", {"command": "x", "limits": "maya:1"}, "limits: unknown limit 'maya'"),
        ("PUT", "/api/jobs", {"command": "x", "limits": "nuke:-1"}, "limits"),
        ("PUT", "/api/jobs", {"command": "x", "limits": 5}, "limits must be"),
        ("PUT", "/api/jobs", {"command": "x", "frame_dep": "abc"}, "frame_dep"),
        ("PUT", "/api/jobs", {"command": "x", "frame_dep": 987654}, "frame_dep: job 987654 does not exist"),
        ("PUT", "/api/jobs", {"command": "x", "first_frame": 1.5}, "first_frame"),
        ("POST", "/api/limits", {"bad name": 1}, "not a limit name"),
        ("POST", "/api/limits", {"nuke": -1}, "capacity of nuke"),
        ("POST", "/api/limits", [], "expected a JSON object"),
    ]
    for method, path, body, message in cases:
        r = server.request(method, path, body)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert message in r.json()["error"], (body, r.text)
    assert server.request("DELETE", "/api/limits/nosuch").status_code == 404
    assert server.request("GET", "/api/jobs/999999/why").status_code == 404
    assert server.request("GET", "/api/jobs/abc/why").status_code == 404
    # A cycle of frame dependencies.
    a = server.submit(title="a", command="true")
    b = server.submit(title="b", command="true", frame_dep=a)
    r = server.request("POST", "/api/jobs", {str(a): {"frame_dep": b}})
    assert r.status_code == 400 and "frame_dep" in r.json()["error"] and "cycle" in r.json()["error"]


def test_coalition_add_frames_with_frame_deps_limits_and_why(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(capsys, server, "limits", "set", "nuke", "4")
    render = cli(capsys, server, "add", "--frames", "1-4", "--cmd", "render {start}")
    comp = cli(
        capsys,
        server,
        "add",
        "--frames",
        "1-4",
        "--chunk",
        "2",
        "--frame-deps",
        str(render["id"]),
        "--limits",
        "nuke:1",
        "--cmd",
        "comp {start}-{end}",
    )
    assert server.job(comp["id"])["frame_dep"] == render["id"]
    chunks = [server.job(i) for i in comp["children"]]
    assert [(c["first_frame"], c["last_frame"], c["limits"]) for c in chunks] == [
        (1, 2, "nuke:1"),
        (3, 4, "nuke:1"),
    ]
    assert [c["state"] for c in chunks] == ["PENDING", "PENDING"]
    why = cli(capsys, server, "why", str(comp["children"][0]))
    assert why["reasons"][0]["kind"] == "frame_dependency" and why["reasons"][0]["frame"] == 1
    assert main(["--server", server.url, "why", str(comp["children"][0])]) == 0
    assert f"dependency frame 1 of job {render['id']}" in capsys.readouterr().out
    runs = [pick(server, f"r{i}") for i in range(2)]
    assert [r["id"] for r in runs if r] == render["children"][:2]
    for i, run in enumerate(runs):
        assert run is not None
        end(server, f"r{i}", run)
    assert [server.job(i)["state"] for i in comp["children"]] == ["WAITING", "PENDING"]
    rows = cli(capsys, server, "limits")
    assert [r["name"] for r in rows] == ["nuke"]
    assert main(["--server", server.url, "limits", "set", "nuke"]) == 2  # a usage error
    capsys.readouterr()


def test_limits_are_in_the_metrics(make_server: Any, tmp_path: Any) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    server = limited_server(make_server, tmp_path)
    server.submit(command="true", limits="nuke:1")
    job = pick(server, "m1")
    assert job is not None
    samples = {
        (s.name, s.labels.get("limit")): s.value
        for f in text_string_to_metric_families(server.request("GET", "/metrics").text)
        for s in f.samples
    }
    assert samples[("coalition_limit_capacity", "nuke")] == 2
    assert samples[("coalition_limit_in_use", "nuke")] == 1
    assert samples[("coalition_limit_capacity", "arnold")] == 3
    assert ("coalition_limit_external", "arnold") in samples
