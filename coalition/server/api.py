"""The user REST API (`/api`, and its `/api/webfrontend` alias): thin adapters that parse,
check permissions, call the service and return plain data.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

import cherrypy

from ..audit import Actor
from ..model import (
    JOB_STATES,
    MAX_NAME,
    JobEdit,
    ValidationError,
    parse_ids,
    parse_job_edit,
    parse_job_spec,
    parse_names,
    parse_worker_edit,
)
from ..store.base import Row
from ..usecases import UseCases
from .auth import CREATE, DELETE, EDIT, OWNER, VIEW, WEB, WORKERS, Auth, Identity
from .blocks import BlocksApi
from .http import ApiError, json_body
from .router import Raw, Router


class MetricsText(Raw):
    """Prometheus's exposition format."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"


_LIST_PARAMS = (
    "parent",
    "state",
    "user",
    "text",
    "affinity",
    "worker",
    "sort",
    "order",
    "offset",
    "limit",
    "changed_since",
)


def _int_param(
    params: dict[str, Any], key: str, default: int | None = None, lo: int = 0, hi: int = 2**62
) -> int | None:
    value = params.get(key)
    if value is None or value == "":
        return default
    text = str(value).strip()
    digits = text[1:] if text[:1] == "-" else text
    # ASCII digits only (int() also takes "1_000" and other scripts' digits), and few enough
    # for int()'s digit limit: anything longer is out of every range anyway.
    if not (digits.isascii() and digits.isdigit()):
        raise ApiError(400, f"{key} must be an integer, got {value!r}"[:200])
    if len(digits) > 20 or not lo <= int(text) <= hi:
        raise ApiError(400, f"{key} must be between {lo} and {hi}")
    return int(text)


def _float_param(params: dict[str, Any], key: str, what: str) -> float | None:
    """A finite number from the query string (nan and inf parse as floats; no column holds them)."""
    value = params.get(key)
    if value is None or value == "":
        return None
    try:
        number = float(str(value))
    except ValueError:
        raise ApiError(400, f"{key} must be {what}") from None
    if not math.isfinite(number):
        raise ApiError(400, f"{key} must be {what}, not {number}")
    return number


def _idempotency_key(user: str) -> str | None:
    """The request's `Idempotency-Key` header, scoped to its user (one user's key never
    answers another's submission), as the 64 hex digits the store keeps; None without one."""
    given = cherrypy.request.headers.get("Idempotency-Key")
    if given is None:
        return None
    if not 1 <= len(given) <= 255 or not given.isprintable():
        raise ApiError(400, "Idempotency-Key must be 1 to 255 printable characters")
    return hashlib.sha256(f"{user}\0{given}".encode()).hexdigest()


def _job_id(text: str) -> int:
    # ASCII digits within the ids' range: int() takes "²"-free Unicode digits and "1_0", and
    # an id past a BIGINT failed in the database (a 500) rather than being "not found".
    if not (text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= 2**62):
        raise ApiError(404, f"job {text[:64]!r} not found")
    return int(text)


