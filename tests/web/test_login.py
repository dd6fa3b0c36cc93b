"""The page on an LDAP farm: the login page first, then the views with the login's rights
(actions it may not use are hidden), and Logout."""

from __future__ import annotations

import pytest

from tests.authfarm import ldap_keys, make_auth_server, password, slapd  # noqa: F401 (fixtures)
from tests.web.conftest import INIT_PREFS

pytestmark = pytest.mark.browser


def expect():
    from playwright.sync_api import expect as _expect

    return _expect


def test_login_then_views_follow_the_user_rights_then_logout(browser, slapd, make_auth_server):  # noqa: F811
    server = make_auth_server(**ldap_keys(slapd))
    admin = server.client("admin1")
    admin.put(server.url + "/api/jobs", json={"title": "wrangled job", "command": "true", "paused": True})
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.add_init_script(INIT_PREFS)
    page = context.new_page()
    try:
        page.goto(server.url + "/#/jobs")
        page.wait_for_url("**/login.html**")
        page.fill("#user", "wrangler1")
        page.fill("#password", "wrong")
        page.click("#submit")
        expect()(page.locator("#error")).to_be_visible()
        page.fill("#password", password("wrangler1"))
        page.click("#submit")
        page.wait_for_selector("table.jobs tbody tr")
        expect()(page.locator("#user .who")).to_have_text("wrangler1")
        toolbar = page.locator(".jobs-view .toolbar")
        # wranglers edit every job but delete none: no Delete button, the rest is there.
        expect()(toolbar.get_by_role("button", name="Pause", exact=True)).to_be_visible()
        expect()(toolbar.get_by_role("button", name="Delete", exact=True)).to_be_hidden()
        page.locator("table.jobs tbody tr").first.click()
        toolbar.get_by_role("button", name="Start", exact=True).click()
        expect()(page.locator("table.jobs td[data-col=state]")).to_have_text(["WAITING"])
        page.screenshot(path=str(_artifact("login-wrangler")))
        page.get_by_role("button", name="Logout").click()
        page.wait_for_url("**/login.html**")
        assert server.client().get(server.url + "/api/jobs").status_code == 401
    finally:
        context.close()


def _artifact(name: str):
    from tests.web.conftest import ARTIFACTS

    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / f"{name}.png"
