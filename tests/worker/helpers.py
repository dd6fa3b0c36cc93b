"""Small helpers of the worker end-to-end tests."""

from __future__ import annotations

from typing import Any

from tests.support import wait_for


def wait_state(server: Any, job_id: int, *states: str, timeout: float = 20) -> dict[str, Any]:
    """Wait until a job is in one of `states`; returns the job."""

    def check() -> dict[str, Any] | None:
        job = server.job(job_id)
        return job if job["state"] in states else None

    return wait_for(check, timeout=timeout, what=f"job {job_id} to be {'/'.join(states)}")


def pid_alive(pid: int) -> bool:
    """Whether a process exists (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
