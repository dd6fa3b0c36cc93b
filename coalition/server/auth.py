"""The one auth tool every route goes through.

`identify()` says who is asking (or refuses with 401/503); `require()` says whether that
identity may take an action on some jobs (or refuses with 403). `OpenAuth` allows everything,
as Coalition does without LDAP; `LdapAuth` authenticates with HTTP Basic or a login session
and decides with the documented CRUD templates. Both apply the command whitelist. The
resources call the same methods whichever is configured.

Nothing about a request outlives it: an `Identity` is built per request from the headers and
is immutable; the only things kept between requests are the LDAP answer caches (immutable
values keyed by login) and the failed-password counters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..auth import policy
from ..auth.credentials import basic_credentials, cross_site, session_token, valid_login
from ..auth.directory import DirectoryDown, LdapDirectory, LdapSettings
from ..auth.whitelist import Whitelist, parse_whitelist
from ..usecases.access import LoginFailures, Sessions
from ..usecases.context import Context
from .http import ApiError

log = logging.getLogger("coalition.auth")

# Actions, in the CRUD vocabulary of the documented LDAP templates, plus giving a job to
# another user and operating workers (see coalition.auth.policy).
CREATE, VIEW, EDIT, DELETE = policy.CREATE, policy.VIEW, policy.EDIT, policy.DELETE
OWNER, WORKERS = policy.OWNER, policy.WORKERS

# Request kinds: "web" is the page and its API alias /api/webfrontend (a password is always
# checked); "api" and "legacy" are scripts (ldapunsafeapi skips their password).
WEB, API, LEGACY = "web", "api", "legacy"


@dataclass(frozen=True)
class Identity:
    """Who is asking. `user` is empty when nobody logged in (open farm, or workers).
    `grants` is None on an open farm (everything allowed), else the CRUD grants held.
    `via` says how the user was recognised: "basic", "session" or "name" (ldapunsafeapi)."""

    user: str = ""
    authenticated: bool = False
    grants: frozenset[str] | None = None
    via: str = ""


class Auth(Protocol):
    """What the resources need from an auth policy."""

    login_required: bool

    def identify(self, kind: str, headers: Mapping[str, str]) -> Identity:
        """Authenticate a request of `kind` ("api", "web", "legacy"); raise ApiError(401/503)."""

    def require(self, identity: Identity, action: str, jobs: Iterable[Mapping[str, Any]] = ()) -> None:
        """Raise ApiError(403) unless `identity` may `action` every job in `jobs` (rows with
        a `user` field); with no jobs, whether it may `action` at all."""

    def may_view(self, identity: Identity, job: Mapping[str, Any]) -> bool:
        """Whether a job may appear in this identity's lists."""

    def view_scope(self, identity: Identity) -> str | None:
        """None when every job is visible, else the one owner whose jobs are."""

    def owner_for_new_job(self, identity: Identity, requested: str) -> str:
        """The `user` a new job gets (a user without create-global only creates own jobs)."""

    def check_commands(self, identity: Identity, jobs: Sequence[tuple[str, str]]) -> None:
        """Raise ApiError(403) naming the rule set unless every (job owner, command) passes
        the command whitelist."""

    def capabilities(self, identity: Identity) -> Mapping[str, bool]:
        """What the identity may do, for the web page (GET /api/whoami)."""


class _Whitelisted:
    """The command whitelist, shared by both policies."""

    whitelist: Whitelist

    def check_commands(self, identity: Identity, jobs: Sequence[tuple[str, str]]) -> None:
        """Logged-in users are held to their own rules (they choose the command); without
        login, the job's `user` field is all there is (and it is not authenticated)."""
        for owner, command in jobs:
            subject = identity.user if identity.authenticated else owner
            why = self.whitelist.refusal(subject, command)
            if why is not None:
                raise ApiError(403, why)


class OpenAuth(_Whitelisted):
    """No authentication: every request may do everything (Coalition without LDAP)."""

    login_required = False

    def __init__(self, whitelist: Whitelist | None = None):
        self.whitelist = whitelist or Whitelist()

    def identify(self, kind: str, headers: Mapping[str, str]) -> Identity:
        """Everybody is anonymous."""
        return Identity()

    def require(self, identity: Identity, action: str, jobs: Iterable[Mapping[str, Any]] = ()) -> None:
        """Everything is allowed."""

    def may_view(self, identity: Identity, job: Mapping[str, Any]) -> bool:
        """Everything is visible."""
        return True

    def view_scope(self, identity: Identity) -> str | None:
        """Every job is visible."""
        return None

    def owner_for_new_job(self, identity: Identity, requested: str) -> str:
        """The requested owner stands."""
        return requested

    def capabilities(self, identity: Identity) -> Mapping[str, bool]:
        """Everything."""
        return policy.capabilities(frozenset(policy.GRANTS))


