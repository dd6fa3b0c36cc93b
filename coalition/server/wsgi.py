"""A lean WSGI front for the worker protocol.

`/workers/` is the hot path of a farm: every slot of every worker calls it every few
seconds, and every dispatch goes through it. It is served by the same HTTP server (cheroot)
as the rest, but grafted as a plain WSGI application, without CherryPy's per-request tool
and hook machinery, which costs about as much as a dispatch's database work. Errors keep the
house format: a 4xx (or 503) with `{"error": "..."}`, a logged 500 for bugs.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from .http import ApiError, error_answer, loads_relaxed, parse_form, read_stream

log = logging.getLogger("coalition.server")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


# Coalition 4's worker protocol is form fields, parsed into lists that cost tens of times
# their size in memory (a 50 MB form body took the server to 2.1 GB). Its biggest request is
# a heartbeat: the base64 of the output its job printed since the last one (every `sleep`
# seconds, 2 by default) and five short fields. 4 MB of form is about 3 MB of output per
# heartbeat, a thousand times a chatty renderer's, and costs the server tens of MB at most.
# Our worker speaks JSON, whose log chunks may use all of `maxbodysize`.
FORM_BODY = 4 * 1024 * 1024
FORM_FIELDS = 64  # Coalition 4 sends 7; a body of thousands of tiny fields is an attack


class Request:
    """What a worker-protocol handler may read of a request."""

    def __init__(self, environ: dict[str, Any], max_body: int):
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET")
        self.remote_ip = environ.get("REMOTE_ADDR", "")
        self.max_body = max_body
        self._body: bytes | None = None

    def header(self, name: str) -> str:
        """A request header ("" when absent)."""
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            return self.environ.get(key, "") or ""
        return self.environ.get("HTTP_" + key, "") or ""

    def is_json(self) -> bool:
        """Whether the body is JSON (else form fields: Coalition 4's protocol)."""
        return "json" in self.header("Content-Type")

    def body(self) -> bytes:
        """The request body, read once, refused past the size limit: `maxbodysize` for JSON,
        FORM_BODY for a form, refused on its Content-Length before a byte of it is read."""
        if self._body is None:
            limit = self.max_body
            if not self.is_json():
                limit = min(limit, FORM_BODY) if limit else FORM_BODY
            self._body = read_stream(
                self.environ["wsgi.input"],
                self.environ.get("CONTENT_LENGTH"),
                self.environ.get("HTTP_TRANSFER_ENCODING", ""),
                limit,
                "request body" if self.is_json() else "form body",
            )
        return self._body

    def fields(self) -> tuple[dict[str, Any], bool]:
        """The request's fields: a JSON object body (is_form False), or the query string and a
        form-encoded body merged (is_form True: Coalition 4's protocol)."""
        raw = self.body()
        if self.is_json():
            if not raw.strip():
                raise ApiError(400, "a JSON body is required")
            try:
                body = loads_relaxed(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise ApiError(400, "the body is not UTF-8") from None
            if not isinstance(body, dict):
                raise ApiError(400, "expected a JSON object")
            return body, False
        params: dict[str, Any] = {}
        query = self.environ.get("QUERY_STRING", "")
        for text in (query, raw.decode("utf-8", "replace")):
            params.update(parse_form(text, FORM_FIELDS))
        return params, True


Handler = Callable[[Request], Any]


class Text(bytes):
    """A plain-text answer (the legacy protocol's)."""


class WsgiApp:
    """Routes `/workers/<name>` to handlers; everything else under the mount is a 404."""

    def __init__(self, handlers: dict[str, Handler], max_body: int):
        self.handlers = handlers
        self.max_body = max_body

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).rstrip("/")
        method = environ.get("REQUEST_METHOD", "GET")
        ctype = "application/json"
        try:
            handler = self.handlers.get(path)
            if handler is None:
                raise ApiError(404, f"no such route: {method} {path}")
            if method not in ("GET", "POST"):
                raise ApiError(
                    405, f"{method} is not allowed on {path}; use GET, POST", {"Allow": "GET, POST"}
                )
            result = handler(Request(environ, self.max_body))
            if isinstance(result, Text):
                status, payload, ctype = 200, bytes(result), "text/plain; charset=utf-8"
            else:
                status, payload = 200, json.dumps(result, separators=(",", ":")).encode()
            extra: dict[str, str] = {}
        except Exception as exc:  # noqa: BLE001 - mapped to a JSON answer; bugs are a logged 500
            status, message, extra = error_answer(exc, method, path)
            payload = _error(message)
        headers = [
            ("Content-Type", ctype),
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),
            ("Date", http_date()),
        ]
        headers += list(extra.items())
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        return [payload]


_date: tuple[int, str] = (0, "")


def http_date(now: Callable[[], float] = time.time) -> str:
    """The Date header's value, made once a second (cheroot formats it for every answer
    that lacks one, through email.utils: a few per cent of a worker request's cost)."""
    global _date
    second = int(now())
    if _date[0] != second:
        _date = (second, email.utils.formatdate(second, usegmt=True))
    return _date[1]


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
