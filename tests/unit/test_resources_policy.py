"""Resource requests as pure policy: what fits what a worker offers, inheritance, the tag-set
key that carries a request, and a packing host's budget spent within one sync."""

from __future__ import annotations

import random

import pytest

from coalition import scheduling
from coalition.model import ValidationError, parse_job_spec
from coalition.scheduling import BARE, Free, Need, Shape


def free(cores: int = 8, memory: int = 16000, gpus: int = 2, **kw: object) -> Free:
    totals = {"total_cores": 8, "total_memory": 16000, "total_gpus": 2}
    return Free(cores, memory, gpus, **{**totals, **kw})  # type: ignore[arg-type]


def test_a_job_fits_only_what_the_worker_has_free() -> None:
    assert scheduling.fits(Need(cores=4, memory=8000, gpus=1), free())
    assert not scheduling.fits(Need(cores=9), free())
    assert not scheduling.fits(Need(memory=16001), free())
    assert not scheduling.fits(Need(gpus=3), free())
    # A request of memory only still takes a core on a packing host.
    assert not scheduling.fits(Need(memory=100), free(cores=0))


def test_a_bare_job_comes_only_where_a_bare_job_may_come() -> None:
    assert scheduling.fits(BARE, free(bare=True))
    assert not scheduling.fits(BARE, free(bare=False))  # a packing host already running something


def test_an_exclusive_job_needs_the_whole_host_and_its_totals() -> None:
    assert not scheduling.fits(Need(exclusive=True), free(whole=False))
    assert scheduling.fits(Need(exclusive=True), free(cores=1, whole=True))  # the totals count
    assert not scheduling.fits(Need(exclusive=True, gpus=4), free(whole=True))


def test_a_worker_that_says_nothing_takes_only_jobs_that_ask_nothing() -> None:
    assert scheduling.fits(BARE, None)
    assert not scheduling.fits(Need(cores=1), None)


def test_gpu_reserve_keeps_a_gpu_host_for_gpu_jobs() -> None:
    reserved = free(reserve_gpus=True)
    assert scheduling.fits(Need(gpus=1), reserved)
    assert not scheduling.fits(Need(cores=2), reserved)
    assert not scheduling.fits(BARE, reserved)


def test_children_inherit_what_they_leave_at_zero() -> None:
    group = scheduling.derive(scheduling.ROOT, 1, 1000, [], False, False, Need(gpus=1, memory=4000))
    child = scheduling.derive(group, 2, 1000, [], False, False, Need(cores=4, memory=2000))
    assert child.need == Need(cores=4, memory=2000, gpus=1)
    plain = scheduling.derive(group, 3, 1000, [], False, False)
    assert plain.need == Need(memory=4000, gpus=1)


@pytest.mark.parametrize(
    "tags,need",
    [
        (set(), BARE),
        ({"linux"}, BARE),
        ({"linux", "gpu"}, Need(cores=4, memory=8192, gpus=1)),
        (set(), Need(exclusive=True)),
        ({"a"}, Need(gpus=2, exclusive=True)),
    ],
)
def test_a_tag_set_key_carries_the_request(tags: set[str], need: Need) -> None:
    text = scheduling.tagset_text(tags, need)
    assert scheduling.shape_from_text(text) == Shape(frozenset(tags), need)
    assert ("|" in text) == (not need.bare)
    assert scheduling.tagset_from_text(text) == frozenset(tags)


def test_an_old_tag_with_a_bar_stays_a_tag() -> None:
    assert scheduling.shape_from_text("a|b,c") == Shape(frozenset({"a|b", "c"}))


def test_fit_plan_keeps_the_order_and_drops_what_does_not_fit() -> None:
    shapes = {
        1: Shape(frozenset({"gpu"}), Need(gpus=1)),
        2: Shape(frozenset({"gpu"})),
        3: Shape(frozenset(), Need(cores=2)),
        4: Shape(frozenset(), Need(cores=64)),
    }
    plan = [[1, 2], [3, 4]]
    assert scheduling.fit_plan(plan, shapes, free()) == [[1, 2], [3]]
    assert scheduling.fit_plan(plan, shapes, free(reserve_gpus=True)) == [[1]]
    assert scheduling.fit_plan(plan, shapes, None) == [[2]]


def test_a_packing_budget_is_spent_job_by_job() -> None:
    budget = free(cores=8, memory=16000, gpus=2, bare=True, whole=True)
    after = scheduling.consume(budget, Need(cores=3, gpus=1))
    assert (after.cores, after.memory, after.gpus, after.bare, after.whole) == (5, 16000, 1, False, False)
    assert not scheduling.fits(BARE, after)
    gone = scheduling.consume(budget, BARE)
    assert (gone.cores, gone.gpus, gone.bare) == (0, 0, False)


def test_packing_never_oversubscribes_over_generated_queues() -> None:
    rng = random.Random(7)
    for _ in range(300):
        cap = (rng.randint(1, 32), rng.randint(0, 64000), rng.randint(0, 4))
        budget = Free(*cap, bare=True, whole=True, total_cores=cap[0], total_memory=cap[1], total_gpus=cap[2])
        queue = [
            Need(cores=rng.randint(0, 8), memory=rng.choice([0, 1000, 8000]), gpus=rng.choice([0, 0, 1, 2]))
            for _ in range(20)
        ]
        taken: list[Need] = []
        for need in queue:
            if scheduling.fits(need, budget):
                taken.append(need)
                budget = scheduling.consume(budget, need)
        if any(n.bare for n in taken):
            assert len(taken) == 1  # a bare job takes the host alone
            continue
        assert sum(max(1, n.cores) for n in taken) <= cap[0]
        assert sum(n.memory for n in taken) <= cap[1]
        assert sum(n.gpus for n in taken) <= cap[2]


def test_what_a_host_lacks_in_words() -> None:
    assert scheduling.short_of(Need(gpus=4), 16, 64000, 2) == ["4 GPUs"]
    assert scheduling.short_of(Need(cores=2, memory=9000), 1, 8000, 0) == ["2 cores", "9000 MB of memory"]
    assert scheduling.short_of(Need(cores=2), 2, 0, 0) == []


@pytest.mark.parametrize(
    "bad", [{"cores": -1}, {"gpus": "two"}, {"memory": 2**41}, {"exclusive": "maybe"}, {"affinity": "a|b"}]
)
def test_requests_are_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match=next(iter(bad))):
        parse_job_spec({"command": "true", **bad})


def test_legacy_forms_give_requests_as_text() -> None:
    spec = parse_job_spec({"command": "true", "cores": "4", "exclusive": "yes"}, lenient=True)
    assert (spec.cores, spec.exclusive) == (4, True)
