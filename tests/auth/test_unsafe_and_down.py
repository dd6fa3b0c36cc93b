"""`ldapunsafeapi` (API requests skip the password, the web page still asks for a login) and
an LDAP server that goes away (a clear 503, never open access)."""

from __future__ import annotations

from typing import Any

import requests

from tests.authfarm import BASE, Slapd, ldap_keys, password


def _unsafe_keys(slapd: Slapd) -> dict[str, Any]:
    keys = ldap_keys(slapd, ldapunsafeapi="True")
    # The correct spelling of the login key works as well as the documented misspelling.
    keys["ldaptemplatelogin"] = keys.pop("ldaptemplatellogin")
    return keys


def test_unsafe_api_skips_the_password_but_not_the_user(slapd: Slapd, make_auth_server: Any) -> None:
    farm = make_auth_server(**_unsafe_keys(slapd))
    url = farm.url
    # No user at all: still refused.
    assert requests.get(url + "/api/jobs", timeout=30).status_code == 401
    # A user name with any password (or none) acts as that user, with that user's grants.
    artist = requests.Session()
    artist.auth = ("artist1", "not-the-password")
    jid = int(artist.put(url + "/api/jobs", json={"title": "a", "command": "true", "user": "admin1"}).json())
    assert farm.client("admin1").get(f"{url}/api/jobs/{jid}").json()["user"] == "artist1"
    other = int(
        farm.client("admin1", "").put(url + "/api/jobs", json={"title": "b", "user": "artist2"}).json()
    )
    assert artist.get(f"{url}/api/jobs/{other}").status_code == 403
    assert artist.delete(url + "/api/jobs", json=[other]).status_code == 403
    # The legacy submission routes are API routes too.
    r = requests.get(
        url + "/json/addjob", params={"cmd": "true", "title": "l"}, auth=("artist2", ""), timeout=30
    )
    assert r.status_code == 200
    assert farm.client("admin1").get(f"{url}/api/jobs/{int(r.text)}").json()["user"] == "artist2"
    # Unknown names get the grants the directory gives them: none.
    assert requests.get(url + "/api/jobs", auth=("ghost", "x"), timeout=30).status_code == 403


def test_unsafe_api_still_logs_the_web_page_in(slapd: Slapd, make_auth_server: Any) -> None:
    farm = make_auth_server(**_unsafe_keys(slapd))
    url = farm.url
    # The web page's API (/api/webfrontend) and the page itself check the password.
    assert (
        requests.get(url + "/api/webfrontend/jobs", auth=("artist1", "wrong"), timeout=30).status_code == 401
    )
    r = requests.get(url + "/api/webfrontend/jobs", auth=("artist1", password("artist1")), timeout=30)
    assert r.status_code == 200
    page = requests.get(url + "/", auth=("artist1", "wrong"), timeout=30, allow_redirects=False)
    assert page.status_code == 303 and "/login.html" in page.headers["Location"]
    assert (
        requests.post(url + "/api/login", json={"user": "artist1", "password": "x"}, timeout=30).status_code
        == 401
    )
    s = requests.Session()
    assert s.post(url + "/api/login", json={"user": "artist1", "password": password("artist1")}).ok
    assert s.get(url + "/", allow_redirects=False).status_code == 200


def test_ldap_down_is_a_503_never_open_access(own_slapd: Slapd, make_auth_server: Any) -> None:
    # ldapcache = 0: every request asks the directory.
    farm = make_auth_server(**ldap_keys(own_slapd, ldapcache=0))
    url = farm.url
    web = requests.Session()
    assert web.post(url + "/api/login", json={"user": "admin1", "password": password("admin1")}).ok
    assert farm.client("artist1").get(url + "/api/jobs").status_code == 200
    own_slapd.stop()
    for r in (
        farm.client("artist1").get(url + "/api/jobs"),
        farm.client("admin1").put(url + "/api/jobs", json={"title": "x", "command": "true"}),
        farm.client("artist1").get(url + "/json/addjob", params={"cmd": "true"}),
        web.get(url + "/api/jobs"),
        web.get(url + "/", allow_redirects=False),
        requests.post(
            url + "/api/login", json={"user": "artist1", "password": password("artist1")}, timeout=30
        ),
    ):
        assert r.status_code == 503, r.text
        assert "LDAP" in r.json()["error"]
    # Anonymous requests are still refused (401): "down" never means "open".
    assert requests.get(url + "/api/jobs", timeout=30).status_code == 401
    # The directory comes back: so does everybody, without restarting Coalition.
    own_slapd.start()
    assert farm.client("artist1").get(url + "/api/jobs").status_code == 200
    assert web.get(url + "/api/jobs").status_code == 200


def test_cached_answers_bridge_a_short_outage_only_for_known_users(
    own_slapd: Slapd, make_auth_server: Any
) -> None:
    farm = make_auth_server(**ldap_keys(own_slapd, ldapcache=300))
    url = farm.url
    assert farm.client("artist1").get(url + "/api/jobs").status_code == 200
    own_slapd.stop()
    # artist1's password check and grants are cached (briefly); a wrong password is not.
    assert farm.client("artist1").get(url + "/api/jobs").status_code == 200
    assert farm.client("artist1", "wrong").get(url + "/api/jobs").status_code == 503
    assert farm.client("artist2").get(url + "/api/jobs").status_code == 503


def test_templates_with_crafted_logins_are_refused(ldap_farm: Any) -> None:
    # Filter or DN syntax in a user name must not widen a template (e.g. `*` matching all).
    for login in ("*", "artist1)(cn=*", f"artist1,{BASE}", "a b"):
        r = requests.get(ldap_farm.url + "/api/jobs", auth=(login, "x"), timeout=30)
        assert r.status_code == 401, login
