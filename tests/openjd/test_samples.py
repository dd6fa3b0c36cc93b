"""Conformance: the OpenJD specification's own sample job templates, read where the shared
reference keeps them, submitted to a real server and run by real worker processes, each
checked against what its documentation says it does or produces.

Frames are few and small (64x48 Blender renders, 6-frame image sequences), so the whole file
takes well under a minute. Blender and ffmpeg are Debian's (`.ci/run` installs them); a
missing one skips loudly, or fails under COALITION_STRICT=1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerProcess
from tests.openjd.conftest import log_of, submit, tasks, wait_job
from tests.openjd.wheelhouse import wheel_of
from tests.support import require, require_binary, wait_for

pytestmark = pytest.mark.slow


def _probe(path: Path) -> dict[str, Any]:
    """ffprobe's view of a video's first stream: codec_name, width, height, nb_read_frames."""
    out = subprocess.run(
        [
            require_binary("ffprobe", "ffmpeg"), "-v", "error", "-count_frames", "-select_streams", "v:0",
            "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "json", str(path),
        ],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    stream = json.loads(out.stdout)["streams"][0]
    return {**stream, "nb_read_frames": int(stream["nb_read_frames"])}


def test_stdout_messages(farm: tuple[ServerProcess, Any], samples: Path) -> None:
    """ "openjd_progress", "openjd_status" and (not reached) "openjd_fail" lines."""
    require_binary("python", "python-is-python3")
    server, _ = farm
    answer = submit(server, samples / "stdout-messages.yaml")
    [task] = tasks(server, answer["id"])
    done = wait_job(server, task["id"], "FINISHED", "ERROR")
    assert (done["state"], done["progress"], done["reason"]) == ("FINISHED", 1.0, "")
    log = log_of(server, task["id"])
    for line in (
        "openjd_progress: 50.0",
        "openjd_status: Loading the things",
        "openjd_status: Processing the things",
    ):
        assert line in log
    assert "Wrote: Run ->" in log  # its embedded file


def test_host_requirements(make_server: Any, make_worker: Any, samples: Path) -> None:
    """StepOne runs on a Linux or macOS host with HostConfigA or C, at least 1 vCPU and 256 MiB;
    StepTwo only on a Linux host with HostConfigB, 4 vCPUs and 8 GiB. (Each host here says
    what it offers with `cores` and `memory`.)"""
    require_binary("python", "python-is-python3")
    server = make_server()
    answer = submit(server, samples / "host-requirements.yaml")
    one, two = tasks(server, answer["id"])
    make_worker(server.url, name="hostA", affinity="host_config=HostConfigA", cores=2, memory=4096)
    wait_job(server, one["id"], "FINISHED")
    # HostConfigB, but 2 vCPUs: StepTwo does not fit there.
    small = make_worker(server.url, name="hostB", affinity="host_config=HostConfigB", cores=2, memory=16384)
    since = server.api("GET", "/api/jobs?limit=1")["now"] + 1.0
    wait_for(
        lambda: all(w["ping_time"] > since for w in server.api("GET", "/api/workers")),
        what="both hosts asking for work again",
    )
    assert server.job(two["id"])["state"] == "WAITING"
    assert "taking Open Job Description tasks" in small.log()
    make_worker(server.url, name="hostC", affinity="host_config=HostConfigB", cores=8, memory=16384)
    wait_job(server, two["id"], "FINISHED")
    assert [e["worker"] for e in server.api("GET", f"/api/jobs/{one['id']}/events")] == ["hostA"]
    assert [e["worker"] for e in server.api("GET", f"/api/jobs/{two['id']}/events")] == ["hostC"]
    assert "This is StepOne - it is light on resources" in log_of(server, one["id"])
    assert "This is StepTwo - pretend it is heavier on resources" in log_of(server, two["id"])


def test_ui_controls_showcase(make_server: Any, make_worker: Any, samples: Path, tmp_path: Path) -> None:
    """Every kind of parameter; PATH values shown raw and mapped to the worker's paths."""
    server = make_server()
    make_worker(server.url, workers=1, pathmapping=f"POSIX /studio -> {tmp_path / 'studio'}")
    answer = submit(
        server,
        samples / "ui-controls-showcase.yaml",
        parameters={
            "LineEditControl": "set on the farm",
            "InputFilePicker": "/studio/in/scene.blend",
            "OutputFilePicker": "/studio/out/frame.exr",
            "DirectoryPicker": "/studio/shots",
        },
    )
    [task] = tasks(server, answer["id"])
    wait_job(server, task["id"], "FINISHED")
    log = log_of(server, task["id"])
    studio = tmp_path / "studio"
    for label, value in [
        ("LineEditControl value:", "set on the farm"),
        ("MultiLineEditControl value:", "This is a\ntext file with\nmultiple lines."),
        ("IntSpinner value:", "42"),
        ("FloatSpinner value:", "1234.56789"),
        ("StringDropdown value:", "WEDNESDAY"),
        ("IntDropdown value:", "7"),
        ("FloatDropdown value:", "3.26"),
        ("InputFilePicker raw value:", "/studio/in/scene.blend"),
        ("InputFilePicker value mapped locally:", f"{studio}/in/scene.blend"),
        ("OutputFilePicker value mapped locally:", f"{studio}/out/frame.exr"),
        ("DirectoryPicker value mapped locally:", f"{studio}/shots"),
    ]:
        assert f"{label}\n{value}\n" in log, label


