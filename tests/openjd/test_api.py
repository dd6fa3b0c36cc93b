"""POST /api/openjd and /api/openjd/check on a real server process: the tree a template
becomes, and every bad request answered with a 4xx that says what is wrong (never a 500),
nothing created."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerProcess
from tests.openjd.conftest import submit, tasks

ENVS = """\
specificationVersion: jobtemplate-2023-09
name: "Shot {{Param.Shot}}"
parameterDefinitions:
  - {name: Shot, type: INT, default: 12}
  - {name: Out, type: PATH}
steps:
  - name: Render
    parameterSpace:
      taskParameterDefinitions:
        - {name: Frame, type: INT, range: "1-3"}
    hostRequirements:
      amounts: [{name: amount.worker.vcpu, min: 2}]
      attributes: [{name: attr.worker.os.family, anyOf: [linux]}]
    script:
      actions:
        onRun: {command: echo, args: ["{{Task.Param.Frame}}"]}
  - name: Encode
    dependencies: [{dependsOn: Render}]
    script:
      actions:
        onRun: {command: echo, args: [done]}
"""


def _nothing_created(server: ServerProcess) -> None:
    assert server.api("GET", "/api/jobs") == []


def test_a_template_becomes_a_group_of_step_groups_of_task_jobs(server: ServerProcess) -> None:
    answer = submit(
        server,
        ENVS,
        parameters={"Out": "/render/out"},
        priority=2000,
        retry=2,
        affinity="farm-a",
        memory=4096,
    )
    assert answer["title"] == "Shot 12" and answer["tasks"] == 4 and answer["notes"] == []
    top = server.job(answer["id"])
    assert (top["title"], top["priority"], top["affinity"], top["command"]) == (
        "Shot 12",
        2000,
        "openjd,farm-a",
        "",
    )
    assert (top["children"], top["total"], top["state"]) == (2, 4, "WAITING")
    assert (top["cores"], top["memory"]) == (0, 4096)  # what steps without requirements inherit
    render, encode = server.api("GET", f"/api/jobs/{answer['id']}/children")
    assert (render["cores"], encode["cores"]) == (2, 0)  # amount.worker.vcpu min 2
    assert [s["id"] for s in answer["steps"]] == [render["id"], encode["id"]]
    assert (render["title"], render["affinity"], render["state"], render["total"]) == (
        "Render",
        "linux",
        "WAITING",
        3,
    )
    assert (encode["title"], encode["state"]) == ("Encode", "PENDING")  # waits for Render
    assert server.job(encode["id"])["dependencies"] == [render["id"]]
    jobs = tasks(server, answer["id"])
    assert [j["title"] for j in jobs] == ["Frame=1", "Frame=2", "Frame=3", "Encode"]
    assert jobs[0]["command"] == "openjd-task Render Frame=1"
    assert (jobs[0]["retry"], jobs[0]["progress_pattern"]) == (2, "openjd_progress: %percent")
    assert json.loads(jobs[1]["openjd"]) == {
        "job": answer["id"],
        "step": "Render",
        "task": {"Frame": {"type": "INT", "value": "2"}},
    }
    # What a worker fetches: the template as a document, the values resolved, once per job.
    fetched = server.worker_call("openjd", {"name": "w", "job": answer["id"]})
    assert fetched["template"]["name"] == "Shot {{Param.Shot}}"
    assert fetched["parameters"] == {
        "Shot": {"type": "INT", "value": "12"},
        "Out": {"type": "PATH", "value": "/render/out"},
    }
    # Deleting the job deletes its template.
    server.api("DELETE", "/api/jobs", [answer["id"]])
    server.worker_call("openjd", {"name": "w", "job": answer["id"]}, expect=404)


def test_check_describes_the_parameters_and_the_job(server: ServerProcess) -> None:
    answer = server.api("POST", "/api/openjd/check", {"template": ENVS})
    assert [(p["name"], p["type"], p.get("default"), p["line"]) for p in answer["parameters"]] == [
        ("Shot", "INT", 12, 4),
        ("Out", "PATH", None, 5),
    ]
    assert answer["job"] is None and answer["problem"] == (
        "the job parameters: Values missing for required job parameters: Out"
    )
    answer = server.api(
        "POST", "/api/openjd/check", {"template": ENVS, "parameters": {"Out": "/o", "Shot": 7}}
    )
    assert answer["problem"] == "" and answer["job"]["title"] == "Shot 7"
    assert answer["job"]["steps"][0] == {
        "name": "Render", "depends_on": [], "tasks": 3, "tags": ["linux"], "cores": 2, "memory": 0, "gpus": 0
    }  # fmt: skip
    _nothing_created(server)


def test_a_host_requirement_max_is_a_note(server: ServerProcess, samples: Path) -> None:
    answer = submit(server, samples / "host-requirements.yaml")
    assert (
        "step StepOne: amount.worker.vcpu max 1 is not enforced (only the minimum is requested)"
        in answer["notes"]
    )


def _bad(server: ServerProcess, body: Any, status: int = 400) -> dict[str, Any]:
    r = server.request("POST", "/api/openjd", body)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


def test_bad_templates_and_values_are_refused_with_what_is_wrong(
    server: ServerProcess, samples: Path
) -> None:
    ffmpeg = (samples / "ffmpeg.yaml").read_text()
    bad_yaml = _bad(server, {"template": "name: [1,\n"})
    assert bad_yaml["error"].startswith("the job template is not valid YAML or JSON: line 2:")
    assert bad_yaml["problems"][0]["line"] == 2
    bad_field = _bad(server, {"template": ENVS.replace("type: INT, range", "type: INTEGER, range")})
    assert bad_field["problems"][0]["line"] == 10  # the definition's line
    assert bad_field["problems"][0]["field"].startswith(
        "steps[0] -> parameterSpace -> taskParameterDefinitions[0]"
    )
    unknown = _bad(
        server,
        {"template": ffmpeg, "parameters": {"Nope": 1, "InputFile": "/i", "OutputDir": "/o", "EndFrame": 4}},
    )
    assert "not defined in the template: Nope" in unknown["error"]
    wrong = _bad(
        server, {"template": ffmpeg, "parameters": {"InputFile": "/i", "OutputDir": "/o", "EndFrame": "four"}}
    )
    assert (
        wrong["error"]
        == "the job parameters: Value (four) for parameter EndFrame must an integer or integer string."
    )
    missing = _bad(server, {"template": ffmpeg, "parameters": {"InputFile": "/i"}})
    assert (
        missing["error"]
        == "the job parameters: Values missing for required job parameters: EndFrame, OutputDir"
    )
    for body, message in [
        ({}, "template is required"),
        ({"template": ""}, "template is required"),
        ({"template": 12}, "template is required"),
        ([ffmpeg], "expected a JSON object"),
        ({"template": ffmpeg, "command": "rm -rf /"}, "unknown field(s): command"),
        ({"template": ffmpeg, "parameters": "EndFrame=4"}, "parameters must be an object"),
        ({"template": ffmpeg, "parameters": [{"name": "EndFrame"}]}, "each item of the list"),
        ({"template": ffmpeg, "priority": "high"}, "priority must be an integer"),
        ({"template": ffmpeg, "cwd": 3}, "cwd must be a path"),
        ({"template": ffmpeg, "parameters": {"InputFile": None}}, "expected a string, a number or a list"),
        (
            {
                "template": ENVS.replace(
                    "attr.worker.os.family, anyOf: [linux]", "attr.custom.site, anyOf: ['a,b']"
                ),
                "parameters": {"Out": "/o"},
            },
            "is not a valid attribute capability value",  # the model refuses it before we could
        ),
    ]:
        assert message in _bad(server, body)["error"], body
    assert "a JSON body is required" in _bad(server, None)["error"]
    r = server.request("POST", "/api/openjd", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    _nothing_created(server)
    # A list of {name, value} (Deadline Cloud's parameter_values) is taken too.
    ok = submit(
        server,
        ffmpeg,
        parameters=[
            {"name": "InputFile", "value": "/i"},
            {"name": "OutputDir", "value": "/o"},
            {"name": "EndFrame", "value": 4},
        ],
    )
    assert ok["tasks"] == 4


def test_a_resubmission_under_the_same_idempotency_key_creates_nothing(server: ServerProcess) -> None:
    body = {"template": ENVS, "parameters": {"Out": "/o"}}
    first = server.api("POST", "/api/openjd", body, headers={"Idempotency-Key": "shot-12"})
    again = server.api("POST", "/api/openjd", body, headers={"Idempotency-Key": "shot-12"})
    assert {k: again[k] for k in ("id", "steps", "tasks")} == {k: first[k] for k in ("id", "steps", "tasks")}
    assert len(server.api("GET", "/api/jobs")) == 1
    # The same key on PUT /api/jobs is another submission.
    server.api(
        "PUT", "/api/jobs", {"title": "plain", "command": "true"}, headers={"Idempotency-Key": "shot-12"}
    )
    assert len(server.api("GET", "/api/jobs")) == 2


def test_under_a_group_and_with_the_command_whitelist(make_server: Any) -> None:
    server = make_server(commandwhitelist="echo .*")
    group = server.submit(title="shots")
    r = server.request(
        "POST", "/api/openjd", {"template": ENVS, "parameters": {"Out": "/o"}, "parent": group}
    )
    assert r.status_code == 403 and "commandwhitelist refused" in r.json()["error"]
    assert server.api("GET", f"/api/jobs/{group}/children") == []
    allowed = make_server(commandwhitelist="echo .*\n    openjd-task .*")
    group = allowed.submit(title="shots")
    answer = submit(allowed, ENVS, parameters={"Out": "/o"}, parent="shots")
    assert allowed.job(answer["id"])["parent"] == group


def test_worker_route_errors(server: ServerProcess) -> None:
    assert "job is required" in server.worker_call("openjd", {"name": "w"}, expect=400)["error"]
    assert "not found" in server.worker_call("openjd", {"name": "w", "job": 999}, expect=404)["error"]
    assert (
        "must be an integer" in server.worker_call("openjd", {"name": "w", "job": "x"}, expect=400)["error"]
    )


def test_a_server_without_the_extra_says_what_to_install(
    make_server: Any, hide_openjd: Any, samples: Path
) -> None:
    hide_openjd()
    server = make_server()
    for route in ("/api/openjd", "/api/openjd/check"):
        r = server.request("POST", route, {"template": (samples / "stdout-messages.yaml").read_text()})
        assert r.status_code == 501
        assert r.json()["error"].startswith(
            "Open Job Description support is not installed: pip install 'coalition[openjd]'"
        )
    # Everything else works.
    server.submit(title="plain", command="true")


@pytest.mark.mysql
def test_the_same_on_mariadb(make_server: Any, mariadb: Any, samples: Path) -> None:
    server = make_server(**mariadb.server_keys())
    values = {"RenderScript": "/s.py", "OutputDirectory": "/o", "NumAnimationFrames": 40}
    answer = submit(server, samples / "algorithmic-art.yaml", parameters=values)
    assert [(s["name"], s["tasks"]) for s in answer["steps"]] == [("RenderImages", 123), ("EncodeVideos", 3)]
    top = server.job(answer["id"])
    assert (top["children"], top["total"]) == (2, 126)
    jobs = tasks(server, answer["id"])
    assert json.loads(jobs[-1]["openjd"])["task"] == {
        "StarFactor": {"type": "INT", "value": "5"},
        "SwirlFactor": {"type": "FLOAT", "value": "15.0"},
    }
    fetched = server.worker_call("openjd", {"name": "w", "job": answer["id"]})
    assert fetched["parameters"]["NumAnimationFrames"] == {"type": "INT", "value": "40"}
    assert "embeddedFiles" in json.dumps(fetched["template"])
    server.api("DELETE", "/api/jobs", [answer["id"]])
    server.worker_call("openjd", {"name": "w", "job": answer["id"]}, expect=404)
