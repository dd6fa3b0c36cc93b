"""The Jobs view in a real browser against a real server (and a real worker where jobs run)."""

from __future__ import annotations

import json
import time

import pytest

from tests.support import wait_for

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"


def expect():
    from playwright.sync_api import expect as _expect

    return _expect


def test_submit_a_job_from_the_page_and_watch_it_finish(ui, server, worker):
    page = ui.goto("jobs")
    ui.button("+ Add").click()
    form = page.locator("form.add-form")
    form.locator("[name=title]").fill("hello from the page")
    form.locator("[name=command]").fill("echo hello-from-the-page")
    form.locator("[name=user]").fill("alice")
    form.get_by_role("button", name="Add", exact=True).click()
    expect()(page.locator(".toast-ok")).to_contain_text("Added job")
    row = ui.row("hello from the page")
    expect()(row).to_have_count(1)
    # Auto-refresh (changed_since) brings the state along: WAITING -> WORKING -> FINISHED.
    expect()(ui.cell("hello from the page", "state")).to_have_text("FINISHED", timeout=30000)
    expect()(ui.cell("hello from the page", "progress")).to_contain_text("100%")
    job = server.api("GET", "/api/jobs")[0]
    assert job["title"] == "hello from the page" and job["user"] == "alice"
    assert "hello-from-the-page" in server.api("GET", f"/api/jobs/{job['id']}/log")
    ui.shot("jobs-finished")


def test_log_is_followed_live_while_the_job_runs(ui, server, worker):
    # (not $(seq ...): the worker expands $(NAME) as an environment variable, as Coalition 4 did)
    cmd = f"for i in {' '.join(map(str, range(1, 61)))}; do echo line-$i; sleep 0.2; done"
    job_id = server.submit(title="slow printer", command=cmd)
    page = ui.goto("jobs")
    expect()(ui.cell("slow printer", "state")).to_have_text("WORKING", timeout=30000)
    ui.row("slow printer").dblclick()
    page.wait_for_url(f"**/#/log/{job_id}")
    log = page.locator("pre.log")
    expect()(log).to_contain_text("line-3", timeout=15000)
    # Still running when we saw the first lines, and more arrive without a reload.
    assert server.job(job_id)["state"] == "WORKING"
    expect()(page.locator(".live")).to_be_visible()
    expect()(log).to_contain_text("line-20", timeout=20000)
    ui.shot("log-live")
    expect()(page.locator(".log-head .state")).to_have_text("FINISHED", timeout=30000)
    expect()(log).to_contain_text("line-60")
    # Every line once: the offset polling neither skips nor repeats a byte.
    text = log.inner_text()
    assert [line for line in text.splitlines() if line] == [f"line-{i}" for i in range(1, 61)]


def test_pause_and_resume_a_running_job(ui, server, worker):
    job_id = server.submit(title="long render", command="sleep 120")
    ui.goto("jobs")
    expect()(ui.cell("long render", "state")).to_have_text("WORKING", timeout=30000)
    ui.row("long render").click()
    ui.button("Pause").click()
    expect()(ui.cell("long render", "state")).to_have_text("PAUSED")
    assert server.job(job_id)["paused"] == 1
    # The worker kills the paused run: the slot goes back to waiting.
    wait_for(
        lambda: server.api("GET", "/api/workers/webworker")["state"] == "WAITING",
        timeout=15,
        what="the worker to drop the paused job",
    )
    ui.row("long render").click()
    ui.button("Start").click()
    expect()(ui.cell("long render", "state")).to_have_text("WORKING", timeout=30000)
    assert server.job(job_id)["paused"] == 0


