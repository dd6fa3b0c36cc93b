"""The worker protocol under `/workers/`: JSON (docs/protocol.md), and Coalition 4's form
protocol for old workers, answered the way they expect (never `eval`'d on our side).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ..model import WAITING, ValidationError, check_tags, parse_rule_lines, parse_tags
from ..scheduling import HOLD_DEPTH, Free
from ..usecases.messages import GPU_RESERVE, HostResources, Ping, RunReport, RunUsage, SlotReport
from ..usecases.workers import WorkerProtocol
from . import wake
from .http import INT_RANGE, ApiError, parse_form
from .metrics import ServerMetrics
from .wake import Waker
from .wsgi import Request, Text, WsgiApp

log = logging.getLogger("coalition.server")
MAX_WARNED = 10_000  # old workers remembered for the once-only warning (bounded memory)


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise ApiError(400, "name must be a non-empty string of at most 255 characters")
    if any(c in value for c in "\n\r\t\x00"):
        raise ApiError(400, "name must not contain control characters")
    return value.strip()


def _opt_int(body: dict[str, Any], key: str, lo: int = 0) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        # ASCII digits only ("²".isdigit() is true, and int() refuses it), and few enough of
        # them for int()'s digit limit; the range check below does the rest.
        text = value.strip() if isinstance(value, str) else ""
        if text[:1] == "-":
            text = text[1:]
        if not (text.isascii() and text.isdigit() and len(text) <= 20):
            raise ApiError(400, f"{key} must be an integer")
        value = int(value)
    if not lo <= value <= INT_RANGE[1]:
        raise ApiError(400, f"{key} must be between {lo} and {INT_RANGE[1]}")
    return value


def _b64(value: Any) -> bytes:
    if value in (None, ""):
        return b""
    if not isinstance(value, str):
        raise ApiError(400, "log must be a base64 string")
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        raise ApiError(400, "log is not valid base64") from None


MAX_SLOTS = 256  # slots one sync may carry
MAX_EARLIER = 64  # earlier runs one endjob may report (a slot holds a few jobs at most)
MAX_THUMBNAIL = 128 * 1024  # bytes of one thumbnail image
_IMAGE_MAGIC = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}


def _thumbnail(value: Any) -> tuple[str, bytes] | None:
    """An endjob's `thumbnail`: {"mime": "image/jpeg" | "image/png", "data": base64}."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("mime") not in _IMAGE_MAGIC:
        raise ApiError(400, "thumbnail must be {mime: image/jpeg or image/png, data: base64}")
    data = value.get("data")
    if not isinstance(data, str) or len(data) > MAX_THUMBNAIL * 4 // 3 + 4:
        raise ApiError(400, f"thumbnail.data must be base64 of at most {MAX_THUMBNAIL} bytes")
    try:
        image = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "thumbnail.data is not valid base64") from None
    if not image.startswith(_IMAGE_MAGIC[value["mime"]]):
        raise ApiError(400, f"thumbnail.data is not a {value['mime']} image")
    return value["mime"], image


def _usage(value: Any) -> RunUsage | None:
    """An endjob's `usage` object: {"cpu_s": s, "peak_memory_mb": n, "wall_s": s}."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ApiError(400, "usage must be an object {cpu_s, peak_memory_mb, wall_s}")
    cpu = value.get("cpu_s", 0.0)
    wall = value.get("wall_s", 0.0)
    memory = value.get("peak_memory_mb", 0)
    for key, seconds in (("cpu_s", cpu), ("wall_s", wall)):
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 1e9:
            raise ApiError(400, f"usage.{key} must be a number of seconds between 0 and 1e9")
    if isinstance(memory, bool) or not isinstance(memory, int) or not 0 <= memory <= 2**40:
        raise ApiError(400, "usage.peak_memory_mb must be an integer between 0 and 2**40")
    return RunUsage(float(cpu), memory, float(wall))


_AMOUNT_MAX = 2**40  # cores, MB or GPUs a host may report


def _amount(obj: dict[str, Any], where: str, key: str) -> int:
    value = obj.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _AMOUNT_MAX:
        raise ApiError(400, f"{where}.{key} must be an integer between 0 and 2**40")
    return value


def _resources(value: Any) -> HostResources | None:
    """A worker's `resources`: {cores, memory, gpus, used_cores, used_memory, used_gpus}."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ApiError(400, "resources must be an object {cores, memory, gpus, used_cores, ...}")
    keys = ("cores", "memory", "gpus", "used_cores", "used_memory", "used_gpus")
    return HostResources(*(_amount(value, "resources", k) for k in keys))


