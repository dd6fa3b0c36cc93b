"""Progress patterns: how a job's log output becomes a progress figure (0..1). Pure functions.

A pattern is literal text around placeholders; the last match in the output wins (for a
preset's several patterns: the last line any of them matches, read by the first that does):

* `%percent` a number 0..100, `%one` a number 0..1 (Coalition 4's two placeholders);
* `%current` and `%total` a ratio (`Sample %current/%total` reads `Sample 8/16` as 0.5);
* `%frame[A-B]` the number of the frame being rendered in a chunk of frames A..B: while frame
  n renders, n - A frames of the B - A + 1 are done (`Fra:%frame[1-4]` reads `Fra:4` as 0.75);
  with a ratio on the same line, the frame's own share is added (`Fra:4 ... Sample 8/16` is
  0.875). With a range and `%current` alone, the range's size is the total;
* `%done` after a frame counter: that frame is finished (`Fra:%frame[1-4]%*| Finished`);
* `%*` any text within one line; a run of spaces matches any run of white space, so that
  padded figures (`frame=  12`, `image...:  20.1%`) match.

A named preset, written `@name` or `@name[A-B]` with the chunk's frames, stands for the
patterns of a renderer's documented output (PRESETS); `coalition add --progress blender`
sends it, with each chunk's range under `--frames`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Alternatives per preset, most specific first: the last line any of them matches wins, and
# on that line the first alternative that matches it.
PRESETS: dict[str, tuple[str, ...]] = {
    # Blender: "Fra:4 Mem:... | Time:00:01.23 | ... | Scene, ViewLayer | Sample 8/16" (Cycles),
    # "Fra:4 Mem:... | Rendering 3 / 64 samples" (Eevee).
    # With tiles (Cycles' auto tiling): "Fra:4 ... | Rendered 3/20 Tiles, Sample 256/256".
    "blender": (
        "Fra:%frame%*| Finished%done",
        "Fra:%frame%*| Rendered %current/%total Tiles",
        "Fra:%frame%*| Sample %current/%total",
        "Fra:%frame%*| Rendering %current / %total samples",
        "Fra:%frame",
    ),
    # ffmpeg's status line: "frame=  123 fps= 25 q=28.0 size= ..." counts frames written.
    "ffmpeg": ("frame= %current",),
    # Arnold's kick: "00:00:05  1234MB   |    10% done - 5 rays/pixel".
    "kick": ("| %percent% done",),
    # V-Ray: "[2024/Jan/5|10:00:00] V-Ray: Rendering image...:  20.1% [ 0h  0m  2.3s] ...".
    "vray": ("Rendering image...: %percent%",),
    # Nuke's command-line render: "Frame 12 (3 of 10)" after each frame it wrote.
    "nuke": ("Frame %* (%current of %total)",),
}

_PRESET = re.compile(r"@([A-Za-z0-9_-]+)(?:\[(-?\d+)-(-?\d+)\])?")
_TOKEN = re.compile(r"%percent|%one|%current|%total|%done|%frame(?:\[(-?\d+)-(-?\d+)\])?|%\*| +")
_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


class PatternError(ValueError):
    """A progress pattern that cannot be used (an unknown preset, a bad frame range)."""


@dataclass(frozen=True)
class _Compiled:
    regex: re.Pattern[str]
    groups: tuple[str, ...]  # which placeholder each regex group holds
    frames: tuple[int, int] | None  # the chunk's first and last frame


_cache: dict[str, tuple[_Compiled, ...]] = {}


def check(pattern: str) -> None:
    """Raise PatternError when `pattern` names an unknown preset or an empty frame range."""
    _compile(pattern)


def _compile(pattern: str) -> tuple[_Compiled, ...]:
    cached = _cache.get(pattern)
    if cached is not None:
        return cached
    preset = _PRESET.fullmatch(pattern.strip())
    frames: tuple[int, int] | None = None
    if preset:
        name = preset.group(1).lower()
        if name not in PRESETS:
            raise PatternError(f"unknown progress preset @{name} (known: {', '.join(sorted(PRESETS))})")
        if preset.group(2) is not None:
            frames = _range(preset.group(2), preset.group(3))
        alternatives = PRESETS[name]
    else:
        alternatives = (pattern,)
    result = tuple(c for c in (_one(text, frames) for text in alternatives) if c is not None)
    if len(_cache) > 1000:
        _cache.clear()
    _cache[pattern] = result
    return result


def _range(first: str, last: str) -> tuple[int, int]:
    start, end = int(first), int(last)
    if end < start:
        raise PatternError(f"frame range {start}-{end} ends before it starts")
    return start, end


def _one(pattern: str, frames: tuple[int, int] | None) -> _Compiled | None:
    parts: list[str] = []
    groups: list[str] = []
    at = 0
    for match in _TOKEN.finditer(pattern):
        parts.append(re.escape(pattern[at : match.start()]))
        token = match.group(0)
        if token.startswith(" "):
            parts.append(r"\s*")
        elif token == "%*":
            parts.append(r"[^\n]*?")
        elif token == "%done":
            groups.append("done")
        else:
            name = token.split("[", 1)[0][1:]
            if name == "frame":
                if match.group(1) is not None:
                    frames = _range(match.group(1), match.group(2))
                number = r"(-?[0-9]+)"
            else:
                number = _NUMBER if name != "one" else r"([0-9]*\.?[0-9]+)"
            parts.append(number)
            groups.append(name)
        at = match.end()
    parts.append(re.escape(pattern[at:]))
    if not groups or groups == ["done"] or ("frame" in groups and frames is None and "current" not in groups):
        return None  # nothing to read (a frame counter needs its chunk's range)
    return _Compiled(re.compile("".join(parts)), tuple(groups), frames)


def _value(compiled: _Compiled, match: re.Match[str]) -> float | None:
    names = [g for g in compiled.groups if g != "done"]
    found = dict(zip(names, (float(g) for g in match.groups()), strict=True))
    if "percent" in found:
        return found["percent"] / 100.0
    if "one" in found:
        return found["one"]
    ratio = None
    if "current" in found:
        total = found.get("total")
        if total is None and compiled.frames is not None:
            total = compiled.frames[1] - compiled.frames[0] + 1
        if not total:
            return None
        ratio = found["current"] / total
    if "frame" in found and compiled.frames is not None:
        first, last = compiled.frames
        done = found["frame"] - first
        if not 0 <= done <= last - first:
            return None  # a frame outside the chunk: not this chunk's progress
        share = 1.0 if "done" in compiled.groups else min(1.0, ratio or 0.0)
        return (done + share) / (last - first + 1)
    return ratio


def parse_progress(pattern: str, text: str) -> float | None:
    """The last progress value (0..1) that `pattern` finds in `text`, or None."""
    if not pattern or not text:
        return None
    try:
        alternatives = _compile(pattern)
    except PatternError:
        return None
    best: tuple[int, int, float] | None = None  # (end of the match's line, -alternative, value)
    for rank, compiled in enumerate(alternatives):
        for match in compiled.regex.finditer(text):
            value = _value(compiled, match)
            if value is None:
                continue
            line_end = text.find("\n", match.end())
            key = (len(text) if line_end < 0 else line_end, -rank, value)
            if best is None or key[:2] > best[:2]:
                best = key
    if best is None:
        return None
    return min(1.0, max(0.0, best[2]))
