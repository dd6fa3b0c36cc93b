"""The user API of failure handling (docs/failures.md): host blocks and SICK workers.

GET    /api/blocks?job=&worker=      blocks in force
GET    /api/jobs/<id>/blocks         a job's (and its group's)
DELETE /api/jobs/<id>/blocks         lift them: body [names] or none for all
POST   /api/clearsickworkers         [names]: back to work
"""

from __future__ import annotations

from typing import Any

from ..audit import Actor
from ..model import MAX_ID, parse_names
from ..usecases import UseCases
from .auth import EDIT, VIEW, WORKERS, Auth, Identity
from .http import ApiError, json_body
from .router import Router


class BlocksApi:
    """Handlers mixed into Api (which provides who, actor, auth, uc)."""

    uc: UseCases
    auth: Auth

    def who(self) -> Identity:  # pragma: no cover - Api's
        raise NotImplementedError

    def actor(self) -> Actor:  # pragma: no cover - Api's
        raise NotImplementedError

    def block_routes(self, router: Router, p: str) -> None:
        """Register the routes under prefix `p`."""
        router.add("GET", f"{p}/blocks", self.list_blocks)
        router.add("GET", rf"{p}/jobs/([^/]+)/blocks", self.job_blocks)
        router.add("DELETE", rf"{p}/jobs/([^/]+)/blocks", self.lift_blocks)
        router.add("POST", f"{p}/clearsickworkers", self.clear_sick)

    @staticmethod
    def _id(text: str) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise ApiError(400, f"job must be a job id, got {str(text)[:40]!r}") from None
        if value <= 0:
            raise ApiError(400, "job must be a positive job id")
        if value > MAX_ID:  # past a BIGINT: the database would fail (a 500), not find it
            raise ApiError(404, f"job {str(text)[:40]} not found")
        return value

    def list_blocks(self, params: dict[str, Any]) -> Any:
        """GET /api/blocks: the blocks in force (`job=`, `worker=` filter)."""
        unknown = sorted(set(params) - {"job", "worker", "_"})
        if unknown:
            raise ApiError(400, f"unknown parameter(s): {', '.join(unknown)}; known: job, worker")
        job = params.get("job")
        worker = params.get("worker") or None
        if worker is not None and not isinstance(worker, str):
            raise ApiError(400, "worker must be a name")
        if job not in (None, ""):
            return self.job_blocks({"worker": worker}, str(job))
        self.auth.require(self.who(), VIEW)
        return self.uc.blocks.blocks(None, worker)

    def job_blocks(self, params: dict[str, Any], job_id: str) -> Any:
        """GET /api/jobs/<id>/blocks."""
        jid = self._id(job_id)
        self.auth.require(self.who(), VIEW, [self.uc.reads.require_job(jid)])
        worker = params.get("worker") or None
        return self.uc.blocks.blocks(jid, worker if isinstance(worker, str) else None)

    def lift_blocks(self, params: dict[str, Any], job_id: str) -> Any:
        """DELETE /api/jobs/<id>/blocks: lift the blocks of some workers (a JSON list of
        names) or of all (no body); the job's owner may, as for any edit."""
        jid = self._id(job_id)
        who = self.who()
        body = json_body(required=False)
        names = None if body is None else parse_names(body)
        self.auth.require(who, EDIT, [self.uc.reads.require_job(jid)])
        return {"lifted": self.uc.blocks.lift(jid, names, self.actor())}

    def clear_sick(self, params: dict[str, Any]) -> Any:
        """POST /api/clearsickworkers: SICK workers take jobs again."""
        who = self.who()
        names = parse_names(json_body())
        self.auth.require(who, WORKERS)
        return {"cleared": self.uc.blocks.clear_sick(names, self.actor())}
