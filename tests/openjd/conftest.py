"""Open Job Description tests: real server and worker processes, the specification's sample
templates read where the shared reference keeps them (never copied into the repository)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, ServerProcess
from tests.support import require, wait_for
from tests.worker.conftest import make_worker  # noqa: F401 - a fixture, re-exported

# The OpenJD specification's samples (Apache-2.0), read where the team keeps them, never
# copied into the project: beside the repository (../shared, as the issue says), else the
# team's shared folder on this machine (a clone made elsewhere, as CI's is), unless
# COALITION_OPENJD_SAMPLES names another copy of the specification's samples/ directory.
_PLACES = [REPO.parent / "shared/reference/openjd-samples", Path("/work/shared/reference/openjd-samples")]
SAMPLES_ROOT = Path(
    os.environ.get("COALITION_OPENJD_SAMPLES")
    or next((p for p in _PLACES if (p / "v2023-09").is_dir()), _PLACES[0])
)
SAMPLES = SAMPLES_ROOT / "v2023-09" / "job_templates"


@pytest.fixture
def samples() -> Path:
    """The sample job templates' directory (skip, or fail under COALITION_STRICT, without it)."""
    require(
        (SAMPLES / "stdout-messages.yaml").is_file(),
        f"the OpenJD sample templates are not at {SAMPLES} (set COALITION_OPENJD_SAMPLES to the "
        "openjd-specifications samples/ directory)",
    )
    return SAMPLES


class HideOpenJD:
    """hide_openjd(): the processes started after the call lack openjd-model and
    openjd-sessions, as a host without the `openjd` extra (a package `openjd` earlier on the
    path that cannot be imported); hide_openjd.restore() undoes it."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.shim = root / "no-openjd"
        (self.shim / "openjd").mkdir(parents=True)
        (self.shim / "openjd" / "__init__.py").write_text(
            'raise ImportError("openjd is hidden by the test")\n'
        )
        self.monkeypatch = monkeypatch
        self.before = os.environ.get("PYTHONPATH")

    def __call__(self) -> None:
        self.monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(self.shim), str(REPO)]))

    def restore(self) -> None:
        if self.before is None:
            self.monkeypatch.delenv("PYTHONPATH", raising=False)
        else:
            self.monkeypatch.setenv("PYTHONPATH", self.before)


@pytest.fixture
def hide_openjd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HideOpenJD:
    """See HideOpenJD."""
    return HideOpenJD(tmp_path, monkeypatch)


def submit(server: ServerProcess, template: str | Path, expect: int = 200, **body: Any) -> Any:
    """POST /api/openjd with a template (a file's text, or text); other fields as given."""
    text = template.read_text() if isinstance(template, Path) else template
    return server.api("POST", "/api/openjd", {"template": text, **body}, expect=expect)


def tasks(server: ServerProcess, group: int) -> list[dict[str, Any]]:
    """The task jobs of an OpenJD job, step by step, in order."""
    out = []
    for step in server.api("GET", f"/api/jobs/{group}/children"):
        out += server.api("GET", f"/api/jobs/{step['id']}/children")
    return out


def wait_job(server: ServerProcess, job_id: int, *states: str, timeout: float = 60) -> dict[str, Any]:
    """Wait until a job (or group) is in one of `states`; returns it."""

    def check() -> dict[str, Any] | None:
        job = server.job(job_id)
        return job if job["state"] in states else None

    return wait_for(check, timeout=timeout, interval=0.1, what=f"job {job_id} to be {'/'.join(states)}")


def log_of(server: ServerProcess, job_id: int) -> str:
    """A job's whole log."""
    return str(server.api("GET", f"/api/jobs/{job_id}/log"))


@pytest.fixture
def farm(make_server: Any, make_worker: Any) -> Iterator[tuple[ServerProcess, Any]]:  # noqa: F811
    """A server and one OpenJD-capable worker with one slot (0.2 s heartbeats, a 1 s linger):
    one session, whose actions run in a known order."""
    server = make_server()
    worker = make_worker(server.url, openjd_linger=1, workers=1)
    wait_for(
        lambda: "taking Open Job Description tasks" in worker.log(), what="the worker to say it takes OpenJD"
    )
    yield server, worker
