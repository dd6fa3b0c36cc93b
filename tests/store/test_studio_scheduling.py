"""Studio scheduling through the use cases, on SQLite and MariaDB alike: farm-wide limits
taken in the pick and given back on every way a run stops, frame-to-frame dependencies
with chunks of different sizes, cycles refused, and `why`."""

from __future__ import annotations

from typing import Any

import pytest

from coalition.model import JobEdit, JobSpec, ValidationError
from coalition.usecases.limits import LimitConfig, Limits
from coalition.usecases.messages import Ping


def add(farm: Any, **kw: Any) -> int:
    kw.setdefault("command", "true")
    return farm.uc.operator.submit(JobSpec(**kw))


def pick(farm: Any, name: str = "w1") -> dict[str, Any] | None:
    return farm.uc.workers.pick(Ping(name=name))


def end(farm: Any, job: dict[str, Any], code: int = 0, name: str = "w1") -> Any:
    return farm.uc.workers.end(Ping(name=name), job["id"], job["event"], code, b"", None)


def state(farm: Any, job_id: int) -> str:
    return farm.uc.reads.job(job_id)["state"]


def limits(farm: Any, **capacities: int) -> Limits:
    lim = Limits(farm.ctx, [LimitConfig(n, c) for n, c in capacities.items()])
    lim.seed()
    return lim


def use(lim: Limits) -> dict[str, int]:
    return {r["name"]: r["in_use"] for r in lim.all()}


def test_a_job_runs_only_while_its_limits_have_room(farm: Any) -> None:
    lim = limits(farm, nuke=2, arnold=3)
    a = add(farm, title="a", limits="nuke:1,arnold:2")
    b = add(farm, title="b", limits="nuke:1,arnold:2")
    c = add(farm, title="c", limits="nuke:1")
    free = add(farm, title="free")
    first = pick(farm, "w1")
    assert first is not None and first["id"] == a
    assert use(lim) == {"arnold": 2, "nuke": 1}
    # b needs 2 arnold, only 1 left: passed over for c (nuke has room), then the free job.
    assert [pick(farm, "w2")["id"], pick(farm, "w3")["id"]] == [c, free]  # type: ignore[index]
    assert pick(farm, "w4") is None
    assert use(lim) == {"arnold": 2, "nuke": 2}
    why = farm.uc.reads.job(b)
    assert why["state"] == "WAITING"
    reasons = lim.why(b)["reasons"]
    assert [r["kind"] for r in reasons] == ["limit", "limit"]
    assert reasons[1]["text"] == "waiting for limit nuke (2/2 in use, needs 1)"
    end(farm, first, 0, "w1")  # a finishes: its limits come back, b fits
    assert use(lim) == {"arnold": 0, "nuke": 1}
    assert pick(farm, "w1")["id"] == b  # type: ignore[index]
    assert use(lim) == {"arnold": 2, "nuke": 2}


def test_limits_come_back_on_error_pause_delete_and_silence(farm: Any) -> None:
    lim = limits(farm, nuke=1)
    job = add(farm, limits="nuke", retry=0)
    end(farm, pick(farm), 1)  # an error
    assert state(farm, job) == "ERROR" and use(lim) == {"nuke": 0}
    farm.uc.operator.reset([job])
    pick(farm)
    farm.uc.operator.pause([job])
    assert use(lim) == {"nuke": 0}
    farm.uc.operator.start([job])
    pick(farm)
    farm.uc.operator.delete([job])
    assert use(lim) == {"nuke": 0}
    # A worker gone silent: its run is requeued (released), then re-adopted (taken again).
    job = add(farm, limits="nuke")
    run = pick(farm)
    assert run is not None
    farm.clock.advance(60)
    farm.uc.upkeep.reap()
    assert use(lim) == {"nuke": 0} and state(farm, job) == "WAITING"
    farm.uc.workers.heartbeat(Ping(name="w1"), job, run["event"], b"", None)
    assert state(farm, job) == "WORKING" and use(lim) == {"nuke": 1}
    end(farm, run)
    assert use(lim) == {"nuke": 0}


