"""Host metrics: per-core CPU from /proc/stat, memory from /proc/meminfo, our IP."""

from __future__ import annotations

from pathlib import Path

from coalition.worker.metrics import Metrics, busy_percent, local_ip, parse_meminfo, parse_proc_stat

STAT_1 = """cpu  300 0 100 600 0 0 0 0 0 0
cpu0 100 0 50 300 0 0 0 0 0 0
cpu1 200 0 50 300 0 0 0 0 0 0
intr 12345
"""
STAT_2 = """cpu  500 0 100 800 0 0 0 0 0 0
cpu0 100 0 50 400 0 0 0 0 0 0
cpu1 300 0 50 400 0 0 0 0 0 0
"""


def test_cpu_per_core_between_samples() -> None:
    first, second = parse_proc_stat(STAT_1), parse_proc_stat(STAT_2)
    assert first == [(150, 450), (250, 550)]
    assert busy_percent([], first) == [33.3, 45.5]  # since boot
    assert busy_percent(first, second) == [0.0, 50.0]


def test_memory() -> None:
    text = "MemTotal:       16384000 kB\nMemFree:  1000 kB\nMemAvailable:    8192000 kB\n"
    assert parse_meminfo(text) == (8000, 16000)
    old = "MemTotal: 2048 kB\nMemFree: 512 kB\nBuffers: 512 kB\nCached: 1024 kB\n"
    assert parse_meminfo(old) == (2, 2)


def test_sampler_reads_proc_and_caches(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text(STAT_1)
    (tmp_path / "meminfo").write_text("MemTotal: 4096 kB\nMemAvailable: 2048 kB\n")
    now = [0.0]
    m = Metrics(str(tmp_path), min_interval=1.0, clock=lambda: now[0])
    assert m.cpu() == [33.3, 45.5]
    (tmp_path / "stat").write_text(STAT_2)
    assert m.cpu() == [33.3, 45.5]  # within min_interval: the last figures
    now[0] = 2.0
    assert m.cpu() == [0.0, 50.0]
    snap = m.snapshot("127.0.0.1", 9)
    assert snap == {"cpu": [0.0, 50.0], "free_memory": 2, "total_memory": 4, "ip": "127.0.0.1"}


def test_missing_proc_gives_empty_figures(tmp_path: Path) -> None:
    m = Metrics(str(tmp_path / "nothing"))
    assert m.cpu() == [] and m.memory() == (0, 0)


def test_local_ip() -> None:
    assert local_ip("127.0.0.1", 19211) == "127.0.0.1"
    assert local_ip("not a host name at all", 1) == ""
