"""`coalition cloud setup --bundle`: only the worker's packages go into the bucket.

The packages are real (built with dpkg-deb), so the check reads their control files as a
boot's dpkg would; the file names lie on purpose where that matters.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from coalition.cloud import bundle
from tests.cloud import test_cli
from tests.cloud.test_cli import run
from tests.support import require

config_dir = test_cli.config_dir  # the same two ini files as the CLI tests


def make_deb(out: Path, package: str, filename: str | None = None, postinst: str = "") -> Path:
    """A minimal real .deb of `package` (no files, maybe a postinst), as dpkg-deb builds it."""
    require(subprocess.run(["which", "dpkg-deb"], capture_output=True).returncode == 0, "dpkg-deb missing")
    root = out.parent / f"root-{out.name}-{package}-{(filename or '').replace('.', '-')}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 5.0.0\nArchitecture: all\n"
        "Maintainer: Coalition tests <t@example.org>\nDescription: test package\n"
    )
    if postinst:
        (root / "DEBIAN" / "postinst").write_text(postinst)
        (root / "DEBIAN" / "postinst").chmod(0o755)
    path = out / (filename or f"{package}_5.0.0_all.deb")
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(path)],
        check=True,
        capture_output=True,
    )
    return path


@pytest.fixture
def build_output(tmp_path: Path) -> Path:
    """What `dpkg-buildpackage` leaves: every binary package of the source."""
    d = tmp_path / "build"
    d.mkdir()
    for package in ("python3-coalition", "coalition-worker", "coalition-server"):
        make_deb(d, package)
    return d


def test_package_name_comes_from_the_control_file(tmp_path: Path) -> None:
    deb = make_deb(tmp_path, "coalition-server", "coalition-worker_5.0.0_all.deb")
    assert bundle.package_name(deb.read_bytes(), deb.name) == "coalition-server"
    with pytest.raises(ValueError, match="not a Debian package"):
        bundle.package_name(b"hello", "notes.txt")


def test_directory_bundle_leaves_the_server_out(
    aws: Any, config_dir: Path, build_output: Path, capsys: Any
) -> None:
    assert run("cloud", "setup", "aws", "--config-dir", str(config_dir), "--bundle", str(build_output)) == 0
    out = capsys.readouterr().out
    assert "left out of the worker bundle: coalition-server_5.0.0_all.deb" in out
    body = (
        aws.client("s3").get_object(Bucket="coalition-test-bucket", Key="srv/coalition.tar.gz")["Body"].read()
    )
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert sorted(tar.getnames()) == ["coalition-worker_5.0.0_all.deb", "python3-coalition_5.0.0_all.deb"]


def test_server_renamed_as_worker_is_still_left_out(tmp_path: Path) -> None:
    d = tmp_path / "out"
    d.mkdir()
    make_deb(d, "python3-coalition")
    make_deb(d, "coalition-server", "coalition-worker_5.0.0_all.deb")
    with pytest.raises(ValueError, match="no coalition-worker .deb"):
        bundle.select_debs(str(d))


def test_a_tarball_holding_the_server_is_refused_and_nothing_changes(
    aws: Any,
    config_dir: Path,
    build_output: Path,
    tmp_path: Path,
    capsys: Any,
) -> None:
    tarball = tmp_path / "everything.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for deb in sorted(build_output.iterdir()):
            tar.add(deb, arcname=deb.name)
    assert run("cloud", "setup", "aws", "--config-dir", str(config_dir), "--bundle", str(tarball)) == 1
    err = capsys.readouterr().err
    assert "would install coalition-server" in err and "python3-coalition and coalition-worker" in err
    assert aws.client("s3").list_buckets()["Buckets"] == []  # refused before any change


def test_a_single_server_deb_is_refused(aws: Any, config_dir: Path, build_output: Path, capsys: Any) -> None:
    server = build_output / "coalition-server_5.0.0_all.deb"
    argv = ("cloud", "setup", "aws", "--dry-run", "--config-dir", str(config_dir), "--bundle", str(server))
    assert run(*argv) == 1
    assert "would install coalition-server" in capsys.readouterr().err


def test_a_directory_without_the_worker_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "half"
    d.mkdir()
    make_deb(d, "python3-coalition")
    with pytest.raises(ValueError, match="no coalition-worker .deb; a worker bundle needs"):
        bundle.select_debs(str(d))
    make_deb(d, "coalition-worker")
    make_deb(d, "coalition-worker", "coalition-worker_5.0.1_all.deb")
    with pytest.raises(ValueError, match="two coalition-worker packages"):
        bundle.select_debs(str(d))


def test_a_tarball_of_only_the_worker_is_taken(tmp_path: Path) -> None:
    d = tmp_path / "w"
    d.mkdir()
    debs = [make_deb(d, "python3-coalition"), make_deb(d, "coalition-worker")]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for deb in debs:
            tar.add(deb, arcname=deb.name)
    bundle.check_file("w.tar.gz", raw.getvalue())  # no exception
    with pytest.raises(ValueError, match="neither a .deb nor a tarball"):
        bundle.check_file("junk.tar.gz", b"junk")
