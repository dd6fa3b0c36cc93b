"""Templates through openjd-model: each problem with its line and field, parameter values
checked and resolved, jobs expanded into steps and tasks (chunks included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coalition.openjd import template as T
from coalition.openjd.plan import plan_job

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
  - name: A
    scrip: {}
"""


def test_each_problem_names_its_line_and_field() -> None:
    with pytest.raises(T.TemplateError) as caught:
        T.check(T.read_document(BAD))
    assert [(p.line, p.field, p.message) for p in caught.value.problems] == [
        (9, "steps[0] -> script -> actions -> onRun -> args[0]", "String required"),
        (10, "steps[0] -> script -> actions -> onRun -> timeout", "timeout must be a positive integer"),
        (
            11,
            "steps[1]",
            "Must specify either 'script' or a script interpreter (python, bash, cmd, powershell, node).",
        ),
    ]
    assert str(caught.value).startswith(
        "the job template is not valid: 3 problems: line 9, steps[0] -> script -> actions -> onRun -> "
        "args[0]: String required; line 10"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: [1,\n", "the job template is not valid YAML or JSON: line 2:"),
        ("- a\n- b\n", "expected a mapping of keys to values at the top"),
        ("name: x\n", "Template is missing Open Job Description schema version key"),
        ("specificationVersion: jobtemplate-1999\nname: x\nsteps: []\n", "Unknown template version"),
        (
            "specificationVersion: jobtemplate-2023-09\nname: x\nsteps: []\n",
            "line 3, steps: List should have at least 1",
        ),
        (
            "a: &a [1, 1, 1, 1, 1, 1, 1, 1]\n"
            + "".join(
                f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
                for p, c in zip("abcdefg", "bcdefgh", strict=True)
            ),
            "more than 200000 values",
        ),  # noqa: E501
    ],
)
def test_documents_that_are_not_templates(text: str, message: str) -> None:
    with pytest.raises(T.TemplateError, match=message.replace("[", r"\[")):
        T.check(T.read_document(text))


def test_a_json_template_and_a_parsed_object_are_read_too(samples: Path) -> None:
    import json

    import yaml

    data = yaml.safe_load((samples / "stdout-messages.yaml").read_text())
    assert T.check(T.read_document(json.dumps(data, indent=1))).name == "ShowOffStdoutMessages"
    assert T.check(T.read_document(data)).name == "ShowOffStdoutMessages"
    with pytest.raises(T.TemplateError) as caught:  # no text: no line, the field still
        T.check(T.read_document({**data, "steps": [{"name": "x"}]}))
    assert caught.value.problems[0].line is None and caught.value.problems[0].field == "steps[0]"


def test_parameter_values_are_checked_against_their_definitions(samples: Path) -> None:
    ffmpeg = T.check(T.read_document((samples / "ffmpeg.yaml").read_text()))
    cases = {
        "Job parameter values provided for parameters that are not defined in the template: Nope": {
            "Nope": "1", "InputFile": "/i", "OutputDir": "/o", "EndFrame": "4"
        },
        "Value (abc) for parameter EndFrame must an integer or integer string.": {
            "InputFile": "/i", "OutputDir": "/o", "EndFrame": "abc"
        },
        "Values missing for required job parameters: EndFrame, OutputDir": {"InputFile": "/i"},
        "Parameter FPS value (25) not in allowedValues.": {
            "InputFile": "/i", "OutputDir": "/o", "EndFrame": 4, "FPS": 25
        },
        "InputFile: expected a string, a number or a list": {"InputFile": {"a": 1}},
    }  # fmt: skip
    for message, values in cases.items():
        with pytest.raises(T.TemplateError) as caught:
            T.resolve_parameters(ffmpeg, values)
        assert message in str(caught.value)
    values, notes = T.resolve_parameters(
        ffmpeg, {"InputFile": "in/%04d.png", "OutputDir": "/o", "EndFrame": 4}, "", "/home/a"
    )
    assert T.values_to_json(values) == {
        "InputFile": {
            "type": "PATH",
            "value": "/home/a/in/%04d.png",
        },  # relative: joined to the submitter's cwd
        "OutputDir": {"type": "PATH", "value": "/o"},
        "FPS": {"type": "INT", "value": "24"},
        "StartFrame": {"type": "INT", "value": "1"},
        "EndFrame": {"type": "INT", "value": "4"},
    }
    assert notes == []
    assert T.values_from_json(T.values_to_json(values)) == values


