"""Hostile jobs on real worker processes (issue 12): a job's environment must not choose or
load the wrapper that a root worker runs it through.

Every wait is on an observable condition (tests.support.wait_for), never a fixed sleep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.worker.helpers import wait_state


def test_job_path_and_ld_preload_do_not_reach_the_wrapper(
    server: Any, make_worker: Any, tmp_path: Path
) -> None:
    # The wrapper (`env` here, `sudo` on a real farm) is looked up in the worker's PATH and
    # started without the job's LD_PRELOAD; the job's own shell still gets both.
    evil = tmp_path / "evil"
    evil.mkdir()
    for name in ("env", "sh", "sudo"):
        fake = evil / name
        fake.write_text(f'#!/bin/sh\ntouch {tmp_path}/PWNED-{name}\nexec /usr/bin/{name} "$@"\n')
        fake.chmod(0o755)
    workdir = tmp_path / "work"
    workdir.mkdir()
    make_worker(server.url, runcommand="env COALITION_USER=__user__ sh -c __cmd__")
    job_id = server.submit(
        command='echo "$MARK|$PATH|$LD_PRELOAD|$COALITION_USER|$COALITION_JOB_ID" > out.txt',
        dir=str(workdir),
        user="bob",
        environment=f"PATH={evil}:/usr/bin:/bin\\nLD_PRELOAD={evil}/evil.so\\nMARK=hi",
    )
    wait_state(server, job_id, "FINISHED")
    assert list(tmp_path.glob("PWNED*")) == []
    assert (workdir / "out.txt").read_text() == f"hi|{evil}:/usr/bin:/bin|{evil}/evil.so|bob|{job_id}\n"
    # ld.so complains in the log of every program started with a missing LD_PRELOAD: none was.
    assert "LD_PRELOAD" not in server.api("GET", f"/api/jobs/{job_id}/log")