def test_filters_are_applied_by_the_server_and_kept_across_reloads(ui, server):
    for i in range(6):
        server.submit(title=f"comp {i}", command="true", user="alice" if i % 2 else "bob")
    server.submit(title="lighting 7", command="render --light", user="carol")
    paused = server.submit(title="lighting 8", command="render --light", user="carol")
    server.api("POST", "/api/pausejobs", [paused])
    page = ui.goto("jobs")
    expect()(ui.rows()).to_have_count(8)

    page.locator("input.filter-text").fill("light")
    expect()(ui.rows()).to_have_count(2)
    page.locator(".chips .chip[data-state=PAUSED]").click()
    expect()(ui.rows()).to_have_count(1)
    expect()(ui.row("lighting 8")).to_have_count(1)
    page.locator(".chips .chip[data-state=PAUSED]").click()
    page.locator("input.filter-text").fill("")
    page.locator("input.filter-user").fill("alice")
    expect()(ui.rows()).to_have_count(3)
    ui.shot("jobs-filtered")

    page.reload()
    page.wait_for_selector("table.jobs")
    expect()(page.locator("input.filter-user")).to_have_value("alice")
    expect()(ui.rows()).to_have_count(3)
    assert json.loads(page.evaluate("localStorage.getItem('coalition5.jobs')"))["filters"]["user"] == "alice"

    page.get_by_role("button", name="Reset filters").click()
    expect()(ui.rows()).to_have_count(8)
    expect()(page.locator("input.filter-user")).to_have_value("")


def test_sort_by_a_column_header(ui, server):
    for title, prio in (("b-job", 10), ("a-job", 30), ("c-job", 20)):
        server.submit(title=title, command="true", priority=prio)
    server.api("POST", "/api/pausejobs", [j["id"] for j in server.api("GET", "/api/jobs")])
    page = ui.goto("jobs")
    titles = page.locator("table.jobs tbody td[data-col=title]")
    expect()(titles).to_have_text(["a-job", "c-job", "b-job"])  # queue order: priority first
    page.locator("table.jobs th[data-key=title]").click()
    expect()(titles).to_have_text(["a-job", "b-job", "c-job"])
    page.locator("table.jobs th[data-key=title]").click()
    expect()(titles).to_have_text(["c-job", "b-job", "a-job"])
    page.locator("table.jobs th[data-key=priority]").click()
    expect()(titles).to_have_text(["a-job", "c-job", "b-job"])


def test_multi_select_with_click_ctrl_click_shift_click_and_keys(ui, server):
    ids = [server.submit(title=f"frame {i:02d}", command="true", paused=True) for i in range(1, 11)]
    page = ui.goto("jobs")
    expect()(ui.rows()).to_have_count(10)
    ui.row("frame 02").click()
    ui.row("frame 06").click(modifiers=["Shift"])
    expect()(page.locator("table.jobs tbody tr.selected")).to_have_count(5)
    ui.row("frame 04").click(modifiers=["Control"])
    expect()(page.locator("table.jobs tbody tr.selected")).to_have_count(4)
    expect()(page.locator(".sel-count")).to_have_text("4 selected")
    ui.shot("jobs-multiselect")
    ui.button("Start").click()
    expect()(page.locator(".toast-ok")).to_contain_text("Start: 4 jobs")
    started = {j["id"] for j in server.api("GET", "/api/jobs") if not j["paused"]}
    assert started == {ids[1], ids[2], ids[4], ids[5]}

    # Keyboard: move down from the cursor, extend with Shift+Down, toggle with Space.
    ui.row("frame 08").click()
    page.keyboard.press("Shift+ArrowDown")
    page.keyboard.press("Shift+ArrowDown")
    expect()(page.locator("table.jobs tbody tr.selected")).to_have_count(3)
    page.keyboard.press("Space")
    expect()(page.locator("table.jobs tbody tr.selected")).to_have_count(2)
    page.keyboard.press("Control+a")
    expect()(page.locator("table.jobs tbody tr.selected")).to_have_count(10)
    page.keyboard.press("Escape")
    expect()(page.locator("table.jobs tbody tr.selected")).to_have_count(0)


