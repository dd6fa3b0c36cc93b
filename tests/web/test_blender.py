"""A real render through the farm, watched in a browser: Debian's Blender renders a small
Cycles animation made by a script here, submitted as an artist would (`coalition add
--frames --progress blender --output`), on a worker with two slots. The page shows a frame's
progress rising while it renders, the group's time left while frames remain, then the
frames' times, no time left and the thumbnail of the newest frame.

The scene is sized for that: six frames on two slots make three rounds, so that once the
first frames are done others still wait (the time left is then at least a frame's time),
and enough samples that a frame lasts several of the page's 2 s refreshes (about 8 s each
with two renders sharing two cores)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import require, wait_for
from tests.web.conftest import Worker

pytestmark = pytest.mark.browser

SCENE = """
import bpy, sys
out = sys.argv[sys.argv.index("--") + 1]
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 512
scene.cycles.use_adaptive_sampling = False
scene.cycles.use_denoising = False
# Tiles: Blender then prints its progress as it goes ("Rendered 3/20 Tiles").
scene.cycles.use_auto_tile = True
scene.cycles.tile_size = 64
scene.render.resolution_x, scene.render.resolution_y = 320, 240
scene.render.resolution_percentage = 100
scene.render.image_settings.file_format = "PNG"
scene.frame_start, scene.frame_end = 1, 6
cube = bpy.data.objects["Cube"]
for frame in (1, 6):
    cube.rotation_euler[2] = frame * 0.4
    cube.keyframe_insert("rotation_euler", frame=frame)
bpy.ops.wm.save_as_mainfile(filepath=out)
"""


FRAMES = 6

# Every row of the jobs table as [id, state, progress] in one call (rows are rebuilt at each
# refresh: reading them one locator at a time could mix two refreshes).
READ_ROWS = """() => [...document.querySelectorAll("table.jobs tbody tr[data-id]")].map((tr) => [
  Number(tr.dataset.id),
  (tr.querySelector("td[data-col=state]") || {}).innerText || "",
  (tr.querySelector("td[data-col=progress]") || {}).innerText || "",
])"""
# The Frames tab's summary and time left, from the same refresh of the tab.
READ_FRAMES = """() => {
  const panel = document.querySelector(".frames-stats");
  const text = (selector) => panel.querySelector(selector).innerText;
  return panel && [text(".frames-summary"), text(".time-left")];
}"""


class RisingProgress:
    """Readings of the frames' progress in the page: done when one frame, WORKING at both
    readings, showed a figure strictly between 0 and 100% and later a higher one."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.first: dict[int, int] = {}  # frame id -> its first partial figure
        self.seen: tuple[int, int, int] | None = None  # (frame, first figure, higher figure)

    def __call__(self) -> bool:
        for job_id, state, text in self.page.evaluate(READ_ROWS):
            figure = re.fullmatch(r"(\d+)%", text.strip())
            if state.strip() != "WORKING" or figure is None or not 0 < int(figure.group(1)) < 100:
                continue
            now = int(figure.group(1))
            before = self.first.setdefault(job_id, now)
            if now > before:
                self.seen = (job_id, before, now)
                return True
        return False


def time_left_while_frames_remain(page: Any) -> tuple[str, str] | None:
    """(summary, time left) when the Frames tab shows a non-zero time left while frames of
    the group still run or wait, after at least one finished; else None."""
    got = page.evaluate(READ_FRAMES)
    if not got:
        return None
    summary, left = (text.strip() for text in got)
    counts = re.search(r"(\d+) finished, (\d+) running, (\d+) waiting", summary)
    shown = re.fullmatch(r"Time left: (\d+) (s|min)", left)
    if counts is None or shown is None:
        return None
    finished, running, waiting = (int(n) for n in counts.groups())
    if finished >= 1 and running + waiting > 0 and int(shown.group(1)) > 0:
        return summary, left
    return None


