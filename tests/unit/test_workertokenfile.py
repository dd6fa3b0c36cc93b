"""[server] workertokenfile: the token kept in a file of its own (the Debian package makes
one at install), used when workertoken is empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from coalition.config import ConfigError, load_server_settings


def ini(tmp_path: Path, **keys: object) -> str:
    path = tmp_path / "coalition.ini"
    path.write_text("[server]\n" + "".join(f"{k}={v}\n" for k, v in keys.items()))
    return str(path)


def test_the_file_gives_the_token(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    assert load_server_settings(ini(tmp_path, workertokenfile=tmp_path / "token")).workertoken == "s3cret"


def test_workertoken_wins_over_the_file(tmp_path: Path) -> None:
    settings = load_server_settings(ini(tmp_path, workertoken="inline", workertokenfile=tmp_path / "absent"))
    assert settings.workertoken == "inline"


@pytest.mark.parametrize("content", [None, "", "\n"])
def test_a_missing_or_empty_file_is_an_error(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "token").write_text(content)
    with pytest.raises(ConfigError, match="workertokenfile"):
        load_server_settings(ini(tmp_path, workertokenfile=tmp_path / "token"))
