"""Log in and out in a real browser (Debian's Chromium through Playwright): the page sends a
stranger to the login form, a wrong password is shown, the session cookie is out of
JavaScript's reach, and logging out closes the page again."""

from __future__ import annotations

from typing import Any

import pytest

from tests.authfarm import Slapd, ldap_keys, password

pytestmark = pytest.mark.browser


def test_login_and_logout_in_a_browser(browser: Any, slapd: Slapd, make_auth_server: Any) -> None:
    from playwright.sync_api import expect

    farm = make_auth_server(**ldap_keys(slapd))
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(farm.url + "/index.html")
        page.wait_for_url("**/login.html?next=%2Findex.html")
        page.fill("#user", "artist1")
        page.fill("#password", "not my password")
        page.click("#submit")
        expect(page.locator("#error")).to_have_text("wrong user name or password")
        assert context.cookies() == []
        page.fill("#password", password("artist1"))
        page.click("#submit")
        page.wait_for_url(farm.url + "/index.html")
        (cookie,) = context.cookies()
        assert cookie["name"] == "coalition_session"
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
        assert "coalition_session" not in page.evaluate("document.cookie")
        who = page.evaluate("fetch('/api/whoami').then(r => r.json())")
        assert who["user"] == "artist1" and who["can"]["delete"] and not who["can"]["delete_all"]
        status = page.evaluate("fetch('/api/logout', {method: 'POST'}).then(r => r.status)")
        assert status == 200
        page.goto(farm.url + "/")
        page.wait_for_url("**/login.html?next=%2F")
        assert page.evaluate("fetch('/api/jobs').then(r => r.status)") == 401
    finally:
        context.close()
