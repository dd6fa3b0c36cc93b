"""Workers, Activities, Log, Affinities and Overview in a real browser, plus the page shell
(tabs, keyboard, theme). Each test saves screenshots to tests/web/artifacts/."""

from __future__ import annotations

import re

import pytest

from tests.support import wait_for

pytestmark = pytest.mark.browser


def expect():
    from playwright.sync_api import expect as _expect

    return _expect


def run_jobs(server, *specs):
    """Submit jobs and wait until each has ended (FINISHED or ERROR)."""
    ids = [server.submit(**spec) for spec in specs]
    wait_for(
        lambda: all(server.job(i)["state"] in ("FINISHED", "ERROR") for i in ids),
        timeout=30,
        what="the jobs to end",
    )
    return ids


def test_workers_view_edit_affinity_stop_start(ui, server, worker):
    wait_for(lambda: server.api("GET", "/api/workers"), timeout=15, what="the worker to register")
    page = ui.goto("workers")
    row = page.locator("table.workers tbody tr[data-name=webworker]")
    expect()(row.locator("td[data-col=state]")).to_have_text("WAITING")
    expect()(row.locator("td[data-col=ip]")).not_to_be_empty()
    expect()(row.locator(".cores .core").first).to_be_attached()  # one bar per core
    expect()(row.locator("td[data-col=memory] .bar")).to_be_visible()

    row.click()
    rules = page.locator("textarea[aria-label='Affinity rules']")
    rules.fill("linux, gpu\nlinux")
    expect()(page.locator("label.field.changed")).to_have_count(1)
    page.get_by_role("button", name="Update").click()
    expect()(row.locator("td[data-col=affinity] .rule")).to_have_count(2)
    assert server.api("GET", "/api/workers/webworker")["affinity"] == "linux,gpu\nlinux"
    # The rules work: a gpu job now runs there.
    gpu = server.submit(title="needs gpu", command="true", affinity="gpu")
    wait_for(lambda: server.job(gpu)["state"] == "FINISHED", timeout=20, what="the gpu job to run")
    ui.shot("view-workers")

    page.locator(".toolbar").get_by_role("button", name="Stop", exact=True).click()
    expect()(row.locator("td[data-col=active]")).to_have_text("stopped")
    assert server.api("GET", "/api/workers/webworker")["active"] == 0
    page.keyboard.press("s")  # start, from the keyboard
    expect()(row.locator("td[data-col=active]")).to_have_text("on")
    assert server.api("GET", "/api/workers/webworker")["active"] == 1

    # Not a cloud farm (GET /api/ping says servermode normal): no Terminate button, and the
    # server refuses the route anyway.
    expect()(page.locator(".toolbar").get_by_role("button", name="Terminate")).to_be_hidden()
    r = server.request("POST", "/api/terminateworkers", ["webworker"])
    assert r.status_code == 404 and "only available in cloud mode" in r.json()["error"]


def test_workers_view_delete_asks_first(ui, server):
    for name in ("ghost-1", "ghost-2"):
        server.worker_call(
            "pickjob",
            {
                "name": name,
                "cpu": [5.0, 95.0, 40.0, 10.0],
                "free_memory": 1000,
                "total_memory": 8000,
                "ip": "10.0.0.9",
            },
        )
    page = ui.goto("workers")
    rows = page.locator("table.workers tbody tr")
    expect()(rows).to_have_count(2)
    expect()(rows.first.locator(".cores .core")).to_have_count(4)
    expect()(rows.first.locator("td[data-col=memory]")).to_contain_text("6.8 GB / 7.8 GB")
    page.locator("tr[data-name=ghost-1]").click()
    page.locator("tr[data-name=ghost-2]").click(modifiers=["Shift"])
    page.keyboard.press("Delete")
    page.locator("dialog#confirm").get_by_role("button", name="Delete").click()
    expect()(page.locator(".empty")).to_contain_text("No worker has contacted")
    assert server.api("GET", "/api/workers") == []


