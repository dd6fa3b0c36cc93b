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


# -- held jobs (the look-ahead of a slot whose runs are short) -------------------------------
def test_a_slot_holds_after_short_runs_only_on_fixed_slots_and_not_while_stopping() -> None:
    assert s.should_hold(0.01, packing=False, draining=False)
    assert not s.should_hold(s.HOLD_BELOW, packing=False, draining=False)
    assert not s.should_hold(0.01, packing=True, draining=False)
    assert not s.should_hold(0.01, packing=False, draining=True)
    assert not s.should_hold(-1.0, packing=False, draining=False)  # a clock gone back


def test_a_slot_batches_its_results_while_it_still_holds_a_job_to_start() -> None:
    assert not s.report_now(1, held=2)
    assert s.report_now(s.REPORT_BATCH, held=2)  # a full batch
    assert s.report_now(1, held=0)  # nothing left to start: the answer brings more
    assert s.HOLD_WANTED <= s.HOLD_DEPTH


def test_a_slot_holds_what_the_server_takes() -> None:
    assert s.hold_wanted(s.HOLD_FIRST) == 4  # a server that does not say: what all took
    assert s.hold_wanted(8) == 8
    assert s.hold_wanted(1000) == s.HOLD_WANTED
    assert s.hold_wanted(-1) == 0


def test_a_slot_holds_one_job_at_most_while_another_host_waits_for_work() -> None:
    assert s.hold_count(4, others_idle=False) == 4
    assert s.hold_count(9, others_idle=False) == s.HOLD_DEPTH
    assert s.hold_count(4, others_idle=True) == 1
    assert s.hold_count(0, others_idle=True) == 0


def test_the_server_holds_nothing_behind_an_empty_pick_or_an_exclusive_job() -> None:
    assert s.may_hold(False, None)  # a hold alone (the slot runs its held job)
    assert not s.may_hold(True, None)
    assert s.may_hold(True, {"need": {"exclusive": 0}})
    assert not s.may_hold(True, {"need": {"exclusive": 1}})


def test_a_held_job_expires_when_the_run_before_it_is_long() -> None:
    assert not s.held_expired(100.0, 100.0 + s.HOLD_MAX - 0.01)
    assert s.held_expired(100.0, 100.0 + s.HOLD_MAX)