def _free(value: Any, host: HostResources | None) -> Free | None:
    """What an asking slot may take: {cores, memory, gpus, bare, whole} (docs/protocol.md)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ApiError(400, "free must be an object {cores, memory, gpus, bare, whole}")
    host = host or HostResources()

    def total(key: str, default: int) -> int:
        # The host's totals, for an exclusive job (a fixed slot's `resources` are its share).
        return _amount(value, "free", key) if key in value else default

    return Free(
        cores=_amount(value, "free", "cores"),
        memory=_amount(value, "free", "memory"),
        gpus=_amount(value, "free", "gpus"),
        bare=_flag(value, "bare", True),
        whole=_flag(value, "whole"),
        total_cores=total("total_cores", host.cores),
        total_memory=total("total_memory", host.memory),
        total_gpus=total("total_gpus", host.gpus),
    )


def _gpureserve(body: dict[str, Any]) -> str:
    value = body.get("gpureserve", "auto")
    if value not in GPU_RESERVE:
        raise ApiError(400, f"gpureserve must be one of {', '.join(GPU_RESERVE)}")
    return str(value)


def _reason(body: dict[str, Any]) -> str:
    value = body.get("reason", "")
    if not isinstance(value, str):
        raise ApiError(400, "reason must be a string")
    return value[:255]


def _elapsed(body: dict[str, Any]) -> float | None:
    value = body.get("elapsed")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e9:
        raise ApiError(400, "elapsed must be a number of seconds >= 0")
    return float(value)


def _flag(body: dict[str, Any], key: str, default: bool = False) -> bool:
    value = body.get(key, default)
    if not isinstance(value, (bool, int)):
        raise ApiError(400, f"{key} must be a boolean")
    return bool(value)


def _run_report(body: dict[str, Any]) -> RunReport:
    """One run's end from an endjob body (or one of its `earlier`); 400 on a malformed one."""
    job_id = _opt_int(body, "job_id", lo=1)
    if job_id is None:
        raise ApiError(400, "job_id is required")
    code = body.get("exit_code")
    if isinstance(code, bool) or not isinstance(code, int):
        raise ApiError(400, "exit_code must be an integer")
    return RunReport(
        job_id,
        _opt_int(body, "event"),
        code,
        _b64(body.get("log")),
        _opt_int(body, "log_offset"),
        timed_out=_flag(body, "timed_out"),
        interrupted=_flag(body, "interrupted"),
        usage=_usage(body.get("usage")),
        thumbnail=_thumbnail(body.get("thumbnail")),
        reason=_reason(body),
        elapsed=_elapsed(body),
    )


def _hold(body: dict[str, Any]) -> int:
    """How many jobs the slot asks to hold: true is one, a count at most HOLD_DEPTH."""
    value = body.get("hold", 0)
    if value is True or value is False:
        return int(value)
    if not isinstance(value, int) or not 0 <= value <= HOLD_DEPTH:
        raise ApiError(400, f"hold must be true, false or a count from 0 to {HOLD_DEPTH}")
    return value


