"""Frame ranges for `coalition add --frames 1-100 --chunk 10`: parse, chunk, fill templates."""

from __future__ import annotations

import re
from collections.abc import Sequence


class UsageError(Exception):
    """A command line that cannot be run (exit code 2)."""


def parse_frames(spec: str) -> list[tuple[int, int]]:
    """`1-100`, `1-10,20-30`, `5` -> inclusive ranges, in the order given."""
    ranges = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(-?\d+)\s*(?:-\s*(-?\d+))?", part)
        if not m:
            raise UsageError(f"--frames: expected ranges like 1-100 or 1-10,20-30, got {spec!r}")
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) is not None else start
        if end < start:
            raise UsageError(f"--frames: {part} ends before it starts")
        ranges.append((start, end))
    return ranges


def chunk_frames(ranges: Sequence[tuple[int, int]], chunk: int) -> list[tuple[int, int]]:
    """Split each range into consecutive pieces of at most `chunk` frames."""
    if chunk < 1:
        raise UsageError("--chunk must be at least 1")
    out = []
    for start, end in ranges:
        for first in range(start, end + 1, chunk):
            out.append((first, min(end, first + chunk - 1)))
    return out


def fill_frames(template: str, start: int, end: int) -> str:
    """Replace {start} and {end} (plain replace: a command may hold other braces, e.g. awk)."""
    return template.replace("{start}", str(start)).replace("{end}", str(end))
