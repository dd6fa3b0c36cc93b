"""HTTP adapters of studio scheduling: the farm's limits (GET/POST /api/limits, DELETE
/api/limits/<name>) and why a waiting job does not run (GET /api/jobs/<id>/why)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..audit import Actor
from ..model import LIMIT_NAME, ValidationError
from ..usecases.limits import Limits
from .auth import VIEW, WORKERS, Auth, Identity
from .http import ApiError, json_body
from .router import Router


def parse_capacities(body: Any) -> dict[str, int]:
    """`{"nuke": 5, "arnold": 10}`: limit names and their capacities (400 naming the field)."""
    if not isinstance(body, dict) or not body:
        raise ValidationError('expected a JSON object of limit names and capacities, e.g. {"nuke": 5}')
    out: dict[str, int] = {}
    for key, value in body.items():
        name = str(key).strip().lower()
        if not LIMIT_NAME.fullmatch(name):
            raise ValidationError(f"limits: {str(key)[:80]!r} is not a limit name (letters, digits, _ . -)")
        if isinstance(value, dict):
            value = value.get("capacity")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
            raise ValidationError(f"limits: the capacity of {name} must be an integer from 0 to 1000000000")
        out[name] = value
    return out


class LimitsApi:
    """Handlers of the limits routes and of `why`."""

    def __init__(
        self,
        limits: Limits,
        auth: Auth,
        who: Callable[[], Identity],
        actor: Callable[[], Actor],
        viewable: Callable[[int], None],
    ):
        self.limits = limits
        self.auth = auth
        self.who = who
        self.actor = actor
        self.viewable = viewable

    def routes(self, router: Router, prefix: str) -> None:
        """Register the routes under `prefix` ("/api" and "/api/webfrontend")."""
        router.add("GET", f"{prefix}/limits", self.list)
        router.add("POST", f"{prefix}/limits", self.set)
        router.add("DELETE", rf"{prefix}/limits/([^/]+)", self.delete)
        router.add("GET", rf"{prefix}/jobs/([^/]+)/why", self.why)

    def list(self, params: dict[str, Any]) -> Any:
        """GET /api/limits: every limit with its use."""
        self.auth.require(self.who(), VIEW)
        return self.limits.all()

    def set(self, params: dict[str, Any]) -> Any:
        """POST /api/limits `{"nuke": 5}`: create limits or set their capacities."""
        who = self.who()
        values = parse_capacities(json_body())
        self.auth.require(who, WORKERS)
        return self.limits.set(values, self.actor())

    def delete(self, params: dict[str, Any], name: str) -> Any:
        """DELETE /api/limits/<name>."""
        self.auth.require(self.who(), WORKERS)
        self.limits.delete(name.strip().lower(), self.actor())
        return 1

    def why(self, params: dict[str, Any], job_id: str) -> Any:
        """GET /api/jobs/<id>/why: why the job is not running (empty reasons: nothing holds
        it back but free workers)."""
        if not job_id.isdigit() or len(job_id) > 19:
            raise ApiError(404, f"job {job_id[:64]!r} not found")
        jid = int(job_id)
        self.viewable(jid)
        return self.limits.why(jid)
