"""The worker bundle: the Debian packages a cloud worker installs at boot, and nothing else.

A bundle once held coalition-server too (`setup --bundle` was pointed at the whole build
output): dpkg stopped at its conffile prompt, the boot script aborted before the main program
was unpacked, and the worker still started. So the bundle is checked before it is uploaded:
from a directory only the worker packages are taken; a .deb or tarball that would install
anything else, the server above all, is refused with a message that says what to do.

A package is known by the Package field of its control file (read from the ar archive, as
dpkg-deb would), or by its file name (`name_version_arch.deb`) when the control member is
compressed in a way Python cannot read (zstd).
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import tarfile

# What a worker needs: the shared modules and the worker service (its unit, its user).
WORKER_PACKAGES = ("python3-coalition", "coalition-worker")
SERVER_PACKAGE = "coalition-server"

_AR_MAGIC = b"!<arch>\n"


def _ar_members(data: bytes) -> dict[str, bytes]:
    """The members of an ar archive (a .deb); {} when `data` is not one."""
    if not data.startswith(_AR_MAGIC):
        return {}
    out: dict[str, bytes] = {}
    pos = len(_AR_MAGIC)
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        if header[58:60] != b"`\n":
            return {}
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            return {}
        pos += 60
        out[name] = data[pos : pos + size]
        pos += size + (size % 2)  # members are padded to an even offset
    return out


def _control_field(control_tar: bytes, compression: str, field: str) -> str:
    raw = {"gz": gzip.decompress, "xz": lzma.decompress, "": lambda b: b}[compression](control_tar)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for member in tar.getmembers():
            if member.name.lstrip("./") == "control":
                f = tar.extractfile(member)
                text = f.read().decode("utf-8", "replace") if f else ""
                for line in text.splitlines():
                    key, _, value = line.partition(":")
                    if key.strip().lower() == field.lower():
                        return value.strip()
    return ""


def package_name(data: bytes, filename: str) -> str:
    """The Package of a .deb given its bytes; its file name's first field as a fallback.

    Raises ValueError when neither says (the file is not a Debian package).
    """
    members = _ar_members(data)
    for name, body in members.items():
        if name.startswith("control.tar"):
            ext = name[len("control.tar") :].lstrip(".")
            if ext in ("gz", "xz", ""):
                try:
                    found = _control_field(body, ext, "Package")
                except (OSError, EOFError, lzma.LZMAError, tarfile.TarError):
                    found = ""
                if found:
                    return found
    base = os.path.basename(filename)
    if base.endswith(".deb") and "_" in base:
        return base.split("_", 1)[0]
    raise ValueError(f"{filename}: not a Debian package (no control file, no name_version_arch.deb name)")


def _refuse(names: dict[str, str], where: str) -> None:
    """Raise ValueError if these packages ({file: package}) hold anything but the worker's."""
    if SERVER_PACKAGE in names.values():
        raise ValueError(
            f"{where}: the bundle would install {SERVER_PACKAGE}; a worker bundle holds only "
            f"{' and '.join(WORKER_PACKAGES)} (point --bundle at a directory, the rest is left out)"
        )
    others = sorted(f"{p} ({f})" for f, p in names.items() if p not in WORKER_PACKAGES)
    if others:
        raise ValueError(
            f"{where}: not a worker package: {', '.join(others)}; a worker bundle holds only "
            f"{' and '.join(WORKER_PACKAGES)}"
        )


def select_debs(directory: str) -> tuple[list[str], list[str]]:
    """(worker .deb files to bundle, other .deb files left out) of a build output directory.

    Raises ValueError when a worker package is missing or present twice.
    """
    chosen: dict[str, str] = {}
    skipped: list[str] = []
    for name in sorted(n for n in os.listdir(directory) if n.endswith(".deb")):
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            package = package_name(f.read(), name)
        if package not in WORKER_PACKAGES:
            skipped.append(name)
            continue
        if package in chosen:
            raise ValueError(
                f"{directory}: two {package} packages ({chosen[package]}, {name}); keep one version"
            )
        chosen[package] = name
    missing = [p for p in WORKER_PACKAGES if p not in chosen]
    if missing:
        raise ValueError(
            f"{directory}: no {' or '.join(missing)} .deb; "
            f"a worker bundle needs {' and '.join(WORKER_PACKAGES)}"
        )
    return [chosen[p] for p in WORKER_PACKAGES], skipped


def check_file(path: str, data: bytes) -> None:
    """Refuse a ready-made bundle (.deb or tarball of .debs) that holds more than the worker."""
    if path.endswith(".deb"):
        _refuse({os.path.basename(path): package_name(data, path)}, path)
        return
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names = {}
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith(".deb"):
                    f = tar.extractfile(member)
                    names[member.name] = package_name(f.read() if f else b"", member.name)
    except tarfile.TarError as exc:
        raise ValueError(f"{path}: neither a .deb nor a tarball of .debs: {exc}") from None
    if not names:
        raise ValueError(f"{path}: holds no .deb file")
    _refuse(names, path)
    missing = [p for p in WORKER_PACKAGES if p not in names.values()]
    if missing:
        raise ValueError(f"{path}: no {' or '.join(missing)} in the bundle")