def test_limits_are_validated_and_editable(farm: Any) -> None:
    lim = limits(farm, nuke=1)
    with pytest.raises(ValidationError, match="limits: unknown limit 'maya'"):
        add(farm, limits="maya:1")
    from coalition.model import parse_job_spec

    for bad, message in (("nuke:0", "between 1"), ("nu ke", "not a limit name"), ("nuke:x", "integer")):
        with pytest.raises(ValidationError, match=message):
            parse_job_spec({"command": "x", "limits": bad})
    assert parse_job_spec({"command": "x", "limits": "Nuke, arnold:2,nuke:1"}).limits == "arnold:2,nuke:2"
    job = add(farm, limits="nuke:1")
    lim.set({"nuke": 0})  # no room: the job waits
    assert pick(farm) is None
    lim.set({"nuke": 3})
    farm.uc.operator.edit({job: JobEdit({"limits": "nuke:2"})})
    assert pick(farm)["id"] == job  # type: ignore[index]
    assert use(lim) == {"nuke": 2}
    lim.delete("nuke")
    with pytest.raises(ValidationError, match="unknown limit 'nuke'"):
        farm.uc.operator.edit({job: JobEdit({"limits": "nuke:1"})})


def test_a_limit_command_counts_licences_used_outside_the_farm(farm: Any) -> None:
    lim = Limits(farm.ctx, [LimitConfig("arnold", 3, "count-arnold")])
    lim.seed()
    add(farm, title="x", limits="arnold:1")
    add(farm, title="y", limits="arnold:1")
    assert pick(farm, "w1") is not None
    # The licence server sees 3 in use: ours (1) and 2 elsewhere. No room left.
    assert lim.refresh(lambda command: 3 if command == "count-arnold" else None) == {"arnold": 2}
    assert pick(farm, "w2") is None
    assert lim.refresh(lambda command: 1) == {"arnold": 0}
    assert pick(farm, "w2") is not None
    assert lim.refresh(lambda command: None) == {}  # a failed command keeps the last count


def frames_job(farm: Any, title: str, chunks: list[tuple[int, int]], **kw: Any) -> tuple[int, list[int]]:
    group = add(farm, title=title, command="", paused=True, **kw)
    ids = farm.uc.operator.submit_many(
        [
            JobSpec(parent=group, title=f"{title} {a}-{b}", command="true", first_frame=a, last_frame=b)
            for a, b in chunks
        ]
    )
    farm.uc.operator.start([group])
    return group, ids


def test_frame_dependencies_release_chunk_by_chunk(farm: Any) -> None:
    render, r = frames_job(farm, "render", [(1, 1), (2, 2), (3, 3), (4, 4)])
    # Chunks of two frames: each waits for both render frames it covers.
    comp, c = frames_job(farm, "comp", [(1, 2), (3, 4)], frame_dep=render)
    assert [state(farm, i) for i in c] == ["PENDING", "PENDING"]
    runs = {}
    for n in range(4):  # only render frames are dispatchable: four workers take them
        job = pick(farm, f"w{n}")
        assert job is not None and job["id"] in r
        runs[job["id"]] = (job, f"w{n}")
    assert pick(farm, "w9") is None
    end(farm, runs[r[0]][0], 0, runs[r[0]][1])
    assert state(farm, c[0]) == "PENDING"  # frame 2 is not done yet
    end(farm, runs[r[1]][0], 0, runs[r[1]][1])
    assert [state(farm, i) for i in c] == ["WAITING", "PENDING"]
    why = Limits(farm.ctx).why(c[1])["reasons"]
    assert why[0]["kind"] == "frame_dependency" and why[0]["frame"] == 3
    assert why[0]["text"] == f"dependency frame 3 of job {render} (job {r[2]}) is WORKING"
    assert pick(farm, "w9")["id"] == c[0]  # type: ignore[index]
    end(farm, runs[r[2]][0], 0, runs[r[2]][1])
    assert state(farm, c[1]) == "PENDING"
    end(farm, runs[r[3]][0], 0, runs[r[3]][1])
    assert state(farm, c[1]) == "WAITING"
    # Resetting a render frame puts the waiting comp chunk back to waiting for it.
    farm.uc.operator.reset([r[3]])
    assert state(farm, c[1]) == "PENDING"
    assert farm.uc.reads.job(comp)["frame_dep"] == render


def test_a_chunk_added_later_sees_frames_already_finished(farm: Any) -> None:
    render, r = frames_job(farm, "render", [(1, 5), (6, 10)])
    job = pick(farm)
    assert job is not None
    end(farm, job)
    comp, c = frames_job(farm, "comp", [(1, 3), (4, 6), (11, 12)], frame_dep=render)
    # 1-3 covered by the finished chunk; 4-6 needs 6-10; 11-12 is covered by no render frame.
    assert [state(farm, i) for i in c] == ["WAITING", "PENDING", "WAITING"]


