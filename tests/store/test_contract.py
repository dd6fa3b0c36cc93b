"""The queue's behaviour, run against SQLite and MariaDB alike (the store contract).

Each test drives the service and the dispatcher directly with a hand-moved clock: no HTTP,
no sleeps. The same assertions must hold on both engines.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest

from coalition.errors import NotFound
from coalition.model import JobEdit, JobSpec, ValidationError
from coalition.usecases.messages import Ping, RunReport


def add(farm: Any, **kw: Any) -> int:
    kw.setdefault("command", "true")
    return farm.uc.operator.submit(JobSpec(**kw))


def pick(farm: Any, name: str = "w1", affinity: str | None = None) -> dict[str, Any] | None:
    return farm.uc.workers.pick(Ping(name=name, affinity=affinity))


def end(farm: Any, job: dict[str, Any], code: int = 0, name: str = "w1", **kw: Any) -> Any:
    return farm.uc.workers.end(Ping(name=name), job["id"], job["event"], code, b"", None, **kw)


def state(farm: Any, job_id: int) -> str:
    return farm.uc.reads.job(job_id)["state"]


def drain(farm: Any, name: str = "w1", affinity: str | None = None) -> list[int]:
    order = []
    while (job := pick(farm, name, affinity)) is not None:
        order.append(job["id"])
        end(farm, job, 0, name)
    return order


# -- submission and shape -----------------------------------------------------------------
def test_job_object_has_every_documented_field(farm: Any) -> None:
    jid = add(
        farm,
        title="Job 1",
        command="echo test",
        user="render",
        url="http://x/y.png",
        timeout=10000,
        retry=10,
        affinity="LINUX",
    )
    job = farm.uc.reads.job(jid)
    for key in (
        "id parent title command dir environment state worker start_time duration ping_time run_done "
        "retry timeout priority affinity user finished errors working total total_finished total_errors "
        "total_working url progress progress_pattern dependencies"
    ).split():
        assert key in job, key
    assert (job["title"], job["state"], job["priority"], job["retry"], job["dir"]) == (
        "Job 1",
        "WAITING",
        1000,
        10,
        ".",
    )
    assert job["progress_pattern"] == "PROGRESS:%percent" and job["dependencies"] == []


def test_unicode_and_backslashes_survive(farm: Any) -> None:
    jid = add(farm, title="rendu élève ✓", command=r"C:\x\n 'q' \"", environment="A=1\\nB=é")
    job = farm.uc.reads.job(jid)
    assert (
        job["title"] == "rendu élève ✓"
        and job["command"] == r"C:\x\n 'q' \""
        and job["environment"] == "A=1\\nB=é"
    )


def test_parent_by_title_and_path(farm: Any) -> None:
    dept = add(farm, title="departments", command="")
    render = add(farm, title="render", command="", parent=dept)
    a = add(farm, title="a", parent="departments")
    b = add(farm, title="b", parent="departments|render")
    assert farm.uc.reads.job(a)["parent"] == dept and farm.uc.reads.job(b)["parent"] == render
    with pytest.raises(ValidationError, match="no job titled"):
        add(farm, title="c", parent="departments|nope")
    with pytest.raises(ValidationError, match="does not exist"):
        add(farm, title="d", parent=9999)


def test_unknown_job_is_not_found(farm: Any) -> None:
    with pytest.raises(NotFound):
        farm.uc.reads.job(424242)
    with pytest.raises(NotFound):
        farm.uc.operator.pause([424242])


# -- ordering -------------------------------------------------------------------------------
def test_priority_then_age(farm: Any) -> None:
    low = add(farm, priority=10)
    high = add(farm, priority=500)
    high2 = add(farm, priority=500)
    assert drain(farm) == [high, high2, low]


def test_parent_priority_dominates_children(farm: Any) -> None:
    # Coalition 4's dead test: a child of a priority-11 group beats a child of a priority-10
    # group, whatever the children's own priorities.
    g10 = add(farm, title="g10", command="", priority=10)
    g11 = add(farm, title="g11", command="", priority=11)
    a = add(farm, parent=g10, priority=2**31 - 1)
    b = add(farm, parent=g11, priority=0)
    assert drain(farm) == [b, a]


def test_hierarchy_of_any_depth_and_big_priorities(farm: Any) -> None:
    parent = 0
    for depth in range(12):
        parent = add(farm, title=f"level{depth}", command="", parent=parent, priority=100000 + depth)
    deep = add(farm, parent=parent, priority=5)
    shallow = add(farm, priority=99999)  # lower than the deep chain's root
    assert drain(farm) == [deep, shallow]


# -- affinities -----------------------------------------------------------------------------
def test_affinity_must_all_be_offered(farm: Any) -> None:
    both = add(farm, affinity="LINUX,24GB")
    assert pick(farm, "w-linux", "LINUX") is None
    assert pick(farm, "w-24", "24GB") is None
    job = pick(farm, "w-big", "LINUX,24GB,GL")
    assert job is not None and job["id"] == both


def test_affinity_is_inherited(farm: Any) -> None:
    # Coalition 4 ran an untagged child of a tagged group on any worker; not any more.
    group = add(farm, title="maya", command="", affinity="maya")
    child = add(farm, parent=group)
    assert pick(farm, "plain", "") is None
    job = pick(farm, "mayabox", "maya")
    assert job is not None and job["id"] == child


def test_rule_lines_are_ordered_and_untagged_jobs_come_last(farm: Any) -> None:
    untagged = add(farm, priority=900)
    nuke = add(farm, affinity="nuke", priority=800)
    maya = add(farm, affinity="maya", priority=10)
    # First line beats priority (PR #30's design), untagged jobs are the implicit last line.
    assert drain(farm, "w", "maya\nnuke") == [maya, nuke, untagged]


def test_worker_without_rules_gets_untagged_jobs_only(farm: Any) -> None:
    add(farm, affinity="gpu")
    free = add(farm)
    assert drain(farm, "w", "") == [free]


def test_operator_rules_win_over_the_workers_own(farm: Any) -> None:
    gpu = add(farm, affinity="gpu")
    assert pick(farm, "w", "cpu") is None
    farm.uc.operator.edit_workers({"w": {"affinity": "gpu"}})
    job = pick(farm, "w", "cpu")  # the worker still sends "cpu": the operator's edit stands
    assert job is not None and job["id"] == gpu
    assert farm.uc.reads.worker("w")["affinity"] == "gpu"


def test_numbered_affinities_resolve_through_the_registry(farm: Any) -> None:
    farm.uc.operator.set_affinities({"1": "linux", "2": "win"})
    jid = add(farm, affinity="#2")
    assert farm.uc.reads.job(jid)["affinity"] == "win"
    with pytest.raises(ValidationError):
        add(farm, affinity="#7")
    add(farm, affinity="newtag")
    assert "newtag" in farm.uc.reads.affinities().values()


# -- dependencies ---------------------------------------------------------------------------
def test_dependencies_wait_for_finished(farm: Any) -> None:
    first = add(farm, priority=1)
    second = add(farm, priority=1000, dependencies=(first,))
    assert state(farm, second) == "PENDING"
    job = pick(farm)
    assert job is not None and job["id"] == first
    assert pick(farm, "w2") is None  # only the pending job is left
    end(farm, job, 0)
    assert state(farm, second) == "WAITING"


def test_error_dependency_blocks_until_reset(farm: Any) -> None:
    first = add(farm)
    second = add(farm, dependencies=(first,))
    end(farm, pick(farm), 1)
    assert (state(farm, first), state(farm, second)) == ("ERROR", "PENDING")
    assert pick(farm) is None
    farm.uc.operator.reset([first])
    end(farm, pick(farm), 0)
    assert state(farm, second) == "WAITING"


def test_a_group_that_depends_holds_its_children(farm: Any) -> None:
    gate = add(farm, paused=True)
    group = add(farm, title="g", command="", dependencies=(gate,))
    add(farm, parent=group)
    assert state(farm, group) == "PENDING"
    assert pick(farm) is None  # "intricate dependencies" of Coalition 4's dead tests
    farm.uc.operator.start([gate])
    end(farm, pick(farm), 0)
    assert pick(farm) is not None


def test_dependency_cycles_are_refused(farm: Any) -> None:
    a = add(farm)
    b = add(farm, dependencies=(a,))
    c = add(farm, dependencies=(b,))
    with pytest.raises(ValidationError, match="cycle"):
        farm.uc.operator.set_dependencies(a, [c])
    with pytest.raises(ValidationError, match="itself"):
        farm.uc.operator.set_dependencies(a, [a])
    group = add(farm, title="g", command="")
    child = add(farm, parent=group)
    with pytest.raises(ValidationError):
        farm.uc.operator.set_dependencies(child, [group])  # the group waits for the child
    with pytest.raises(ValidationError):
        farm.uc.operator.set_dependencies(group, [child])
    with pytest.raises(ValidationError, match="do not exist"):
        farm.uc.operator.set_dependencies(a, [99999])
    assert farm.uc.reads.job(a)["dependencies"] == []


def test_resetting_a_dependency_makes_waiting_dependents_pending_again(farm: Any) -> None:
    a = add(farm)
    b = add(farm, dependencies=(a,))
    end(farm, pick(farm), 0)
    assert state(farm, b) == "WAITING"
    farm.uc.operator.reset([a])
    assert state(farm, b) == "PENDING"


# -- groups ---------------------------------------------------------------------------------
def test_group_state_counters_and_progress(farm: Any) -> None:
    group = add(farm, title="g", command="")
    kids = [add(farm, parent=group) for _ in range(4)]
    g = farm.uc.reads.job(group)
    assert (g["state"], g["total"], g["progress"]) == ("WAITING", 4, 0)
    job = pick(farm)
    g = farm.uc.reads.job(group)
    assert (g["state"], g["working"], g["total_working"]) == ("WORKING", 1, 1)
    end(farm, job, 0)
    end(farm, pick(farm), 0)
    g = farm.uc.reads.job(group)
    assert (g["finished"], g["total_finished"], g["progress"]) == (2, 2, 0.5)
    end(farm, pick(farm), 3)
    g = farm.uc.reads.job(group)
    assert (g["state"], g["errors"]) == ("ERROR", 1)
    farm.uc.operator.reset_errors([group])
    drain(farm)
    g = farm.uc.reads.job(group)
    assert (g["state"], g["total_finished"], g["progress"], g["errors"], g["working"]) == (
        "FINISHED",
        4,
        1.0,
        0,
        0,
    )
    assert all(state(farm, k) == "FINISHED" for k in kids)


def test_nested_group_counters(farm: Any) -> None:
    top = add(farm, title="top", command="")
    mid = add(farm, title="mid", command="", parent=top)
    add(farm, parent=mid)
    add(farm, parent=mid)
    add(farm, parent=top)
    t = farm.uc.reads.job(top)
    assert (t["total"], t["children"]) == (3, 2)
    drain(farm)
    t = farm.uc.reads.job(top)
    assert (t["state"], t["total_finished"], t["finished"]) == ("FINISHED", 3, 1)


def test_one_submission_that_makes_a_new_group_counts_every_job_once(farm: Any) -> None:
    # A group's counters are bumped once at the end of a submission; a job of the same
    # submission becoming a group is recounted from the rows, with those bumps in first.
    shot = add(farm, title="shot", command="")
    add(farm, title="old", parent=shot)
    ids = farm.uc.operator.submit_many(
        [
            JobSpec(title="step", command="", parent=shot),
            JobSpec(title="t1", command="true", parent="shot|step"),
            JobSpec(title="t2", command="true", parent="shot|step"),
            JobSpec(title="last", command="true", parent=shot),
        ]
    )
    rows = {r["title"]: r for r in (farm.uc.reads.job(i) for i in (shot, *ids))}
    assert (rows["shot"]["children"], rows["shot"]["total"]) == (3, 4)
    assert (rows["step"]["children"], rows["step"]["total"]) == (2, 2)
    assert len(drain(farm)) == 4
    assert farm.uc.reads.job(shot)["state"] == "FINISHED"


def test_adding_a_child_to_a_finished_group_reopens_it(farm: Any) -> None:
    group = add(farm, title="g", command="")
    add(farm, parent=group)
    drain(farm)
    assert state(farm, group) == "FINISHED"
    add(farm, parent=group)
    assert state(farm, group) == "WAITING"


# -- retries, timeouts, silent workers -------------------------------------------------------
def test_retries_then_error(farm: Any) -> None:
    jid = add(farm, retry=2)
    for _ in range(3):
        job = pick(farm)
        assert job is not None and job["id"] == jid
        end(farm, job, 1)
    assert pick(farm) is None
    job = farm.uc.reads.job(jid)
    assert (job["state"], job["fail_count"], job["run_done"]) == ("ERROR", 3, 3)


def test_decrease_priority_after_child_errors(farm: Any) -> None:
    farm.ctx.settings = dataclasses.replace(farm.ctx.settings, decrease_priority_after=2)
    group = add(farm, title="g", command="", priority=50)
    for _ in range(3):
        add(farm, parent=group, retry=0)
    end(farm, pick(farm), 1)
    assert farm.uc.reads.job(group)["priority"] == 50
    end(farm, pick(farm), 1)
    assert farm.uc.reads.job(group)["priority"] == 49


def test_job_timeout_is_an_error(farm: Any) -> None:
    jid = add(farm, timeout=5, retry=0)
    job = pick(farm)
    farm.clock.advance(5 + 10 + 1)  # timeout + grace (the heartbeat timeout)
    farm.uc.workers.heartbeat(Ping("w1"), jid, job["event"], b"", None)  # keep the worker alive
    assert farm.uc.upkeep.reap()["timed_out"] == 1
    assert state(farm, jid) == "ERROR"
    beat = farm.uc.workers.heartbeat(Ping("w1"), jid, job["event"], b"", None)
    assert beat.kill
    events = farm.uc.reads.events(jid, None, None)
    assert [e["state"] for e in events] == ["ERROR"]


def test_silent_worker_requeues_without_spending_a_retry_and_is_bounded(farm: Any) -> None:
    jid = add(farm, retry=0)
    for round_ in range(3):  # requeue_limit is 2 in this fixture
        job = pick(farm, f"w{round_}")
        assert job is not None and job["id"] == jid
        farm.clock.advance(11)
        assert farm.uc.upkeep.reap()["silent_workers"] == 1
        assert farm.uc.reads.worker(f"w{round_}")["state"] == "TIMEOUT"
    job = farm.uc.reads.job(jid)
    assert (job["state"], job["requeues"], job["fail_count"]) == ("ERROR", 3, 1)
    assert [e["state"] for e in farm.uc.reads.events(jid, None, None)] == ["TIMEOUT"] * 3


def test_late_result_after_a_silence_is_not_lost(farm: Any) -> None:
    jid = add(farm)
    job = pick(farm, "w1")
    farm.clock.advance(11)
    farm.uc.upkeep.reap()
    assert state(farm, jid) == "WAITING"
    result = end(farm, job, 0, "w1")  # the worker comes back with its result
    assert not result.ignored
    assert state(farm, jid) == "FINISHED"


def test_a_worker_back_from_silence_re_adopts_its_run(farm: Any) -> None:
    jid = add(farm)
    job = pick(farm, "w1")
    farm.clock.advance(11)
    farm.uc.upkeep.reap()
    beat = farm.uc.workers.heartbeat(Ping("w1"), jid, job["event"], b"still rendering\n", 0)
    assert not beat.kill
    assert state(farm, jid) == "WORKING" and farm.uc.reads.worker("w1")["state"] == "WORKING"
    end(farm, job, 0)
    assert state(farm, jid) == "FINISHED"


def test_a_requeued_job_taken_by_another_worker_kills_the_old_run(farm: Any) -> None:
    jid = add(farm)
    old = pick(farm, "w1")
    farm.clock.advance(11)
    farm.uc.upkeep.reap()
    new = pick(farm, "w2")
    assert new["id"] == jid and new["event"] != old["event"]
    assert farm.uc.workers.heartbeat(Ping("w1"), jid, old["event"], b"", None).kill
    assert end(farm, old, 0, "w1").ignored
    end(farm, new, 0, "w2")
    assert state(farm, jid) == "FINISHED"


def test_restarted_worker_that_asks_for_work_gives_back_its_lost_job(farm: Any) -> None:
    jid = add(farm)
    pick(farm, "w1")
    again = pick(farm, "w1")  # it crashed and restarted: it asks for work while "running"
    assert again is not None and again["id"] == jid  # the same job, as a new run
    assert [e["state"] for e in farm.uc.reads.events(jid, None, None)] == ["WORKING", "LOST"]


def test_interruption_requeues_without_spending_a_retry(farm: Any) -> None:
    jid = add(farm, retry=0)
    job = pick(farm)
    end(farm, job, -15, interrupted=True)
    job = farm.uc.reads.job(jid)
    # A hand-back spends no retry and is not a silent-worker requeue (requeuelimit): it is
    # counted as the job's INTERRUPTED run instead.
    assert (job["state"], job["fail_count"], job["requeues"]) == ("WAITING", 0, 0)


# -- operator commands ----------------------------------------------------------------------
def test_pause_kills_and_start_resumes(farm: Any) -> None:
    jid = add(farm)
    job = pick(farm)
    farm.uc.operator.pause([jid])
    assert state(farm, jid) == "PAUSED"
    assert farm.uc.workers.heartbeat(Ping("w1"), jid, job["event"], b"", None).kill
    assert end(farm, job, 0).ignored  # the killed run's late end changes nothing
    assert pick(farm) is None
    farm.uc.operator.start([jid])
    assert state(farm, jid) == "WAITING"
    assert pick(farm)["id"] == jid
    assert [e["state"] for e in farm.uc.reads.events(jid, None, None)] == ["WORKING", "PAUSED"]


def test_pausing_a_group_blocks_and_kills_its_subtree(farm: Any) -> None:
    group = add(farm, title="g", command="")
    a = add(farm, parent=group)
    add(farm, parent=group)
    job = pick(farm)
    assert job["id"] == a
    farm.uc.operator.pause([group])
    assert farm.uc.workers.heartbeat(Ping("w1"), a, job["event"], b"", None).kill
    assert pick(farm, "w2") is None
    farm.uc.operator.start([group])
    assert len(drain(farm)) == 2


def test_reset_sends_a_subtree_back_and_kills_running(farm: Any) -> None:
    group = add(farm, title="g", command="")
    kids = [add(farm, parent=group) for _ in range(3)]
    end(farm, pick(farm), 0)
    end(farm, pick(farm), 2)
    running = pick(farm)
    farm.uc.operator.reset([group])
    assert all(state(farm, k) == "WAITING" for k in kids)
    assert farm.uc.workers.heartbeat(Ping("w1"), running["id"], running["event"], b"", None).kill
    g = farm.uc.reads.job(group)
    assert (g["state"], g["total_finished"], g["total_errors"], g["total_working"]) == ("WAITING", 0, 0, 0)


def test_start_does_not_rerun_a_finished_job(farm: Any) -> None:
    jid = add(farm)
    end(farm, pick(farm), 0)
    farm.uc.operator.start([jid])
    assert state(farm, jid) == "FINISHED" and pick(farm) is None


def test_delete_kills_removes_logs_and_releases_dependents(farm: Any) -> None:
    group = add(farm, title="g", command="")
    a = add(farm, parent=group)
    other = add(farm, dependencies=(a,))
    job = pick(farm)
    farm.uc.workers.heartbeat(Ping("w1"), a, job["event"], b"some output\n", 0)
    assert farm.logs.size(a) > 0
    farm.uc.operator.delete([group])
    with pytest.raises(NotFound):
        farm.uc.reads.job(a)
    assert farm.logs.size(a) == 0
    assert farm.uc.workers.heartbeat(Ping("w1"), a, job["event"], b"", None).kill
    assert state(farm, other) == "WAITING"
    assert [e["state"] for e in farm.uc.reads.events(a, None, None)] == ["DELETED"]


def test_stopping_a_worker_requeues_its_job(farm: Any) -> None:
    jid = add(farm)
    job = pick(farm)
    farm.uc.operator.set_workers_active(["w1"], False)
    assert state(farm, jid) == "WAITING"
    beat = farm.uc.workers.heartbeat(Ping("w1"), jid, job["event"], b"", None)
    assert beat.kill and beat.stop
    assert pick(farm) is None
    farm.uc.operator.set_workers_active(["w1"], True)
    assert pick(farm)["id"] == jid


def test_edits_rekey_move_and_refuse_cycles(farm: Any) -> None:
    a = add(farm, priority=10)
    b = add(farm, priority=20)
    farm.uc.operator.edit({a: JobEdit({"priority": 30, "title": "renamed"})})
    assert farm.uc.reads.job(a)["title"] == "renamed"
    group = add(farm, title="g", command="", priority=0)
    farm.uc.operator.edit({b: JobEdit({"parent": group})})
    assert farm.uc.reads.job(group)["total"] == 1
    with pytest.raises(ValidationError):
        farm.uc.operator.edit({group: JobEdit({"parent": b})})
    with pytest.raises(NotFound):
        farm.uc.operator.edit({a: JobEdit({"title": "x"}), 99999: JobEdit({"title": "y"})})
    assert farm.uc.reads.job(a)["title"] == "renamed"  # all or nothing
    assert drain(farm) == [a, b]
    farm.uc.operator.edit({a: JobEdit({"priority": 0})})  # Coalition 4 could not set priority 0
    assert farm.uc.reads.job(a)["priority"] == 0


# -- logs and progress --------------------------------------------------------------------
def test_log_chunks_are_deduplicated_by_offset_and_progress_parsed(farm: Any) -> None:
    jid = add(farm, local_progress_pattern="frame %one")
    job = pick(farm)
    beat = lambda data, off: farm.uc.workers.heartbeat(Ping("w1"), jid, job["event"], data, off)  # noqa: E731
    beat(b"PROGRESS:10\n", 0)
    beat(b"PROGRESS:10\n", 0)  # a resend after a lost answer
    beat(b"10\nPROGRESS:25\nframe 0.5\n", 9)  # overlaps the first chunk by 3 bytes
    assert farm.logs.read(jid) == b"PROGRESS:10\nPROGRESS:25\nframe 0.5\n"
    j = farm.uc.reads.job(jid)
    assert (j["progress"], j["local_progress"]) == (0.25, 0.5)


# -- atomic claims ---------------------------------------------------------------------------
def test_concurrent_pickers_never_share_a_job(farm: Any) -> None:
    ids = farm.uc.operator.submit_many([JobSpec(command="true", title=f"f{i}") for i in range(60)])
    taken: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            while (job := pick(farm, f"w{n}")) is not None:
                with lock:
                    taken.append(job["id"])
                end(farm, job, 0, f"w{n}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(taken) == sorted(ids)


def test_lease_is_exclusive_until_it_expires(farm: Any) -> None:
    assert farm.uc.upkeep.lease("reaper", "a", 10)
    assert not farm.uc.upkeep.lease("reaper", "b", 10)
    assert farm.uc.upkeep.lease("reaper", "a", 10)
    farm.clock.advance(11)
    assert farm.uc.upkeep.lease("reaper", "b", 10)


def test_list_jobs_pages_filters_and_sorts(farm: Any) -> None:
    group = add(farm, title="g", command="")
    for i in range(25):
        add(farm, parent=group, title=f"frame {i:02d}", user="alice" if i % 2 else "bob", priority=i)
    rows, total, _ = farm.uc.reads.list_jobs({"parent": group, "user": "alice"}, "priority", True, 0, 5)
    assert total == 12 and [r["priority"] for r in rows] == [23, 21, 19, 17, 15]
    rows, total, _ = farm.uc.reads.list_jobs({"parent": group, "text": "FRAME 1"}, "", False, 0, 100)
    assert total == 10
    rows, total, _ = farm.uc.reads.list_jobs({"parent": group, "text": "100%_"}, "", False, 0, 100)
    assert total == 0
    end(farm, pick(farm), 0)
    rows, total, _ = farm.uc.reads.list_jobs({"parent": group, "states": ["FINISHED"]}, "", False, 0, 100)
    assert total == 1
    with pytest.raises(ValidationError):
        farm.uc.reads.list_jobs({"parent": group}, "password; drop table jobs", False, 0, 10)


def test_a_failing_writer_does_not_spoil_concurrent_writes(farm: Any) -> None:
    # SQLite batches concurrent writes into one transaction (group commit): one that fails
    # must get its own error and leave the others' writes in place.
    results: dict[int, Any] = {}

    def submit(n: int) -> None:
        try:
            results[n] = add(farm, title=f"t{n}", parent=999999 if n % 3 == 0 else 0)
        except ValidationError as exc:
            results[n] = exc

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n, outcome in results.items():
        if n % 3 == 0:
            assert isinstance(outcome, ValidationError) and "does not exist" in str(outcome)
        else:
            assert farm.uc.reads.job(outcome)["title"] == f"t{n}"
    assert farm.uc.reads.list_jobs({"parent": 0}, "", False, 0, 100)[1] == 20


def test_sorting_by_progress_uses_group_counters(farm: Any) -> None:
    half = add(farm, title="half", command="")
    add(farm, parent=half)
    add(farm, parent=half)
    none = add(farm, title="none", command="")
    add(farm, parent=none)
    job = pick(farm)
    end(farm, job, 0)
    rows, _, _ = farm.uc.reads.list_jobs({"parent": 0}, "progress", True, 0, 10)
    assert [(r["id"], r["progress"]) for r in rows] == [(half, 0.5), (none, 0.0)]


# -- held jobs: the look-ahead of a slot whose runs are short (docs/protocol.md) -------------
def hold_end(farm: Any, job: dict[str, Any], name: str = "w1", hold: int = 1, **kw: Any) -> Any:
    return farm.uc.workers.end(Ping(name=name), job["id"], job["event"], 0, b"", None, hold=hold, **kw)


def one(held: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(held) == 1, held
    return held[0]


def test_a_held_job_is_handed_out_beside_the_next_and_becomes_current_when_started(farm: Any) -> None:
    ids = [add(farm, title=f"j{i}") for i in range(4)]
    first = pick(farm)
    result = hold_end(farm, first, pick=True)
    assert (result.next_job["id"], one(result.held)["id"]) == (ids[1], ids[2])
    # The worker runs the next job; the held one waits, assigned but not current.
    assert farm.uc.reads.worker("w1")["current_job"] == ids[1]
    assert state(farm, ids[2]) == "WORKING"
    # The slot started its held job and reports the run before it: it holds the last one.
    started = one(result.held)
    result = hold_end(farm, result.next_job, running=ids[2])
    assert not result.kill and not result.ignored and result.next_job is None
    assert one(result.held)["id"] == ids[3]
    assert farm.uc.reads.worker("w1")["current_job"] == ids[2]  # not lost for asking
    last = one(result.held)
    result = hold_end(farm, started, running=ids[3])
    assert result.held == [] and not result.kill
    end(farm, last)
    assert [state(farm, i) for i in ids] == ["FINISHED"] * 4
    for job_id in ids:  # one run each, nothing lost or handed back on the way
        assert [e["state"] for e in farm.uc.reads.events(job_id, None, None)] == ["FINISHED"]


def test_a_slot_holds_one_job_at_most_while_another_host_waits_for_work(farm: Any) -> None:
    def w1_end(job: dict[str, Any]) -> list[dict[str, Any]]:
        ping = Ping(name="w1-1", host="w1")  # a slot of host w1, as our worker sends
        return farm.uc.workers.end(ping, job["id"], job["event"], 0, b"", None, hold=4).held

    assert farm.uc.workers.pick(Ping(name="w2-1", host="w2")) is None  # w2 waits for work
    ids = [add(farm) for _ in range(8)]
    first = farm.uc.workers.pick(Ping(name="w1-1", host="w1"))
    assert first["id"] == ids[0]
    # A queue of short jobs must not sit held on w1 while w2 waits for its next sync.
    held = one(w1_end(first))
    assert held["id"] == ids[1]
    assert farm.uc.workers.pick(Ping(name="w2-1", host="w2"))["id"] == ids[2]  # w2 busy now
    farm.clock.advance(2)  # the server reads who waits at most every second
    assert [j["id"] for j in w1_end(held)] == ids[3:7]


def test_no_job_is_held_when_the_pick_found_the_queue_empty(farm: Any) -> None:
    add(farm)
    result = hold_end(farm, pick(farm), pick=True)
    assert result.next_job is None and result.held == []
    ids = [add(farm) for _ in range(2)]
    result = hold_end(farm, pick(farm))  # asking only to hold: handed the next in line
    assert result.next_job is None and one(result.held)["id"] == ids[1]


def test_a_held_job_paused_before_it_starts_is_killed_and_spends_no_retry(farm: Any) -> None:
    ids = [add(farm, retry=0) for _ in range(3)]
    result = hold_end(farm, pick(farm), pick=True)
    held = one(result.held)
    farm.uc.operator.pause([held["id"]])
    answer = farm.uc.workers.end(
        Ping("w1"), ids[1], result.next_job["event"], 0, b"", None, running=held["id"]
    )
    assert answer.kill  # the slot started it meanwhile: it kills it
    assert end(farm, held, -15).ignored
    job = farm.uc.reads.job(held["id"])
    assert (job["state"], job["fail_count"]) == ("PAUSED", 0)


def test_a_held_job_of_a_worker_stopped_meanwhile_goes_back_to_the_queue(farm: Any) -> None:
    ids = [add(farm) for _ in range(3)]
    result = hold_end(farm, pick(farm), pick=True)
    held = one(result.held)
    farm.uc.operator.set_workers_active(["w1"], False)  # frees the current job (ids[1])
    assert state(farm, ids[1]) == "WAITING"
    answer = farm.uc.workers.end(
        Ping("w1"), ids[1], result.next_job["event"], 0, b"", None, running=held["id"]
    )
    assert answer.ignored and answer.kill
    assert state(farm, held["id"]) == "WAITING"
    assert end(farm, held, -15).ignored


def test_a_held_job_nobody_heartbeats_is_requeued_while_its_worker_lives(farm: Any) -> None:
    # The answer that handed it out was lost: the worker runs its current job and never
    # heard of the held one.
    ids = [add(farm) for _ in range(3)]
    result = hold_end(farm, pick(farm), pick=True)
    current = result.next_job
    for _ in range(3):
        farm.clock.advance(5)
        assert not farm.uc.workers.heartbeat(Ping("w1"), current["id"], current["event"], b"", None).kill
    done = farm.uc.upkeep.reap()
    assert done["requeued"] == 1 and done["silent_workers"] == 0
    assert state(farm, ids[2]) == "WAITING" and state(farm, ids[1]) == "WORKING"
    assert farm.uc.reads.worker("w1")["state"] == "WORKING"
    assert pick(farm, "w2")["id"] == ids[2]


def test_a_worker_killed_while_holding_a_job_loses_neither(farm: Any) -> None:
    ids = [add(farm) for _ in range(3)]
    hold_end(farm, pick(farm), pick=True)
    farm.clock.advance(11)  # killed -9: nothing more from it
    done = farm.uc.upkeep.reap()
    assert done["requeued"] == 2 and done["silent_workers"] == 1
    assert [state(farm, i) for i in ids] == ["FINISHED", "WAITING", "WAITING"]
    assert sorted(drain(farm, "w2")) == ids[1:]


def test_several_jobs_held_and_several_runs_reported_in_one_end(farm: Any) -> None:
    ids = [add(farm, title=f"j{i}", retry=0) for i in range(6)]
    first = pick(farm)
    result = hold_end(farm, first, pick=True, hold=2)
    second, held = result.next_job, result.held
    assert [second["id"], *(j["id"] for j in held)] == ids[1:4]
    # The slot ran the next job and both held ones; it reports the first two as `earlier`
    # and the third as its own, runs nothing now and holds the last two.
    ended = [
        RunReport(second["id"], second["event"], 0, b"two\n", 0),
        RunReport(held[0]["id"], held[0]["event"], 3, b"", 0),
    ]
    result = farm.uc.workers.end(
        Ping("w1"), held[1]["id"], held[1]["event"], 0, b"", None, hold=9, earlier=ended
    )
    assert not result.ignored and result.earlier_ignored == {}
    assert [j["id"] for j in result.held] == ids[4:6]  # capped by the queue, not by 9
    assert [state(farm, i) for i in ids[:4]] == ["FINISHED", "FINISHED", "ERROR", "FINISHED"]
    assert farm.logs.read(ids[1]) == b"two\n"
    # A run reported twice is ignored the second time, in `earlier` as anywhere.
    again = farm.uc.workers.end(
        Ping("w1"), result.held[0]["id"], result.held[0]["event"], 0, b"", None, earlier=ended[:1]
    )
    assert list(again.earlier_ignored) == [ids[1]] and "cancelled" in again.earlier_ignored[ids[1]]
    assert not again.ignored
