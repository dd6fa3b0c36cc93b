"""OpenJD tasks on real worker processes: sessions and their environments, embedded files,
stdout messages, failures, cancellation, path mapping, and workers that do not run them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.conftest import ServerProcess
from tests.openjd.conftest import log_of, submit, tasks, wait_job
from tests.support import wait_for

# Every action appends a word to {{Param.Out}}/trace: the order the session ran them in.
SESSION = """\
specificationVersion: jobtemplate-2023-09
name: Sessions
parameterDefinitions:
  - {name: Out, type: PATH}
jobEnvironments:
  - name: JobEnv
    script:
      actions:
        onEnter:
          command: bash
          args: ["-c", "echo JOB-ENTER >> '{{Param.Out}}/trace'; echo 'openjd_env: FROM_ENV=set-by-env'"]
        onExit:
          command: bash
          args: ["-c", "echo JOB-EXIT >> '{{Param.Out}}/trace'"]
steps:
  - name: A
    parameterSpace:
      taskParameterDefinitions:
        - {name: N, type: INT, range: "1-3"}
    stepEnvironments:
      - name: EnvA
        script:
          actions:
            onEnter: {command: bash, args: ["-c", "echo A-ENTER >> '{{Param.Out}}/trace'"]}
            onExit: {command: bash, args: ["-c", "echo A-EXIT >> '{{Param.Out}}/trace'"]}
    script:
      actions:
        onRun:
          command: bash
          args: ["-c", "echo A-{{Task.Param.N}}-$FROM_ENV >> '{{Param.Out}}/trace'"]
  - name: B
    dependencies: [{dependsOn: A}]
    stepEnvironments:
      - name: EnvB
        script:
          actions:
            onEnter: {command: bash, args: ["-c", "echo B-ENTER >> '{{Param.Out}}/trace'"]}
            onExit: {command: bash, args: ["-c", "echo B-EXIT >> '{{Param.Out}}/trace'"]}
    script:
      actions:
        onRun: {command: "{{Task.File.Run}}"}
      embeddedFiles:
        - name: Run
          type: TEXT
          runnable: true
          filename: run.sh
          data: |
            #!/bin/sh
            echo "B-RAN-$(basename "$0")" >> '{{Param.Out}}/trace'
"""


def _trace(out: Path) -> list[str]:
    path = out / "trace"
    return path.read_text().splitlines() if path.exists() else []


def test_environments_are_entered_once_per_session_and_exited_at_its_end(
    farm: tuple[ServerProcess, Any], tmp_path: Path
) -> None:
    server, worker = farm
    out = tmp_path / "out"
    out.mkdir()
    answer = submit(server, SESSION, parameters={"Out": str(out)})
    wait_job(server, answer["id"], "FINISHED")
    # The slot idles: after its linger (1 s) it closes the session, exits in reverse order.
    wait_for(lambda: "JOB-EXIT" in _trace(out), timeout=20, what="the session to be closed")
    assert _trace(out) == [
        "JOB-ENTER", "A-ENTER", "A-1-set-by-env", "A-2-set-by-env", "A-3-set-by-env",
        "A-EXIT", "B-ENTER", "B-RAN-run.sh", "B-EXIT", "JOB-EXIT",
    ]  # fmt: skip
    first, second, *_ = tasks(server, answer["id"])
    first_log = log_of(server, first["id"])
    assert "Entering Environment: JobEnv" in first_log and "Entering Environment: EnvA" in first_log
    assert "Entering Environment" not in log_of(server, second["id"])  # the same session
    assert "closing the OpenJD session" in worker.log()
    # The session's working directory (embedded files included) is gone with it.
    workdir = re.search(r"Session Working Directory: (\S+)", first_log)
    assert workdir is not None and not Path(workdir.group(1)).exists()


def test_a_worker_that_stops_exits_the_environments_of_its_session(
    make_server: Any, make_worker: Any, tmp_path: Path
) -> None:
    server = make_server()
    worker = make_worker(server.url, openjd_linger=600, workers=1)
    out = tmp_path / "out"
    out.mkdir()
    answer = submit(server, SESSION, parameters={"Out": str(out)})
    wait_job(server, answer["id"], "FINISHED")
    assert _trace(out)[-1] != "JOB-EXIT"  # lingering: the environments are still entered
    worker.stop()
    assert _trace(out)[-2:] == ["B-EXIT", "JOB-EXIT"]


PROGRESS = """\
specificationVersion: jobtemplate-2023-09
name: Progress
parameterDefinitions:
  - {name: Gate, type: PATH}