def test_activities_filters_and_open_log(ui, server, worker):
    ok, bad = run_jobs(
        server,
        {"title": "good run", "command": "echo fine"},
        {"title": "bad run", "command": "echo broken; exit 3"},
    )
    page = ui.goto("activities")
    table = page.locator("table.events tbody tr")
    expect()(table).to_have_count(2)
    expect()(page.locator(".footer")).to_contain_text("1 finished")
    expect()(page.locator(".footer")).to_contain_text("1 errors")
    ui.shot("view-activities")
    page.locator("input[aria-label='Job id']").fill(str(bad))
    expect()(table).to_have_count(1)
    expect()(table.first.locator("td.title")).to_have_text("bad run")
    page.locator("input[aria-label='Worker']").fill("somebody-else")
    expect()(table).to_have_count(0)
    page.get_by_role("button", name="Clear").click()
    expect()(table).to_have_count(2)
    page.locator("select[aria-label='How long']").select_option("60")
    expect()(table).to_have_count(2)
    page.locator("table.events tbody tr", has_text="good run").dblclick()
    page.wait_for_url(f"**/#/log/{ok}")
    expect()(page.locator("pre.log")).to_contain_text("fine")


def test_log_view_picker_and_long_log_tail(ui, server, worker):
    big = "\n".join(f"row {i:06d} " + "x" * 60 for i in range(6000))  # ~430 KB, more than the 256 KB tail
    awk = 'awk \'BEGIN { for (i = 0; i < 6000; i++) printf "row %06d %s\\n", i, "' + "x" * 60 + "\" }'"
    (job,) = run_jobs(server, {"title": "chatty", "command": awk})
    page = ui.goto("log")
    page.locator("input[aria-label='Job id']").fill(str(job))
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/#/log/{job}")
    log = page.locator("pre.log")
    expect()(log).to_contain_text("row 005999")
    assert "row 000000" not in log.inner_text()  # only the tail at first
    page.get_by_role("button", name="Load earlier").click()
    expect()(log).to_contain_text("row 000000")
    expect()(page.get_by_role("button", name="Load earlier")).to_be_hidden()
    lines = [line for line in log.inner_text().splitlines() if line]
    assert lines == big.splitlines()
    ui.shot("view-log")


def test_affinities_registry(ui, server):
    server.api("POST", "/api/affinities", {"1": "linux", "2": "gpu"})
    page = ui.goto("affinities")
    first = page.locator("input[aria-label='Affinity 1']")
    expect()(first).to_have_value("linux")
    first.fill("linux64")
    expect()(page.locator(".aff-row.changed")).to_have_count(1)
    page.get_by_role("button", name="+ Add a name").click()
    page.locator("input[aria-label='Affinity 3']").fill("nuke")
    ui.shot("view-affinities")
    page.get_by_role("button", name="Update").click()
    expect()(page.locator(".toast-ok")).to_contain_text("Saved 2")
    registry = server.api("GET", "/api/affinities")
    assert (registry["1"], registry["2"], registry["3"]) == ("linux64", "gpu", "nuke")


def test_limits_view_shows_use_and_edits_capacities(ui, server):
    server.api("POST", "/api/limits", {"nuke": 1})
    job = server.submit(title="comp", command="true", limits="nuke:1")
    assert server.worker_call("pickjob", {"name": "holder"})["job"]["id"] == job
    page = ui.goto("limits")
    row = page.locator("tr[data-limit=nuke]")
    expect()(row).to_have_class(re.compile("is-full"))
    expect()(row.locator("td").nth(2)).to_have_text("1")  # in use
    page.locator("input[aria-label='Capacity of nuke']").fill("4")
    page.locator("input[aria-label='Capacity of nuke']").press("Enter")
    expect()(page.locator(".toast-ok")).to_contain_text("Limit nuke: 4")
    page.locator("input[aria-label='New limit name']").fill("arnold")
    page.locator("input[aria-label='New limit capacity']").fill("10")
    page.get_by_role("button", name="Set", exact=True).click()
    expect()(page.locator("tr[data-limit=arnold]")).to_be_visible()
    ui.shot("view-limits")
    limits = {r["name"]: r for r in server.api("GET", "/api/limits")}
    assert (limits["nuke"]["capacity"], limits["nuke"]["in_use"], limits["arnold"]["capacity"]) == (4, 1, 10)
    page.locator("tr[data-limit=arnold]").get_by_role("button", name="Delete").click()
    expect()(page.locator("tr[data-limit=arnold]")).to_have_count(0)
    # The jobs list shows what each job needs and whom it waits for frame by frame.
    waiter = server.submit(title="after", command="true", frame_dep=job)
    page = ui.goto("jobs")
    tr = page.locator(f"tr[data-id='{waiter}']")
    expect()(tr.locator("td[data-col=dependencies]")).to_have_text(f"frames of {job}")
    expect()(page.locator(f"tr[data-id='{job}'] td[data-col=limits]")).to_have_text("nuke:1")


