"""The pure parts: host requirements to requests and tags, the job tree, tag alternatives,
path-mapping rules, a worker's affinity lines, where a field sits in a document."""

from __future__ import annotations

import json

import pytest

from coalition import scheduling
from coalition.cloud.policy import Limits
from coalition.openjd import lines, pathmap
from coalition.openjd.plan import COMMAND, StepInput, order_steps, parse_task_ref, plan_job, task_ref
from coalition.openjd.requirements import (
    RequirementError,
    Requirements,
    host_requirements,
    worker_tags,
)


def test_amounts_become_requests_and_what_cannot_be_enforced_is_said() -> None:
    req = host_requirements(
        "Render",
        {
            "amounts": [
                {"name": "amount.worker.vcpu", "min": "3.5", "max": 16},
                {"name": "amount.worker.memory", "min": 8192},
                {"name": "amount.worker.gpu", "min": 1},
                {"name": "amount.worker.gpu.memory", "min": 4096},
                {"name": "amount.custom.licences", "min": 1},
            ]
        },
    )
    assert req.resources() == {"cores": 4, "memory": 8192, "gpus": 1}  # a part of a core is a core
    assert req.notes == (
        "step Render: amount.worker.vcpu max 16 is not enforced (only the minimum is requested)",
        "step Render: amount.worker.gpu.memory is not enforced (Coalition has no such resource)",
        "step Render: amount.custom.licences is not enforced (Coalition has no such resource)",
    )
    assert host_requirements("x", None) == Requirements()


def test_attributes_become_tags_with_alternatives_for_any_of() -> None:
    req = host_requirements(
        "S",
        {
            "attributes": [
                {"name": "attr.worker.os.family", "anyOf": ["Linux"]},
                {"name": "attr.worker.cpu.arch", "anyOf": ["x86_64", "arm64"]},  # both: anything
                {"name": "attr.custom.host_config", "anyOf": ["HostConfigC", "HostConfigA"]},
                {"name": "attr.custom.software", "allOf": ["maya", "arnold"]},
                {"name": "attr.studio.site", "anyOf": ["paris"]},
            ]
        },
    )
    assert req.tags == (
        "linux",
        "host_config=HostConfigA or host_config=HostConfigC",
        "software=maya",
        "software=arnold",
        "studio.site=paris",
    )
    two = host_requirements(
        "S", {"attributes": [{"name": "attr.worker.os.family", "anyOf": ["macos", "linux"]}]}
    )
    assert two.tags == ("linux or macos",)


@pytest.mark.parametrize("value", ["a,b", "a|b", "a or b", "", "x" * 300])
def test_an_attribute_value_no_tag_can_hold_is_refused(value: str) -> None:
    with pytest.raises(RequirementError, match="step S: attr.custom.thing value"):
        host_requirements("S", {"attributes": [{"name": "attr.custom.thing", "anyOf": [value]}]})


def test_tag_alternatives_in_the_pick_and_the_cloud_policy() -> None:
    offered = frozenset({"linux", "x86_64", "openjd", "host_config=HostConfigA"})
    assert scheduling.tags_met({"linux or macos", "openjd"}, offered)
    assert scheduling.tags_met({"host_config=HostConfigA or host_config=HostConfigC"}, offered)
    assert not scheduling.tags_met({"macos or windows"}, offered)
    assert not scheduling.tags_met({"linux", "gpu"}, offered)
    plan = scheduling.rule_plan(
        [["linux", "openjd", "x86_64"], ["gpu"]],
        {
            1: frozenset({"openjd", "linux or macos"}),
            2: frozenset({"openjd", "windows"}),
            3: frozenset(),
            4: frozenset({"gpu"}),
        },
    )
    assert plan == [[1], [4], [3]]  # the alternative matches line 1; windows matches nothing
    policy = Limits(offered=(frozenset({"linux", "openjd"}),))
    assert policy.takes(frozenset({"openjd", "linux or macos"}))
    assert not policy.takes(frozenset({"openjd", "macos or windows"}))


def test_a_worker_offers_its_openjd_tags_on_each_line() -> None:
    assert worker_tags("Linux", "x86_64") == ("linux", "x86_64")
    assert worker_tags("Darwin", "arm64") == ("macos", "arm64")
    assert worker_tags("Linux", "aarch64") == ("linux", "arm64")
    tags = ("openjd", "linux", "x86_64")
    assert scheduling.with_offers([], tags) == [["openjd", "linux", "x86_64"]]
    assert scheduling.with_offers([["gpu", "maya"], ["linux"]], tags) == [
        ["gpu", "maya", "openjd", "linux", "x86_64"],
        ["linux", "openjd", "x86_64"],
    ]
    assert scheduling.with_offers([["gpu"]], ()) == [["gpu"]]


