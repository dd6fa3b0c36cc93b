# ruff: noqa: E501 - log samples are kept as the renderers print them
"""Progress patterns and renderer presets, read on log samples in each renderer's documented
output format (the lines below are what each program prints while it renders)."""

from __future__ import annotations

import pytest

from coalition.model import ValidationError, parse_job_spec
from coalition.progress import PatternError, check, parse_progress

# Blender 3.4, Cycles, `blender -b scene.blend -o /tmp/out/f_#### -s 1 -e 2 -a` (abridged).
BLENDER_CYCLES = """\
Blender 3.4.1
Read blend: "/tmp/scene.blend"
Fra:1 Mem:13.07M (Peak 13.53M) | Time:00:00.05 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Synchronizing object | Cube
Fra:1 Mem:20.04M (Peak 20.04M) | Time:00:00.10 | Remaining:00:00.31 | Mem:6.85M, Peak:6.85M | Scene, ViewLayer | Sample 1/16
Fra:1 Mem:20.04M (Peak 20.04M) | Time:00:00.20 | Remaining:00:00.10 | Mem:6.85M, Peak:6.85M | Scene, ViewLayer | Sample 8/16
Fra:1 Mem:20.04M (Peak 20.04M) | Time:00:00.30 | Mem:6.85M, Peak:6.85M | Scene, ViewLayer | Sample 16/16
Fra:1 Mem:20.04M (Peak 20.04M) | Time:00:00.31 | Mem:6.85M, Peak:6.85M | Scene, ViewLayer | Finished
Saved: '/tmp/out/f_0001.png'
 Time: 00:00.35 (Saving: 00:00.01)

Fra:2 Mem:13.07M (Peak 20.04M) | Time:00:00.05 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Synchronizing object | Cube
Fra:2 Mem:20.04M (Peak 20.04M) | Time:00:00.12 | Remaining:00:00.30 | Mem:6.85M, Peak:6.85M | Scene, ViewLayer | Sample 4/16
"""

# Blender, Cycles with tiles: the tiles count, not each tile's own samples.
BLENDER_TILES = """\
Fra:3 Mem:10.41M (Peak 10.83M) | Time:00:00.41 | Mem:1.26M, Peak:1.26M | Scene, ViewLayer | Rendered 2/20 Tiles, Sample 256/256
Fra:3 Mem:10.41M (Peak 10.83M) | Time:00:00.41 | Mem:1.26M, Peak:1.26M | Scene, ViewLayer | Rendered 3/20 Tiles, Sample 1/256
"""

# Blender, Eevee.
BLENDER_EEVEE = """\
Fra:7 Mem:52.11M (Peak 52.11M) | Time:00:00.40 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Rendering 16 / 64 samples
"""

FFMPEG = """\
Input #0, image2, from '/tmp/out/f_%04d.png':
  Duration: 00:00:02.00, start: 0.000000, bitrate: N/A
frame=   12 fps=0.0 q=28.0 size=       0kB time=00:00:00.40 bitrate=   0.9kbits/s speed=0.8x
frame=   36 fps= 30 q=28.0 size=     256kB time=00:00:01.40 bitrate=1497.9kbits/s speed=1.2x
"""

KICK = """\
00:00:00   145MB         | starting 4 bucket workers of size 64x64 ...
00:00:01   190MB         |    10% done - 5 rays/pixel
00:00:02   192MB         |    55% done - 5 rays/pixel
"""

VRAY = """\
[2024/Jan/5|10:00:00] V-Ray: Building light cache...
[2024/Jan/5|10:00:02] V-Ray: Rendering image...:   20.1% [ 0h  0m  2.3s] [ 0h  0m  9.3s est]
[2024/Jan/5|10:00:05] V-Ray: Rendering image...:   62.5% [ 0h  0m  5.1s] [ 0h  0m  3.0s est]
"""

