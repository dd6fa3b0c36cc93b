"""What a wrangler sees of failures in a real browser (issue 16): the reason of every run in
the Jobs table and in Activities, the hosts blocked from a job with a Lift button, and a SICK
worker with its reason and a Clear button. Real server and worker processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_for
from tests.web.conftest import Worker
from tests.worker.test_failures_e2e import worker_state

pytestmark = pytest.mark.browser

FAILS_ON_BADHOST = 'echo "on $COALITION_WORKER"; test "$COALITION_WORKER" != badhost'


def expect():
    from playwright.sync_api import expect as _expect

    return _expect


@pytest.fixture
def server(make_server: Any) -> Any:
    """A server that blocks a host from a job after one failure and turns a worker failing
    two different jobs SICK."""
    return make_server(hostfails=1, sickjobs=3)


def ended(server: Any, job_id: int, *states: str) -> bool:
    return server.job(job_id)["state"] in states


def test_failures_explain_themselves_in_the_page(ui: Any, server: Any, tmp_path: Path) -> None:
    marker = tmp_path / "seat"
    licence = (
        f"if [ -e {marker} ]; then echo rendered; "
        f"else touch {marker}; echo 'nuke: no license available'; exec sleep 60; fi"
    )
    bad = Worker(server.url, "badhost", tmp_path)
    try:
        blocked = server.submit(title="fails on badhost", command=FAILS_ON_BADHOST, retry=3)
        wait_for(lambda: server.api("GET", f"/api/jobs/{blocked}/blocks"), timeout=30, what="the block")
    finally:
        bad.stop()
    good = Worker(server.url, "goodhost", tmp_path)
    try:
        stalled = server.submit(title="hangs", command="echo started; exec sleep 60", stalltimeout=1)
        lic = server.submit(title="needs a licence", command=licence, logrules="@nuke")
        wait_for(lambda: ended(server, blocked, "FINISHED"), timeout=30, what="goodhost to render it")
        wait_for(lambda: ended(server, stalled, "ERROR"), timeout=30, what="the stall")
        wait_for(lambda: ended(server, lic, "FINISHED"), timeout=30, what="the licence retry")
    finally:
        good.stop()

    page = ui.goto("jobs")
    expect()(ui.cell("hangs", "reason")).to_have_text("stalled (no output for 1 s)")
    expect()(ui.cell("needs a licence", "state")).to_have_text("FINISHED")
    # The blocked host, in the job's panel, with its reason; Lift lifts it.
    ui.row("fails on badhost").click()
    ui.button("Edit").click()
    blocks = page.locator(".blocks[aria-label='Blocked hosts']")
    expect()(blocks.locator("li[data-worker=badhost]")).to_contain_text("1 failed run: exit code 1")
    ui.shot("failures-blocked-host")
    blocks.get_by_role("button", name="Lift").click()
    expect()(page.locator(".toast-ok")).to_contain_text("Lifted 1 block of job")
    expect()(blocks).to_have_count(0)
    assert server.api("GET", f"/api/jobs/{blocked}/blocks") == []

    # Activities: every run says why it ended.
    page = ui.goto("activities")
    rows = page.locator("table.events tbody tr")
    for reason in ("exit code 1", "stalled (no output for 1 s)", "log rule nuke-nolicence: requeue"):
        expect()(rows.filter(has=page.locator("td[data-col=reason]", has_text=reason)).first).to_be_visible()
    expect()(rows.filter(has_text="REQUEUED")).to_have_count(1)
    ui.shot("failures-activities")


def test_a_sick_worker_shows_why_and_is_cleared_from_the_page(ui: Any, server: Any, tmp_path: Path) -> None:
    sick = Worker(server.url, "sickhost", tmp_path)
    try:
        for title in ("a", "b", "c"):
            server.submit(title=title, command="exit 1")
        wait_for(lambda: worker_state(server, "sickhost") == "SICK", timeout=30, what="SICK")
        page = ui.goto("workers")
        row = page.locator("table.workers tbody tr[data-name=sickhost]")
        expect()(row.locator("td[data-col=state]")).to_have_text("SICK")
        expect()(row.locator("td[data-col=reason]")).to_contain_text("sick: runs of 3 different jobs failed")
        ui.shot("failures-sick-worker")
        row.click()
        page.get_by_role("button", name="Clear sick", exact=True).click()
        expect()(page.locator(".toast-ok")).to_contain_text("Cleared sickhost")
        expect()(row.locator("td[data-col=state]")).not_to_have_text("SICK")
        assert server.api("GET", "/api/workers/sickhost")["state"] != "SICK"
    finally:
        sick.stop()