def _image_sequence(folder: Path, frames: int) -> None:
    folder.mkdir(parents=True)
    subprocess.run(
        [
            require_binary("ffmpeg", "ffmpeg"), "-v", "error", "-f", "lavfi",
            "-i", "testsrc=size=64x48:rate=24", "-frames:v", str(frames), "-start_number", "1",
            str(folder / "image_sequence.%04d.png"),
        ],
        check=True, timeout=60,
    )  # fmt: skip


def test_ffmpeg(farm: tuple[ServerProcess, Any], samples: Path, tmp_path: Path) -> None:
    """An image sequence to a high-quality h264 movie, then a VP9 webm for web review and
    ProRes proxies (profiles 0 and 3) for editorial."""
    server, _ = farm
    _image_sequence(tmp_path / "in", 6)
    out = tmp_path / "out"
    out.mkdir()
    answer = submit(
        server,
        samples / "ffmpeg.yaml",
        parameters={
            "InputFile": str(tmp_path / "in" / "image_sequence.%04d.png"),
            "OutputDir": str(out),
            "StartFrame": 1,
            "EndFrame": 6,
        },
    )
    assert [(s["name"], s["tasks"]) for s in answer["steps"]] == [("h264", 1), ("webm", 1), ("prores", 2)]
    wait_job(server, answer["id"], "FINISHED", timeout=120)
    assert sorted(p.name for p in out.iterdir()) == [
        "h264_hq_output.mp4", "prores_0_output.mov", "prores_3_output.mov", "webm_output.webm"
    ]  # fmt: skip
    assert _probe(out / "h264_hq_output.mp4") == {
        "codec_name": "h264",
        "width": 64,
        "height": 48,
        "nb_read_frames": 6,
    }
    assert _probe(out / "webm_output.webm")["codec_name"] == "vp9"
    for quality in (0, 3):
        assert _probe(out / f"prores_{quality}_output.mov")["codec_name"] == "prores"


SCENE = """
import bpy, sys
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 4
scene.cycles.use_denoising = False
scene.render.resolution_x, scene.render.resolution_y = 64, 48
scene.render.resolution_percentage = 100
cube = bpy.data.objects["Cube"]
for frame in (1, 3):
    cube.rotation_euler[2] = frame * 0.4
    cube.keyframe_insert("rotation_euler", frame=frame)
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[sys.argv.index("--") + 1])
"""