NUKE = """\
Writing /tmp/comp/out.0011.exr took 1.2 seconds
Frame 11 (1 of 10)
Writing /tmp/comp/out.0012.exr took 1.1 seconds
Frame 12 (2 of 10)
"""


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        # Coalition 4's placeholders, as before.
        ("PROGRESS:%percent", "PROGRESS:10\nPROGRESS:42.5\n", 0.425),
        ("%percent", "25%", 0.25),
        ("(%percent)", "(50) 99", 0.5),
        ("%one", "0.75", 0.75),
        ("P:%one", "P:1", 1.0),
        ("PROGRESS:%percent", "nothing here", None),
        ("no placeholder", "no placeholder 5", None),
        ("PROGRESS:%percent", "PROGRESS:250", 1.0),  # clamped
        ("a.b %percent", "axb 50", None),  # literal text, not a regex
        # Ratios, frame counters, wildcards, padded figures.
        ("Sample %current/%total", "Sample 8/16\n", 0.5),
        ("Sample %current/%total", "Sample 3/0\n", None),  # no total: no figure
        ("Fra:%frame[1-4]", "Fra:4 Mem:1M\n", 0.75),  # frames 1-3 done
        ("Fra:%frame[1-4]", "Fra:9 Mem:1M\n", None),  # not a frame of this chunk
        ("Fra:%frame", "Fra:4\n", None),  # a frame counter needs its chunk's range
        ("Fra:%frame[1-4]%*| Sample %current/%total", "Fra:4 Mem:1M | Sample 8/16\n", 0.875),
        ("step %current[1-4]", "step 2\n", None),  # a range belongs to %frame only
        ("done %percent%", "done    12%", 0.12),
    ],
)
def test_patterns(pattern: str, text: str, expected: float | None) -> None:
    assert parse_progress(pattern, text) == expected


def test_blender_cycles_chunk() -> None:
    # Chunk 1-4: frame 1 done (its "Finished" line), frame 2 at sample 4 of 16.
    assert parse_progress("@blender[1-4]", BLENDER_CYCLES) == pytest.approx((1 + 4 / 16) / 4)
    # Read as it arrives, the figure never goes back at a frame's end.
    lines = BLENDER_CYCLES.splitlines(keepends=True)
    figures = [parse_progress("@blender[1-4]", "".join(lines[: n + 1])) for n in range(len(lines))]
    seen = [f for f in figures if f is not None]
    assert seen == sorted(seen) and seen[-1] > seen[0]
    # Without a chunk range, the samples of the current frame.
    assert parse_progress("@blender", BLENDER_CYCLES) == pytest.approx(4 / 16)


def test_blender_tiles() -> None:
    assert parse_progress("@blender[3-4]", BLENDER_TILES) == pytest.approx((0 + 3 / 20) / 2)
    assert parse_progress("@blender", BLENDER_TILES) == pytest.approx(3 / 20)


def test_blender_eevee() -> None:
    assert parse_progress("@blender[5-8]", BLENDER_EEVEE) == pytest.approx((2 + 16 / 64) / 4)


def test_ffmpeg_counts_frames_written_of_the_range() -> None:
    assert parse_progress("@ffmpeg[1-48]", FFMPEG) == pytest.approx(36 / 48)
    assert parse_progress("@ffmpeg", FFMPEG) is None  # no frame count to compare with


@pytest.mark.parametrize(
    ("preset", "text", "expected"),
    [("@kick", KICK, 0.55), ("@vray", VRAY, 0.625), ("@nuke", NUKE, 0.2), ("@NUKE", NUKE, 0.2)],
)
def test_renderer_presets(preset: str, text: str, expected: float) -> None:
    assert parse_progress(preset, text) == pytest.approx(expected)


def test_unknown_presets_and_bad_ranges_are_refused_by_name() -> None:
    with pytest.raises(PatternError, match="unknown progress preset @maya"):
        check("@maya")
    with pytest.raises(PatternError, match="ends before it starts"):
        check("Fra:%frame[9-1]")
    with pytest.raises(ValidationError, match="progress_pattern: unknown progress preset @maya"):
        parse_job_spec({"command": "x", "progress_pattern": "@maya"})
    assert (
        parse_job_spec({"command": "x", "progress_pattern": "@blender[1-4]"}).progress_pattern
        == "@blender[1-4]"
    )
