"""Failed boots (issue 14): recorded once with the instance's own reason, backed off
exponentially one probe at a time, stopped at the limit, resumed by a boot that works or by
an operator's clear; the record lives in the database (CloudFarm over a real SQLite store)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from coalition.cloud import cli
from coalition.cloud.base import GONE, Instance, boot_failure_line
from coalition.cloud.config import CloudSettings
from coalition.cloud.policy import BootFailure, Limits, boot_backoff, boot_suspects, plan
from coalition.cloud.reconcile import Autoscaler
from coalition.joblogs import JobLogs
from coalition.store import SqliteStore
from coalition.usecases import Context
from coalition.usecases.cloudfarm import CloudFarm
from tests.cloud.fakes import Clock, FakeCloud, FakeFarm

ANY = frozenset()
NOW = 100_000.0
LIMITS = Limits(max_instances=10, start_delay=0, boot_timeout=600, batch=10)
CONSOLE = (
    "[  OK  ] Started cloud-init.\n"
    "Setting up coalition-worker ...\n"
    "coalition-cloud-boot: FAILED: main program srv/guerilla.tar.gz not found in the bucket\n"
    "[  OK  ] Reached target Power-Off.\n"
)


def starting(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "state": "STARTING",
        "ping_time": None,
        "start_time": NOW - 100,
        "current_job": None,
    }


# -- the pure part ------------------------------------------------------------------------------


def test_boot_backoff_doubles_then_stops() -> None:
    fails = [BootFailure(NOW + i, f"cloud-{i}", "x") for i in range(6)]
    assert boot_backoff([], LIMITS).active is False
    assert [boot_backoff(fails[:n], LIMITS).until - fails[n - 1].at for n in (1, 2, 3, 4)] == [
        60,
        120,
        240,
        480,
    ]
    assert boot_backoff(fails[:5], LIMITS).stopped
    assert not boot_backoff(fails, replace(LIMITS, boot_failure_limit=0)).stopped  # 0: back off only
    capped = boot_backoff(fails, replace(LIMITS, boot_failure_limit=0, boot_backoff_max=300))
    assert capped.until == fails[-1].at + 300


def test_console_line_is_the_reason() -> None:
    assert boot_failure_line(CONSOLE) == "main program srv/guerilla.tar.gz not found in the bucket"
    assert boot_failure_line("no marker\n") == ""


def test_a_stopped_instance_that_never_registered_is_a_failed_boot_counted_once() -> None:
    inst = Instance("i-1", "cloud-a", "stopped", NOW - 100)
    p = plan(
        ready={ANY: 3},
        instances=[inst],
        workers=[starting("cloud-a")],
        limits=LIMITS,
        now=NOW,
        boot_reports={"cloud-a": "dpkg error"},
    )
    assert p.terminate == ("i-1",)
    assert p.boot_failed == (BootFailure(NOW, "cloud-a", "dpkg error"),)
    assert p.launch == () and "boot back-off for 60s" in p.hold
    # Once its row is TERMINATED (the autoscaler does it with the record), it is not recounted.
    again = plan(
        ready={ANY: 3},
        instances=[replace(inst, state=GONE)],
        workers=[{**starting("cloud-a"), "state": "TERMINATED"}],
        limits=LIMITS,
        now=NOW + 10,
        boot_failures=p.boot_failed,
    )
    assert again.boot_failed == () and again.terminate == ()


def test_after_the_back_off_one_probe_then_a_working_boot_resets() -> None:
    fails = (BootFailure(NOW, "cloud-a", "x"), BootFailure(NOW, "cloud-b", "x"))
    held = plan(ready={ANY: 5}, instances=[], workers=[], limits=LIMITS, now=NOW + 119, boot_failures=fails)
    assert held.launch == () and "2 failed boot(s) in a row: boot back-off for 120s" in held.hold
    probe = plan(ready={ANY: 5}, instances=[], workers=[], limits=LIMITS, now=NOW + 120, boot_failures=fails)
    assert len(probe.launch) == 1 and "a probe after 2 failed boot(s)" in probe.reasons[-1]
    name = probe.launch[0]
    booting = plan(
        ready={ANY: 5},
        instances=[Instance("i-9", name, "pending", NOW + 120)],
        workers=[starting(name)],
        limits=LIMITS,
        now=NOW + 200,
        boot_failures=fails,
    )
    assert booting.launch == () and "a probe instance is booting" in booting.hold
    ok = plan(
        ready={ANY: 5},
        instances=[Instance("i-9", name, "running", NOW + 120)],
        workers=[{**starting(name), "state": "WORKING", "current_job": 1}],
        limits=LIMITS,
        now=NOW + 230,
        boot_failures=fails,
    )
    assert ok.boot_ok == name and len(ok.launch) == 5  # the whole deficit again


def test_suspects_are_only_our_starting_workers_that_stopped_or_timed_out() -> None:
    instances = [
        Instance("i-1", "cloud-a", "stopped", NOW - 100),
        Instance("i-2", "cloud-b", "pending", NOW - 700),
        Instance("i-3", "cloud-c", "pending", NOW - 100),
        Instance("i-4", "cloud-d", "stopped", NOW - 100),  # registered once: a preemption
    ]
    workers = [
        starting("cloud-a"),
        starting("cloud-b"),
        starting("cloud-c"),
        {"name": "cloud-d", "state": "WAITING"},
    ]
    assert [i.name for i in boot_suspects(instances, workers, LIMITS, NOW)] == ["cloud-a", "cloud-b"]


# -- the autoscaler over a fake cloud ----------------------------------------------------------


@pytest.fixture
def rig(make_settings: Callable[..., CloudSettings]) -> tuple[Autoscaler, FakeCloud, FakeFarm, Clock]:
    settings = make_settings(
        "aws",
        {
            "coalition": {
                "workerinstancemax": "4",
                "workerinstancestartdelay": "0",
                "workerinstanceboottimeout": "600",
                "workerinstancebootfailures": "3",
            }
        },
    )
    clock = Clock()
    cloud, farm = FakeCloud(clock), FakeFarm(clock)
    return Autoscaler(cloud, settings, farm, clock), cloud, farm, clock


def test_failing_boots_back_off_stop_with_a_log_line_and_resume_on_clear(rig: Any, caplog: Any) -> None:
    scaler, cloud, farm, clock = rig
    caplog.set_level(logging.INFO, logger="coalition.cloud")
    farm.ready[ANY] = 4
    first = scaler.tick().launch  # type: ignore[union-attr]
    assert len(first) == 4
    clock.advance(90)
    for name in first:  # every boot script failed the same way and powered its VM off
        cloud.power_off(name, CONSOLE)
    launched = list(first)
    for _ in range(400):  # 4000 s
        p = scaler.tick()
        assert p is not None
        launched += p.launch
        for name in p.launch:
            clock.advance(1)
            cloud.power_off(name, CONSOLE)
        clock.advance(10)
    # 4 failures at once pass the limit of 3: stopped, no probe. Before issue 14 the farm
    # relaunched every boot timeout, forever.
    assert launched == list(first)
    failures = farm.boot_failures()
    assert [n for _, n, _ in failures] == sorted(first)
    assert {r for _, _, r in failures} == {"main program srv/guerilla.tar.gz not found in the bucket"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in first:
        assert (
            f"cloud: boot failed: {name}: main program srv/guerilla.tar.gz not found in the bucket"
            in warnings
        )
    assert any("launches stopped after 4 failed boot(s) in a row" in w for w in warnings)
    assert any("launches stopped after 4 failed boot(s)" in e for e in farm.events)
    assert cloud.vms == {}  # the stopped VMs were deleted
    # The operator fixes the bucket and clears: launching resumes at full speed.
    assert scaler.clear_backoff("cli") == 4
    p = scaler.tick()
    assert p is not None and len(p.launch) == 4


def test_one_failure_then_a_good_probe_resets(rig: Any) -> None:
    scaler, cloud, farm, clock = rig
    farm.ready[ANY] = 2
    a, b = scaler.tick().launch  # type: ignore[union-attr]
    clock.advance(60)
    cloud.power_off(a, CONSOLE)
    cloud.boot(b)
    farm.register(b)
    assert scaler.tick().boot_failed[0].name == a  # type: ignore[union-attr]
    clock.advance(61)
    probe = scaler.tick().launch  # type: ignore[union-attr]
    assert len(probe) == 1
    clock.advance(60)
    cloud.boot(probe[0])
    farm.register(probe[0])
    assert scaler.tick().boot_ok == probe[0]  # type: ignore[union-attr]
    assert farm.boot_failures() == []


# -- the record in the database ------------------------------------------------------------------


@pytest.fixture
def db_farm(tmp_path: Path) -> tuple[CloudFarm, Clock]:
    store = SqliteStore(str(tmp_path / "coalition.db"))
    store.init()
    clock = Clock()
    return CloudFarm(Context(store, JobLogs(str(tmp_path / "logs"), 1024 * 1024), clock=clock)), clock


def test_db_farm_keeps_the_failures_in_a_row(db_farm: Any) -> None:
    farm, clock = db_farm
    assert farm.boot_failures() == []
    farm.record_boot_failure("cloud-1", "dpkg: error: conffile prompt")
    clock.advance(5)
    farm.record_event("cloud: launch 1 instance(s)")  # other events do not break the run
    farm.record_boot_failure("cloud-2", "no worker registered 900s after launch")
    assert [(n, r) for _, n, r in farm.boot_failures()] == [
        ("cloud-1", "dpkg: error: conffile prompt"),
        ("cloud-2", "no worker registered 900s after launch"),
    ]
    farm.record_boot_ok("cloud-3")
    assert farm.boot_failures() == []
    farm.record_boot_failure("cloud-4", "x: y")
    assert farm.boot_failures() == [(clock(), "cloud-4", "x: y")]
    assert farm.clear_boot_backoff("alice") == 1
    assert farm.boot_failures() == []
    # A second CloudFarm (another server replica) sees the same record.
    farm.record_boot_failure("cloud-5", "z")
    assert [n for _, n, _ in CloudFarm(farm.ctx).boot_failures()] == ["cloud-5"]


def test_clear_backoff_cli(db_farm: Any, tmp_path: Path, capsys: Any) -> None:
    farm, _ = db_farm
    farm.record_boot_failure("cloud-1", "bad bundle")
    (tmp_path / "coalition.ini").write_text(
        f"[server]\ndb_type = sqlite\ndb_sqlite_file = {tmp_path / 'coalition.db'}\n"
    )
    assert cli_run("cloud", "clear-backoff", "--config-dir", str(tmp_path)) == 0
    assert "cleared 1 failed boot(s)" in capsys.readouterr().out
    assert farm.boot_failures() == []
    assert cli_run("cloud", "clear-backoff", "--config-dir", str(tmp_path / "nowhere")) == 1


def cli_run(*argv: str) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="coalition")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_server_token_reads_the_workertokenfile_the_package_makes(tmp_path: Path) -> None:
    from coalition.cloud.reconcile import server_token

    (tmp_path / "workertoken").write_text("from-the-file\n")
    ini = tmp_path / "coalition.ini"
    ini.write_text(f"[server]\nworkertokenfile = {tmp_path / 'workertoken'}\n")
    assert server_token(str(tmp_path)) == "from-the-file"
    ini.write_text(f"[server]\nworkertoken = inline\nworkertokenfile = {tmp_path / 'workertoken'}\n")
    assert server_token(str(tmp_path)) == "inline"
