"""A real render through the farm, watched in a browser: Debian's Blender renders a small
Cycles animation made by a script here, submitted as an artist would (`coalition add
--frames --progress blender --output`), on a worker with two slots. The page shows each
frame's progress moving while it renders, then the frames' times, the time left and the
thumbnail of the newest frame."""

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
scene.cycles.samples = 384
scene.cycles.use_adaptive_sampling = False
scene.cycles.use_denoising = False
# Tiles: Blender then prints its progress as it goes ("Rendered 3/20 Tiles").
scene.cycles.use_auto_tile = True
scene.cycles.tile_size = 64
scene.render.resolution_x, scene.render.resolution_y = 320, 240
scene.render.resolution_percentage = 100
scene.render.image_settings.file_format = "PNG"
scene.frame_start, scene.frame_end = 1, 4
cube = bpy.data.objects["Cube"]
for frame in (1, 4):
    cube.rotation_euler[2] = frame * 0.4
    cube.keyframe_insert("rotation_euler", frame=frame)
bpy.ops.wm.save_as_mainfile(filepath=out)
"""


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
             "--title", "spinning cube", "--frames", "1-4", "--progress", "blender",
             "--output", f"{out}/f_####.png", "--cmd", cmd],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert add.returncode == 0, add.stderr
        group = int(re.search(r'"id": (\d+)', add.stdout).group(1))  # type: ignore[union-attr]
        page = ui.goto(f"jobs/{group}")

        # Progress moves while a frame renders: some frame shows a figure strictly between
        # 0 and 100% while it is WORKING (Blender's "Rendered 3/20 Tiles").
        def partway() -> bool:
            for row in ui.rows().all():
                state = row.locator("td[data-col=state]").inner_text().strip()
                text = row.locator("td[data-col=progress]").inner_text().strip()
                if state == "WORKING" and re.fullmatch(r"([1-9]|[1-9][0-9])%", text):
                    return True
            return False

        wait_for(
            partway, timeout=120, interval=0.1, what="a frame's progress between 0 and 100% while it renders"
        )
        ui.shot("blender-progress")
        # Half-way (two frames done, two rendering or waiting), the group knows its time left.
        wait_for(
            lambda: server.api("GET", f"/api/jobs/{group}/stats")["time"]["count"] >= 2, timeout=180,
            what="two frames rendered",
        )  # fmt: skip
        stats = server.api("GET", f"/api/jobs/{group}/stats")
        if stats["waiting"] or stats["running"]:
            assert stats["time_left"] is not None
        wait_for(
            lambda: server.job(group)["state"] == "FINISHED", timeout=240, what="the animation to finish"
        )
        assert sorted(p.name for p in out.iterdir()) == [f"f_000{n}.png" for n in range(1, 5)]
        # The Frames tab of the group: four frames' times, the thumbnail, nothing left.
        ui.goto("jobs")
        ui.row("spinning cube").click()
        page.keyboard.press("f")
        panel = page.locator(".frames-stats")
        expect()(panel.locator(".frames-summary")).to_contain_text("4 frames")
        expect()(panel.locator(".frames-summary")).to_contain_text("4 finished, 0 running, 0 waiting")
        expect()(panel.locator(".time-left")).to_have_text("Time left: 0 s")
        expect()(panel.locator("svg.frames-chart .frame-time rect")).to_have_count(4)
        image = panel.locator("figure.thumbnail img")
        expect()(image).to_be_visible()
        wait_for(
            lambda: image.evaluate("img => img.complete && img.naturalWidth") == 256, what="the thumbnail"
        )
        ui.shot("blender-frames")
        frames = server.api("GET", f"/api/jobs/{group}/stats")["frames"]
        assert all(f["time"] > 0 and f["peak_memory"] > 0 and f["cpu_time"] > 0 for f in frames)
        children = server.api("GET", f"/api/jobs/{group}/children")
        assert all(c["progress"] == 1.0 for c in children)
        assert {c["user"] for c in children} == {server.job(group)["user"]} != {""}
    finally:
        worker.stop()
        if worker.proc.returncode not in (0, None):
            print(worker.log_tail())