def test_frame_dependency_cycles_and_bad_targets_are_refused(farm: Any) -> None:
    render, _ = frames_job(farm, "render", [(1, 2)])
    comp, c = frames_job(farm, "comp", [(1, 2)], frame_dep=render)
    with pytest.raises(ValidationError, match=r"frame_dep: job \d+ cannot depend on job \d+: .*a cycle"):
        farm.uc.operator.edit({render: JobEdit({"frame_dep": comp})})
    with pytest.raises(ValidationError, match="cannot depend on itself"):
        farm.uc.operator.edit({render: JobEdit({"frame_dep": render})})
    with pytest.raises(ValidationError, match="frame_dep: job 999999 does not exist"):
        add(farm, frame_dep=999999)
    with pytest.raises(ValidationError, match="its own group"):
        add(farm, parent=comp, frame_dep=comp)
    with pytest.raises(ValidationError, match="its own child"):
        farm.uc.operator.edit({comp: JobEdit({"frame_dep": c[0]})})
    # Removing the frame dependency releases the chunks.
    farm.uc.operator.edit({comp: JobEdit({"frame_dep": 0})})
    assert state(farm, c[0]) == "WAITING"


def test_deleting_the_frame_source_releases_its_waiters(farm: Any) -> None:
    render, _ = frames_job(farm, "render", [(1, 2)])
    comp, c = frames_job(farm, "comp", [(1, 2)], frame_dep=render)
    assert state(farm, c[0]) == "PENDING"
    farm.uc.operator.delete([render])
    assert state(farm, c[0]) == "WAITING"
    assert farm.uc.reads.job(comp)["frame_dep"] == 0


def test_fair_share_between_users_at_the_same_priority(farm: Any) -> None:
    from coalition.usecases import Context, Settings, UseCases

    ctx = Context(farm.store, farm.logs, Settings(worker_timeout=10, fair_share=(("ann", 3.0),)), farm.clock)
    uc = UseCases.over(ctx)
    # bob submitted 40 frames first, ann 40 after, cat 2 at a higher priority.
    for user in ("bob", "ann"):
        group = uc.operator.submit(JobSpec(title=user, user=user))
        uc.operator.submit_many([JobSpec(parent=group, command="true", user=user) for _ in range(40)])
    urgent = [uc.operator.submit(JobSpec(command="true", user="cat", priority=2000)) for _ in range(2)]
    got = [uc.workers.pick(Ping(name=f"w{i}")) for i in range(22)]
    owners = [uc.reads.job(j["id"])["user"] for j in got if j]
    assert [j["id"] for j in got[:2] if j] == urgent  # priority first: fair share does not reorder it
    # Then the 20 other slots in proportion to the weights: ann 3, bob 1.
    assert owners.count("ann") == 15 and owners.count("bob") == 5, owners
    # Without fair share, the older submission takes every slot.
    plain = [pick(farm, f"p{i}") for i in range(4)]
    assert {farm.uc.reads.job(j["id"])["user"] for j in plain if j} == {"bob"}


def test_cycles_through_frame_and_whole_job_dependencies_are_refused(farm: Any) -> None:
    render, r = frames_job(farm, "render", [(1, 2)])
    comp, _ = frames_job(farm, "comp", [(1, 2)], frame_dep=render)
    # The render cannot wait (as a whole) for the comp that waits for its frames...
    with pytest.raises(ValidationError, match="dependencies: .*a cycle"):
        farm.uc.operator.set_dependencies(render, [comp])
    # ...nor can one of its chunks.
    with pytest.raises(ValidationError, match="dependencies: .*a cycle"):
        farm.uc.operator.set_dependencies(r[0], [comp])
    # A third job waiting for the comp, then the render waiting for it frame by frame: a cycle.
    third = add(farm, dependencies=(comp,))
    with pytest.raises(ValidationError, match="frame_dep: .*a cycle"):
        farm.uc.operator.edit({render: JobEdit({"frame_dep": third})})


def test_a_licence_refused_in_the_log_lowers_the_limit_for_a_while(farm: Any) -> None:
    lim = limits(farm, nuke=2)
    job = add(farm, limits="nuke", logrules="seats limit:nuke:600 out of seats")
    other = add(farm, limits="nuke:2")
    run = pick(farm)
    assert run is not None and run["id"] == job
    farm.uc.workers.heartbeat(Ping(name="w1"), job, run["event"], b"error: out of seats\n", 0)
    end(farm, run, 1)
    # Requeued without spending a retry (issue 16), and one licence counted as used outside.
    assert state(farm, job) == "WAITING" and farm.uc.reads.job(job)["fail_count"] == 0
    [row] = lim.all()
    assert (row["in_use"], row["lowered"], row["free"]) == (0, 1, 1)
    assert "1/2 in use, needs 2" in lim.why(other)["reasons"][0]["text"]
    assert pick(farm, "w2")["id"] == job  # type: ignore[index]  # needs 1: fits
    farm.clock.advance(601)
    assert lim.all()[0]["lowered"] == 0  # the time is up
