"""Logging in and out of the web page, `GET /api/whoami`, and the gate in front of the
static page.

* `POST /api/login` takes `{"user", "password"}` (JSON, or the login form's fields), checks the
  password against LDAP even with ldapunsafeapi, and sets the session cookie: HttpOnly (no
  script reads it), SameSite=Strict (no other site's page sends it), Secure under HTTPS.
* `POST|GET /api/logout` ends the session in the database, so every server forgets it.
* `GET /api/whoami` says who is logged in and what they may do, for the page to show.
* The gate sends a browser without a session to /login.html (the page and its scripts are
  served to logged-in users only); the login page itself is public.

Each route also exists under `/api/webfrontend`.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from typing import Any

import cherrypy

from ..auth.credentials import SESSION_COOKIE, cross_site, session_token, valid_login
from ..store.base import StoreError
from .auth import WEB, Auth, LdapAuth
from .http import ApiError, form_params
from .router import Router

log = logging.getLogger("coalition.server")

LOGIN_PAGE = "/login.html"
# Served without a session: the login page needs them.
PUBLIC_FILES = frozenset({LOGIN_PAGE, "/login.js", "/login.css", "/favicon.svg"})


def safe_next(target: str) -> str:
    """Where to go after login: a path on this site only (never `//evil.example`).

    Browsers drop tab, CR and LF from a URL before reading it, so `/<TAB>/evil.example` is
    `//evil.example` to them: no control or space character passes at all."""
    if not target.isprintable() or any(c.isspace() for c in target):
        return "/"
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urllib.parse.urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


class LoginApi:
    """Handlers of /api/login, /api/logout and /api/whoami."""

    def __init__(self, auth: Auth, secure_cookie: bool = False):
        self.auth = auth
        self.secure_cookie = secure_cookie

    def routes(self, router: Router, prefix: str) -> None:
        """Register the routes under `prefix` ("/api" and "/api/webfrontend")."""
        router.add("POST", f"{prefix}/login", self.login)
        router.add("GET POST", f"{prefix}/logout", self.logout)
        router.add("GET", f"{prefix}/whoami", self.whoami)

    # -- login ------------------------------------------------------------------------------
    def login(self, params: dict[str, Any]) -> Any:
        """Check a password, open a session, set its cookie."""
        request = cherrypy.request
        form = "form" in request.headers.get("Content-Type", "")
        if "password" in request.params:  # the query string: it would land in access logs
            raise ApiError(400, "send the password in the request body, not in the URL")
        fields = form_params()
        user = str(fields.get("user") or fields.get("login") or "").strip()
        password = str(fields.get("password") or "")
        nxt = safe_next(str(fields.get("next") or "/"))
        auth = self.auth
        if not isinstance(auth, LdapAuth):
            return {"user": "", "login_required": False}  # an open farm has nothing to log into
        try:
            if cross_site(request.headers):
                raise ApiError(403, "a login form on another site may not log you in here")
            if not valid_login(user):
                raise ApiError(401, "invalid user name (letters, digits and . _ - @ + only)")
            auth.verify_password(user, password, request.headers)
        except ApiError as exc:
            if form:  # the page without JavaScript: back to the form, with the reason
                query = urllib.parse.urlencode({"error": exc.message, "next": nxt})
                raise cherrypy.HTTPRedirect(f"{LOGIN_PAGE}?{query}", 303) from None
            if exc.status == 401:  # not Basic: no browser password pop-up over the login page
                exc.headers["WWW-Authenticate"] = "Session"
            raise
        token = auth.sessions.login(user, request.remote.ip or "")
        self._set_cookie(token, auth.sessions.lifetime)
        if form:
            raise cherrypy.HTTPRedirect(nxt, 303)
        identity = auth.identity_for(user, "session")
        return {"user": user, "can": dict(auth.capabilities(identity)), "next": nxt}

    def logout(self, params: dict[str, Any]) -> Any:
        """End the session (whoever holds the cookie may end it) and clear the cookie."""
        request = cherrypy.request
        token = session_token(request.headers)
        if self.auth.login_required and token is None:
            raise ApiError(401, "not logged in", {"WWW-Authenticate": "Session"})
        if isinstance(self.auth, LdapAuth) and token is not None:
            self.auth.sessions.logout(token, request.remote.ip or "")
        self._set_cookie("", 0)
        if request.method == "GET" and (request.headers.get("Sec-Fetch-Mode") or "navigate") == "navigate":
            raise cherrypy.HTTPRedirect(LOGIN_PAGE, 303)
        return {"ok": True}

    def whoami(self, params: dict[str, Any]) -> Any:
        """`{"user", "can": {...}, "login_required", "via"}` for the web page."""
        request = cherrypy.request
        path = request.script_name + request.path_info
        identity = self.auth.identify(WEB if path.startswith("/api/webfrontend") else "api", request.headers)
        return {
            "user": identity.user,
            "can": dict(self.auth.capabilities(identity)),
            "login_required": self.auth.login_required,
            "via": identity.via,
        }

    def _set_cookie(self, value: str, max_age: float) -> None:
        cookie = cherrypy.response.cookie
        cookie[SESSION_COOKIE] = value
        morsel = cookie[SESSION_COOKIE]
        morsel["path"] = "/"
        morsel["httponly"] = True
        morsel["samesite"] = "Strict"
        morsel["max-age"] = str(int(max_age))
        if self.secure_cookie or cherrypy.request.scheme == "https":
            morsel["secure"] = True


def unavailable_page(status: str, message: str, traceback: str, version: str) -> str:
    """The static page's 503 (LDAP down) as JSON with its reason (CherryPy's default error
    page hides the message of every 5xx, which suits bugs but not an outage)."""
    cherrypy.response.headers["Content-Type"] = "application/json"
    cherrypy.response.headers["Retry-After"] = "10"
    return json.dumps({"error": message or "service unavailable"})


def web_gate(auth: Auth) -> cherrypy.Tool:
    """A CherryPy tool for the static page: no session, no page (the login page aside)."""

    def gate() -> None:
        request = cherrypy.request
        path = request.path_info or "/"
        if path in PUBLIC_FILES:
            return
        try:
            auth.identify(WEB, request.headers)
        except StoreError as exc:  # the sessions live in the database
            log.error("database error on the web page's login check: %s", exc)
            raise cherrypy.HTTPError(503, "database unavailable (see the server log)") from None
        except ApiError as exc:
            if exc.status == 401 and (path == "/" or path.endswith(".html")):
                target = path + (f"?{request.query_string}" if request.query_string else "")
                raise cherrypy.HTTPRedirect(
                    f"{LOGIN_PAGE}?{urllib.parse.urlencode({'next': target})}", 303
                ) from None
            raise cherrypy.HTTPError(exc.status, exc.message) from None

    return cherrypy.Tool("on_start_resource", gate, name="coalition_login")
