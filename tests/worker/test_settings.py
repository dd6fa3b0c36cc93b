"""The [worker] section: every documented key, new keys, one-line errors, warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from coalition.worker.main import build_parser, settings_overrides
from coalition.worker.settings import SettingsError, WorkerSettings, load_settings, normalise_url


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "coalition.ini"
    path.write_text(text)
    return str(path)


def test_documented_and_new_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[server]
port = 1234
[worker]
serverUrl = http://farm:19211/
workers = 3
name = render01
sleep = 0.5
cpus = None
startup = mount -a
verbose = 1
runcommand = sudo -u __user__ -E -- sh -c 'cd __dir__; __cmd__'
logfile = ./worker.log
token = s3cret
affinity = linux,maya
    linux
cacert = /etc/ssl/farm.pem
shutdown = finish
broadcast = 10.0.255.255
port = 19300
interruptions = gce
killgrace = 0
wake = off
""",
    )
    s = load_settings(path)
    assert s == WorkerSettings(
        server_url="http://farm:19211",
        workers=3,
        name="render01",
        sleep=0.5,
        cpus=None,
        startup="mount -a",
        verbose=True,
        runcommand="sudo -u __user__ -E -- sh -c 'cd __dir__; __cmd__'",
        logfile="./worker.log",
        token="s3cret",
        affinity="linux,maya\nlinux",
        cacert="/etc/ssl/farm.pem",
        shutdown="finish",
        broadcast="10.0.255.255",
        port=19300,
        interruptions="gce",
        killgrace=0.0,
        wake=False,
    )
    assert s.slot_names() == ["render01-1", "render01-2", "render01-3"]
    assert WorkerSettings(name="solo").slot_names() == ["solo"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("sleep = soon", "[worker] sleep: expected a number of seconds, got 'soon'"),
        ("sleep = 0", "[worker] sleep: expected a positive number of seconds, got '0'"),
        ("workers = 0", "[worker] workers: expected a number >= 1, got 0"),
        ("verbose = maybe", "[worker] verbose: expected 0/1, true/false or yes/no, got 'maybe'"),
        ("shutdown = later", "[worker] shutdown: expected one of finish, handback, got 'later'"),
        ("port = 70000", "[worker] port: expected a port number (1-65535), got 70000"),
        ("serverUrl = ftp://x", "[worker] serverUrl: expected a URL like http://server:19211, got 'ftp://x'"),
        ("name = two words", "[worker] name: a worker name has no spaces or slashes, got 'two words'"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(write(tmp_path, f"[worker]\n{line}\n"))
    assert str(err.value) == message


def test_unknown_key_is_a_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    load_settings(write(tmp_path, "[worker]\nsleeep = 3\n"), warn=warnings.append)
    assert warnings == ["[worker] sleeep: unknown key, ignored"]


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        "coalition.worker.settings.CONFIG_PATHS", ("coalition.ini", str(tmp_path / "etc.ini"))
    )
    assert load_settings(None).server_url == ""  # no file anywhere here: defaults
    (tmp_path / "etc.ini").write_text("[worker]\nname = frometc\n")
    assert load_settings(None).name == "frometc"
    write(tmp_path, "[worker]\nname = fromcwd\n")
    assert load_settings(None).name == "fromcwd"  # ./coalition.ini first
    with pytest.raises(SettingsError, match="no such configuration file"):
        load_settings(str(tmp_path / "missing.ini"))


def test_command_line_overrides_and_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    path = write(tmp_path, "[worker]\nworkers = 2\ncpus = 4\nname = ini\n")
    assert load_settings(path).workers == 4  # cpus overrides workers, as documented
    args = build_parser().parse_args(
        ["-c", path, "-n", "cli", "-w", "3", "-s", "1.5", "-a", "a,b;c", "farm:80"]
    )
    s = load_settings(path, settings_overrides(args))
    assert (s.name, s.workers, s.sleep, s.affinity, s.server_url) == (
        "cli",
        3,
        1.5,
        "a,b\nc",
        "http://farm:80",
    )


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("farm", "http://farm:19211"),
        ("farm:80", "http://farm:80"),
        ("http://farm", "http://farm"),
        ("https://farm:8443/", "https://farm:8443"),
        ("10.0.0.5", "http://10.0.0.5:19211"),
    ],
)
def test_normalise_url(text: str, url: str) -> None:
    assert normalise_url(text) == url
