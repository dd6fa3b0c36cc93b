"""With LDAP on, no route answers an anonymous request: every route the server registers is
tried (so that a route added later without a check fails here), plus the web page."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from coalition.server.api import Api
from coalition.server.legacy import LegacyApi
from coalition.server.login import LoginApi
from coalition.server.router import Router
from coalition.server.workers import WorkerApi
from tests.authfarm import AuthServer


def registered_routes() -> list[tuple[str, str]]:
    """(method, concrete path) of every route the server mounts, ids filled in."""
    router = Router()
    api = Api(None, None)  # type: ignore[arg-type]
    for prefix in ("/api", "/api/webfrontend"):
        api.routes(router, prefix)
        LoginApi(None).routes(router, prefix)  # type: ignore[arg-type]
    for prefix in ("/json", "/xmlrpc"):
        LegacyApi(None, None).routes(router, prefix)  # type: ignore[arg-type]
    out = [(m, path) for path, table in router._exact.items() for m in table]
    # The worker protocol is its own WSGI application (server/wsgi.py).
    out += [(m, path) for path in WorkerApi(None).app(0).handlers for m in ("GET", "POST")]  # type: ignore[arg-type]
    for regex, table in router._routes:
        path = re.sub(r"\([^)]*\)", "1", regex.pattern.lstrip("^").removesuffix("/?$"))
        out += [(m, path) for m in table]
    return sorted(out)


ROUTES = registered_routes()


def test_the_route_list_is_complete() -> None:
    # A sanity check of the enumeration itself: the documented routes are all there.
    paths = {p for _, p in ROUTES}
    for path in (
        "/api/jobs",
        "/api/jobs/1/log",
        "/api/webfrontend/events",
        "/json/addjob",
        "/workers/pickjob",
    ):
        assert path in paths
    assert len(ROUTES) > 60


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_no_anonymous_answer(ldap_farm: AuthServer, method: str, path: str) -> None:
    body: Any = {} if method in ("POST", "PUT", "DELETE") else None
    r = requests.request(method, ldap_farm.url + path, json=body, timeout=30, allow_redirects=False)
    assert r.status_code == 401, f"{method} {path} answered {r.status_code}: {r.text[:200]}"
    assert "error" in r.json()
    if path.startswith("/api/"):
        assert r.headers.get("WWW-Authenticate", "").startswith(("Basic", "Session"))


def test_wrong_password_and_unknown_user_are_401(ldap_farm: AuthServer) -> None:
    for auth in (("artist1", "wrong"), ("nosuchuser", "x"), ("artist1", ""), ("art*", "x")):
        r = requests.get(ldap_farm.url + "/api/jobs", auth=auth, timeout=30)
        assert r.status_code == 401, auth
    assert requests.get(ldap_farm.url + "/api/jobs", auth=("artist1", "artist1-Secret!"), timeout=30).ok


def test_browser_fetch_gets_no_basic_challenge(ldap_farm: AuthServer) -> None:
    # A Basic challenge would pop the browser's own password dialog over the web page.
    r = requests.get(ldap_farm.url + "/api/jobs", headers={"Sec-Fetch-Mode": "cors"}, timeout=30)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Session"


@pytest.mark.parametrize(
    ("path", "status", "location"),
    [
        ("/", 303, "/login.html?next=%2F"),
        ("/index.html", 303, "/login.html?next=%2Findex.html"),
        ("/js/api.js", 401, None),
        ("/css/coalition.css", 401, None),
        ("/login.html", 200, None),
        ("/login.js", 200, None),
        ("/login.css", 200, None),
    ],
)
def test_web_page_needs_a_login(ldap_farm: AuthServer, path: str, status: int, location: str | None) -> None:
    r = requests.get(ldap_farm.url + path, timeout=30, allow_redirects=False)
    assert r.status_code == status, r.text[:200]
    if location:
        assert r.headers["Location"].endswith(location)
    assert r.headers["X-Frame-Options"] == "DENY"
