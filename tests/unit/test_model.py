"""Validation of values from outside."""

from __future__ import annotations

import pytest

from coalition import model as m
from coalition.server.http import ApiError, loads_relaxed


def test_job_spec_defaults_and_aliases() -> None:
    spec = m.parse_job_spec(
        {"cmd": "echo", "env": "A=1\\nB=2", "globalprogress": "%one", "localprogress": "x%one"}
    )
    assert (spec.command, spec.environment, spec.progress_pattern, spec.local_progress_pattern) == (
        "echo",
        "A=1\\nB=2",
        "%one",
        "x%one",
    )
    assert (spec.priority, spec.retry, spec.timeout, spec.dir) == (1000, 0, 0, ".")
    assert m.parse_job_spec({"state": "PAUSED"}).paused


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"prio": 1}, "unknown field"),
        ({"priority": True}, "boolean"),
        ({"priority": 2**31}, "between"),
        ({"timeout": -1}, "between"),
        ({"title": {"a": 1}}, "must be a string"),
        ({"dependencies": {"a": 1}}, "dependencies"),
        ({"state": "FINISHED"}, "state must be"),
        ({"title": "a\x00b"}, "NUL"),
        ([], "JSON object"),
    ],
)
def test_job_spec_refusals(data: object, message: str) -> None:
    with pytest.raises(m.ValidationError, match=message):
        m.parse_job_spec(data)


def test_lenient_forms_for_legacy_fields() -> None:
    spec = m.parse_job_spec({"priority": "12", "paused": "true", "dependencies": "21 22, 23"}, lenient=True)
    assert (spec.priority, spec.paused, spec.dependencies) == (12, True, (21, 22, 23))
    with pytest.raises(m.ValidationError):
        m.parse_job_spec({"priority": "12"})  # JSON clients send numbers


def test_edits_refuse_read_only_fields() -> None:
    with pytest.raises(m.ValidationError, match="read-only"):
        m.parse_job_edit({"state": "WAITING", "total": 3})
    assert m.parse_job_edit({"id": 3, "title": "x"}).values == {"title": "x"}


def test_env_tags_and_rules() -> None:
    assert m.parse_env("A=1\\nB=x=y\\n\\nbad") == {"A": "1", "B": "x=y"}
    assert m.parse_env("None") == {}
    assert m.parse_tags(" linux, maya,,linux ") == ["linux", "maya"]
    assert m.parse_rule_lines("a,b\n\r\nc") == [["a", "b"], ["c"]]
    assert m.parse_ids([3, "4", 3]) == [3, 4]


def test_relaxed_json_reads_the_documentation_examples() -> None:
    assert loads_relaxed('{123: {"title": "x",},}') == {"123": {"title": "x"}}
    assert loads_relaxed('["a, }", 1,]') == ["a, }", 1]  # commas inside strings are kept
    with pytest.raises(ApiError):
        loads_relaxed("{title: }")


def test_job_spec_fields_are_the_settable_columns() -> None:
    """The schema registry and the submission value agree: a new settable column that
    JobSpec lacks (or the reverse) fails here, not at the first submission."""
    import dataclasses

    from coalition import columns
    from coalition.model import JobSpec

    spec_fields = {f.name for f in dataclasses.fields(JobSpec)}
    # `state` is folded into `paused` at parse time; `dependencies` is a table of its own.
    assert spec_fields == (set(columns.JOB_SETTABLE) - {"state"}) | {"dependencies"}
    assert set(columns.JOB_PICK) <= set(columns.JOB_COLUMNS)
    assert all(c.default is not None for c in columns.JOBS if c.name != "id")
