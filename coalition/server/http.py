"""HTTP plumbing shared by the resources: reading bodies, JSON answers and errors.

Every error leaves as `{"error": "..."}` with a 4xx (or 503) status; an unexpected exception
is logged with its traceback and answered with a terse 500, never the traceback itself.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from typing import Any

import cherrypy

from ..errors import NotFound
from ..model import ValidationError
from ..store.base import StoreError

log = logging.getLogger("coalition.server")


class ApiError(Exception):
    """An answer other than 200, with a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_answer(exc: BaseException, method: str, path: str) -> tuple[int, str, dict[str, str]]:
    """(status, message, headers) for an exception raised by a handler: the one table both
    HTTP fronts (the CherryPy routes and the worker protocol's WSGI app) answer with."""
    if isinstance(exc, ApiError):
        return exc.status, exc.message, exc.headers
    if isinstance(exc, ValidationError):
        return 400, str(exc), {}
    if isinstance(exc, NotFound):
        return 404, str(exc.args[0]) if exc.args else "not found", {}
    if isinstance(exc, StoreError):
        log.error("database error on %s %s: %s", method, path, exc)
        return 503, f"database unavailable: {exc}", {}
    log.error("internal error on %s %s", method, path, exc_info=exc)
    return 500, "internal server error (see the server log)", {}


def read_stream(stream: Any, content_length: str | None, transfer_encoding: str, limit: int) -> bytes:
    """A request body from its stream: `Content-Length` bytes, or a chunked body (the HTTP
    server has already decoded the chunks) read to its end. Over `limit` bytes (0: no limit)
    is a 413, checked here rather than by cheroot, whose own 413 is plain text."""
    try:
        if content_length not in (None, ""):
            size = int(str(content_length))
            if size < 0:
                raise ApiError(400, "bad Content-Length")
            if limit and size > limit:
                raise ApiError(413, f"request body too large (more than {limit} bytes)")
            return stream.read(size) if size else b""
    except ValueError:
        raise ApiError(400, "bad Content-Length") from None
    if "chunked" in transfer_encoding.lower():
        data = stream.read(limit + 1) if limit else stream.read()
        if limit and len(data) > limit:
            raise ApiError(413, f"request body too large (more than {limit} bytes)")
        return data
    return b""


def read_body() -> bytes:
    """The raw request body, read once and cached on the request (CherryPy's own body
    processing is off for our routes: we parse bodies ourselves)."""
    request = cherrypy.request
    cached = getattr(request, "coalition_body", None)
    if cached is not None:
        return cached
    data = b""
    if request.method not in ("GET", "HEAD"):
        limit = int(cherrypy.config.get("coalition.max_body", 0) or 0)
        data = read_stream(
            request.rfile,
            request.headers.get("Content-Length"),
            request.headers.get("Transfer-Encoding", ""),
            limit,
        )
    request.coalition_body = data
    return data


def json_body(required: bool = True) -> Any:
    """The request body as JSON (lenient about the documentation's own examples)."""
    raw = read_body()
    if not raw.strip():
        if required:
            raise ApiError(400, "a JSON body is required")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8") from None
    return loads_relaxed(text)


def loads_relaxed(text: str) -> Any:
    """json.loads, falling back to a relaxed reading of the 4.0 documentation's examples,
    which have unquoted numeric keys (`{123: {...}}`) and trailing commas."""
    try:
        return json.loads(text)
    except ValueError as first:
        try:
            return json.loads(_relax(text))
        except ValueError:
            raise ApiError(400, f"malformed JSON: {first}") from None


_BARE_KEY = re.compile(r"([{,]\s*)(-?\d+|[A-Za-z_][A-Za-z0-9_]*)(\s*:)")


def _relax(text: str) -> str:
    # Work outside string literals only: split into strings and the rest.
    parts = re.split(r'("(?:\\.|[^"\\])*")', text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # a string literal
            out.append(part)
            continue
        part = _BARE_KEY.sub(lambda m: f'{m.group(1)}"{m.group(2)}"{m.group(3)}', part)
        out.append(part)
    joined = "".join(out)
    parts = re.split(r'("(?:\\.|[^"\\])*")', joined)
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r",(\s*[}\]])", r"\1", parts[i])
    return "".join(parts)


def form_params() -> dict[str, str]:
    """Query string and form-encoded body merged (legacy routes take both)."""
    params: dict[str, str] = {}
    for key, value in cherrypy.request.params.items():
        params[key] = value[-1] if isinstance(value, list) else value
    ctype = cherrypy.request.headers.get("Content-Type", "")
    raw = read_body()
    if raw and ("form" in ctype or not ctype or raw[:1] not in (b"{", b"[")):
        for key, values in urllib.parse.parse_qs(
            raw.decode("utf-8", "replace"), keep_blank_values=True
        ).items():
            params[key] = values[-1]
    elif raw:
        body = loads_relaxed(raw.decode("utf-8", "replace"))
        if not isinstance(body, dict):
            raise ApiError(400, "expected a JSON object or form fields")
        params.update({k: v for k, v in body.items()})
    return params


def send_json(value: Any, status: int = 200) -> bytes:
    """Serialise an answer."""
    cherrypy.response.status = status
    cherrypy.response.headers["Content-Type"] = "application/json"
    cherrypy.response.headers["Cache-Control"] = "no-store"
    return json.dumps(value, separators=(",", ":")).encode()


def send_error(status: int, message: str, headers: dict[str, str] | None = None) -> bytes:
    """An error answer."""
    for key, value in (headers or {}).items():
        cherrypy.response.headers[key] = value
    return send_json({"error": message}, status)


def error_page(status: str, message: str, traceback: str, version: str) -> str:
    """CherryPy's own errors (404 on unknown static files, 413, 400 on bad requests) as JSON."""
    cherrypy.response.headers["Content-Type"] = "application/json"
    code = int(str(status).split()[0]) if str(status)[:3].isdigit() else 500
    if code >= 500:
        message = "internal server error"
    return json.dumps({"error": message or str(status)})
