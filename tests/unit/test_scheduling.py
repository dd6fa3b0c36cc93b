"""The pure scheduling policy."""

from __future__ import annotations

import pytest

from coalition import scheduling as s


def test_key_orders_priority_then_age_then_hierarchy() -> None:
    root = s.ROOT
    hi = s.derive(root, 2, 500, [], False, False)
    lo = s.derive(root, 1, 10, [], False, False)
    assert hi.h_key < lo.h_key  # higher priority first
    older = s.derive(root, 1, 500, [], False, False)
    assert older.h_key < hi.h_key  # ties: the older (smaller id) first
    child_of_hi = s.derive(hi, 3, 0, [], False, False)
    assert child_of_hi.h_key < lo.h_key  # a parent's position dominates its children's
    assert child_of_hi.h_depth == 1 and child_of_hi.h_key.startswith(hi.h_key)


def test_derive_inherits_tags_and_blocking() -> None:
    group = s.derive(s.ROOT, 1, 1000, ["maya"], True, False)
    child = s.derive(group, 2, 1000, ["linux"], False, False)
    assert child.tags == {"maya", "linux"} and child.h_blocked
    assert s.derive(s.ROOT, 3, 1, [], False, True).h_blocked  # pending blocks too


def test_rule_plan() -> None:
    tagsets = {
        1: frozenset(),
        2: frozenset({"linux"}),
        3: frozenset({"linux", "maya"}),
        4: frozenset({"nuke"}),
    }
    assert s.rule_plan([["linux", "maya"], ["nuke"]], tagsets) == [[2, 3], [4], [1]]
    assert s.rule_plan([["linux"], ["linux", "maya"]], tagsets) == [[2], [3], [1]]  # no repeats
    assert s.rule_plan([], tagsets) == [[1]]


@pytest.mark.parametrize(
    ("counts", "pending", "expected"),
    [
        ((0, 0, 0, 0), False, "WAITING"),
        ((3, 3, 0, 0), False, "FINISHED"),
        ((3, 1, 1, 1), False, "ERROR"),
        ((3, 1, 0, 1), False, "WORKING"),
        ((3, 1, 0, 0), False, "WAITING"),
        ((3, 3, 0, 0), True, "PENDING"),
    ],
)
def test_group_state(counts: tuple[int, int, int, int], pending: bool, expected: str) -> None:
    assert s.group_state(*counts, pending) == expected


def test_retry_and_requeue_bounds() -> None:
    assert [s.should_retry(n, 2) for n in (1, 2, 3)] == [True, True, False]
    assert not s.should_retry(1, 0)
    assert [s.should_requeue_silent(n, 2) for n in (0, 1, 2)] == [True, True, False]


def test_timeouts() -> None:
    assert not s.job_timed_out(100.0, 0, 10_000.0, 10)  # no timeout set
    assert not s.job_timed_out(100.0, 50, 155.0, 10)
    assert s.job_timed_out(100.0, 50, 161.0, 10)
    assert s.worker_silent(100.0, 0.0, 10, 111.0)
    assert not s.worker_silent(100.0, 105.0, 10, 111.0)  # the observer started late


def test_priority_decrease() -> None:
    assert s.new_priority_after_child_error(10, 3, 3) == 9
    assert s.new_priority_after_child_error(10, 4, 3) == 10
    assert s.new_priority_after_child_error(0, 3, 3) == 0
    assert s.new_priority_after_child_error(10, 3, 0) == 10


def test_log_slice_deduplicates() -> None:
    assert s.log_slice(0, 0, b"abc") == (b"abc", 3)
    assert s.log_slice(3, 0, b"abc") == (b"", 3)
    assert s.log_slice(3, 1, b"bcde") == (b"de", 5)
    assert s.log_slice(3, 10, b"xy") == (b"xy", 12)  # a gap: keep what arrives
