"""Thumbnails of a run's newest output, sent with its endjob (Pillow, when it is installed).

Which file: the newest one matching the job's `output` (`/render/out/f_####.png`: each run
of `#` stands for that many digits) written during the run, else the last file the log
said it saved in a known renderer's words (Blender: `Saved: '/render/out/f_0004.png'`). A
worker without Pillow (python3-pil) sends none, and says so once in its log.
"""

from __future__ import annotations

import base64
import glob
import io
import logging
import os
import re
from typing import Any

from .spool import RunLog

log = logging.getLogger("coalition.worker")

SIZE = 256  # pixels, the longer side
MAX_BYTES = 128 * 1024  # what the server accepts
MAX_SOURCE = 512 * 1024 * 1024  # larger files are not opened (a 16k EXR is not a preview)
_SAVED = re.compile(rb"Saved: '([^'\n]+)'")
_warned = False


class ScanningLog(RunLog):
    """A RunLog that also remembers the last file the output said it saved."""

    def __init__(self, spooldir: str | None = None, **kw: Any) -> None:
        super().__init__(spooldir, **kw)
        self.saved: str = ""
        self._tail = b""

    def write(self, data: bytes, *, force: bool = False) -> None:
        """Store the output (RunLog.write), noting `Saved: '...'` lines on the way."""
        super().write(data, force=force)
        if b"Saved: '" in data or self._tail:
            text = self._tail + data
            found = _SAVED.findall(text)
            if found:
                self.saved = found[-1].decode("utf-8", "replace")
            # A line split between two reads: keep its start for the next one.
            cut = text.rfind(b"\n")
            self._tail = text[cut + 1 :][-4096:] if b"Saved: '" in text[cut + 1 :] else b""


def newest_output(pattern: str, since: float) -> str | None:
    """The newest file matching `pattern` (`#` runs are digits) modified at or after `since`."""
    if not pattern or "#" not in pattern and not os.path.isfile(pattern):
        return None
    if "#" not in pattern:
        return pattern if os.path.getmtime(pattern) >= since else None
    regex = re.compile(
        re.sub(r"#+", lambda m: rf"\d{{{len(m.group(0))}}}", re.escape(pattern).replace(r"\#", "#"))
    )
    best: tuple[float, str] | None = None
    for path in glob.iglob(re.sub(r"#+", "*", glob.escape(pattern).replace("[#]", "#"))):
        if not regex.fullmatch(path):
            continue
        try:
            mtime = os.path.getmtime(path)
        except OSError:
            continue
        if mtime >= since and (best is None or mtime > best[0]):
            best = (mtime, path)
    return best[1] if best else None


def thumbnail(path: str) -> dict[str, str] | None:
    """`{"mime", "data"}` (base64 JPEG, at most SIZE pixels) of an image, or None."""
    global _warned
    try:
        from PIL import Image
    except ImportError:
        if not _warned:
            log.info("no thumbnails: Pillow is not installed (apt-get install python3-pil)")
            _warned = True
        return None
    try:
        if os.path.getsize(path) > MAX_SOURCE:
            return None
        with Image.open(path) as image:
            image.thumbnail((SIZE, SIZE))
            rgb = image.convert("RGB")
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=80)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        log.debug("no thumbnail of %s: %s", path, exc)
        return None
    data = out.getvalue()
    if len(data) > MAX_BYTES:
        return None
    return {"mime": "image/jpeg", "data": base64.b64encode(data).decode("ascii")}


def for_run(output_pattern: str, log_saved: str, started_wall: float) -> dict[str, str] | None:
    """The thumbnail to send with a run's endjob, if there is one to make."""
    path = newest_output(output_pattern, started_wall) if output_pattern else None
    if path is None and log_saved and os.path.isfile(log_saved):
        path = log_saved
    return thumbnail(path) if path else None