class LdapAuth(_Whitelisted):
    """LDAP login and the documented CRUD templates."""

    login_required = True

    def __init__(
        self,
        directory: LdapDirectory,
        sessions: Sessions,
        whitelist: Whitelist | None = None,
        unsafe_api: bool = False,
        remote: Callable[[], str] = lambda: "",
        max_failures: int = 10,
        failures: LoginFailures | None = None,
    ):
        self.directory = directory
        self.sessions = sessions
        self.whitelist = whitelist or Whitelist()
        self.unsafe_api = unsafe_api
        self.remote = remote
        self.max_failures = max_failures
        # Failed passwords per (client address, login): slows password guessing through the
        # API without letting a stranger lock a user out from elsewhere. In the database, so
        # that every server counts the same failures.
        self.failures = failures or LoginFailures(sessions.ctx)

    # -- who ------------------------------------------------------------------------------------
    def identify(self, kind: str, headers: Mapping[str, str]) -> Identity:
        """HTTP Basic (password checked, unless ldapunsafeapi on an API request), else the
        session cookie; anything else is a 401."""
        basic = basic_credentials(headers)
        if basic is not None:
            login, password = basic
            if not valid_login(login):
                raise self._unauthorized(headers, "invalid user name (letters, digits and . _ - @ + only)")
            if self.unsafe_api and kind in (API, LEGACY):
                return Identity(login, True, self._grants(login), "name")
            self.verify_password(login, password, headers)
            return Identity(login, True, self._grants(login), "basic")
        token = session_token(headers)
        if token is not None:
            if cross_site(headers):
                raise ApiError(403, "a cross-site request may not use the login session")
            user = self.sessions.user(token)
            if user is None:
                raise self._unauthorized(headers, "the login session has ended: log in again")
            return Identity(user, True, self._grants(user), "session")
        what = "a user name (HTTP Basic; ldapunsafeapi: any password)" if self.unsafe_api else "a login"
        raise self._unauthorized(headers, f"this server needs {what}")

    def identity_for(self, login: str, via: str) -> Identity:
        """The identity of a login whose credentials were checked by the caller."""
        return Identity(login, True, self._grants(login), via)

    def verify_password(self, login: str, password: str, headers: Mapping[str, str]) -> None:
        """Raise ApiError 401 (wrong), 429 (too many wrong) or 503 (LDAP down)."""
        address = self.remote()
        failures = self.failures.count(address, login)  # a StoreError is a 503 (http.py)
        if failures >= self.max_failures:
            raise ApiError(429, f"too many failed logins for {login}: wait a few minutes")
        try:
            ok = self.directory.authenticate(login, password)
        except DirectoryDown as exc:
            raise _down(exc) from None
        if not ok:
            self.failures.add(address, login)
            raise self._unauthorized(headers, "wrong user name or password")

    def _grants(self, login: str) -> frozenset[str]:
        try:
            return self.directory.grants(login)
        except DirectoryDown as exc:
            raise _down(exc) from None

    @staticmethod
    def _unauthorized(headers: Mapping[str, str], message: str) -> ApiError:
        # A Basic challenge makes browsers pop their own password dialog: right for a person
        # opening /api in a tab, wrong for the web page's fetch() calls, which go to the
        # login page instead.
        mode = (headers.get("Sec-Fetch-Mode") or "").lower()
        scheme = 'Basic realm="Coalition", charset="UTF-8"' if mode in ("", "navigate") else "Session"
        return ApiError(401, message, {"WWW-Authenticate": scheme})

    # -- what -----------------------------------------------------------------------------------
    def require(self, identity: Identity, action: str, jobs: Iterable[Mapping[str, Any]] = ()) -> None:
        """403 unless the grants allow `action` on every job."""
        grants = identity.grants or frozenset()
        rows = list(jobs)
        owners = [str(r["user"]) for r in rows]
        if not policy.may(grants, identity.user, action, owners):
            raise ApiError(403, policy.refusal(grants, identity.user, action, owners))

    def may_view(self, identity: Identity, job: Mapping[str, Any]) -> bool:
        """The view grants decide."""
        return policy.may(identity.grants or frozenset(), identity.user, VIEW, [str(job["user"])])

    def view_scope(self, identity: Identity) -> str | None:
        """All jobs with viewjobglobal, else the user's own."""
        return policy.view_scope(identity.grants or frozenset(), identity.user)

    def owner_for_new_job(self, identity: Identity, requested: str) -> str:
        """Without createjobglobal, the login."""
        return policy.owner_for_new_job(identity.grants or frozenset(), identity.user, requested)

    def capabilities(self, identity: Identity) -> Mapping[str, bool]:
        """From the grants."""
        return policy.capabilities(identity.grants or frozenset())


def _down(exc: DirectoryDown) -> ApiError:
    log.error("%s", exc)
    return ApiError(503, f"cannot check permissions: {exc}", {"Retry-After": "10"})


def build_auth(settings: Any, ctx: Context, remote: Callable[[], str]) -> Auth:
    """The policy the settings describe: LDAP when `ldaphost` is set, else open."""
    whitelist = parse_whitelist(settings.commandwhitelist)
    if not settings.ldaphost:
        return OpenAuth(whitelist)
    try:
        import ldap3  # noqa: F401 - optional dependency, checked at start-up rather than at login
    except ImportError:
        from ..config import ConfigError

        raise ConfigError(
            "ldaphost is set but ldap3 is not installed: pip install 'coalition[ldap]' "
            "(Debian: apt install python3-ldap3)"
        ) from None
    directory = LdapDirectory(LdapSettings.from_server(settings))
    if not directory.settings.templates:
        log.warning("LDAP is on but no ldaptemplate*job* key is set: nobody may do anything")
    sessions = Sessions(ctx, settings.sessionlifetime)
    return LdapAuth(directory, sessions, whitelist, settings.ldapunsafeapi, remote)
