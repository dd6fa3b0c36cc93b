"""Resource requests in the web page: each worker's used/total cores, memory and GPUs; each
job's request in the jobs list; editing a request; and why a job waits for one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_for
from tests.web.conftest import REPO

pytestmark = pytest.mark.browser


def expect() -> Any:
    from playwright.sync_api import expect as _expect

    return _expect


def test_workers_show_what_they_hold_and_jobs_what_they_need(ui: Any, server: Any, tmp_path: Path) -> None:
    go = tmp_path / "go"
    wait = f"timeout 30 sh -c 'until [ -e {go} ]; do sleep 0.05; done'"
    big = server.submit(title="gpu render", command=wait, cores=2, memory=4096, gpus=1)
    server.submit(title="no such host", command="true", gpus=4)
    cmd = [
        sys.executable,
        "-m",
        "coalition.worker.main",
        "-n",
        "box",
        "-s",
        "0.2",
        "--cores",
        "8",
        "--memory",
        "16384",
        "--gpus",
        "2",
        server.url,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    with open(tmp_path / "worker.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
    try:
        wait_for(lambda: server.job(big)["state"] == "WORKING", timeout=20, what="the GPU job to run")
        wait_for(lambda: server.api("GET", "/api/workers")[0]["used_gpus"] == 1, what="the worker's report")
        page = ui.goto("workers")
        cell = page.locator("table.workers tbody tr[data-name=box] td[data-col=resources]")
        expect()(cell).to_have_text("2/8 cores · 4.0 GB/16 GB · 1/2 GPUs")
        ui.shot("workers-resources")
        ui.goto("jobs")
        expect()(ui.cell("gpu render", "needs")).to_have_text("2 cores · 4.0 GB · 1 GPU")
        ui.row("no such host").click()
        ui.button("Edit").click()
        form = page.locator("form.edit-form")
        why = form.locator(".why li")
        expect()(why).to_have_text(["no worker has 4 GPUs"])
        ui.shot("jobs-why-resources")
        gpus = form.locator("label.field[data-field=gpus] input")
        expect()(gpus).to_have_value("4")
        gpus.fill("1")
        form.get_by_role("button", name="Update").click()
        expect()(page.locator(".toast-ok")).to_contain_text("gpus")
        assert server.api("GET", "/api/jobs")[1]["gpus"] == 1
        ui.shot("jobs-needs")
    finally:
        go.touch()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
