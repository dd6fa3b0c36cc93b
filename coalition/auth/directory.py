"""The LDAP directory (ldap3): password checks and the permission templates.

* A password is checked by a simple bind as `ldaptemplatelogin` with `__login__` replaced.
* A grant (`createjob`, ..., `deletejobglobal`) is held when the search of its template
  filter, `__login__` replaced, under `ldapbase` finds at least one entry (Coalition 4's
  rule). Searches run as `ldapbinddn` when set, else anonymously: the same identity whether
  the request came with a password, a session cookie or (ldapunsafeapi) a bare user name.
* Both answers are cached for `ldapcache` seconds, bounded in size; failed binds are not.
* A directory that cannot answer raises DirectoryDown: the caller answers 503, never
  "allowed" (and never "wrong password" either: the user did nothing wrong).

Every lookup opens its own connection: nothing is shared between requests but the caches,
which hold immutable answers keyed by login.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .cache import TTLCache
from .policy import GRANTS, template_key

log = logging.getLogger("coalition.auth")

LOGIN_PLACEHOLDER = "__login__"
# Result codes that say "the directory cannot answer now", not "no".
_UNAVAILABLE = {3, 11, 51, 52, 80}  # timeLimit, adminLimit, busy, unavailable, other
_DENIED = {32, 48, 49, 50, 53}  # noSuchObject, inappropriateAuth, invalidCredentials, access, unwilling


class DirectoryDown(RuntimeError):
    """The LDAP server is unreachable, failing, or misconfigured (a 503 to clients)."""


@dataclass(frozen=True)
class LdapSettings:
    """What the directory needs from `[server]`."""

    url: str
    base: str = ""
    login_template: str = ""
    templates: Mapping[str, str] = field(default_factory=dict)  # grant -> filter template
    bind_dn: str = ""
    bind_password: str = ""
    timeout: float = 5.0
    cacert: str = ""
    cache_ttl: float = 30.0
    cache_size: int = 4096

    @classmethod
    def from_server(cls, s: Any) -> LdapSettings:
        """From a `coalition.config.ServerSettings`."""
        return cls(
            url=s.ldaphost,
            base=s.ldapbase,
            login_template=s.ldaptemplatelogin,
            templates={g: getattr(s, template_key(g)) for g in GRANTS if getattr(s, template_key(g))},
            bind_dn=s.ldapbinddn,
            bind_password=s.ldapbindpassword,
            timeout=s.ldaptimeout,
            cacert=s.ldapcacert,
            cache_ttl=s.ldapcache,
        )


def _escape_rdn(value: str) -> str:
    from ldap3.utils.dn import escape_rdn

    return str(escape_rdn(value))


def _escape_filter(value: str) -> str:
    from ldap3.utils.conv import escape_filter_chars

    return str(escape_filter_chars(value))


def login_dn(template: str, login: str) -> str:
    """The bind DN of a login (the login escaped as a DN attribute value)."""
    return template.replace(LOGIN_PLACEHOLDER, _escape_rdn(login))


def grant_filter(template: str, login: str) -> str:
    """A template filter for a login: escaped for a DN value (templates put `__login__` in
    `member=cn=__login__,...`), then for a filter value."""
    return template.replace(LOGIN_PLACEHOLDER, _escape_filter(_escape_rdn(login)))


Connect = Callable[[str, str], Any]  # (user DN or "", password) -> an unbound ldap3 Connection


class LdapDirectory:
    """Password checks and grants, cached briefly."""

    def __init__(
        self,
        settings: LdapSettings,
        clock: Callable[[], float] = time.monotonic,
        connect: Connect | None = None,
    ):
        self.settings = settings
        self._connect = connect or self._ldap3_connection
        self._key = secrets.token_bytes(32)  # the bind cache is keyed by an HMAC, never a password
        self._binds: TTLCache[bool] = TTLCache(settings.cache_ttl, settings.cache_size, clock)
        self._grants: TTLCache[frozenset[str]] = TTLCache(settings.cache_ttl, settings.cache_size, clock)

    # -- public -------------------------------------------------------------------------------
    def authenticate(self, login: str, password: str) -> bool:
        """Whether `password` is `login`'s. An empty password is always wrong: LDAP would take
        it as an anonymous bind and say yes."""
        if not password or not self.settings.login_template:
            return False
        key = hmac.new(self._key, f"{login}\0{password}".encode(), hashlib.sha256).digest()
        if self._binds.get(key):
            return True
        conn = self._connect(login_dn(self.settings.login_template, login), password)
        try:
            ok = self._bind(conn)
        finally:
            _unbind(conn)
        if ok:
            self._binds.put(key, True)
        return ok

    def grants(self, login: str) -> frozenset[str]:
        """The grants `login` holds (one search per configured template)."""
        cached = self._grants.get(login)
        if cached is not None:
            return cached
        conn = self._connect(self.settings.bind_dn, self.settings.bind_password)
        try:
            if not self._bind(conn):
                raise DirectoryDown(
                    "LDAP: the search identity (ldapbinddn) was refused; check ldapbinddn/ldapbindpassword"
                )
            held = frozenset(
                grant
                for grant, template in self.settings.templates.items()
                if self._matches(conn, grant, grant_filter(template, login))
            )
        finally:
            _unbind(conn)
        self._grants.put(login, held)
        return held

    def forget(self, login: str) -> None:
        """Drop a login's cached grants (after a logout)."""
        self._grants.discard(login)

    # -- ldap3 ------------------------------------------------------------------------------
    def _ldap3_connection(self, user: str, password: str) -> Any:
        import ldap3

        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self.settings.cacert or None)
        timeout = max(1, round(self.settings.timeout))  # ldap3 packs it into a C struct: an int
        server = ldap3.Server(self.settings.url, connect_timeout=timeout, get_info=ldap3.NONE, tls=tls)
        return ldap3.Connection(
            server,
            user=user or None,
            password=password or None,
            receive_timeout=timeout,
            auto_referrals=False,
            read_only=True,
            raise_exceptions=False,
        )

    def _bind(self, conn: Any) -> bool:
        from ldap3.core.exceptions import LDAPException

        try:
            ok = bool(conn.bind())
        except LDAPException as exc:
            raise DirectoryDown(f"LDAP server {self.settings.url} unreachable: {exc}") from None
        if ok:
            return True
        code = (conn.result or {}).get("result")
        if code in _UNAVAILABLE:
            raise DirectoryDown(f"LDAP server {self.settings.url} cannot answer: {_describe(conn)}")
        if code not in _DENIED:
            log.warning("LDAP bind refused with an unusual answer: %s", _describe(conn))
        return False

    def _matches(self, conn: Any, grant: str, search_filter: str) -> bool:
        from ldap3 import SUBTREE
        from ldap3.core.exceptions import LDAPException, LDAPInvalidFilterError

        try:
            conn.search(
                self.settings.base,
                search_filter,
                SUBTREE,
                attributes=[],
                size_limit=1,
                time_limit=max(1, int(self.settings.timeout)),
            )
        except LDAPInvalidFilterError as exc:
            raise DirectoryDown(f"{template_key(grant)} is not a valid LDAP filter: {exc}") from None
        except LDAPException as exc:
            raise DirectoryDown(f"LDAP server {self.settings.url} unreachable: {exc}") from None
        code = (conn.result or {}).get("result")
        if code in _UNAVAILABLE:
            raise DirectoryDown(f"LDAP server {self.settings.url} cannot answer: {_describe(conn)}")
        found = any(r.get("type") == "searchResEntry" for r in (conn.response or []))
        if not found and code not in (0, 4):  # 4: sizeLimitExceeded, i.e. found
            log.warning("%s: the search failed (%s): grant not given", template_key(grant), _describe(conn))
        return found


def _describe(conn: Any) -> str:
    result = conn.result or {}
    return (
        f"{result.get('description', '?')} ({result.get('result', '?')}) {result.get('message', '')}".strip()
    )


def _unbind(conn: Any) -> None:
    try:
        conn.unbind()
    except Exception:  # noqa: BLE001 - closing a broken connection: nothing left to do
        pass