class Api(BlocksApi):
    """Handlers of the user API."""

    def __init__(
        self,
        uc: UseCases,
        auth: Auth,
        terminate: Callable[[list[str]], None] | None = None,
        servermode: str = "normal",
        metrics: Callable[[], str] | None = None,
    ):
        self.uc = uc
        self.auth = auth
        self.terminate = terminate  # set in cloud mode
        self.servermode = servermode
        self._metrics = metrics

    def who(self) -> Identity:
        """The identity of the current request (looked up once per request; /api/webfrontend
        is the web page's API: its password is checked even with ldapunsafeapi)."""
        request = cherrypy.request
        found = getattr(request, "coalition_identity", None)
        if found is None:
            web = (request.script_name + request.path_info).startswith("/api/webfrontend")
            found = self.auth.identify(WEB if web else "api", request.headers)
            request.coalition_identity = found
        return found

    def actor(self) -> Actor:
        """Who makes a change, for the audit trail."""
        return Actor(self.who().user, cherrypy.request.remote.ip or "")

    def parent_guard(self, who: Identity) -> Callable[[Row], None]:
        """Putting a job under a group changes the group: its owner's business."""
        return lambda row: self.auth.require(who, EDIT, [row])

    def routes(self, router: Router, prefix: str) -> None:
        """Register every route under `prefix` ("/api" and "/api/webfrontend")."""
        p = prefix
        router.add("GET", f"{p}/ping", self.ping)
        router.add("GET", f"{p}/jobs", self.list_jobs)
        router.add("PUT", f"{p}/jobs", self.create_jobs)
        router.add("POST", f"{p}/jobs", self.edit_jobs)
        router.add("DELETE", f"{p}/jobs", self.delete_jobs)
        router.add("GET", rf"{p}/jobs/([^/]+)", self.get_job)
        router.add("GET", rf"{p}/jobs/([^/]+)/children", self.children)
        router.add("GET", rf"{p}/jobs/([^/]+)/dependencies", self.dependencies)
        router.add("POST", rf"{p}/jobs/([^/]+)/dependencies", self.set_dependencies)
        router.add("GET", rf"{p}/jobs/([^/]+)/childrendependencies", self.children_dependencies)
        router.add("GET", rf"{p}/jobs/([^/]+)/log", self.log)
        router.add("GET", rf"{p}/jobs/([^/]+)/events", self.job_events)
        router.add("GET", rf"{p}/jobs/([^/]+)/stats", self.job_stats)
        router.add("GET", rf"{p}/jobs/([^/]+)/thumbnail", self.job_thumbnail)
        router.add("POST", f"{p}/resetjobs", self.state_command("reset"))
        router.add("POST", f"{p}/reseterrorjobs", self.state_command("reset_errors"))
        router.add("POST", f"{p}/startjobs", self.state_command("start"))
        router.add("POST", f"{p}/pausejobs", self.state_command("pause"))
        router.add("GET", f"{p}/workers", self.workers)
        router.add("POST", f"{p}/workers", self.edit_workers)
        router.add("DELETE", f"{p}/workers", self.delete_workers)
        router.add("GET", rf"{p}/workers/([^/]+)", self.worker)
        router.add("POST", f"{p}/startworkers", self.start_workers)
        router.add("POST", f"{p}/stopworkers", self.stop_workers)
        router.add("POST", f"{p}/terminateworkers", self.terminate_workers)
        router.add("GET", f"{p}/cloud/backoff", self.boot_backoff)
        router.add("POST", f"{p}/cloud/clearbackoff", self.clear_boot_backoff)
        router.add("GET", f"{p}/affinities", self.affinities)
        router.add("POST", f"{p}/affinities", self.set_affinities)
        router.add("GET", f"{p}/events", self.events)
        router.add("GET", f"{p}/webhooks", self.webhook_deliveries)
        router.add("GET", f"{p}/audit", self.audit)
        router.add("GET", f"{p}/stats", self.stats)
        self.block_routes(router, p)

    def webhook_deliveries(self, params: dict[str, Any]) -> Any:
        """GET /api/webhooks: the newest deliveries and their status (for operators: the URLs
        may hold secrets)."""
        self.auth.require(self.who(), WORKERS)
        return self.uc.reads.webhook_deliveries(_int_param(params, "limit", 200, lo=1, hi=5000) or 200)

    def metrics(self, params: dict[str, Any]) -> Any:
        """GET /metrics: Prometheus's text format (server/metrics.py); the API's read access."""
        self.auth.require(self.who(), VIEW)
        if self._metrics is None:
            raise ApiError(404, "no metrics in this server")
        return MetricsText(self._metrics().encode())

    def ping(self, params: dict[str, Any]) -> Any:
        """GET /api/ping: the server answers (to those it would answer anything)."""
        self.who()
        return {"ok": True, "servermode": self.servermode}

    # -- jobs -------------------------------------------------------------------------------
    def list_jobs(self, params: dict[str, Any]) -> Any:
        """GET /api/jobs: the root jobs (documented), or a filtered page with a total."""
        who = self.who()
        self.auth.require(who, VIEW)
        unknown = sorted(set(params) - set(_LIST_PARAMS) - {"_"})
        if unknown:
            raise ApiError(
                400, f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(_LIST_PARAMS)}"
            )
        paged = bool(params)
        # parent=all lists the whole tree (for searches across groups).
        parent = None if params.get("parent") == "all" else _int_param(params, "parent", 0)
        filters: dict[str, Any] = {"parent": parent}
        if params.get("state"):
            states = [s.strip().upper() for s in str(params["state"]).split(",") if s.strip()]
            bad = [s for s in states if s not in JOB_STATES]
            if bad:
                raise ApiError(400, f"unknown state(s): {', '.join(bad)}")
            filters["states"] = states
        for key in ("user", "text", "affinity", "worker"):
            if params.get(key):
                filters[key] = str(params[key])
        scope = self.auth.view_scope(who)
        hidden = scope is not None and filters.get("user", scope) != scope  # others' jobs asked for
        if scope is not None:
            filters["user"] = scope  # in the query, so that paging and totals stay right
        changed_since = _float_param(params, "changed_since", "a number (the `now` of a previous answer)")
        if changed_since is not None:
            filters["changed_since"] = changed_since
        order = str(params.get("order", "asc")).lower()
        if order not in ("asc", "desc"):
            raise ApiError(400, "order must be asc or desc")
        offset = _int_param(params, "offset", 0) or 0
        limit = _int_param(params, "limit", 200 if paged else None, lo=1, hi=10000)
        jobs, total, now = self.uc.reads.list_jobs(
            filters, str(params.get("sort", "")), order == "desc", offset, limit, with_dependencies=paged
        )
        if hidden:
            jobs, total = [], 0
        visible = [j for j in jobs if self.auth.may_view(who, j)]
        if len(visible) != len(jobs):
            total -= len(jobs) - len(visible)
        if not paged:
            return visible
        return {"jobs": visible, "total": total, "offset": offset, "limit": limit, "now": now}

    def create_jobs(self, params: dict[str, Any]) -> Any:
        """PUT /api/jobs: one job object -> its id; a list of job objects -> their ids."""
        who = self.who()
        body = json_body()
        many = isinstance(body, list)
        items = body if many else [body]
        if not items:
            raise ApiError(400, "an empty list of jobs")
        if len(items) > 100000:
            raise ApiError(413, "at most 100000 jobs per request")
        specs = []
        for i, item in enumerate(items):
            try:
                spec = parse_job_spec(item)
            except ValidationError as exc:
                raise ApiError(400, f"job {i}: {exc}" if many else str(exc)) from None
            owner = self.auth.owner_for_new_job(who, spec.user)
            if owner != spec.user:
                from dataclasses import replace

                spec = replace(spec, user=owner)
            specs.append(spec)
        self.auth.require(who, CREATE)
        self.auth.check_commands(who, [(s.user, s.command) for s in specs])
        ids = self.uc.operator.submit_many(
            specs, self.actor(), self.parent_guard(who), _idempotency_key(who.user)
        )
        return ids if many else ids[0]

    def edit_jobs(self, params: dict[str, Any]) -> Any:
        """POST /api/jobs: `{id: {field: value}}` edits, all or nothing."""
        who = self.who()
        body = json_body()
        if not isinstance(body, dict):
            raise ApiError(400, "expected a JSON object {job id: {field: value}}")
        edits: dict[int, JobEdit] = {}
        for key, values in body.items():
            job_id = int(_int_param({"job id": key}, "job id", lo=1) or 0)
            try:
                edits[job_id] = parse_job_edit(values)
            except ValidationError as exc:
                raise ApiError(400, f"job {key}: {exc}") from None
        rows = self.uc.reads.job_rows(list(edits))
        missing = sorted(set(edits) - {r["id"] for r in rows})
        if missing:
            raise ApiError(404, f"job(s) {', '.join(map(str, missing))} not found")
        self.auth.require(who, EDIT, rows)
        by_id = {r["id"]: r for r in rows}
        given = [r for r in rows if edits[r["id"]].values.get("user", r["user"]) != r["user"]]
        if given:
            self.auth.require(who, OWNER, given)
        self.auth.check_commands(
            who,
            [
                (e.values.get("user", by_id[i]["user"]), e.values["command"])
                for i, e in edits.items()
                if "command" in e.values
            ],
        )
        self.uc.operator.edit(edits, self.actor(), self.parent_guard(who))
        return 1

    def delete_jobs(self, params: dict[str, Any]) -> Any:
        """DELETE /api/jobs: a list of ids, subtrees included."""
        who = self.who()
        ids = parse_ids(json_body())
        self.auth.require(who, DELETE, self._rows(ids))
        self.uc.operator.delete(ids, self.actor())
        return 1

    def _rows(self, ids: list[int]) -> list[dict[str, Any]]:
        rows = self.uc.reads.job_rows(ids)
        missing = sorted(set(ids) - {r["id"] for r in rows})
        if missing:
            raise ApiError(404, f"job(s) {', '.join(map(str, missing))} not found")
        return rows

    def _viewable(self, job_id: int) -> None:
        who = self.who()
        if job_id:
            row = self.uc.reads.require_job(job_id)
            self.auth.require(who, VIEW, [row])
        else:
            self.auth.require(who, VIEW)

    def get_job(self, params: dict[str, Any], job_id: str) -> Any:
        """GET /api/jobs/<id>."""
        jid = _job_id(job_id)
        self._viewable(jid)
        return self.uc.reads.job(jid)

    def children(self, params: dict[str, Any], job_id: str) -> Any:
        """GET /api/jobs/<id>/children."""
        jid = _job_id(job_id)
        self._viewable(jid)
        who = self.who()
        return [j for j in self.uc.reads.children(jid) if self.auth.may_view(who, j)]

    def dependencies(self, params: dict[str, Any], job_id: str) -> Any:
        """GET /api/jobs/<id>/dependencies: the job objects it depends on."""
        jid = _job_id(job_id)
        self._viewable(jid)
        who = self.who()
        return [j for j in self.uc.reads.dependencies(jid) if self.auth.may_view(who, j)]

    def set_dependencies(self, params: dict[str, Any], job_id: str) -> Any:
        """POST /api/jobs/<id>/dependencies: replace the list."""
        jid = _job_id(job_id)
        who = self.who()
        body = json_body()
        from ..model import parse_dependencies

        deps = list(parse_dependencies(body))
        self.auth.require(who, EDIT, [self.uc.reads.require_job(jid)])
        self.uc.operator.set_dependencies(jid, deps, self.actor())
        return 1

    def children_dependencies(self, params: dict[str, Any], job_id: str) -> Any:
        """GET /api/jobs/<id>/childrendependencies."""
        jid = _job_id(job_id)
        self._viewable(jid)
        return self.uc.reads.children_dependencies(jid)

    def log(self, params: dict[str, Any], job_id: str) -> Any:
        """GET /api/jobs/<id>/log: the whole log (documented) or a byte range / tail."""
        jid = _job_id(job_id)
        self._viewable(jid)
        if not any(k in params for k in ("offset", "limit", "tail")):
            return self.uc.reads.log(jid)
        return self.uc.reads.log_range(
            jid,
            _int_param(params, "offset", 0),
            _int_param(params, "limit", 1024 * 1024, lo=0, hi=64 * 1024 * 1024),
            _int_param(params, "tail", None, lo=0, hi=64 * 1024 * 1024),
        )

    def job_events(self, params: dict[str, Any], job_id: str) -> Any:
        """GET /api/jobs/<id>/events: the runs of one job."""
        jid = _job_id(job_id)
        self._viewable(jid)
        return self.uc.reads.events(jid, None, None)

    def job_stats(self, params: dict[str, Any], job_id: str) -> Any:
        """GET /api/jobs/<id>/stats: per-frame time, CPU and memory, and the time left."""
        jid = _job_id(job_id)
        self._viewable(jid)
        return self.uc.reads.frame_stats(jid)

    def job_thumbnail(self, params: dict[str, Any], job_id: str) -> Any:
        """GET /api/jobs/<id>/thumbnail: the newest image of the job's (or group's) output."""
        jid = _job_id(job_id)
        self._viewable(jid)
        mime, data = self.uc.reads.thumbnail(jid)
        image = Raw(data)
        image.content_type = mime  # only image/jpeg or image/png are ever stored
        return image

    def state_command(self, name: str) -> Callable[[dict[str, Any]], Any]:
        """POST /api/{reset,reseterror,start,pause}jobs taking a list of ids."""

        def handler(params: dict[str, Any]) -> Any:
            who = self.who()
            ids = parse_ids(json_body())
            self.auth.require(who, EDIT, self._rows(ids))
            getattr(self.uc.operator, name)(ids, self.actor())
            return 1

        return handler

    # -- workers ----------------------------------------------------------------------------
    def workers(self, params: dict[str, Any]) -> Any:
        """GET /api/workers: a list of workers."""
        self.auth.require(self.who(), VIEW)
        return self.uc.reads.workers()

    def worker(self, params: dict[str, Any], name: str) -> Any:
        """GET /api/workers/<name>."""
        self.auth.require(self.who(), VIEW)
        return self.uc.reads.worker(name)

    def edit_workers(self, params: dict[str, Any]) -> Any:
        """POST /api/workers: `{name: {affinity, active}}`."""
        who = self.who()
        body = json_body()
        if not isinstance(body, dict):
            raise ApiError(400, "expected a JSON object {worker name: {field: value}}")
        edits = {}
        for name, values in body.items():
            if not str(name).strip() or len(str(name)) > MAX_NAME:
                raise ApiError(400, f"worker name must be 1 to {MAX_NAME} characters")
            try:
                edits[str(name)] = parse_worker_edit(values)
            except ValidationError as exc:
                raise ApiError(400, f"worker {name}: {exc}") from None
        self.auth.require(who, WORKERS)
        self.uc.operator.edit_workers(edits, self.actor())
        return 1

    def delete_workers(self, params: dict[str, Any]) -> Any:
        """DELETE /api/workers: a list of names."""
        who = self.who()
        names = parse_names(json_body())
        self.auth.require(who, WORKERS)
        self.uc.operator.delete_workers(names, self.actor())
        return 1

    def start_workers(self, params: dict[str, Any]) -> Any:
        """POST /api/startworkers."""
        who = self.who()
        names = parse_names(json_body())
        self.auth.require(who, WORKERS)
        self.uc.operator.set_workers_active(names, True, self.actor())
        return 1

    def stop_workers(self, params: dict[str, Any]) -> Any:
        """POST /api/stopworkers: no new job; the running one is killed and requeued."""
        who = self.who()
        names = parse_names(json_body())
        self.auth.require(who, WORKERS)
        self.uc.operator.set_workers_active(names, False, self.actor())
        return 1

    def terminate_workers(self, params: dict[str, Any]) -> Any:
        """POST /api/terminateworkers: cloud mode only."""
        who = self.who()
        names = parse_names(json_body())
        self.auth.require(who, WORKERS)
        if self.terminate is None:
            raise ApiError(
                404, "terminateworkers is only available in cloud mode (servermode = aws or gcloud)"
            )
        self.terminate(names)
        return 1

    def _cloud_only(self, route: str) -> None:
        if self.servermode not in ("aws", "gcloud"):
            raise ApiError(404, f"{route} is only available in cloud mode (servermode = aws or gcloud)")

    def boot_backoff(self, params: dict[str, Any]) -> Any:
        """GET /api/cloud/backoff: the failed worker boots in a row that hold launching back."""
        self.auth.require(self.who(), VIEW)
        self._cloud_only("cloud/backoff")
        failures = self.uc.cloud.boot_failures()
        return {"failures": [{"time": t, "instance": n, "reason": r} for t, n, r in failures]}

    def clear_boot_backoff(self, params: dict[str, Any]) -> Any:
        """POST /api/cloud/clearbackoff: forget the failed boots, so launching resumes; answers
        how many were forgotten (the CLI's `coalition cloud clear-backoff`)."""
        who = self.who()
        self.auth.require(who, WORKERS)
        self._cloud_only("cloud/clearbackoff")
        return {"cleared": self.uc.cloud.clear_boot_backoff(who.user or "anonymous")}

    # -- affinities, events, stats ----------------------------------------------------------
    def affinities(self, params: dict[str, Any]) -> Any:
        """GET /api/affinities: `{"1": "name", ...}`."""
        self.auth.require(self.who(), VIEW)
        return self.uc.reads.affinities()

    def set_affinities(self, params: dict[str, Any]) -> Any:
        """POST /api/affinities: `{"<n>": "name"}`."""
        who = self.who()
        body = json_body()
        if not isinstance(body, dict):
            raise ApiError(400, 'expected a JSON object {"<number>": "name"}')
        self.auth.require(who, WORKERS)
        self.uc.operator.set_affinities(body, self.actor())
        return 1

    def events(self, params: dict[str, Any]) -> Any:
        """GET /api/events?job=&worker=&howlong= (runs); with kind=audit, the audit trail."""
        if params.get("kind") == "audit":
            return self.audit({k: v for k, v in params.items() if k != "kind"})
        who = self.who()
        self.auth.require(who, VIEW)
        job = _int_param(params, "job", None, lo=-1)
        if job is not None and job < 0:
            job = None
        seconds = _float_param(params, "howlong", "a number of seconds")
        if seconds is not None and seconds < 0:
            seconds = None
        limit = _int_param(params, "limit", 5000, lo=1, hi=100000) or 5000
        worker = params.get("worker") or None
        return self.uc.reads.events(job, worker, seconds, limit, self.auth.view_scope(who))

    def audit(self, params: dict[str, Any]) -> Any:
        """GET /api/audit?howlong=&user=&action=&job=&worker=&limit=: who did what, newest
        first. Without viewjobglobal, only what the user did or what was done to their jobs."""
        who = self.who()
        self.auth.require(who, VIEW)
        filters: dict[str, Any] = {"viewer": self.auth.view_scope(who)}
        howlong = _float_param(params, "howlong", "a number of seconds")
        if howlong is not None:
            filters["since"] = self.uc.ctx.clock() - howlong
        filters["actor"] = params.get("user") or None
        filters["action"] = params.get("action") or None
        job = _int_param(params, "job", None, lo=1)
        filters["target"] = str(job) if job is not None else params.get("worker") or None
        limit = _int_param(params, "limit", 500, lo=1, hi=10000) or 500
        return self.uc.reads.audit(filters, limit)

    def stats(self, params: dict[str, Any]) -> Any:
        """GET /api/stats: counts and recent history for the overview."""
        self.auth.require(self.who(), VIEW)
        hours = _float_param(params, "hours", "a number of hours") or 6.0
        if not 0 < hours <= 24 * 31:
            raise ApiError(400, "hours must be between 0 and 744")
        return self.uc.reads.stats(hours)
