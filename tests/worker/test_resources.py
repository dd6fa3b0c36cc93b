"""The worker's resource pool: who asks for a job with what, what a run holds, how GPUs are
pinned; detection and the `[worker]` keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from coalition.worker import resources
from coalition.worker.resources import Capacity, Pool
from coalition.worker.settings import SettingsError, WorkerSettings, load_settings


def job(**need: int) -> dict[str, object]:
    return {"id": 1, "need": {"cores": 0, "memory": 0, "gpus": 0, "exclusive": 0, **need}}


def plain(free: dict[str, object] | None) -> dict[str, object] | None:
    """A `free` without the host's totals (every free carries them, for exclusive jobs)."""
    return None if free is None else {k: v for k, v in free.items() if not k.startswith("total_")}


def packing(cores: int = 8, memory: int = 16000, gpus: int = 2) -> Pool:
    cap = Capacity(cores, memory, tuple(str(i) for i in range(gpus)))
    return Pool(cap, resources.slot_names("h", 1, True, cores), packing=True)


def test_a_packing_host_asks_once_per_sync_with_what_is_free() -> None:
    pool = packing()
    budget, asks = pool.plan(["h", "h-2", "h-3"])
    # They share the budget (a sync at a time); spare slots as many as free cores could start.
    assert asks == {"h": None, "h-2": None, "h-3": None}
    assert pool.visible("h") and not pool.visible("h-2")
    assert plain(budget) == {"cores": 8, "memory": 16000, "gpus": 2, "bare": True, "whole": True}
    assert budget is not None and budget["total_gpus"] == 2
    assert pool.plan(["h-4"]) == (None, {})  # serialised: an ask is on its way
    assert pool.ask("h-4") is None
    grant = pool.settle("h", job(cores=2, gpus=1))
    pool.settle("h-3", None)
    assert grant is not None and grant.gpus == ("0",)
    assert grant.env["CUDA_VISIBLE_DEVICES"] == "0" and grant.env["COALITION_CORES"] == "2"
    pool.settle("h-2", None)
    free = pool.ask("h-2")
    assert plain(free) == {"cores": 6, "memory": 16000, "gpus": 1, "bare": False, "whole": False}
    second = pool.settle("h-2", job(cores=2, gpus=1))
    assert second is not None and second.gpus == ("1",)  # the other GPU
    assert pool.visible("h-2") and not pool.visible("h-3")
    assert pool.resources() == {
        "cores": 8,
        "memory": 16000,
        "gpus": 2,
        "used_cores": 4,
        "used_memory": 0,
        "used_gpus": 2,
    }
    pool.release("h")
    assert pool.ask("h")["gpus"] == 1  # type: ignore[index]


def test_a_bare_job_holds_a_packing_host_alone_and_sees_every_gpu() -> None:
    pool = packing()
    pool.plan(["h"])
    grant = pool.settle("h", job())
    assert grant is not None and grant.whole
    assert "CUDA_VISIBLE_DEVICES" not in grant.env  # it sees them all, as before packing
    assert pool.plan(["h-2"]) == (None, {}) and pool.ask("h-2") is None
    pool.release("h")
    assert pool.ask("h-2") is not None


def test_a_job_asking_for_no_gpu_sees_none_on_a_gpu_host() -> None:
    pool = packing()
    pool.plan(["h"])
    grant = pool.settle("h", job(cores=1))
    assert grant is not None and grant.env["CUDA_VISIBLE_DEVICES"] == ""
    assert grant.env["ROCR_VISIBLE_DEVICES"] == "" and grant.env["COALITION_GPUS"] == ""


def test_a_host_without_gpus_leaves_the_gpu_variables_alone() -> None:
    pool = packing(gpus=0)
    pool.plan(["h"])
    grant = pool.settle("h", job(cores=1, memory=500))
    assert grant is not None and "CUDA_VISIBLE_DEVICES" not in grant.env
    assert grant.env["COALITION_MEMORY"] == "500"


def test_fixed_slots_are_equal_shares_and_ask_side_by_side() -> None:
    cap = Capacity(8, 16000, ("0", "1", "2"))
    pool = Pool(cap, ["h-1", "h-2"], packing=False)
    budget, asks = pool.plan(["h-1", "h-2"])
    assert budget is None
    assert {k: plain(v) for k, v in asks.items()} == {
        "h-1": {"cores": 4, "memory": 8000, "gpus": 2, "bare": True, "whole": False},
        "h-2": {"cores": 4, "memory": 8000, "gpus": 1, "bare": True, "whole": False},
    }
    one = pool.settle("h-1", job())  # a bare job takes its slot's share, its GPUs pinned
    two = pool.settle("h-2", job(gpus=1))
    assert one is not None and one.gpus == ("0", "2") and one.env["CUDA_VISIBLE_DEVICES"] == "0,2"
    assert two is not None and two.gpus == ("1",)