def expect() -> Any:
    from playwright.sync_api import expect as _expect

    return _expect


def test_a_blender_animation_seen_in_the_page(ui: Any, server: Any, tmp_path: Path) -> None:
    blender = shutil.which("blender")
    require(blender is not None, "Debian's blender (apt-get install blender)")
    assert blender is not None
    scene, out = tmp_path / "scene.blend", tmp_path / "out"
    made = subprocess.run(
        [blender, "-b", "--factory-startup", "--python-expr", SCENE, "--", str(scene)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0 and scene.exists(), made.stdout[-2000:] + made.stderr[-2000:]
    worker = Worker(server.url, "render01", tmp_path, slots=2)
    try:
        cmd = f"{blender} -b {scene} -o {out}/f_#### -s {{start}} -e {{end}} -a"
        add = subprocess.run(
            [sys.executable, "-m", "coalition", "--server", server.url, "--json", "add",
             "--title", "spinning cube", "--frames", f"1-{FRAMES}", "--progress", "blender",
             "--output", f"{out}/f_####.png", "--cmd", cmd],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert add.returncode == 0, add.stderr
        group = int(re.search(r'"id": (\d+)', add.stdout).group(1))  # type: ignore[union-attr]
        page = ui.goto(f"jobs/{group}")

        # Progress moves while a frame renders: the same WORKING frame read twice in the page,
        # the second figure higher (Blender's "Rendered 3/20 Tiles" lines).
        rising = RisingProgress(page)
        wait_for(
            rising, timeout=120, interval=0.2, what="a frame's progress rising in the page while it renders"
        )
        frame, before, after = rising.seen or (0, 0, 0)
        assert 0 < before < after < 100, rising.seen
        ui.shot("blender-progress")
        # The group's Frames tab, while frames remain: a time left that is not zero.
        ui.goto("jobs")
        ui.row("spinning cube").click()
        page.keyboard.press("f")
        summary, left = wait_for(
            lambda: time_left_while_frames_remain(page), timeout=120, interval=0.2,
            what="a non-zero time left in the Frames tab while frames remain",
        )  # fmt: skip
        ui.shot("blender-time-left")
        wait_for(
            lambda: server.job(group)["state"] == "FINISHED", timeout=240, what="the animation to finish"
        )
        assert sorted(p.name for p in out.iterdir()) == [f"f_{n:04d}.png" for n in range(1, FRAMES + 1)]
        # The same tab, refreshed on its own (every 5 s): the frames' times, the thumbnail,
        # nothing left.
        panel = page.locator(".frames-stats")
        summary_done = panel.locator(".frames-summary")
        expect()(summary_done).to_contain_text(f"{FRAMES} frames", timeout=15000)
        expect()(summary_done).to_contain_text(f"{FRAMES} finished, 0 running, 0 waiting", timeout=15000)
        expect()(panel.locator(".time-left")).to_have_text("Time left: 0 s", timeout=15000)
        expect()(panel.locator("svg.frames-chart .frame-time rect")).to_have_count(FRAMES, timeout=15000)
        image = panel.locator("figure.thumbnail img")
        expect()(image).to_be_visible()
        wait_for(
            lambda: image.evaluate("img => img.complete && img.naturalWidth") == 256, what="the thumbnail"
        )
        ui.shot("blender-frames")
        print(f"progress of frame job {frame}: {before}% then {after}%; {summary}: {left}")
        frames = server.api("GET", f"/api/jobs/{group}/stats")["frames"]
        assert all(f["time"] > 0 and f["peak_memory"] > 0 and f["cpu_time"] > 0 for f in frames)
        children = server.api("GET", f"/api/jobs/{group}/children")
        assert all(c["progress"] == 1.0 for c in children)
        assert {c["user"] for c in children} == {server.job(group)["user"]} != {""}
    finally:
        worker.stop()
        if worker.proc.returncode not in (0, None):
            print(worker.log_tail())