def test_path_defaults_resolve_against_the_template_directory(samples: Path) -> None:
    blender = T.check(T.read_document((samples / "blender-ffmpeg.yaml").read_text()))
    values, notes = T.resolve_parameters(blender, {}, str(samples), "/elsewhere")
    assert values["BlenderFile"].value == str(samples / "scene" / "blender_scene.blend")
    assert notes == []
    values, notes = T.resolve_parameters(blender, {})  # no directories: left as written, and said
    assert values["OutputDir"].value == "./output"
    assert any("parameter OutputDir is a relative path (./output)" in n for n in notes)


def test_the_samples_expand_into_steps_and_tasks(samples: Path) -> None:
    art = T.check(T.read_document((samples / "algorithmic-art.yaml").read_text()))
    values, _ = T.resolve_parameters(
        art, {"RenderScript": "/s.py", "OutputDirectory": "/o", "NumAnimationFrames": 2}
    )
    name, steps = T.expand(art, values)
    tree = plan_job(name, steps)
    assert tree.title == "AlgorithmicArtSample-2"
    assert [(s.name, len(s.tasks), s.depends_on) for s in tree.steps] == [
        ("RenderImages", 9, ()),  # (StarFactor, SwirlFactor) wedges x Frame 0..2
        ("EncodeVideos", 3, ("RenderImages",)),
    ]
    assert tree.steps[0].tasks[4].params == {
        "StarFactor": ("INT", "4"),
        "SwirlFactor": ("FLOAT", "10.0"),
        "Frame": ("INT", "1"),
    }
    hosts = T.check(T.read_document((samples / "host-requirements.yaml").read_text()))
    tree = plan_job(*T.expand(hosts, T.resolve_parameters(hosts, {})[0]))
    assert [(s.affinity, s.requirements.resources()) for s in tree.steps] == [
        (
            "linux or macos,host_config=HostConfigA or host_config=HostConfigC",
            {"cores": 1, "memory": 256, "gpus": 0},
        ),
        ("linux,host_config=HostConfigB", {"cores": 4, "memory": 8192, "gpus": 0}),
    ]


CHUNKED = """\
specificationVersion: jobtemplate-2023-09
extensions: [TASK_CHUNKING]
name: Chunked
parameterDefinitions:
  - {name: Frames, type: STRING, default: "1-10"}
steps:
  - name: Render
    parameterSpace:
      taskParameterDefinitions:
        - name: Frame
          type: CHUNK[INT]
          range: "{{Param.Frames}}"
          chunks: {defaultTaskCount: 4, rangeConstraint: CONTIGUOUS}
    script:
      actions:
        onRun: {command: echo, args: ["{{Task.Param.Frame}}"]}
"""


def test_a_chunked_step_is_one_task_per_chunk() -> None:
    chunked = T.check(T.read_document(CHUNKED))
    _, steps = T.expand(chunked, T.resolve_parameters(chunked, {})[0])
    assert [t["Frame"] for t in steps[0].tasks] == [
        ("CHUNK[INT]", "1-4"),
        ("CHUNK[INT]", "5-7"),  # openjd-model balances the chunks of a range
        ("CHUNK[INT]", "8-10"),
    ]
    no_extension = CHUNKED.replace("extensions: [TASK_CHUNKING]\n", "")
    with pytest.raises(T.TemplateError, match="CHUNK"):
        T.check(T.read_document(no_extension))


def test_a_job_with_too_many_tasks_is_refused() -> None:
    big = CHUNKED.replace("type: CHUNK[INT]", "type: INT").replace(
        "          chunks: {defaultTaskCount: 4, rangeConstraint: CONTIGUOUS}\n", ""
    )
    job = T.check(T.read_document(big))
    with pytest.raises(T.TemplateError, match="more than 100000 tasks"):
        T.expand(job, T.resolve_parameters(job, {"Frames": "1-100001"})[0])
    with pytest.raises(T.TemplateError, match="the job cannot be made"):
        T.expand(job, T.resolve_parameters(job, {"Frames": "10-1"})[0])