steps:
  - name: Work
    script:
      actions:
        onRun:
          command: bash
          args:
            - "-c"
            - |
              echo "openjd_status: Loading the things"
              echo "openjd_progress: 50"
              while [ ! -e '{{Param.Gate}}' ]; do sleep 0.1; done
              echo "openjd_progress: 100"
"""


def test_progress_and_status_messages(farm: tuple[ServerProcess, Any], tmp_path: Path) -> None:
    server, _ = farm
    gate = tmp_path / "gate"
    answer = submit(server, PROGRESS, parameters={"Gate": str(gate)})
    [task] = tasks(server, answer["id"])
    wait_for(
        lambda: server.job(task["id"])["progress"] == 0.5 and server.job(task["id"])["state"] == "WORKING",
        timeout=30,
        what="the task at 50% while it works",
    )
    gate.touch()
    done = wait_job(server, task["id"], "FINISHED")
    assert done["progress"] == 1.0 and done["reason"] == ""
    assert "openjd_status: Loading the things" in log_of(server, task["id"])


FAILING = """\
specificationVersion: jobtemplate-2023-09
name: Failing
parameterDefinitions:
  - {name: Out, type: PATH}
steps:
  - name: Fail
    stepEnvironments:
      - name: Env
        script:
          actions:
            onEnter: {command: bash, args: ["-c", "echo ENTER >> '{{Param.Out}}/trace'"]}
            onExit: {command: bash, args: ["-c", "echo EXIT >> '{{Param.Out}}/trace'"]}
    script:
      actions:
        onRun:
          command: bash
          args: ["-c", "echo 'openjd_fail: the licence server said no'; exit 3"]
  - name: After
    dependencies: [{dependsOn: Fail}]
    script:
      actions:
        onRun: {command: bash, args: ["-c", "echo AFTER >> '{{Param.Out}}/trace'"]}
"""


def test_a_failing_task_fails_with_its_openjd_fail_reason(
    farm: tuple[ServerProcess, Any], tmp_path: Path
) -> None:
    server, _ = farm
    out = tmp_path / "out"
    out.mkdir()
    answer = submit(server, FAILING, parameters={"Out": str(out)}, retry=1)
    fail, after = tasks(server, answer["id"])
    job = wait_job(server, fail["id"], "ERROR")
    assert job["reason"] == "openjd_fail: the licence server said no"
    events = server.api("GET", f"/api/jobs/{fail['id']}/events")
    assert [e["reason"] for e in events] == ["openjd_fail: the licence server said no"] * 2  # 1 + 1 retry
    assert "exited with code: 3" in log_of(server, fail["id"])
    # Each failed run closed its session: the environment was exited each time.
    wait_for(lambda: _trace(out) == ["ENTER", "EXIT", "ENTER", "EXIT"], what="the environment exited twice")
    # A dependent step does not run: its group waits for the failed one.
    assert server.job(answer["steps"][1]["id"])["state"] == "PENDING"
    assert server.api("GET", f"/api/jobs/{after['id']}/events") == []
    assert server.job(answer["id"])["state"] == "ERROR"


CANCEL = """\
specificationVersion: jobtemplate-2023-09
name: Cancel
parameterDefinitions:
  - {name: Out, type: PATH}
steps:
  - name: Long
    stepEnvironments:
      - name: Env
        script:
          actions:
            onEnter: {command: bash, args: ["-c", "echo ENTER >> '{{Param.Out}}/trace'"]}
            onExit: {command: bash, args: ["-c", "echo EXIT >> '{{Param.Out}}/trace'"]}
    script:
      actions:
        onRun:
          command: bash
          args:
            - "-c"
            - |
              cleanup() {
                echo TERM >> "{{Param.Out}}/trace"; sleep 0.5; echo CLEANED >> "{{Param.Out}}/trace"; exit 1
              }
              trap cleanup TERM
              echo RUN >> '{{Param.Out}}/trace'
              while true; do sleep 0.1; done
          cancelation: CANCELATION