def test_the_tree_orders_steps_after_their_dependencies() -> None:
    steps = [
        StepInput("encode", ("render",), None, [{}]),
        StepInput("render", (), {"attributes": [{"name": "attr.worker.os.family", "anyOf": ["linux"]}]},
                  [{"Frame": ("INT", "1")}, {"Frame": ("INT", "2")}]),
        StepInput("notify", ("encode", "render"), None, [{}]),
    ]  # fmt: skip
    tree = plan_job("  shot   12 ", steps)
    assert tree.title == "shot 12"
    assert [s.name for s in tree.steps] == ["render", "encode", "notify"]
    render = tree.steps[0]
    assert render.affinity == "linux"
    assert [t.title for t in render.tasks] == ["Frame=1", "Frame=2"]
    assert render.tasks[0].command == f"{COMMAND} render Frame=1"
    assert tree.steps[1].tasks[0].title == "encode"  # a step without parameters: its name
    assert tree.task_count == 4
    with pytest.raises(ValueError, match="cycle"):
        order_steps([StepInput("a", ("b",)), StepInput("b", ("a",))])


def test_task_references_round_trip() -> None:
    params = {"Frame": ("CHUNK[INT]", "1-10"), "Flags": ("LIST[STRING]", ["a", "b"])}
    text = task_ref(42, "Render", params)
    assert json.loads(text) == {
        "job": 42,
        "step": "Render",
        "task": {
            "Frame": {"type": "CHUNK[INT]", "value": "1-10"},
            "Flags": {"type": "LIST[STRING]", "value": ["a", "b"]},
        },
    }
    ref = parse_task_ref(text)
    assert ref is not None and (ref.job, ref.step, dict(ref.params)) == (42, "Render", params)
    for bad in ("", "{", '{"job": "x"}', "[]", '{"job": 1, "step": "s", "task": {"a": 3}}'):
        assert parse_task_ref(bad) is None


def test_path_mapping_rules_from_lines_and_from_openjd_documents() -> None:
    rules = pathmap.parse_rules("WINDOWS Z:\\projects -> /mnt/projects; posix /Volumes/p -> /mnt/p\n")
    assert rules == (("WINDOWS", "Z:\\projects", "/mnt/projects"), ("POSIX", "/Volumes/p", "/mnt/p"))
    assert pathmap.as_dicts(rules)[0] == {
        "source_path_format": "WINDOWS",
        "source_path": "Z:\\projects",
        "destination_path": "/mnt/projects",
    }
    doc = {"version": "pathmapping-1.0", "path_mapping_rules": pathmap.as_dicts(rules)}
    assert pathmap.parse_document(json.dumps(doc)) == rules
    for bad, message in [
        ("WINDOWS Z:\\x /y", "expected FORMAT SOURCE -> DESTINATION"),
        ("MAC /x -> /y", "WINDOWS or POSIX"),
        ("POSIX relative -> /y", "absolute"),
        ("WINDOWS relative -> /y", "absolute"),
        ("POSIX -> /y", "a source and a destination"),
    ]:
        with pytest.raises(ValueError, match=message):
            pathmap.parse_rules(bad)
    for bad in (
        "{",
        "[]",
        '{"version": "pathmapping-2.0"}',
        '{"version": "pathmapping-1.0", "path_mapping_rules": [1]}',
    ):
        with pytest.raises(ValueError):
            pathmap.parse_document(bad)


def test_the_line_of_a_field() -> None:
    text = "name: x\nsteps:\n- name: a\n  script:\n    actions:\n      onRun:\n        command: [1]\n"
    root = lines.compose(text)
    assert lines.parse_path("steps[0] -> script -> actions -> onRun -> command") == [
        "steps", 0, "script", "actions", "onRun", "command"
    ]  # fmt: skip
    assert lines.locate(root, lines.parse_path("steps[0] -> script -> actions -> onRun -> command")) == 7
    assert lines.locate(root, ["steps", 0, "script", "missing"]) == 4  # where it should go
    assert lines.locate(root, ["steps", 5]) == 2
    assert lines.locate(lines.compose("a: [1,\n"), ["a"]) is None
