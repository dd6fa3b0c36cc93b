"""How fast the web page opens a queue of 100,000 jobs, in Debian's Chromium.

    .venv/bin/python bench/web_open.py [--jobs 100000] [--runs 5] [--batch 10000]

Starts a private server (fresh SQLite under a temporary directory), fills it with N root jobs
through the API (`PUT /api/jobs` with lists of jobs, one transaction per batch), then opens
the page in a fresh browser context (cold cache) and measures the time from navigation start
until the jobs table is rendered (the page's `coalition:jobs-rendered` performance mark,
cross-checked by the wall clock seen from Playwright). Baseline in the same run: the server's
trivial route (`GET /api/ping`) fetched from the same page. A few interactions on the big
queue follow (sort by title, text filter, last page, an auto-refresh with nothing changed).

Prints one JSON object per line. Needs /usr/bin/chromium (apt-get install chromium).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import CHROMIUM, CHROMIUM_ARGS  # noqa: E402 - after the sys.path line

# Auto-refresh off while measuring: the bench drives refreshes itself.
PREFS = 'localStorage.setItem("coalition5.app", JSON.stringify({auto: false, interval: 4, theme: "light"}));'


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "web_open", **fields}), flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    ini = root / "coalition.ini"
    ini.write_text(f"[server]\nlisten = 127.0.0.1\nport = {port}\ndatadir = {root / 'data'}\n")
    cmd = [sys.executable, "-m", "coalition.server.main", "-c", str(ini)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(cmd + ["--init"], check=True, env=env, cwd=root, stdout=subprocess.DEVNULL)
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/api/ping", timeout=1).ok:
                return proc, url
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"the server did not start; see {root / 'server.log'}")


def fill(url: str, n: int, batch: int) -> float:
    session = requests.Session()
    t0 = time.perf_counter()
    users = ["alice", "bob", "carol", "dave"]
    for start in range(0, n, batch):
        jobs = [
            {
                "title": f"shot {i // 100:04d} frame {i % 100:03d}",
                "command": f"render --frame {i}",
                "user": users[i % 4],
                "priority": 1000 + (i % 7),
                "paused": True,  # nobody runs them: the bench measures the page, not workers
            }
            for i in range(start, min(n, start + batch))
        ]
        r = session.put(url + "/api/jobs", json=jobs, timeout=600)
        r.raise_for_status()
    return time.perf_counter() - t0


def rendered_after(page, action, expect_text: str | None = None) -> float:
    """Milliseconds from `action` to the next jobs-table render (performance marks)."""
    page.evaluate("performance.clearMarks('coalition:jobs-rendered')")
    t0 = page.evaluate("performance.now()")
    action()
    page.wait_for_function("performance.getEntriesByName('coalition:jobs-rendered').length > 0")
    if expect_text:
        page.wait_for_selector(f"text={expect_text}")
    return page.evaluate("performance.getEntriesByName('coalition:jobs-rendered')[0].startTime") - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--batch", type=int, default=10_000)
    args = p.parse_args()
    if not os.path.exists(CHROMIUM):
        emit(error=f"{CHROMIUM} missing: apt-get install chromium")
        return 2
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="coal-bench-web-"))
    proc, url = start_server(root)
    try:
        fill_s = fill(url, args.jobs, args.batch)
        emit(step="fill", jobs=args.jobs, seconds=round(fill_s, 2), jobs_per_s=round(args.jobs / fill_s))
        total = requests.get(url + "/api/jobs", params={"limit": 1}).json()["total"]
        assert total == args.jobs, total
        expected = f"of {args.jobs:,}"

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            opens, walls, pings = [], [], []
            for _ in range(args.runs):
                context = browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True)
                context.add_init_script(PREFS)
                page = context.new_page()
                t0 = time.perf_counter()
                page.goto(url + "/#/jobs", wait_until="commit")
                page.wait_for_function("performance.getEntriesByName('coalition:jobs-rendered').length > 0")
                page.wait_for_selector(f".page-info:has-text('{expected}')")
                walls.append((time.perf_counter() - t0) * 1000)
                opens.append(
                    page.evaluate("performance.getEntriesByName('coalition:jobs-rendered')[0].startTime")
                )
                rows = page.locator("table.jobs tbody tr").count()
                assert rows == 100, rows
                # Baseline: the trivial route, fetched by the same page.
                pings.append(
                    page.evaluate(
                        """async () => { const times = [];
                                     for (let i = 0; i < 7; i++) { const t = performance.now();
                                       await (await fetch('/api/ping', {cache: 'no-store'})).json();
                                       times.push(performance.now() - t); }
                                     return times.sort((a, b) => a - b)[3]; }"""
                    )
                )
                context.close()
            ping_ms = statistics.median(pings)
            open_ms = statistics.median(opens)
            emit(
                step="open",
                jobs=args.jobs,
                runs=args.runs,
                open_ms=round(open_ms, 1),
                open_ms_all=[round(x, 1) for x in opens],
                wall_ms=round(statistics.median(walls), 1),
                baseline_ping_ms=round(ping_ms, 2),
                ratio_to_ping=round(open_ms / ping_ms, 1),
                under_one_second=open_ms < 1000,
            )

            # Interactions on the big queue (one warm page).
            context = browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True)
            context.add_init_script(PREFS)
            page = context.new_page()
            page.goto(url + "/#/jobs")
            page.wait_for_selector(f".page-info:has-text('{expected}')")
            figures = {
                "sort_title_ms": rendered_after(page, lambda: page.click("table.jobs th[data-key=title]")),
                "filter_text_ms": rendered_after(
                    page,
                    lambda: (
                        page.fill("input.filter-text", "frame 042"),
                        page.press("input.filter-text", "Enter"),
                    ),
                ),
                "last_page_ms": rendered_after(page, lambda: page.click("button[title='Last page']")),
            }
            page.click("text=Reset filters")
            page.wait_for_selector(f".page-info:has-text('1–100 {expected}')")
            # An auto-refresh with nothing changed: one changed_since request, no re-render.
            refresh_ms = page.evaluate(
                """async () => { const v = window.coalition.views.jobs; const t = performance.now();
                                 await v.refresh({auto: true}); return performance.now() - t; }"""
            )
            emit(
                step="interact",
                jobs=args.jobs,
                **{k: round(v, 1) for k, v in figures.items()},
                refresh_unchanged_ms=round(refresh_ms, 1),
                baseline_ping_ms=round(ping_ms, 2),
            )
            context.close()
            browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