class WorkerApi:
    """Handlers of the worker protocol."""

    def __init__(
        self,
        protocol: WorkerProtocol,
        token: str = "",
        metrics: ServerMetrics | None = None,
        openjd: Callable[[int], dict[str, Any] | None] | None = None,
        waker: Waker | None = None,
    ):
        self.dispatch = protocol
        self.waker = waker
        self.token = token
        self.metrics = metrics
        self.openjd_job = openjd  # usecases.openjd.OpenJDJobs.job
        self._warned: set[str] = set()  # Coalition 4 workers refused so far (logged once each)

    def app(self, max_body: int) -> WsgiApp:
        """The WSGI application serving /workers/pickjob, /heartbeat, /endjob and /sync."""
        routes = {
            "pickjob": self.pickjob,
            "heartbeat": self.heartbeat,
            "endjob": self.endjob,
            "sync": self.sync,
            "checked": self.checked,
            "openjd": self.openjd,
        }
        return WsgiApp({f"/workers/{name}": self._timed(name, fn) for name, fn in routes.items()}, max_body)

    def _timed(self, route: str, fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        metrics = self.metrics
        if metrics is None:
            return fn

        def timed(req: Request) -> Any:
            started = time.perf_counter()
            try:
                return fn(req)
            finally:
                metrics.requests.observe(time.perf_counter() - started, route=route)

        return timed

    def _handed(self, count: int) -> None:
        if self.metrics is not None and count:
            self.metrics.dispatches.inc(count)

    def _body(self, req: Request) -> tuple[dict[str, Any], bool]:
        """The request as a dict, and whether it speaks the legacy form protocol."""
        body, is_form = req.fields()
        legacy = is_form and "hostname" in body and "name" not in body
        self._check_token(req, body)
        return body, legacy

    def _check_token(self, req: Request, body: dict[str, Any]) -> None:
        if not self.token:
            return
        if "token" in parse_form(req.environ.get("QUERY_STRING", "")):
            # A URL ends up in proxy and access logs: the token goes in a header or a body.
            raise ApiError(401, "the worker token goes in the X-Coalition-Token header, never in the URL")
        given = req.header("X-Coalition-Token") or body.get("token") or ""
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), self.token.encode()):
            self._warn_old_worker(req, body)
            raise ApiError(401, "this server needs a worker token (X-Coalition-Token); check [worker] token")

    def _warn_old_worker(self, req: Request, body: dict[str, Any]) -> None:
        # A Coalition 4 worker cannot send a token and retries for ever without a word on the
        # server's side: say so once per worker (by default the server logs nothing per request).
        if "hostname" not in body or "name" in body:
            return
        who = f"{str(body.get('hostname'))[:255]} ({req.remote_ip})"
        if who in self._warned or len(self._warned) >= MAX_WARNED:
            return
        self._warned.add(who)
        log.warning(
            "refused Coalition 4 worker %s: this server has a workertoken, which Coalition 4 "
            "workers cannot send; turn the token off until every worker runs Coalition 5",
            who,
        )

    def _ping(self, req: Request, body: dict[str, Any], legacy: bool) -> Ping:
        if legacy:
            cpu = None
            load = body.get("load")
            if load:
                try:
                    cpu = json.loads(load)
                except ValueError:
                    cpu = None
            return Ping(
                name=_name(body.get("hostname")),
                cpu=cpu,
                free_memory=_opt_int(body, "free_memory"),
                total_memory=_opt_int(body, "total_memory"),
                ip=req.remote_ip,
            )
        affinity = body.get("affinity")
        if affinity is not None and not isinstance(affinity, str):
            raise ApiError(400, "affinity must be a string of rule lines")
        if affinity:
            try:
                check_tags("affinity", (t for line in parse_rule_lines(affinity) for t in line))
            except ValidationError as exc:
                raise ApiError(400, str(exc)) from None
        ip = body.get("ip")
        if ip is not None and not isinstance(ip, str):
            raise ApiError(400, "ip must be a string")
        offers = body.get("offers")
        if offers is not None:
            if not isinstance(offers, str) or "\n" in offers or len(offers) > 255:
                raise ApiError(400, "offers must be a string of comma-separated tags")
            try:
                check_tags("offers", parse_tags(offers))
            except ValidationError as exc:
                raise ApiError(400, str(exc)) from None
        resources = _resources(body.get("resources"))
        host = body.get("host")
        return Ping(
            name=_name(body.get("name")),
            cpu=body.get("cpu"),
            free_memory=_opt_int(body, "free_memory"),
            total_memory=_opt_int(body, "total_memory"),
            ip=ip or req.remote_ip,
            affinity=affinity,
            resources=resources,
            free=_free(body.get("free"), resources),
            gpureserve=_gpureserve(body),
            host=None if host is None else _name(host),
            offers=offers,
        )

    def pickjob(self, req: Request) -> Any:
        """Hand out the next job."""
        body, legacy = self._body(req)
        job = self.dispatch.pick(self._ping(req, body, legacy))
        self._handed(job is not None)
        if legacy:
            if job is None:
                return Text(b"(-1, '', '', '', None)")
            env = job["environment"] or None
            return Text(repr((job["id"], job["command"], job["dir"], job["user"], env)).encode())
        return {"job": job}

    def heartbeat(self, req: Request) -> Any:
        """Record liveness, log and progress; say whether to kill."""
        body, legacy = self._body(req)
        ping = self._ping(req, body, legacy)
        if legacy:
            job_id = _opt_int(body, "jobId", lo=-1)
            beat = self.dispatch.heartbeat(
                ping, job_id if job_id and job_id > 0 else None, None, _b64(body.get("log")), None
            )
            return Text(b"false" if beat.kill else b"true")
        beat = self.dispatch.heartbeat(
            ping,
            _opt_int(body, "job_id"),
            _opt_int(body, "event"),
            _b64(body.get("log")),
            _opt_int(body, "log_offset"),
        )
        return {"ok": True, "kill": beat.kill, "stop": beat.stop}

    def endjob(self, req: Request) -> Any:
        """Record the end of a run; with `pick`, hand out the next job too."""
        body, legacy = self._body(req)
        ping = self._ping(req, body, legacy)
        if legacy:
            job_id = _opt_int(body, "jobId", lo=-1)
            code = _opt_int(body, "errorCode", lo=-(2**31))
            if job_id and job_id > 0:
                self.dispatch.end(ping, job_id, None, code or 0, _b64(body.get("log")), None)
            return Text(b"None")
        this = _run_report(body)
        running = _opt_int(body, "running", lo=1)
        if running == this.job_id:
            raise ApiError(400, "running must be the held job the slot started, not the one it reports")
        if running is not None and _flag(body, "pick"):
            raise ApiError(400, "a slot that runs its held job (running) picks nothing to start now")
        earlier = body.get("earlier", [])
        if not isinstance(earlier, list) or len(earlier) > MAX_EARLIER:
            raise ApiError(400, f"earlier must be a list of at most {MAX_EARLIER} run reports")
        reports = []
        for item in earlier:
            if not isinstance(item, dict):
                raise ApiError(400, "each of earlier must be a run report object (job_id, exit_code...)")
            reports.append(_run_report(item))
        if len({r.job_id for r in reports} | {this.job_id}) != len(reports) + 1:
            raise ApiError(400, "a run is reported twice in one endjob")
        end = self.dispatch.end(
            ping,
            this.job_id,
            this.event,
            this.exit_code,
            this.chunk,
            this.offset,
            timed_out=this.timed_out,
            interrupted=this.interrupted,
            pick=_flag(body, "pick"),
            usage=this.usage,
            thumbnail=this.thumbnail,
            reason=this.reason,
            elapsed=this.elapsed,
            hold=_hold(body),
            running=running,
            earlier=reports,
        )
        self._handed((end.next_job is not None) + len(end.held))
        if self.waker is not None and any(t.new == WAITING for t in end.transitions):
            self.waker.poke()  # a retry, or dependents released: work for idle hosts (wake.py)
        if self.metrics is not None:
            for report in (*reports, this):
                if (
                    report.usage is None
                    or end.earlier_ignored.get(report.job_id)
                    or (report is this and end.ignored)
                ):
                    continue
                outcome = (
                    "interrupted" if report.interrupted else "finished" if report.exit_code == 0 else "error"
                )
                self.metrics.runs.observe(report.usage.wall_s, outcome=outcome)
        # `held` is always there (empty when none was asked or found): it tells a worker that
        # this server hands out held jobs; `hold_max`, how many it may ask for at once
        # (docs/protocol.md, "Held jobs").
        out: dict[str, Any] = {"ok": True, "job": end.next_job, "held": end.held, "hold_max": HOLD_DEPTH}
        if end.earlier_ignored:
            out["earlier_ignored"] = {str(k): v for k, v in end.earlier_ignored.items()}
        if end.kill:
            out["kill"] = True
        if end.ignored:
            out["ignored"] = end.ignored
        if end.sick:
            out["sick"] = True
        return out

    def checked(self, req: Request) -> Any:
        """A SICK worker's check command ran: `passed` clears it (docs/failures.md)."""
        body, legacy = self._body(req)
        if legacy:
            raise ApiError(400, "checked speaks JSON only")
        passed = body.get("passed")
        if not isinstance(passed, bool):
            raise ApiError(400, "passed must be true or false")
        detail = body.get("detail", "")
        if not isinstance(detail, str):
            raise ApiError(400, "detail must be a string")
        sick = self.dispatch.checked(self._ping(req, body, False), passed, detail[:200])
        return {"ok": True, "sick": sick}

    def openjd(self, req: Request) -> Any:
        """An OpenJD task's job: `{"name", "job": id}` -> {"job", "template", "parameters"},
        what the worker needs beside the task itself (its `openjd` field) to run it."""
        body, legacy = self._body(req)
        if legacy:
            raise ApiError(400, "openjd speaks JSON only")
        job_id = _opt_int(body, "job", lo=1)
        if job_id is None:
            raise ApiError(400, "job is required: the id of the OpenJD job (the task's `openjd` field)")
        found = self.openjd_job(job_id) if self.openjd_job is not None else None
        if found is None:
            raise ApiError(404, f"OpenJD job {job_id} not found (deleted?)")
        return found

    def sync(self, req: Request) -> Any:
        """Every slot of one worker process in one request: heartbeats of the running slots,
        picks for the idle ones; the answer says when to sync next."""
        body, legacy = self._body(req)
        if legacy:
            raise ApiError(400, "sync speaks JSON only (Coalition 4 workers use pickjob and heartbeat)")
        slots = body.get("slots")
        if not isinstance(slots, list) or not slots:
            raise ApiError(400, "slots must be a non-empty list of {name, ...} objects")
        if len(slots) > MAX_SLOTS:
            raise ApiError(400, f"at most {MAX_SLOTS} slots in one sync")
        reports: list[SlotReport] = []
        names: set[str] = set()
        host_resources = _resources(body.get("resources"))
        for slot in slots:
            if not isinstance(slot, dict):
                raise ApiError(400, "each slot must be an object with a name")
            resources = _resources(slot.get("resources")) or host_resources
            report = SlotReport(
                name=_name(slot.get("name")),
                job_id=_opt_int(slot, "job_id", lo=1),
                event=_opt_int(slot, "event"),
                chunk=_b64(slot.get("log")),
                offset=_opt_int(slot, "log_offset"),
                pick=_flag(slot, "pick"),
                free=_free(slot.get("free"), resources),
                resources=resources,
                spare=_flag(slot, "spare"),
            )
            if report.name in names:
                raise ApiError(400, f"slot {report.name!r} appears twice")
            names.add(report.name)
            reports.append(report)
        interval = body.get("interval", 2.0)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval <= 3600:
            raise ApiError(400, "interval must be a number of seconds, 0 < interval <= 3600")
        listener = None
        if body.get("wake") is not None:
            try:
                listener = wake.parse(body["wake"], req.remote_ip, time.monotonic())
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
        host = self._ping(req, {**body, "name": reports[0].name}, False)
        result = self.dispatch.sync(host, reports, float(interval))
        handed = sum(1 for a in result.slots if a.job is not None)
        self._handed(handed)
        if self.waker is not None:
            # Idle: a slot asked for a job and none came. A wake-up then brings its next
            # sync forward when work appears (wake.py).
            key = f"{req.remote_ip} {body.get('host') or reports[0].name}"
            if listener is not None and not handed and any(r.pick for r in reports):
                self.waker.idle(key, listener)
            else:
                self.waker.busy(key)
        answers = []
        for answer in result.slots:
            out: dict[str, Any] = {"name": answer.name, "kill": answer.kill, "stop": answer.stop}
            if answer.job_id:
                out["job_id"] = answer.job_id
            if answer.job is not None:
                out["job"] = answer.job
            if answer.sick:
                out["sick"] = True
            answers.append(out)
        return {"ok": True, "slots": answers, "next": result.next}