def test_navigate_groups_by_double_click_and_breadcrumb(ui, server):
    show = server.submit(title="show", command="")
    seq = server.submit(title="sequence 10", command="", parent=show)
    shot = server.submit(title="shot 10-020", command="", parent=seq)
    server.api(
        "PUT",
        "/api/jobs",
        [{"title": f"frame {i}", "command": "true", "parent": shot, "paused": True} for i in range(1, 4)],
    )
    server.submit(title="notes", command="true", parent=show, paused=True)
    page = ui.goto("jobs")
    ui.row("show").dblclick()
    page.wait_for_url(f"**/#/jobs/{show}")
    expect()(page.locator(".crumbs .current")).to_have_text("show")
    expect()(ui.rows()).to_have_count(2)
    ui.row("sequence 10").dblclick()
    ui.row("shot 10-020").dblclick()
    page.wait_for_url(f"**/#/jobs/{shot}")
    expect()(page.locator(".crumbs")).to_contain_text("All jobs›show›sequence 10›shot 10-020")
    expect()(ui.rows()).to_have_count(3)
    expect()(page.locator(".group-info")).to_contain_text("3 total")
    ui.shot("jobs-group")
    # Up with Backspace, then straight to the root from the breadcrumb.
    page.keyboard.press("Backspace")
    page.wait_for_url(f"**/#/jobs/{seq}")
    page.locator(".crumbs a", has_text="All jobs").click()
    page.wait_for_url("**/#/jobs")
    expect()(ui.rows()).to_have_count(1)
    # A leaf opens its log.
    page.goto(f"{server.url}/#/jobs/{shot}")
    ui.row("frame 2").dblclick()
    page.wait_for_url("**/#/log/*")
    expect()(page.locator(".log-title")).to_have_text("frame 2")


def test_cut_and_paste_moves_jobs_into_a_group(ui, server):
    group = server.submit(title="target group", command="")
    server.submit(title="already inside", command="true", parent=group, paused=True)
    a = server.submit(title="stray a", command="true", paused=True)
    b = server.submit(title="stray b", command="true", paused=True)
    page = ui.goto("jobs")
    ui.row("stray a").click()
    ui.row("stray b").click(modifiers=["Control"])
    ui.button("Cut").click()
    expect()(page.locator("table.jobs tbody tr.cut")).to_have_count(2)
    ui.row("target group").dblclick()
    page.wait_for_url(f"**/#/jobs/{group}")
    ui.button("Paste (2)").click()
    expect()(ui.rows()).to_have_count(3)
    assert server.job(a)["parent"] == group and server.job(b)["parent"] == group


def test_delete_asks_first(ui, server):
    keep = server.submit(title="keep me", command="true", paused=True)
    gone = server.submit(title="delete me", command="true", paused=True)
    page = ui.goto("jobs")
    ui.row("delete me").click()
    page.keyboard.press("Delete")
    dialog = page.locator("dialog#confirm")
    expect()(dialog).to_contain_text("Delete 1 job?")
    ui.shot("jobs-delete-confirm")
    dialog.get_by_role("button", name="Cancel").click()
    assert server.job(gone)["id"] == gone
    ui.button("Delete").click()
    dialog.get_by_role("button", name="Delete").click()
    expect()(ui.row("delete me")).to_have_count(0)
    server.api("GET", f"/api/jobs/{gone}", expect=404)
    assert server.job(keep)["title"] == "keep me"


def test_edit_panel_sends_only_the_changed_fields(ui, server):
    a = server.submit(title="first", command="render a", priority=100, user="alice", paused=True)
    b = server.submit(title="second", command="render b", priority=200, user="alice", paused=True)
    page = ui.goto("jobs")
    ui.row("first").click()
    ui.row("second").click(modifiers=["Shift"])
    ui.button("Edit").click()
    panel = page.locator("form.edit-form")
    expect()(panel).to_contain_text("2 jobs")
    title = panel.locator("label.field[data-field=title]")
    prio = panel.locator("label.field[data-field=priority]")
    user = panel.locator("label.field[data-field=user]")
    expect()(title).to_have_class("field mixed")  # differs between the two
    expect()(user.locator("input")).to_have_value("alice")  # common value shown
    prio.locator("input").fill("1500")
    expect()(prio).to_have_class("field changed")
    env = panel.locator("label.field[data-field=environment] textarea")
    env.fill("A=1\nB=two words")
    ui.shot("jobs-edit-panel")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/jobs")) as req:
        panel.get_by_role("button", name="Update").click()
    sent = json.loads(req.value.post_data)
    assert sent == {
        str(a): {"priority": 1500, "environment": "A=1\\nB=two words"},
        str(b): {"priority": 1500, "environment": "A=1\\nB=two words"},
    }
    expect()(page.locator(".toast-ok")).to_contain_text("Updated")
    for job_id, title_ in ((a, "first"), (b, "second")):
        job = server.job(job_id)
        assert (job["priority"], job["title"], job["environment"]) == (1500, title_, "A=1\\nB=two words")
    expect()(ui.cell("first", "priority")).to_have_text("1500")


