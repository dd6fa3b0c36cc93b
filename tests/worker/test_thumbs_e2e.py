"""Thumbnails with real worker processes, beyond the `--output` case of test_e2e.py: the
file a renderer's log says it saved (`Saved: '...'`, Blender's words) when the job names no
output, and a worker host without Pillow, which sends none and ends its runs as usual."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from tests.worker.helpers import wait_state

NO_PILLOW_NOTE = "no thumbnails: Pillow is not installed"

# A sitecustomize that makes `import PIL` fail in the worker process, as on a host without
# python3-pil; everything else imports as usual (the job's `cp` needs no Python).
BLOCK_PILLOW = '''
import sys


class NoPillow:
    """A finder that refuses PIL and its submodules."""

    def find_spec(self, name, path=None, target=None):
        if name == "PIL" or name.startswith("PIL."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoPillow())
'''


def image(path: Path, colour: str) -> Path:
    """A 640x360 PNG of one colour (made here: the test process has Pillow)."""
    from PIL import Image

    Image.new("RGB", (640, 360), colour).save(path)
    return path


def thumbnail_colour(server: Any, job_id: int) -> tuple[tuple[int, int], tuple[int, int, int]]:
    """The size and centre pixel of a job's thumbnail."""
    from PIL import Image

    r = server.request("GET", f"/api/jobs/{job_id}/thumbnail")
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg", r.text[:200]
    with Image.open(io.BytesIO(r.content)) as thumb:
        return thumb.size, thumb.convert("RGB").getpixel((thumb.size[0] // 2, thumb.size[1] // 2))


def test_the_file_the_log_says_it_saved_becomes_the_thumbnail(
    server: Any, make_worker: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    red = image(tmp_path / "red.png", "red")
    make_worker(server.url)
    # No `output`: the renderer's own words name the file, as Blender prints them; a file the
    # log names that does not exist is passed over.
    saved = out / "f_0004.png"
    command = (
        f"cp {red} {saved} && echo 'Fra:4 Mem:10.63M | Scene | ViewLayer | Finishing' && "
        f"echo \"Saved: '{saved}'\" && echo ' Time: 00:03.81 (Saving: 00:00.12)'"
    )
    job_id = server.submit(command=command, title="frame 4")
    wait_state(server, job_id, "FINISHED")
    size, (r, g, b) = thumbnail_colour(server, job_id)
    assert size == (256, 144) and r > 200 and g < 60 and b < 60
    ghost = server.submit(command=f"echo \"Saved: '{out}/never-written.png'\"", title="says, saves nothing")
    wait_state(server, ghost, "FINISHED")
    assert server.request("GET", f"/api/jobs/{ghost}/thumbnail").status_code == 404


def test_a_worker_without_pillow_sends_no_thumbnail_and_ends_its_runs(
    server: Any, make_worker: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "nopillow"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_PILLOW)
    path = os.pathsep.join(p for p in (str(blocker), os.environ.get("PYTHONPATH", "")) if p)
    worker = make_worker(server.url, name="nopil", env={"PYTHONPATH": path})
    out = tmp_path / "out"
    out.mkdir()
    green = image(tmp_path / "green.png", "green")
    jobs = [
        server.submit(
            command=f"cp {green} {out}/f_{n:04d}.png && echo \"Saved: '{out}/f_{n:04d}.png'\"",
            output=f"{out}/f_####.png",
            title=f"frame {n}",
        )
        for n in (1, 2)
    ]
    for job_id in jobs:
        job = wait_state(server, job_id, "FINISHED")
        assert job["worker"] == "nopil" and job["reason"] == ""
        assert (out / f"f_{jobs.index(job_id) + 1:04d}.png").exists()
        missing = server.request("GET", f"/api/jobs/{job_id}/thumbnail")
        assert missing.status_code == 404 and "no thumbnail" in missing.json()["error"]
    [run] = server.api("GET", f"/api/events?job={jobs[0]}")
    assert (run["state"], run["reason"]) == ("FINISHED", "")
    # The block took effect (the worker did try), and it said so once, not once per run.
    assert worker.log().count(NO_PILLOW_NOTE) == 1, worker.log()[-2000:]
    assert worker.proc.poll() is None  # still serving