def test_overview_counts_chart_and_throughput(ui, server, worker):
    run_jobs(
        server,
        {"title": "ok 1", "command": "true"},
        {"title": "ok 2", "command": "true"},
        {"title": "ko", "command": "exit 1"},
    )
    server.submit(title="held", command="true", paused=True)
    page = ui.goto("overview")
    tile = lambda label: page.locator(".tile", has=page.locator(".tile-label", has_text=label))  # noqa: E731
    expect()(tile("finished").first.locator(".tile-value")).to_have_text("2")
    expect()(tile("error").first.locator(".tile-value")).to_have_text("1")
    expect()(tile("paused").locator(".tile-value")).to_have_text("1")
    expect()(page.locator("svg.chart")).to_have_count(2)
    expect()(page.locator("svg.chart .s-running path.line")).to_have_count(1)
    expect()(page.locator("svg.chart .s-finished rect")).not_to_have_count(0)
    ui.shot("view-overview")
    # A state tile opens the jobs filtered on that state.
    tile("paused").click()
    page.wait_for_url("**/#/jobs")
    expect()(page.locator("table.jobs tbody tr")).to_have_count(1)
    expect()(page.locator(".chip.on")).to_have_text("PAUSED")


def test_shell_tabs_keyboard_help_and_dark_theme(ui, server):
    server.submit(title="anything", command="true", paused=True)
    page = ui.goto("jobs")
    page.keyboard.press("3")
    page.wait_for_url("**/#/workers")
    page.keyboard.press("1")
    page.wait_for_url("**/#/overview")
    page.keyboard.press("2")
    page.wait_for_url("**/#/jobs")
    page.keyboard.press("?")
    expect()(page.locator("dialog#confirm")).to_contain_text("Keyboard shortcuts")
    ui.shot("help")
    page.keyboard.press("Escape")
    expect()(page.locator("dialog#confirm")).not_to_be_visible()
    page.locator("#theme").click()  # light (set by the test prefs) -> dark
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    expect()(page.locator("table.jobs tbody tr")).to_have_count(1)
    ui.shot("jobs-dark")
    page.locator("#theme").click()  # -> auto


def test_server_going_away_is_shown_and_so_is_its_return(ui, server):
    server.submit(title="anything", command="true", paused=True)
    page = ui.goto("jobs")
    expect()(page.locator("table.jobs tbody tr")).to_have_count(1)
    assert page.locator("#conn.down").count() == 0
    server.stop()
    page.locator("#refresh").click()
    expect()(page.locator("#conn.down")).to_have_text("offline")
    expect()(ui.toast_error()).to_contain_text("server unreachable")
    page.locator("#refresh").click()
    expect()(ui.toast_error()).to_have_count(1)  # the same error again is counted, not stacked
    expect()(ui.toast_error().locator(".toast-count")).to_have_text(re.compile(r"×\d+"))
    ui.shot("offline")
    server.start()
    page.locator("#refresh").click()
    expect()(page.locator("#conn.down")).to_have_count(0)
    expect()(ui.toast_error()).to_have_count(0)
