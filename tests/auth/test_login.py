"""Web login sessions: the cookie's flags, logout, several server processes sharing one
database, expiry, CSRF and open-redirect guards, password-guessing limits."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import requests

from tests.authfarm import Slapd, ldap_keys, password


def _login(url: str, user: str, pw: str | None = None, **kw: Any) -> requests.Response:
    return requests.post(
        url + "/api/login", json={"user": user, "password": pw or password(user)}, timeout=30, **kw
    )


def test_cookie_flags_and_logout(ldap_farm: Any) -> None:
    url = ldap_farm.url
    r = _login(url, "artist1")
    assert r.status_code == 200 and r.json()["user"] == "artist1" and r.json()["can"]["create"]
    raw = r.headers["Set-Cookie"]
    attrs = {a.strip().split("=")[0].lower() for a in raw.split(";")}
    assert raw.startswith("coalition_session=")
    assert {"httponly", "samesite", "path", "max-age"} <= attrs and "secure" not in attrs  # plain HTTP here
    assert "SameSite=Strict" in raw
    jar = r.cookies
    who = requests.get(url + "/api/whoami", cookies=jar, timeout=30).json()
    assert (who["user"], who["via"], who["login_required"]) == ("artist1", "session", True)
    assert requests.get(url + "/", cookies=jar, allow_redirects=False, timeout=30).status_code == 200
    out = requests.post(url + "/api/logout", cookies=jar, timeout=30)
    assert out.status_code == 200 and "coalition_session=;" in out.headers["Set-Cookie"].replace('""', "")
    assert requests.get(url + "/api/whoami", cookies=jar, timeout=30).status_code == 401
    page = requests.get(url + "/", cookies=jar, allow_redirects=False, timeout=30)
    assert page.status_code == 303


def test_wrong_password_sets_no_cookie(ldap_farm: Any) -> None:
    r = _login(ldap_farm.url, "artist1", "nope")
    assert r.status_code == 401 and "Set-Cookie" not in r.headers
    assert r.headers["WWW-Authenticate"] == "Session"  # no browser pop-up over the login page


def test_form_login_redirects_and_refuses_open_redirects(ldap_farm: Any) -> None:
    url = ldap_farm.url
    form = {"user": "artist1", "password": password("artist1"), "next": "/index.html#/jobs"}
    r = requests.post(url + "/api/login", data=form, allow_redirects=False, timeout=30)
    assert r.status_code == 303 and r.headers["Location"].endswith("/index.html#/jobs")
    assert "coalition_session" in r.cookies
    # Browsers drop tab, CR and LF from URLs: `/<TAB>/evil.example` is `//evil.example`.
    evils = ("//evil.example/", "https://evil.example/", "/\\evil.example", "/\t/evil.example")
    for evil in (*evils, "/\r/evil.example", "/\n/evil.example", "/ /evil.example"):
        r = requests.post(url + "/api/login", data={**form, "next": evil}, allow_redirects=False, timeout=30)
        assert r.status_code == 303 and r.headers["Location"] in (url + "/", "/"), evil
    bad = requests.post(url + "/api/login", data={**form, "password": "x"}, allow_redirects=False, timeout=30)
    assert bad.status_code == 303 and "/login.html?error=" in bad.headers["Location"]


def test_cross_site_requests_may_not_ride_the_session(ldap_farm: Any) -> None:
    url = ldap_farm.url
    jar = _login(url, "admin1").cookies
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}, {"Origin": "null"}):
        r = requests.post(url + "/api/pausejobs", json=[], cookies=jar, headers=headers, timeout=30)
        assert r.status_code == 403, headers
    ok = requests.get(url + "/api/jobs", cookies=jar, headers={"Sec-Fetch-Site": "same-origin"}, timeout=30)
    assert ok.status_code == 200
    same = requests.get(url + "/api/jobs", cookies=jar, headers={"Origin": url}, timeout=30)
    assert same.status_code == 200
    login = requests.post(
        url + "/api/login",
        json={"user": "admin1", "password": password("admin1")},
        headers={"Sec-Fetch-Site": "cross-site"},
        timeout=30,
    )
    assert login.status_code == 403


def test_sessions_are_shared_by_servers_on_one_database(slapd: Slapd, make_auth_server: Any) -> None:
    first = make_auth_server(**ldap_keys(slapd))
    second = make_auth_server(**ldap_keys(slapd, datadir=str(first.datadir)))
    jar = _login(first.url, "wrangler1").cookies
    assert requests.get(second.url + "/api/whoami", cookies=jar, timeout=30).json()["user"] == "wrangler1"
    # The cookie itself is not in the database, only its hash.
    token = jar["coalition_session"]
    db = sqlite3.connect(str(first.datadir / "coalition.db"))
    stored = [r[0] for r in db.execute("SELECT id FROM sessions")]
    assert stored and token not in stored
    # A logout on one server ends the session on every server.
    assert requests.post(second.url + "/api/logout", cookies=jar, timeout=30).ok
    assert requests.get(first.url + "/api/whoami", cookies=jar, timeout=30).status_code == 401
    # An expired session is refused too.
    jar = _login(first.url, "wrangler1").cookies
    assert requests.get(second.url + "/api/whoami", cookies=jar, timeout=30).ok
    with db:
        db.execute("UPDATE sessions SET expires = ?", (time.time() - 1,))
    assert requests.get(second.url + "/api/whoami", cookies=jar, timeout=30).status_code == 401
    db.close()


def test_password_guessing_is_slowed(slapd: Slapd, make_auth_server: Any) -> None:
    url = make_auth_server(**ldap_keys(slapd)).url  # its own: the lock-out lasts minutes
    codes = [
        requests.get(url + "/api/jobs", auth=("artist2", f"guess{i}"), timeout=30).status_code
        for i in range(11)
    ]
    assert codes[:10] == [401] * 10 and codes[10] == 429
    # Even the right password waits now (from this address).
    assert (
        requests.get(url + "/api/jobs", auth=("artist2", password("artist2")), timeout=30).status_code == 429
    )


def test_login_and_logout_are_audited(ldap_farm: Any) -> None:
    url = ldap_farm.url
    jar = _login(url, "artist1").cookies
    requests.post(url + "/api/logout", cookies=jar, timeout=30)
    trail = ldap_farm.client("admin1").get(url + "/api/audit", params={"user": "artist1", "limit": 5}).json()
    assert [e["action"] for e in trail[:2]] == ["logout", "login"]
    assert trail[0]["address"] == "127.0.0.1"


def test_passwords_stay_out_of_urls(ldap_farm: Any) -> None:
    r = requests.post(
        ldap_farm.url + "/api/login", params={"user": "artist1", "password": password("artist1")}, timeout=30
    )
    assert r.status_code == 400 and "Set-Cookie" not in r.headers