"""


def test_pause_cancels_the_action_as_its_template_says(
    farm: tuple[ServerProcess, Any], tmp_path: Path
) -> None:
    server, _ = farm
    for cancelation, expected in (
        # The trap had its time (the notify period), then the environment was exited.
        (
            "{mode: NOTIFY_THEN_TERMINATE, notifyPeriodInSeconds: 5}",
            ["ENTER", "RUN", "TERM", "CLEANED", "EXIT"],
        ),
        ("{mode: TERMINATE}", ["ENTER", "RUN", "EXIT"]),  # killed at once: no trap
    ):
        out = tmp_path / cancelation.split(",")[0].split()[-1].strip("}")
        out.mkdir()
        answer = submit(server, CANCEL.replace("CANCELATION", cancelation), parameters={"Out": str(out)})
        [task] = tasks(server, answer["id"])
        wait_for(lambda out=out: "RUN" in _trace(out), timeout=30, what="the task to run")
        server.api("POST", "/api/pausejobs", [answer["id"]])
        wait_for(
            lambda out=out, expected=expected: _trace(out) == expected,
            timeout=30,
            what=f"{cancelation}: {expected}",
        )
        assert server.job(answer["id"])["state"] == "PAUSED"
        assert server.job(task["id"])["state"] == "WAITING"  # taken back, held by its paused group
        events = server.api("GET", f"/api/jobs/{task['id']}/events")
        assert events[0]["reason"] == "paused by an operator"
        server.api("DELETE", "/api/jobs", [answer["id"]])


TIMEOUT = """\
specificationVersion: jobtemplate-2023-09
name: Timeout
steps:
  - name: Slow
    script:
      actions:
        onRun: {command: sleep, args: ["30"], timeout: 1}
"""


def test_an_actions_own_timeout_fails_the_run(farm: tuple[ServerProcess, Any]) -> None:
    server, _ = farm
    answer = submit(server, TIMEOUT)
    [task] = tasks(server, answer["id"])
    job = wait_job(server, task["id"], "ERROR", timeout=30)
    assert job["reason"] == "timeout (the OpenJD action's own)"


MAPPED = """\
specificationVersion: jobtemplate-2023-09
name: Mapped
parameterDefinitions:
  - {name: Scene, type: PATH, objectType: FILE, dataFlow: IN}
  - {name: OutDir, type: PATH, objectType: DIRECTORY, dataFlow: OUT}
steps:
  - name: Copy
    script:
      actions:
        onRun:
          command: bash
          args:
            - "-c"
            - |
              cp '{{Param.Scene}}' '{{Param.OutDir}}/copy.txt'
              echo 'raw: {{RawParam.Scene}}'
              grep -o source_path_format '{{Session.PathMappingRulesFile}}' | wc -l | sed 's/^/rules: /'
