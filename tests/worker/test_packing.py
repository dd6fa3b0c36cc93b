"""Resource requests with real worker processes: a packing worker runs as many jobs as fit,
pins each GPU job to its own devices, lets a job that requests nothing run alone; fixed slots
stay equal shares; the server shows what each host has and holds.

Each job writes what it was given to a file, then waits for a `go` file, so the test sees
which jobs run side by side (every wait has a deadline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support import wait_for
from tests.worker.helpers import wait_state

PROBE = (
    'echo "cuda=${{CUDA_VISIBLE_DEVICES-unset}} cores=${{COALITION_CORES-}}" > {out}/$COALITION_JOB_ID; '
    "timeout 30 sh -c 'until [ -e {go} ]; do sleep 0.05; done'"
)


def probe(tmp_path: Path) -> tuple[str, Path, Path]:
    out, go = tmp_path / "out", tmp_path / "go"
    out.mkdir()
    return PROBE.format(out=out, go=go), out, go


def working(server: Any, ids: list[int]) -> list[int]:
    return [i for i in ids if server.job(i)["state"] == "WORKING"]


def seen(out: Path, job_id: int) -> str:
    path = out / str(job_id)
    return path.read_text().strip() if path.exists() else ""


def test_a_packing_worker_runs_as_many_jobs_as_fit(server: Any, make_worker: Any, tmp_path: Path) -> None:
    cmd, out, go = probe(tmp_path)
    ids = [server.submit(command=cmd, title=f"two cores {i}", cores=2, memory=1000) for i in range(3)]
    make_worker(server.url, "--cores", "4", "--memory", "8000")
    wait_for(lambda: len(working(server, ids)) == 2, timeout=20, what="two jobs side by side")
    running = working(server, ids)
    assert running == ids[:2]
    assert server.job(ids[2])["state"] == "WAITING"  # 2 + 2 cores: no room for a third
    assert {seen(out, i) for i in running} == {"cuda=unset cores=2"}
    workers = {w["name"]: w for w in server.api("GET", "/api/workers")}
    assert (workers["w0"]["cores"], workers["w0"]["memory"], workers["w0"]["gpus"]) == (4, 8000, 0)
    # Four slots (one per core), listed as the host first runs that many jobs at once.
    assert sorted(workers) == ["w0", "w0-2"] and {w["host"] for w in workers.values()} == {"w0"}
    wait_for(lambda: server.api("GET", "/api/workers")[0]["used_cores"] == 4, what="used cores reported")
    why = server.api("GET", f"/api/jobs/{ids[2]}/why")
    assert [r["text"] for r in why["reasons"]][0].startswith(
        "waiting for a worker with 2 cores, 1000 MB free"
    )
    go.touch()
    for i in ids:
        wait_state(server, i, "FINISHED", timeout=30)


def test_gpu_jobs_get_their_own_devices(server: Any, make_worker: Any, tmp_path: Path) -> None:
    cmd, out, go = probe(tmp_path)
    a = server.submit(command=cmd, title="gpu a", gpus=1)
    b = server.submit(command=cmd, title="gpu b", gpus=1)
    cpu = server.submit(command=cmd, title="cpu", cores=1)
    make_worker(server.url, "--cores", "8", "--gpus", "2", "--memory", "8000")
    wait_for(lambda: len(working(server, [a, b, cpu])) == 3, timeout=20, what="three jobs side by side")
    wait_for(lambda: all(seen(out, i) for i in (a, b, cpu)), what="what each job was given")
    assert sorted([seen(out, a), seen(out, b)]) == ["cuda=0 cores=1", "cuda=1 cores=1"]
    assert seen(out, cpu) == "cuda= cores=1"  # a job asking for no GPU sees none
    go.touch()
    for i in (a, b, cpu):
        wait_state(server, i, "FINISHED", timeout=30)


def test_a_job_that_requests_nothing_runs_alone(server: Any, make_worker: Any, tmp_path: Path) -> None:
    cmd, out, go = probe(tmp_path)
    small = server.submit(command=cmd, title="small", cores=1)
    bare = server.submit(command=cmd, title="bare")
    make_worker(server.url, "--cores", "4", "--gpus", "1")
    wait_state(server, small, "WORKING", timeout=20)
    why = server.api("GET", f"/api/jobs/{bare}/why")
    assert server.job(bare)["state"] == "WAITING", why
    go.touch()
    wait_state(server, small, "FINISHED", timeout=30)
    wait_state(server, bare, "FINISHED", timeout=30)
    assert seen(out, bare) == "cuda=unset cores=4"  # the whole host, every GPU visible


def test_fixed_slots_are_equal_shares(server: Any, make_worker: Any, tmp_path: Path) -> None:
    cmd, out, go = probe(tmp_path)
    ids = [server.submit(command=cmd, title=f"bare {i}") for i in range(2)]
    big = server.submit(command=cmd, title="too big for a slot", cores=3)
    make_worker(server.url, "-w", "2", "--cores", "4", "--gpus", "2")
    wait_for(lambda: len(working(server, ids)) == 2, timeout=20, what="both slots busy")
    wait_for(lambda: all(seen(out, i) for i in ids), what="what each job was given")
    assert sorted(seen(out, i) for i in ids) == ["cuda=0 cores=2", "cuda=1 cores=2"]
    go.touch()
    for i in ids:
        wait_state(server, i, "FINISHED", timeout=30)
    reasons = server.api("GET", f"/api/jobs/{big}/why")["reasons"]
    assert reasons[0]["text"] == "no worker has 3 cores", reasons
    assert server.job(big)["state"] == "WAITING"
