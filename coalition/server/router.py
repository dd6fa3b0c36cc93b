"""A tiny method + path router: the resources declare their routes as data.

CherryPy hands every request under a mount point to `Router.dispatch`, which finds the
route, maps errors from the layers below to JSON answers, and never lets a traceback out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import cherrypy

from .http import ApiError, error_answer, send_error, send_json, single_params

log = logging.getLogger("coalition.server")

Handler = Callable[..., Any]


class Raw(bytes):
    """A handler result sent as is (legacy text answers), with its content type."""

    content_type = "text/plain; charset=utf-8"


class Router:
    """Routes of one mount point: (method, path regex) -> handler(params, *groups)."""

    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = []
        self._exact: dict[str, dict[str, Handler]] = {}  # literal paths: one dict lookup
        self._changing: set[Handler] = set()  # GET handlers that change things (Coalition 4's)
        # Told after each request that may have changed the farm (every method but GET, and
        # the GET routes added with `changes`): the server wakes idle workers (wake.py).
        self.on_change: Callable[[], None] | None = None

    def add(self, methods: str, pattern: str, handler: Handler, changes: bool = False) -> None:
        """Register a handler for space-separated methods on a path regex (anchored);
        `changes`: its GET, too, changes the farm (a Coalition 4 route)."""
        if changes:
            self._changing.add(handler)
        if re.escape(pattern) == pattern.replace("/", "\\/") or not any(c in pattern for c in "()[]\\+*?"):
            table = self._exact.setdefault(pattern.rstrip("/"), {})
            for m in methods.split():
                table[m] = handler
            return
        regex = re.compile(f"^{pattern}/?$")
        for existing, table in self._routes:
            if existing.pattern == regex.pattern:
                for m in methods.split():
                    table[m] = handler
                return
        self._routes.append((regex, {m: handler for m in methods.split()}))

    def table(self) -> list[tuple[str, str]]:
        """Every (method, path) routed, path patterns as registered (for the OpenAPI check)."""
        out = [(m, path) for path, table in self._exact.items() for m in table]
        out += [(m, regex.pattern[1:-3]) for regex, table in self._routes for m in table]  # ^...$/?
        return out

    def dispatch(self, path: str, params: dict[str, Any]) -> bytes:
        """Run the handler for the current request; every failure becomes a JSON error."""
        method = cherrypy.request.method
        if method == "HEAD":
            method = "GET"
        try:
            exact = self._exact.get(path.rstrip("/") or "/")
            candidates = [(None, exact)] if exact is not None else self._routes
            for regex, table in candidates:
                match = regex.match(path) if regex is not None else None
                if regex is not None and match is None:
                    continue
                handler = table.get(method)
                if handler is None:
                    if method == "OPTIONS":
                        cherrypy.response.headers["Allow"] = ", ".join(sorted(table))
                        return send_json({})
                    raise ApiError(
                        405,
                        f"{method} is not allowed on {path}; use {', '.join(sorted(table))}",
                        {"Allow": ", ".join(sorted(table))},
                    )
                result = handler(single_params(params), *(match.groups() if match is not None else ()))
                changed = method not in ("GET", "OPTIONS") or handler in self._changing
                if changed and self.on_change is not None:
                    self.on_change()
                if isinstance(result, Raw):
                    cherrypy.response.headers["Content-Type"] = result.content_type
                    return bytes(result)
                return send_json(result)
            raise ApiError(404, f"no such route: {method} {path}"[:300])
        except cherrypy.HTTPRedirect:
            raise
        except cherrypy.HTTPError as exc:
            return send_error(exc.status, exc._message or "error")
        except Exception as exc:  # noqa: BLE001 - mapped to a JSON answer; bugs are a logged 500
            status, message, headers = error_answer(exc, method, path)
            return send_error(status, message, headers, exc.detail if isinstance(exc, ApiError) else None)


class Mount:
    """The CherryPy object mounted at a prefix: every path under it goes to the router."""

    def __init__(self, router: Router, prefix: str = ""):
        self.router = router
        self.prefix = prefix

    @cherrypy.expose
    def default(self, *parts: str, **params: Any) -> bytes:
        """All requests under this mount."""
        path = self.prefix + "/" + "/".join(parts) if parts else self.prefix or "/"
        return self.router.dispatch(path, params)

    @cherrypy.expose
    def index(self, **params: Any) -> bytes:
        """The mount point itself."""
        return self.router.dispatch(self.prefix or "/", params)