def test_blender_ffmpeg(farm: tuple[ServerProcess, Any], samples: Path, tmp_path: Path) -> None:
    """Blender renders the scene's frames, then ffmpeg makes a video of them.

    As written, the encode reads `render-%04d.{{Param.Format}}` (render-0001.PNG) while
    Blender writes render-0001.png: it works on the case-insensitive file systems of macOS and
    Windows only. On Linux the frames render and the encode fails, which the farm reports;
    with the extension in OutputPattern, capitals kept by Blender, both steps pass."""
    blender = shutil.which("blender")
    require(blender is not None, "Debian's blender (apt-get install blender)")
    require_binary("ffmpeg", "ffmpeg")
    server, _ = farm
    scene = tmp_path / "scene" / "blender_scene.blend"
    scene.parent.mkdir()
    made = subprocess.run(
        [str(blender), "-b", "--factory-startup", "--python-expr", SCENE, "--", str(scene)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0 and scene.exists(), made.stdout[-2000:] + made.stderr[-2000:]

    as_written = submit(
        server,
        samples / "blender-ffmpeg.yaml",
        parameters={"BlenderFile": str(scene), "OutputDir": str(tmp_path / "a" / "frames"), "EndFrame": 3},
    )
    render, encode = tasks(server, as_written["id"])
    wait_job(server, as_written["id"], "ERROR", timeout=120)
    assert server.job(render["id"])["state"] == "FINISHED"
    assert sorted(p.name for p in (tmp_path / "a" / "frames").iterdir()) == [
        f"render-000{n}.png" for n in (1, 2, 3)
    ]
    assert server.job(encode["id"])["reason"] == "exit code 1"
    assert "render-%04d.PNG' and index in the range" in log_of(server, encode["id"])

    frames = tmp_path / "b" / "frames"
    answer = submit(
        server,
        samples / "blender-ffmpeg.yaml",
        parameters={
            "BlenderFile": str(scene),
            "OutputDir": str(frames),
            "OutputPattern": "render-####.PNG",
            "EndFrame": 3,
            "JobName": "Blender on Linux",
        },
        output=str(frames / "render-####.PNG"),  # thumbnails of the newest frame
    )
    assert answer["title"] == "Blender on Linux"
    render, _ = tasks(server, answer["id"])
    wait_job(server, answer["id"], "FINISHED", timeout=120)
    assert sorted(p.name for p in frames.iterdir()) == [f"render-000{n}.PNG" for n in (1, 2, 3)]
    [video] = list((tmp_path / "b").glob("blend-video-*.mp4"))
    assert _probe(video) == {"codec_name": "h264", "width": 64, "height": 48, "nb_read_frames": 3}
    thumbnail = server.request("GET", f"/api/jobs/{render['id']}/thumbnail")
    assert thumbnail.status_code == 200 and thumbnail.headers["Content-Type"] in ("image/jpeg", "image/png")


def test_algorithmic_art(
    make_server: Any, make_worker: Any, samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Python venv made once per session by a step environment (openjd_env activating it),
    a wedge of (StarFactor, SwirlFactor) pairs times frames, one video per pair after the
    frames; and the sample's own path-mapping demonstration: the job names local_outputs, the
    worker maps it to remote_outputs, where the files land."""
    require_binary("ffmpeg", "ffmpeg")
    found = subprocess.run(
        ["python3", "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    require(
        found.stdout.split() == [str(sys.version_info[0]), str(sys.version_info[1])],
        f"python3 on PATH is {found.stdout.strip() or 'missing'}, not the tests' {sys.version_info[0]}."
        f"{sys.version_info[1]}: the venv of the sample could not use the wheels made from the tests' numpy",
    )
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in ("numpy", "pillow"):
        wheel_of(name, wheels)
    # The step environment's `pip install numpy pillow` finds them there, and nothing else.
    for key, value in {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "PIP_CONFIG_FILE": "/dev/null",
    }.items():
        monkeypatch.setenv(key, value)
    local, remote = tmp_path / "local_outputs", tmp_path / "remote_outputs"
    local.mkdir()
    remote.mkdir()
    server = make_server()
    make_worker(server.url, workers=1, pathmapping=f"POSIX {local} -> {remote}")
    answer = submit(
        server,
        samples / "algorithmic-art.yaml",
        parameters={
            "RenderScript": str(samples / "scripts" / "algorithmic-art.py"),
            "OutputDirectory": str(local),
            "NumAnimationFrames": 2,
        },
    )
    assert answer["title"] == "AlgorithmicArtSample-2"
    assert [(s["name"], s["tasks"]) for s in answer["steps"]] == [("RenderImages", 9), ("EncodeVideos", 3)]
    wait_job(server, answer["id"], "FINISHED", "ERROR", timeout=300)
    renders = tasks(server, answer["id"])[:9]
    assert server.job(answer["id"])["state"] == "FINISHED", log_of(server, renders[0]["id"])[-3000:]
    wedges = [(3, "5.5"), (4, "10.0"), (5, "15.0")]
    assert sorted(p.name for p in remote.iterdir()) == sorted(
        [f"algart-{s}-{w}-000{f}.png" for s, w in wedges for f in (0, 1, 2)]
        + [f"algart-{s}-{w}.mp4" for s, w in wedges]
    )
    assert list(local.iterdir()) == []
    for star, swirl in wedges:  # -start_number 1: frames 1 and 2 of each wedge
        assert _probe(remote / f"algart-{star}-{swirl}.mp4") == {
            "codec_name": "h264", "width": 640, "height": 480, "nb_read_frames": 2
        }  # fmt: skip
    # One venv for the slot's session: made for the first task, used by the other eight.
    first = log_of(server, renders[0]["id"])
    assert "Entering Environment: PythonVenv" in first and "Successfully installed" in first
    assert all("Entering Environment" not in log_of(server, t["id"]) for t in renders[1:])
    # The first encode, another step of the same job, exited it (in its own log).
    encode = tasks(server, answer["id"])[9]
    assert "Exiting Environment: PythonVenv" in log_of(server, encode["id"])
