"""Browser fixtures: Debian's Chromium driven by Playwright (never `playwright install`),
a real server (tests/conftest.py) and, where a test needs jobs to run, a real worker process.

Screenshots go to tests/web/artifacts/ (git-ignored) so a person can judge the page.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
REPO = Path(__file__).resolve().parents[2]

# Faster auto-refresh than the 4 s default so the tests wait less; set only on first load,
# so a test can still change preferences and reload.
INIT_PREFS = """
if (!localStorage.getItem("coalition5.app")) {
  localStorage.setItem("coalition5.app", JSON.stringify({auto: true, interval: 2, theme: "light"}));
}
"""


class UI:
    """A page on the server under test, recording what must never happen (uncaught errors,
    alert dialogs) and saving screenshots."""

    def __init__(self, page: Any, base: str, name: str):
        self.page = page
        self.base = base.rstrip("/")
        self.name = name
        self.page_errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def goto(self, route: str = "jobs") -> Any:
        """Open a view (`jobs`, `jobs/12`, `log/3`, `workers`...) and wait for the page script."""
        self.page.goto(f"{self.base}/#/{route}")
        self.page.wait_for_selector("#tabs a.tab.active")
        return self.page

    def shot(self, label: str) -> Path:
        """Save a screenshot under tests/web/artifacts/."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{label}.png"
        self.page.screenshot(path=str(path))
        return path

    # -- locators -----------------------------------------------------------------------
    def rows(self) -> Any:
        return self.page.locator("table.jobs tbody tr")

    def row(self, title: str) -> Any:
        """The jobs-table row whose title is exactly `title`."""
        cell = self.page.locator("td[data-col=title]").filter(has=self.page.get_by_text(title, exact=True))
        return self.rows().filter(has=cell)

    def cell(self, title: str, col: str) -> Any:
        return self.row(title).locator(f"td[data-col={col}]")

    def button(self, label: str) -> Any:
        return self.page.locator(".toolbar").get_by_role("button", name=label, exact=True)

    def toast_error(self) -> Any:
        return self.page.locator(".toast-error")


@pytest.fixture
def ui(browser: Any, server: Any, request: pytest.FixtureRequest) -> Iterator[UI]:
    """A fresh browser context (empty localStorage) on the test's server."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.add_init_script(INIT_PREFS)
    page = context.new_page()
    page.set_default_timeout(15000)
    helper = UI(page, server.url, request.node.name)
    try:
        yield helper
    finally:
        context.close()
    assert not helper.page_errors, f"uncaught errors in the page: {helper.page_errors}"
    assert not helper.dialogs, f"the page opened dialogs (XSS?): {helper.dialogs}"


class Worker:
    """A real `coalition-worker` process (started by this fixture, stopped by its pid)."""

    def __init__(self, url: str, name: str, root: Path, slots: int = 1, affinity: str | None = None):
        self.name = name
        self.log_path = root / f"worker-{name}.log"
        cmd = [sys.executable, "-m", "coalition.worker.main", "-n", name, "-w", str(slots), "-s", "0.2"]
        if affinity:
            cmd += ["-a", affinity]
        cmd.append(url)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        except FileNotFoundError:
            return ""


@pytest.fixture
def worker(server: Any, tmp_path: Path) -> Iterator[Worker]:
    """One worker slot polling the test's server every 0.2 s."""
    w = Worker(server.url, "webworker", tmp_path)
    try:
        yield w
    finally:
        w.stop()