"""


def test_windows_paths_render_on_a_linux_worker_through_its_path_mapping(
    make_server: Any, make_worker: Any, tmp_path: Path
) -> None:
    projects, volumes = tmp_path / "projects", tmp_path / "volumes"
    (projects / "shot12").mkdir(parents=True)
    (projects / "shot12" / "scene.txt").write_text("the scene\n")
    (volumes / "renders").mkdir(parents=True)
    rules = tmp_path / "pathmapping.json"
    rules.write_text(
        json.dumps(
            {
                "version": "pathmapping-1.0",
                "path_mapping_rules": [
                    {
                        "source_path_format": "POSIX",
                        "source_path": "/Volumes/renders",
                        "destination_path": str(volumes / "renders"),
                    }
                ],
            }
        )
    )
    (volumes / "renders" / "shot12").mkdir()
    server = make_server()
    make_worker(
        server.url, workers=1, pathmapping=f"WINDOWS Z:\\projects -> {projects}", pathmappingfile=str(rules)
    )
    answer = submit(
        server,
        MAPPED,
        parameters={"Scene": "Z:\\projects\\shot12\\scene.txt", "OutDir": "/Volumes/renders/shot12"},
    )
    [task] = tasks(server, answer["id"])
    wait_job(server, task["id"], "FINISHED", timeout=30)
    assert (volumes / "renders" / "shot12" / "copy.txt").read_text() == "the scene\n"
    log = log_of(server, task["id"])
    assert "raw: Z:\\projects\\shot12\\scene.txt" in log and "rules: 2" in log


def test_a_bad_path_mapping_stops_the_worker_with_one_line(make_worker: Any, tmp_path: Path) -> None:
    worker = make_worker("http://127.0.0.1:9", pathmapping="MAC /x -> /y")
    assert worker.wait(timeout=20) == 2
    assert (
        "[worker] pathmapping: rule 1: the source format must be WINDOWS or POSIX, got 'MAC'" in worker.log()
    )
    worker = make_worker("http://127.0.0.1:9", pathmappingfile=str(tmp_path / "missing.json"))
    assert worker.wait(timeout=20) == 2
    assert "[worker] pathmappingfile: cannot read" in worker.log()


def test_workers_that_cannot_run_openjd_tasks_do_not_take_them(
    make_server: Any, make_worker: Any, hide_openjd: Any, samples: Path
) -> None:
    server = make_server()
    answer = submit(server, samples / "stdout-messages.yaml")
    plain = server.submit(title="plain", command="echo plain")
    wrapped = make_worker(server.url, name="wrapped", runcommand="sh -c __cmd__")
    off = make_worker(server.url, name="off", openjd="off")
    hide_openjd()
    bare = make_worker(server.url, name="bare")
    for worker, why in (
        (bare, "Open Job Description support is not installed: pip install 'coalition[openjd]'"),
        (wrapped, "this worker has a runcommand, which OpenJD tasks would not go through"),
        (off, "[worker] openjd = off"),
    ):
        wait_for(lambda w=worker, y=why: f"not taking Open Job Description tasks: {y}" in w.log(), what=why)
    wait_job(server, plain, "FINISHED")
    [task] = tasks(server, answer["id"])
    # Three idle workers, each of which asked for work again and again since: the task waits.
    since = server.api("GET", "/api/jobs?limit=1")["now"] + 1.0
    wait_for(
        lambda: all(
            w["ping_time"] > since and w["state"] == "WAITING" for w in server.api("GET", "/api/workers")
        ),
        what="the three workers idle and asking",
    )
    assert len(server.api("GET", "/api/workers")) == 3
    assert server.job(task["id"])["state"] == "WAITING"
    hide_openjd.restore()
    able = make_worker(server.url, name="able")
    wait_job(server, task["id"], "FINISHED", timeout=30)
    assert [e["worker"] for e in server.api("GET", f"/api/jobs/{task['id']}/events")] == ["able"]
    assert able.log().count("taking Open Job Description tasks") == 1  # said once


SLOW_ENTER = """\
specificationVersion: jobtemplate-2023-09
name: SlowEnter
parameterDefinitions:
  - {name: Out, type: PATH}
steps:
  - name: Step
    stepEnvironments:
      - name: Env
        script:
          actions:
            onEnter: {command: bash, args: ["-c", "echo ENTERING >> '{{Param.Out}}/trace'; sleep 60"]}
            onExit: {command: bash, args: ["-c", "echo EXIT >> '{{Param.Out}}/trace'"]}
    script:
      actions:
        onRun: {command: bash, args: ["-c", "echo RUN >> '{{Param.Out}}/trace'"]}
"""


def test_a_kill_while_an_environment_is_entered_runs_nothing_more_but_its_exit(
    farm: tuple[ServerProcess, Any], tmp_path: Path
) -> None:
    server, _ = farm
    out = tmp_path / "out"
    out.mkdir()
    answer = submit(server, SLOW_ENTER, parameters={"Out": str(out)})
    [task] = tasks(server, answer["id"])
    wait_for(lambda: _trace(out) == ["ENTERING"], timeout=30, what="the environment to be entering")
    server.api("DELETE", "/api/jobs", [answer["id"]])
    wait_for(
        lambda: _trace(out) == ["ENTERING", "EXIT"], timeout=30, what="the environment exited, no task run"
    )
    assert server.api("GET", "/api/jobs") == []
