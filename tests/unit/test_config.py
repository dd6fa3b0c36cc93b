"""coalition.ini parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from coalition.config import ConfigError, find_config, load_server_settings
from coalition.server.guard import ReadLimits


def test_documented_defaults() -> None:
    s = load_server_settings(None)
    assert (s.port, s.timeout, s.db_type, s.db_sqlite_file, s.servermode, s.smtpport, s.smtptls) == (
        19211,
        10.0,
        "sqlite",
        "coalition.db",
        "normal",
        587,
        True,
    )
    assert (s.notifyafter, s.decreasepriorityafter, s.db_mysql_base, s.ldapunsafeapi) == (
        10,
        10,
        "base",
        False,
    )
    # README: "a request's headers must arrive within 10 s, its body at 64 KB/s after 30 s".
    assert (s.headertimeout, s.bodytimeout) == (10.0, 30.0)
    limits = ReadLimits()
    assert (limits.header_timeout, limits.body_timeout, limits.body_rate) == (10.0, 30.0, 64 * 1024)
    assert limits.body_seconds(64 * 1024 * 1024) == 30 + 1024


def test_values_aliases_and_multiline(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text(
        "[server]\nport=19300\nldapunsafeapi=True\nldaptemplatellogin = cn=__login__,dc=x\n"
        "commandwhitelist=global ^echo\n  @alice\n  ^render\n[worker]\nserverUrl=http://x\n"
    )
    s = load_server_settings(str(ini))
    assert (s.port, s.ldapunsafeapi, s.ldaptemplatelogin) == (19300, True, "cn=__login__,dc=x")
    assert s.commandwhitelist.splitlines() == ["global ^echo", "@alice", "^render"]


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("port=x", "port"),
        ("db_type=oracle", "db_type"),
        ("timeout=-1", "timeout"),
        ("smtptls=maybe", "smtptls"),
        ("headertimeout=nan", "headertimeout"),
        ("timeout=inf", "timeout"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, line: str, key: str) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text(f"[server]\n{line}\n")
    with pytest.raises(ConfigError, match=rf"\[server\] {key}:"):
        load_server_settings(str(ini))


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config(None, ("coalition.ini", str(tmp_path / "etc.ini"))) is None
    (tmp_path / "etc.ini").write_text("[server]\n")
    assert find_config(None, ("coalition.ini", str(tmp_path / "etc.ini"))) == str(tmp_path / "etc.ini")
    (tmp_path / "coalition.ini").write_text("[server]\n")
    assert find_config(None, ("coalition.ini", str(tmp_path / "etc.ini"))) == "coalition.ini"
    with pytest.raises(ConfigError, match="no such"):
        find_config("missing.ini")