def test_a_lone_fixed_slot_may_take_an_exclusive_job() -> None:
    pool = Pool(Capacity(8, 16000, ()), ["h-1", "h-2"], packing=False)
    free = pool.ask("h-1")
    assert free is not None and free["whole"] is True
    assert pool.ask("h-2") is None  # the whole host is on offer: nobody else asks meanwhile
    grant = pool.settle("h-1", job(exclusive=1))
    assert grant is not None and grant.whole and grant.cores == 8
    assert pool.ask("h-2") is None
    pool.release("h-1")
    assert pool.ask("h-2") is not None


def test_a_one_slot_worker_keeps_every_gpu_visible() -> None:
    pool = Pool(Capacity(4, 8000, ("0", "1")), ["h"], packing=False)
    pool.ask("h")
    grant = pool.settle("h", job())
    assert grant is not None and "CUDA_VISIBLE_DEVICES" not in grant.env


def test_slot_names() -> None:
    assert resources.slot_names("h", 1, False, 8) == ["h"]
    assert resources.slot_names("h", 3, False, 8) == ["h-1", "h-2", "h-3"]
    assert resources.slot_names("h", 1, True, 3) == ["h", "h-2", "h-3"]


def test_gpu_detection_reads_the_nvidia_driver_and_rocm(tmp_path: Path) -> None:
    nvidia = tmp_path / "nvidia"
    for bus in ("0000:01:00.0", "0000:02:00.0"):
        (nvidia / bus).mkdir(parents=True)
    assert resources.detect_gpus(str(nvidia), str(tmp_path / "none")) == ("0", "1")
    kfd = tmp_path / "kfd"
    for i, version in enumerate(("0", "90010", "90010")):  # node 0 is the CPU
        (kfd / str(i)).mkdir(parents=True)
        (kfd / str(i) / "properties").write_text(f"cpu_cores_count 8\ngfx_target_version {version}\n")
    assert resources.detect_gpus(str(tmp_path / "none"), str(kfd)) == ("0", "1")
    assert resources.detect_gpus(str(tmp_path / "none"), str(tmp_path / "none")) == ()


def test_the_worker_keys(tmp_path: Path) -> None:
    ini = tmp_path / "w.ini"
    ini.write_text("[worker]\ncores = 16\nmemory = 64000\ngpus = 0,2\ngpureserve = on\n")
    s = load_settings(str(ini))
    assert (s.packing, s.cores, s.memory, s.gpus, s.gpureserve) == (True, 16, 64000, ("0", "2"), "on")
    assert s.slot_names()[:2] == [s.name, f"{s.name}-2"] and len(s.slot_names()) == 16
    ini.write_text("[worker]\nworkers = 2\ngpus = 2\n")
    s = load_settings(str(ini))
    assert (s.packing, s.workers, s.gpus) == (False, 2, ("0", "1"))
    ini.write_text("[worker]\nworkers = auto\n")
    assert load_settings(str(ini), {"workers": 3}).packing is False  # -w wins
    ini.write_text("[worker]\ncpus = 1\n")
    assert load_settings(str(ini)).packing is False  # Coalition 4's cpus: fixed slots
    for bad in ("cores = -1", "gpus = 0;1", "gpureserve = maybe", "workers = many"):
        ini.write_text(f"[worker]\n{bad}\n")
        with pytest.raises(SettingsError, match=bad.split()[0]):
            load_settings(str(ini))


def test_settings_made_in_code_keep_fixed_slots() -> None:
    assert WorkerSettings(workers=2).slot_names() == [
        f"{WorkerSettings().name}-1",
        f"{WorkerSettings().name}-2",
    ]


def test_a_packing_host_offers_spare_slots_only_for_free_cores() -> None:
    pool = packing(cores=2)
    assert set(pool.plan(["h", "h-2"])[1]) == {"h", "h-2"}
    pool.settle("h", job(cores=2))
    pool.settle("h-2", None)
    assert pool.plan(["h-2"]) == (None, {})  # no core left: a spare slot would get nothing
