"""HTTP plumbing shared by the resources: reading bodies, JSON answers and errors.

Every error leaves as `{"error": "..."}` with a 4xx (or 503) status; an unexpected exception
is logged with its traceback and answered with a terse 500, never the traceback itself.
"""

from __future__ import annotations

import json
import logging
import math
import re
import urllib.parse
from typing import Any

import cherrypy

from ..errors import NotFound
from ..model import ValidationError
from ..store.base import StoreError
from .guard import body_deadline

log = logging.getLogger("coalition.server")


class ApiError(Exception):
    """An answer other than 200, with a message for the client (and, in `detail`, fields
    added to the JSON answer beside `error`, such as the list of a template's problems)."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        detail: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.detail = detail or {}


MAX_MESSAGE = 300  # an error names the field; it does not echo a 20,000-id list back


def clip(message: str, limit: int = MAX_MESSAGE) -> str:
    """An error message cut to `limit` characters (with a marker when cut)."""
    return message if len(message) <= limit else message[: limit - 3] + "..."


def error_answer(exc: BaseException, method: str, path: str) -> tuple[int, str, dict[str, str]]:
    """(status, message, headers) for an exception raised by a handler: the one table both
    HTTP fronts (the CherryPy routes and the worker protocol's WSGI app) answer with.

    A database error's text stays in the server log: it can quote SQL and values."""
    if isinstance(exc, ApiError):
        return exc.status, clip(exc.message), exc.headers
    if isinstance(exc, ValidationError):
        return 400, clip(str(exc)), {}
    if isinstance(exc, NotFound):
        return 404, clip(str(exc.args[0]) if exc.args else "not found"), {}
    if isinstance(exc, StoreError):
        log.error("database error on %s %s: %s", method, path, exc)
        return 503, "database unavailable (see the server log)", {}
    log.error("internal error on %s %s", method, path, exc_info=exc)
    return 500, "internal server error (see the server log)", {}


def read_stream(
    stream: Any, content_length: str | None, transfer_encoding: str, limit: int, what: str = "request body"
) -> bytes:
    """A request body from its stream: `Content-Length` bytes, or a chunked body (the HTTP
    server has already decoded the chunks) read to its end. Over `limit` bytes (0: no limit)
    is a 413 naming `what`, checked here rather than by cheroot, whose own 413 is plain text,
    and on the Content-Length before reading (the 413 closes the connection). The read has a
    deadline (guard.body_deadline): a body trickled byte by byte must not hold a thread."""
    too_large = f"{what} too large (more than {limit} bytes)"
    try:
        if content_length not in (None, ""):
            text = str(content_length).strip()
            if not (text.isascii() and text.isdigit() and len(text) <= 18):
                raise ApiError(400, "bad Content-Length")
            size = int(text)
            if limit and size > limit:
                raise ApiError(413, too_large)
            if not size:
                return b""
            with body_deadline(size):
                data = stream.read(size)
            if len(data) < size:  # the client went away, or was cut off by the deadline
                raise ApiError(400, "the request body ended before its Content-Length")
            return bytes(data)
    except ValueError:
        raise ApiError(400, "bad Content-Length") from None
    if "chunked" in transfer_encoding.lower():
        with body_deadline(limit or -1):
            data = stream.read(limit + 1) if limit else stream.read()
        if limit and len(data) > limit:
            raise ApiError(413, too_large)
        return bytes(data)
    return b""


LEGACY_BODY = 1024 * 1024  # /json/addjob, /xmlrpc/addjob: one job's form fields
API_BODY = 16 * 1024 * 1024  # /api/: job batches and edits; log chunks go to /workers/
RELAXED_MAX = 1024 * 1024  # the relaxed reading is for hand-written examples, not for bulk


def body_limit(mount: str, max_body: int) -> int:
    """The largest body a route under `mount` takes: `maxbodysize` bounds them all, and only
    the worker protocol (log chunks) may use all of it; a form body is parsed into lists and
    costs tens of times its size in memory, so the legacy routes take the least."""
    own = LEGACY_BODY if mount in ("/json", "/xmlrpc") else API_BODY
    return min(own, max_body) if max_body else own


def read_body() -> bytes:
    """The raw request body, read once and cached on the request (CherryPy's own body
    processing is off for our routes: we parse bodies ourselves)."""
    request = cherrypy.request
    cached = getattr(request, "coalition_body", None)
    if cached is not None:
        return cached
    data = b""
    if request.method not in ("GET", "HEAD"):
        limit = body_limit(request.script_name, int(cherrypy.config.get("coalition.max_body", 0) or 0))
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


MAX_DEPTH = 64  # no route takes more than a few levels; deeper is an attack on recursion
INT_RANGE = (-(2**63), 2**63 - 1)  # what a BIGINT column holds, on SQLite and MariaDB alike
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Huge:
    """An integer literal too long for Python's int-string limit, kept for check_json to name."""


class _NotFinite(float):
    """NaN or Infinity (json.loads accepts them; no column holds them)."""


# What may make check_json refuse a document whose numbers are fine: a surrogate (a raw one,
# or a `\uD800`-style escape) or more brackets than MAX_DEPTH allows to nest.
_SUSPECT_TEXT = re.compile(r"[\ud800-\udfff]|\\u[dD][89a-fA-F]")


def _loads(text: str) -> tuple[Any, bool]:
    """The document, and whether check_json must walk it: the number hooks note a huge or
    non-finite number, and the text is scanned (in C) for what else it refuses. Walking a
    worker's sync in Python, every value, was a fifth of the server's CPU per sync."""
    suspect = False

    def parse_int(digits: str) -> int | _Huge:
        nonlocal suspect
        if len(digits) > 24:
            suspect = True
            return _Huge()
        value = int(digits)
        if not INT_RANGE[0] <= value <= INT_RANGE[1]:
            suspect = True
        return value

    def parse_float(digits: str) -> float:
        nonlocal suspect
        value = float(digits)
        if not math.isfinite(value):  # 1e400
            suspect = True
        return value

    def parse_constant(name: str) -> float:
        nonlocal suspect
        suspect = True
        return _NotFinite("nan")

    value = json.loads(text, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant)
    if not suspect:
        suspect = text.count("[") + text.count("{") > MAX_DEPTH or _SUSPECT_TEXT.search(text) is not None
    return value, suspect


def _checked(text: str) -> Any:
    value, suspect = _loads(text)
    return check_json(value) if suspect else value


def check_json(value: Any) -> Any:
    """Refuse what no route can take and what would fail deep inside: nesting deeper than
    MAX_DEPTH, lone surrogates (they cannot be encoded for the database), integers outside
    a BIGINT, non-finite numbers. Iterative and linear in the size of the document; the
    message names the nearest field."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ApiError(400, f"the JSON document is nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise ApiError(400, f"{where or 'a string'}: not valid Unicode (a lone surrogate)")
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, _Huge) or (isinstance(item, int) and not INT_RANGE[0] <= item <= INT_RANGE[1]):
            raise ApiError(400, f"{where or 'a number'}: integer out of range")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ApiError(400, f"{where or 'a number'} must be a finite number")
        elif isinstance(item, dict):
            for key, sub in item.items():
                if _SURROGATE.search(key):
                    raise ApiError(400, "a field name is not valid Unicode (a lone surrogate)")
                stack.append((sub, clip(key, 64), depth + 1))
        elif isinstance(item, list):
            stack.extend((sub, where, depth + 1) for sub in item)
    return value


def loads_relaxed(text: str) -> Any:
    """json.loads, falling back to a relaxed reading of the 4.0 documentation's examples,
    which have unquoted numeric keys (`{123: {...}}`) and trailing commas; then check_json."""
    try:
        try:
            return _checked(text)
        except ValueError as first:
            if len(text) > RELAXED_MAX:
                raise ApiError(400, clip(f"malformed JSON: {first}")) from None
            try:
                return _checked(_relax(text))
            except ValueError:
                raise ApiError(400, clip(f"malformed JSON: {first}")) from None
    except RecursionError:
        raise ApiError(400, f"the JSON document is nested deeper than {MAX_DEPTH} levels") from None


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


def single_params(params: dict[str, Any]) -> dict[str, Any]:
    """Query parameters, each given once: a repeated one (`?howlong=1&howlong=2`) is a 400
    naming it, rather than a list reaching a handler that expects a string."""
    for key, value in params.items():
        if isinstance(value, list):
            raise ApiError(400, f"query parameter {clip(key, 64)} is given more than once")
    return params


def parse_form(text: str, max_fields: int | None = None) -> dict[str, str]:
    """A query string or form body, each field once (a repeated field is a 400 naming it);
    more than `max_fields` fields is a 400, counted before anything is parsed."""
    params: dict[str, str] = {}
    try:
        parsed = urllib.parse.parse_qs(text, keep_blank_values=True, max_num_fields=max_fields)
    except ValueError:  # parse_qs's only ValueError with strict_parsing off: too many fields
        raise ApiError(400, f"too many form fields (at most {max_fields})") from None
    for key, values in parsed.items():
        if len(values) > 1:
            raise ApiError(400, f"field {clip(key, 64)} is given more than once")
        params[key] = values[0]
    return params


def form_params() -> dict[str, str]:
    """Query string and form-encoded body merged (legacy routes take both)."""
    params: dict[str, str] = dict(single_params(dict(cherrypy.request.params)))
    ctype = cherrypy.request.headers.get("Content-Type", "")
    raw = read_body()
    if raw and ("form" in ctype or not ctype or raw[:1] not in (b"{", b"[")):
        params.update(parse_form(raw.decode("utf-8", "replace")))
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


def send_error(
    status: int, message: str, headers: dict[str, str] | None = None, detail: dict[str, Any] | None = None
) -> bytes:
    """An error answer: `{"error": message}`, plus the fields of `detail`."""
    for key, value in (headers or {}).items():
        cherrypy.response.headers[key] = value
    return send_json({**(detail or {}), "error": message}, status)


def error_page(status: str, message: str, traceback: str, version: str) -> str:
    """CherryPy's own errors (404 on unknown static files, 413, 400 on bad requests) as JSON."""
    cherrypy.response.headers["Content-Type"] = "application/json"
    code = int(str(status).split()[0]) if str(status)[:3].isdigit() else 500
    if code >= 500:
        message = "internal server error"
    return json.dumps({"error": message or str(status)})
