"""The pure pieces: permission decisions, credentials parsing, template escaping, caches."""

from __future__ import annotations

import base64

import pytest

from coalition.auth import policy
from coalition.auth.cache import TTLCache
from coalition.auth.credentials import basic_credentials, cross_site, session_token, valid_login
from coalition.auth.directory import grant_filter, login_dn

ARTIST = frozenset({"createjob", "viewjob", "editjob", "deletejob"})
WRANGLER = frozenset({"createjobglobal", "viewjobglobal", "editjobglobal"})


def test_policy_own_versus_global() -> None:
    assert policy.may(ARTIST, "a", "edit", ["a", "a"])
    assert not policy.may(ARTIST, "a", "edit", ["a", "b"])  # one job of somebody else: no
    assert policy.may(WRANGLER, "w", "edit", ["a", "b"])
    assert not policy.may(WRANGLER, "w", "delete", ["w"])  # wranglers delete nothing, not even theirs
    assert policy.may(ARTIST, "a", "view") and not policy.may(frozenset(), "n", "view")
    assert not policy.may(ARTIST, "a", policy.OWNER) and policy.may(WRANGLER, "w", policy.WORKERS)
    assert policy.owner_for_new_job(ARTIST, "a", "b") == "a"
    assert policy.owner_for_new_job(WRANGLER, "w", "b") == "b"
    assert policy.owner_for_new_job(WRANGLER, "w", "") == "w"
    assert policy.view_scope(ARTIST, "a") == "a" and policy.view_scope(WRANGLER, "w") is None


def test_refusals_name_the_template_key() -> None:
    assert "ldaptemplatedeletejobglobal" in policy.refusal(ARTIST, "a", "delete", ["b"])
    assert "ldaptemplatedeletejob or" in policy.refusal(WRANGLER, "w", "delete", ["w"])
    assert "ldaptemplateeditjobglobal" in policy.refusal(ARTIST, "a", policy.WORKERS)


def _basic(text: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(text.encode()).decode()}


def test_basic_credentials() -> None:
    assert basic_credentials(_basic("alice:pw:with:colons")) == ("alice", "pw:with:colons")
    assert basic_credentials(_basic("alice:")) == ("alice", "")
    assert basic_credentials(_basic("no-colon")) is None
    assert basic_credentials({"Authorization": "Basic !!!"}) is None
    assert basic_credentials({"Authorization": "Bearer x"}) is None
    assert basic_credentials({}) is None


@pytest.mark.parametrize("login", ["alice", "jean.dupont", "j-d_2", "bob@studio", "José"])
def test_valid_logins(login: str) -> None:
    assert valid_login(login)


@pytest.mark.parametrize("login", ["", "*", "a)(cn=*", "a,dc=x", "a b", "a\\b", "x" * 129, "a\x00"])
def test_invalid_logins(login: str) -> None:
    assert not valid_login(login)


def test_escaping_in_templates() -> None:
    # Belt and braces: even a login that passed no check could not change a filter.
    assert login_dn("cn=__login__,dc=x", "a,b") == "cn=a\\,b,dc=x"
    assert grant_filter("(member=cn=__login__,dc=x)", "a*)(b") == "(member=cn=a\\2a\\29\\28b,dc=x)"


def test_session_cookie_and_cross_site() -> None:
    token = "A" * 43
    assert session_token({"Cookie": f"theme=dark; coalition_session={token}"}) == token
    assert session_token({"Cookie": "coalition_session=short"}) is None
    assert session_token({"Cookie": "coalition_session=../../etc"}) is None
    assert not cross_site({})
    assert not cross_site({"Sec-Fetch-Site": "same-origin"}) and not cross_site({"Sec-Fetch-Site": "none"})
    assert cross_site({"Sec-Fetch-Site": "same-site"}) and cross_site({"Sec-Fetch-Site": "cross-site"})
    assert not cross_site({"Origin": "http://farm:19211", "Host": "farm:19211"})
    assert not cross_site(
        {"Origin": "https://farm.example", "Host": "10.0.0.1", "X-Forwarded-Host": "farm.example"}
    )
    assert cross_site({"Origin": "https://evil.example", "Host": "farm:19211"})


def test_ttl_cache_expires_and_is_bounded() -> None:
    now = [0.0]
    cache: TTLCache[int] = TTLCache(10, size=3, clock=lambda: now[0])
    for i in range(5):
        cache.put(i, i)
    assert len(cache) == 3 and cache.get(0) is None and cache.get(4) == 4
    now[0] = 10.0
    assert cache.get(4) is None
    off: TTLCache[int] = TTLCache(0)
    off.put("k", 1)
    assert off.get("k") is None
