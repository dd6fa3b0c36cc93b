"""Wheels made from distributions installed in the test's own environment.

The algorithmic-art sample's step environment makes a venv and runs `pip install numpy
pillow`. Tests reach nothing beyond loopback, so the worker runs it with `PIP_NO_INDEX` and
`PIP_FIND_LINKS` naming a directory of wheels made here from the numpy and pillow installed
beside the tests (the `test` extra): each installed file, as its RECORD lists it, zipped
back with fresh WHEEL and RECORD files (PEP 427), for this interpreter's tag.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import sys
import sysconfig
import zipfile
from pathlib import Path


def tag() -> str:
    """This interpreter's wheel tag, e.g. cp311-cp311-linux_x86_64."""
    version = f"cp{sys.version_info.major}{sys.version_info.minor}"
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"{version}-{version}-{platform}"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def wheel_of(name: str, out: Path) -> Path:
    """A wheel of installed distribution `name` in `out`; returns its path."""
    dist = importlib.metadata.distribution(name)
    norm = dist.metadata["Name"].replace("-", "_")
    version = dist.version
    info = f"{norm}-{version}.dist-info"
    path = out / f"{norm}-{version}-{tag()}.whl"
    records = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        for file in dist.files or ():
            arc = str(file).replace("\\", "/")
            top = arc.split("/", 1)[0]
            if arc.startswith("..") or "__pycache__" in arc or top.endswith(".dist-info"):
                continue  # scripts outside site-packages, caches, and the old metadata
            data = Path(str(dist.locate_file(file))).read_bytes()
            whl.writestr(arc, data)
            records.append(_record_line(arc, data))
        metadata = (dist.read_text("METADATA") or "").encode()
        wheel = (
            f"Wheel-Version: 1.0\nGenerator: coalition-tests\nRoot-Is-Purelib: false\nTag: {tag()}\n".encode()
        )
        for arc, data in ((f"{info}/METADATA", metadata), (f"{info}/WHEEL", wheel)):
            whl.writestr(arc, data)
            records.append(_record_line(arc, data))
        records.append(f"{info}/RECORD,,")
        whl.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
    return path