def test_edit_dependencies_as_a_list(ui, server):
    dep1 = server.submit(title="dep one", command="true", paused=True)
    dep2 = server.submit(title="dep two", command="true", paused=True)
    job = server.submit(title="needs deps", command="true", paused=True)
    page = ui.goto("jobs")
    # The panel reads the selected job again before it can be edited: slow that read down,
    # so that a field typed into before it arrives would be lost (CI's flake, made certain).
    page.route(f"**/api/jobs/{job}", lambda route: (time.sleep(0.5), route.continue_()))
    ui.row("needs deps").click()
    ui.button("Edit").click()
    deps = page.locator("form.edit-form label.field[data-field=dependencies] input")
    expect()(deps).to_be_disabled()  # until the job is loaded
    expect()(deps).to_be_enabled()
    deps.fill(f"{dep1}, {dep2}")
    page.locator("form.edit-form").get_by_role("button", name="Update").click()
    expect()(page.locator(".toast-ok")).to_contain_text("dependencies")
    assert server.job(job)["dependencies"] == [dep1, dep2]
    expect()(ui.cell("needs deps", "dependencies")).to_have_text(f"{dep1}, {dep2}")


def test_add_a_frame_range_into_the_current_group(ui, server):
    group = server.submit(title="shot 30", command="")
    server.submit(title="plate", command="true", parent=group, paused=True)
    page = ui.goto(f"jobs/{group}")
    expect()(page.locator(".crumbs .current")).to_have_text("shot 30")
    page.keyboard.press("a")
    form = page.locator("form.add-form")
    expect()(form).to_contain_text("Into shot 30")
    form.locator("[name=title]").fill("beauty {frame:3}")
    form.locator("[name=command]").fill("render -s {start} -e {end}")
    form.locator("[name=first]").fill("1")
    form.locator("[name=last]").fill("10")
    form.locator("[name=packet]").fill("2")
    form.locator("input[name=paused]").check()
    ui.shot("jobs-add-range")
    form.get_by_role("button", name="Add", exact=True).click()
    expect()(page.locator(".toast-ok")).to_contain_text("with 5 jobs")
    sub = [j for j in server.api("GET", f"/api/jobs/{group}/children") if j["title"] == "beauty"]
    assert len(sub) == 1 and sub[0]["paused"] == 1
    kids = server.api("GET", f"/api/jobs/{sub[0]['id']}/children")
    assert [(k["title"], k["command"]) for k in kids] == [
        (f"beauty {s:03d}", f"render -s {s} -e {s + 1}") for s in (1, 3, 5, 7, 9)
    ]
    expect()(ui.row("beauty")).to_have_count(1)


def test_a_job_title_with_markup_stays_text(ui, server, worker):
    job_id = server.submit(
        title=XSS,
        command="echo '<img src=x onerror=alert(2)><script>alert(3)</script>'",
        user="<b>mallory</b>",
        affinity="",
        url="javascript:alert(4)",
    )
    page = ui.goto("jobs")
    expect()(ui.cell(XSS, "state")).to_have_text("FINISHED", timeout=30000)
    assert ui.cell(XSS, "title").inner_text().strip() == XSS
    assert ui.cell(XSS, "user").inner_text() == "<b>mallory</b>"
    assert page.locator("#view img, #view script, #view b").count() == 0
    assert ui.cell(XSS, "url").locator("a").count() == 0  # javascript: is never a link
    ui.shot("xss-jobs")
    ui.row(XSS).dblclick()
    log = page.locator("pre.log")
    expect()(log).to_contain_text("<img src=x onerror=alert(2)><script>alert(3)</script>")
    assert page.locator("#view img, #view script").count() == 0
    expect()(page.locator(".log-title")).to_have_text(XSS)
    ui.shot("xss-log")
    ui.goto(f"activities?job={job_id}")
    expect()(page.locator("table.events tbody td.title")).to_have_text([XSS])
    ui.goto("jobs")
    ui.row(XSS).click()
    ui.button("Edit").click()
    expect()(page.locator("form.edit-form label.field[data-field=title] input")).to_have_value(XSS)
    assert page.locator("#view img, #view script").count() == 0
    assert ui.dialogs == []


