"""Resource requests through the use cases, on SQLite and MariaDB alike: the pick hands out
only what fits what a worker offers, children inherit requests, a packing host's budget is
spent within one sync, GPU hosts keep their GPUs for GPU jobs, and `why` says what is missing."""

from __future__ import annotations

from typing import Any

from coalition.model import JobEdit, JobSpec
from coalition.scheduling import Free
from coalition.usecases.limits import Limits
from coalition.usecases.messages import HostResources, Ping, SlotReport


def add(farm: Any, **kw: Any) -> int:
    kw.setdefault("command", "true")
    return farm.uc.operator.submit(JobSpec(**kw))


def host(cores: int = 4, memory: int = 8000, gpus: int = 0) -> HostResources:
    return HostResources(cores, memory, gpus)


def offer(h: HostResources, cores: int | None = None, gpus: int | None = None, **kw: Any) -> Free:
    return Free(
        h.cores if cores is None else cores,
        h.memory,
        h.gpus if gpus is None else gpus,
        total_cores=h.cores,
        total_memory=h.memory,
        total_gpus=h.gpus,
        **kw,
    )


def pick(farm: Any, name: str, h: HostResources | None = None, free: Free | None = None, **kw: Any) -> Any:
    ping = Ping(name=name, resources=h, free=free, **kw)
    return farm.uc.workers.pick(ping)


def reasons(farm: Any, job_id: int) -> list[str]:
    return [r["text"] for r in Limits(farm.ctx, []).why(job_id)["reasons"]]


def test_the_pick_hands_out_only_what_fits(farm: Any) -> None:
    big = add(farm, title="big", cores=4, memory=6000)
    small = add(farm, title="small", cores=1)
    h = host(cores=4)
    got = pick(farm, "w1", h, offer(h, cores=2, bare=False))
    assert got["id"] == small and got["need"] == {"cores": 1, "memory": 0, "gpus": 0, "exclusive": 0}
    got = pick(farm, "w2", h, offer(h, cores=4))
    assert got["id"] == big and got["need"]["memory"] == 6000


def test_a_worker_that_offers_nothing_takes_only_jobs_that_ask_nothing(farm: Any) -> None:
    add(farm, title="needs", gpus=1)
    bare = add(farm, title="bare")
    assert pick(farm, "c4")["id"] == bare
    assert pick(farm, "c4-2") is None


def test_children_inherit_a_request_and_an_edit_rederives_them(farm: Any) -> None:
    group = add(farm, title="shot", command="", gpus=1)
    child = add(farm, title="frame", parent=group, cores=2)
    h = host(cores=8, gpus=1)
    assert pick(farm, "w1", h, offer(h, gpus=0)) is None  # it needs the group's GPU
    farm.uc.operator.edit({group: JobEdit({"gpus": 0})})
    got = pick(farm, "w1", h, offer(h, gpus=0))
    assert got["id"] == child and got["need"]["gpus"] == 0 and got["need"]["cores"] == 2


def test_a_packing_budget_is_spent_within_one_sync(farm: Any) -> None:
    ids = [add(farm, title=f"j{i}", cores=2) for i in range(3)]
    h = host(cores=4)
    budget = offer(h, bare=True, whole=True)
    slots = [SlotReport(name=n, pick=True) for n in ("p", "p-2", "p-3")]
    answer = farm.uc.workers.sync(Ping(name="p", resources=h, free=budget), slots, 2.0)
    handed = [a.job["id"] for a in answer.slots if a.job is not None]
    assert handed == ids[:2]  # 2 + 2 cores: the third waits for room
    row = {w["name"]: w for w in farm.uc.reads.workers()}["p"]
    assert (row["cores"], row["memory"], row["gpus"]) == (4, 8000, 0)


def test_a_bare_job_takes_a_packing_host_alone(farm: Any) -> None:
    bare = add(farm, title="bare")
    add(farm, title="small", cores=1)
    h = host(cores=4)
    budget = offer(h, bare=True, whole=True)
    slots = [SlotReport(name=n, pick=True) for n in ("p", "p-2")]
    answer = farm.uc.workers.sync(Ping(name="p", resources=h, free=budget), slots, 2.0)
    assert [a.job["id"] if a.job else None for a in answer.slots] == [bare, None]


def test_gpu_hosts_keep_their_gpus_for_gpu_jobs_while_cpu_hosts_are_alive(farm: Any) -> None:
    cpu_job = add(farm, title="cpu", cores=1)
    gpu_job = add(farm, title="gpu", gpus=1)
    cpu, gpu = host(cores=4), host(cores=4, gpus=1)
    pick(farm, "cpuhost", cpu, offer(cpu, cores=0))  # alive, with no room now
    got = pick(farm, "gpuhost", gpu, offer(gpu), gpureserve="auto")
    assert got["id"] == gpu_job
    farm.uc.operator.reset([gpu_job])
    got = pick(farm, "gpuhost2", gpu, offer(gpu, gpus=0), gpureserve="auto")
    assert got is None  # its GPU is busy; the CPU job is for the CPU host
    got = pick(farm, "gpuhost2", gpu, offer(gpu, gpus=0), gpureserve="off")
    assert got["id"] == cpu_job


