"""Reading credentials from HTTP headers, and what a login name may look like.

Login names end up inside LDAP DNs and filters (`__login__`): they are restricted to
letters, digits and `. _ - @ +`, which need no escaping in either place, so a crafted name
cannot change a template's meaning. (They are escaped anyway, as a second line.)
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie

SESSION_COOKIE = "coalition_session"
_LOGIN = re.compile(r"[\w.@+-]{1,128}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,128}")


def valid_login(login: str) -> bool:
    """Whether `login` is an acceptable user name."""
    return bool(_LOGIN.fullmatch(login))


def basic_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """(login, password) from `Authorization: Basic ...`, or None when absent or malformed."""
    value = headers.get("Authorization") or ""
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # what browsers sent before RFC 7617
    login, sep, password = text.partition(":")
    if not sep:
        return None
    return login, password


def session_token(headers: Mapping[str, str]) -> str | None:
    """The session cookie's value when it looks like one of ours."""
    raw = headers.get("Cookie") or ""
    if SESSION_COOKIE not in raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(SESSION_COOKIE)
    if morsel is None or not _TOKEN.fullmatch(morsel.value):
        return None
    return morsel.value


def cross_site(headers: Mapping[str, str]) -> bool:
    """Whether a browser says this request comes from another site. Cookies are SameSite
    already; this refuses session-authenticated requests that browsers mark as cross-site
    anyway (a second line against CSRF)."""
    site = (headers.get("Sec-Fetch-Site") or "").lower()
    if site:  # every current browser sends it; "none" is a typed URL or a bookmark
        return site not in ("same-origin", "none")
    origin = (headers.get("Origin") or "").strip().lower()
    if not origin:
        return False  # not a browser, or an old one on a same-origin GET
    if origin == "null":
        return True  # a sandboxed frame or a file: page
    bare = re.sub(r"^[a-z][a-z0-9+.-]*://", "", origin).rstrip("/")
    # Behind a reverse proxy Host may be rewritten; a cross-site page cannot set
    # X-Forwarded-Host on a browser request (it is not a CORS-safelisted header).
    hosts = {(headers.get(h) or "").strip().lower() for h in ("Host", "X-Forwarded-Host")}
    return bare not in hosts - {""}
