"""The one auth tool every route goes through.

`identify()` says who is asking (or refuses with 401/503); `require()` says whether that
identity may take an action on some jobs (or refuses with 403). This module's `OpenAuth`
allows everything, as Coalition does without LDAP; the LDAP policy plugs in here with the
same two methods, so the resources never change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# Actions, in the CRUD vocabulary of the documented LDAP templates.
CREATE, VIEW, EDIT, DELETE = "create", "view", "edit", "delete"


@dataclass(frozen=True)
class Identity:
    """Who is asking. `user` is empty when nobody logged in (open farm, or workers)."""

    user: str = ""
    authenticated: bool = False


class Auth(Protocol):
    """What the resources need from an auth policy."""

    def identify(self, kind: str, headers: Mapping[str, str]) -> Identity:
        """Authenticate a request of `kind` ("api", "web", "legacy"); raise ApiError(401/503)."""

    def require(self, identity: Identity, action: str, jobs: Iterable[Mapping[str, Any]] = ()) -> None:
        """Raise ApiError(403) unless `identity` may `action` every job in `jobs` (rows with
        a `user` field); with no jobs, whether it may `action` at all."""

    def may_view(self, identity: Identity, job: Mapping[str, Any]) -> bool:
        """Whether a job may appear in this identity's lists."""

    def owner_for_new_job(self, identity: Identity, requested: str) -> str:
        """The `user` a new job gets (a user without create-global only creates own jobs)."""


class OpenAuth:
    """No authentication: every request may do everything (Coalition without LDAP)."""

    def identify(self, kind: str, headers: Mapping[str, str]) -> Identity:
        """Everybody is anonymous."""
        return Identity()

    def require(self, identity: Identity, action: str, jobs: Iterable[Mapping[str, Any]] = ()) -> None:
        """Everything is allowed."""

    def may_view(self, identity: Identity, job: Mapping[str, Any]) -> bool:
        """Everything is visible."""
        return True

    def owner_for_new_job(self, identity: Identity, requested: str) -> str:
        """The requested owner stands."""
        return requested
