"""The `coalition` command line without a server: parsing, legacy form, frames, outcomes."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from coalition.cli import (
    UsageError,
    build_parser,
    is_legacy,
    job_outcome,
    main,
    resolve_server,
)
from coalition.frames import chunk_frames, fill_frames, parse_frames

COMMANDS = build_parser().commands  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "legacy"),
    [
        (
            [
                "--cmd=echo toto",
                "--priority=1000",
                "--affinity=linux",
                "--retry=10",
                "http://127.0.0.1:19211",
                "add",
            ],
            True,
        ),
        (["-c", "echo toto", "-p", "5", "http://farm:19211", "add"], True),
        (["-p5", "farm:19211", "list"], True),
        (["-i", "3", "http://farm", "remove"], True),
        (["add", "--cmd", "http://x add"], False),
        (["--server", "http://farm:1", "list"], False),
        (["--json", "list"], False),
        (["list"], False),
        ([], False),
        (["--", "http://farm", "add"], False),
    ],
)
def test_is_legacy(argv: list[str], legacy: bool) -> None:
    assert is_legacy(argv, COMMANDS) is legacy


def test_frames() -> None:
    assert parse_frames("1-10, 20-21,30") == [(1, 10), (20, 21), (30, 30)]
    assert chunk_frames([(1, 10)], 4) == [(1, 4), (5, 8), (9, 10)]
    assert chunk_frames(parse_frames("1-1000"), 10)[-1] == (991, 1000)
    assert len(chunk_frames(parse_frames("1-1000"), 10)) == 100
    assert (
        fill_frames("render -s {start} -e {end} | awk '{print}'", 5, 8) == "render -s 5 -e 8 | awk '{print}'"
    )
    for bad in ("10-1", "a-b", "1-", ""):
        with pytest.raises(UsageError):
            parse_frames(bad)
    with pytest.raises(UsageError):
        chunk_frames([(1, 2)], 0)


@pytest.mark.parametrize(
    ("job", "outcome"),
    [
        ({"state": "FINISHED"}, "FINISHED"),
        ({"state": "ERROR"}, "ERROR"),
        ({"state": "WAITING"}, None),
        ({"state": "PAUSED"}, None),
        ({"state": "ERROR", "total": 3, "total_finished": 1, "total_errors": 1, "total_working": 1}, None),
        ({"state": "ERROR", "total": 3, "total_finished": 2, "total_errors": 1, "total_working": 0}, "ERROR"),
        ({"state": "FINISHED", "total": 3, "total_finished": 3, "total_errors": 0}, "FINISHED"),
        ({"state": "WAITING", "total": 0, "children": 0}, None),
    ],
)
def test_job_outcome(job: dict, outcome: str | None) -> None:
    assert job_outcome(job) == outcome


def test_server_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("coalition.worker.settings.CONFIG_PATHS", ("coalition.ini",))  # not this host's /etc
    ns = argparse.Namespace(server=None, config=None)
    assert resolve_server(ns, {}) == "http://127.0.0.1:19211"
    (tmp_path / "coalition.ini").write_text("[server]\nport = 19300\n")
    assert resolve_server(ns, {}) == "http://127.0.0.1:19300"
    (tmp_path / "coalition.ini").write_text("[server]\nport = 19300\n[worker]\nserverUrl = farm\n")
    assert resolve_server(ns, {}) == "http://farm:19211"
    assert resolve_server(ns, {"COALITION_SERVER": "https://env:1"}) == "https://env:1"
    ns.server = "cli:2"
    assert resolve_server(ns, {"COALITION_SERVER": "https://env:1"}) == "http://cli:2"


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "no command given" in capsys.readouterr().err
    assert main(["add", "--server", "http://127.0.0.1:9"]) == 2
    assert (
        capsys.readouterr().err == "coalition: error: no command: use --cmd COMMAND (or: coalition add "
        "[options] -- COMMAND...)\n"
    )
    assert main(["show", "notanumber"]) == 2
    assert main(["--help"]) == 0


def test_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--server", "http://127.0.0.1:9", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("coalition: error: http://127.0.0.1:9:") and err.count("\n") == 1


def test_cloud_subcommand_is_plugged_in() -> None:
    try:
        import coalition.cloud.cli  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"coalition.cloud.cli does not import here: {exc}")
    assert "cloud" in COMMANDS