def test_without_cpu_hosts_a_gpu_host_runs_cpu_jobs_too(farm: Any) -> None:
    cpu_job = add(farm, title="cpu", cores=1)
    gpu = host(cores=4, gpus=1)
    assert pick(farm, "gpuhost", gpu, offer(gpu), gpureserve="auto")["id"] == cpu_job
    add(farm, title="cpu2", cores=1)
    assert pick(farm, "gpuhost-2", gpu, offer(gpu), gpureserve="on") is None


def test_an_exclusive_job_needs_a_whole_host(farm: Any) -> None:
    job = add(farm, title="sim", exclusive=True)
    h = host(cores=16)
    assert pick(farm, "w1", h, offer(h, whole=False)) is None
    assert pick(farm, "w1", h, offer(h, cores=1, whole=True))["id"] == job


def test_nothing_is_held_behind_an_exclusive_job_and_no_held_job_is_exclusive(farm: Any) -> None:
    h = host(cores=4)
    first = add(farm, title="short")
    sim = add(farm, title="sim", exclusive=True)
    add(farm, title="after")
    ran = pick(farm, "w1", h, offer(h, whole=True))
    assert ran["id"] == first
    ping = Ping(name="w1", resources=h, free=offer(h, whole=True))
    result = farm.uc.workers.end(ping, first, ran["event"], 0, b"", None, pick=True, hold=True)
    assert result.next_job["id"] == sim and result.held == []  # the sim holds the host
    farm.uc.operator.reset([sim])
    farm.uc.operator.pause([sim])
    add(farm, title="sim2", exclusive=True, priority=999)  # first in line, but needs the host
    result = farm.uc.workers.end(ping, sim, result.next_job["event"], 0, b"", None, hold=True)
    assert [j["title"] for j in result.held] == ["after"]  # never held


def test_why_names_what_no_worker_has(farm: Any) -> None:
    job = add(farm, title="big gpu", gpus=4, cores=2)
    assert reasons(farm, job) == ["no worker is alive to take it"]
    h = host(cores=16, gpus=2)
    pick(farm, "w1", h, offer(h, cores=0, gpus=0))
    assert reasons(farm, job) == ["no worker has 4 GPUs"]
    add(farm, title="fits", gpus=1)
    fits = add(farm, title="fits too", gpus=2)
    assert reasons(farm, fits) == ["waiting for a worker with 2 GPUs free (1 slot could run it)"]


def test_failures_are_counted_per_host_not_per_slot(farm: Any) -> None:
    # A packing host's slots share its failures: a block made on one slot holds on the others,
    # and a host turned SICK stops all its slots.
    job = add(farm, title="fails here", retry=10, cores=1)
    h = host(cores=4)

    def run_and_fail(slot: str) -> None:
        got = farm.uc.workers.pick(Ping(name=slot, resources=h, free=offer(h), host="box"))
        assert got is not None and got["id"] == job, got
        farm.uc.workers.end(Ping(name=slot, host="box"), job, got["event"], 1, b"", None)

    for slot in ("box", "box-2", "box"):
        run_and_fail(slot)
    assert farm.uc.workers.pick(Ping(name="box-3", resources=h, free=offer(h), host="box")) is None
    blocks = farm.uc.blocks.blocks(job_id=job)
    assert [(b["worker"], b["failures"]) for b in blocks] == [("box", 3)]
    assert farm.uc.blocks.blocks(worker="box-2") == blocks  # asked by a slot's name
    assert farm.uc.blocks.lift(job, ["box-3"]) == 1
    other = farm.uc.workers.pick(Ping(name="box-3", resources=h, free=offer(h), host="box"))
    assert other is not None and other["id"] == job


def test_a_sick_host_stops_all_its_slots(farm: Any) -> None:
    h = host(cores=4)
    ping = {"resources": h, "free": offer(h), "host": "box"}
    long = add(farm, title="long", cores=1)
    running = farm.uc.workers.pick(Ping(name="box-2", **ping))
    assert running["id"] == long
    farm.uc.workers.pick(Ping(name="box-3", **ping))  # an idle slot the server knows
    for i in range(3):  # three different jobs fail on the host, on no other
        add(farm, title=f"bad {i}", cores=1, retry=0)
        got = farm.uc.workers.pick(Ping(name="box", **ping))
        farm.uc.workers.end(Ping(name="box", host="box"), got["id"], got["event"], 1, b"", None)
    states = {w["name"]: w["state"] for w in farm.uc.reads.workers()}
    assert states == {"box": "SICK", "box-2": "WORKING", "box-3": "SICK"}
    add(farm, title="next", cores=1)
    end = farm.uc.workers.end(Ping(name="box-2", host="box"), long, running["event"], 0, b"", None, pick=True)
    assert end.sick and end.next_job is None  # its run ended: it is SICK like its host
    assert farm.uc.blocks.clear_sick(["box"]) == ["box"]
    states = {w["name"]: w["state"] for w in farm.uc.reads.workers()}
    assert set(states.values()) == {"WAITING"}