def test_api_errors_are_shown_not_swallowed(ui, server):
    a = server.submit(title="job a", command="true", paused=True)
    b = server.submit(title="job b", command="true", paused=True, dependencies=[a])
    page = ui.goto("jobs")
    ui.row("job a").click()
    ui.button("Edit").click()
    deps = page.locator("form.edit-form label.field[data-field=dependencies] input")
    expect()(deps).to_be_enabled()
    deps.fill(str(b))  # a -> b -> a: a cycle the server refuses
    page.locator("form.edit-form").get_by_role("button", name="Update").click()
    error = ui.toast_error()
    expect()(error).to_contain_text("cycle")
    expect()(error).to_contain_text("HTTP 400")
    ui.shot("error-shown")
    assert server.job(a)["dependencies"] == []
    # Client-side validation speaks too.
    page.locator("form.edit-form label.field[data-field=priority] input").fill("high")
    page.locator("form.edit-form").get_by_role("button", name="Update").click()
    expect()(ui.toast_error().last).to_contain_text("Priority must be a whole number")


def test_paging_through_a_big_group(ui, server):
    server.api(
        "PUT",
        "/api/jobs",
        [{"title": f"job {i:04d}", "command": "true", "paused": True} for i in range(1, 1201)],
    )
    page = ui.goto("jobs")
    expect()(page.locator(".page-info")).to_have_text("1–100 of 1,200")
    expect()(ui.rows()).to_have_count(100)
    page.get_by_title("Last page").click()
    expect()(page.locator(".page-info")).to_have_text("1,101–1,200 of 1,200")
    expect()(ui.rows().first.locator("td[data-col=title]")).to_have_text("job 1101")
    page.keyboard.press("[")
    expect()(page.locator(".page-info")).to_have_text("1,001–1,100 of 1,200")
    page.locator(".pager select").select_option("500")
    expect()(ui.rows()).to_have_count(500)
    expect()(page.locator(".page-info")).to_have_text("1–500 of 1,200")


def test_select_by_state_and_csv_export(ui, server, tmp_path):
    server.submit(title='=HYPERLINK("x")', command="true", paused=True)
    server.submit(title="waiting one", command="true")
    server.submit(title="paused two", command="true", paused=True)
    page = ui.goto("jobs")
    expect()(ui.rows()).to_have_count(3)
    page.locator("summary", has_text="Select").click()
    page.get_by_role("button", name="Paused", exact=True).click()
    expect()(page.locator("table.jobs tbody tr.selected")).to_have_count(2)
    page.locator("summary", has_text="Select").click()
    page.get_by_role("button", name="Invert", exact=True).click()
    expect()(page.locator("table.jobs tbody tr.selected td[data-col=title]")).to_have_text(["waiting one"])
    with page.expect_download() as download:
        ui.button("CSV").click()
    path = tmp_path / "jobs.csv"
    download.value.save_as(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("id,parent,title,state")
    assert len(lines) == 4
    assert '"\'=HYPERLINK(""x"")"' in lines[1]  # a formula stays text in a spreadsheet


def test_frames_tab_charts_frame_times_and_memory_with_the_time_left(ui, server, worker, tmp_path):
    # A group of four frames run by the real worker; the Frames tab shows each finished frame
    # as a bar (time) and a dot (peak memory), the min/mean/max, and the time left.
    group = server.submit(title="comp shot 10", command="", paused=True)
    for frame in range(1, 5):
        server.submit(title=f"frame {frame}", command=f"sleep 0.{frame}", parent=group)
    server.api("POST", "/api/startjobs", [group])
    wait_for(lambda: server.job(group)["state"] == "FINISHED", timeout=60, what="the group to finish")
    page = ui.goto("jobs")
    ui.row("comp shot 10").click()
    page.keyboard.press("f")
    panel = page.locator(".frames-stats")
    expect()(panel.locator(".frames-summary")).to_contain_text("4 frames")
    expect()(panel.locator(".frames-summary")).to_contain_text("4 finished, 0 running, 0 waiting")
    expect()(panel.locator(".time-left")).to_have_text("Time left: 0 s")
    expect()(panel.locator("svg.frames-chart .frame-time rect")).to_have_count(4)
    expect()(panel.locator("svg.frames-chart .frame-memory circle")).to_have_count(4)
    stats = server.api("GET", f"/api/jobs/{group}/stats")
    row = panel.locator("table.spread tbody tr").first
    expect()(row).to_contain_text(f"{round(stats['time']['max'] * 10) / 10:g} s")
    ui.shot("frames-tab")
