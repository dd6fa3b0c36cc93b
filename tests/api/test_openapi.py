"""The OpenAPI description (issue 12): served at /api/openapi.json, and true to the route table
(every route described, nothing described that is not routed)."""

from __future__ import annotations

import re
from pathlib import Path

from coalition.config import ServerSettings
from coalition.server import openapi
from coalition.server.app import ServerApp
from coalition.store import open_sqlite
from tests.conftest import ServerProcess


def _template(pattern: str) -> str:
    # The router's `([^/]+)` groups: a job id under /jobs/, a worker (or limit) name elsewhere.
    return re.sub(
        r"/(jobs|workers|limits)/\(\[\^/\]\+\)",
        lambda m: f"/{m.group(1)}/{{{'id' if m.group(1) == 'jobs' else 'name'}}}",
        pattern,
    )


def test_the_description_matches_the_route_table(tmp_path: Path) -> None:
    settings = ServerSettings(datadir=str(tmp_path))
    app = ServerApp(settings, open_sqlite(str(tmp_path / "c.db")))
    routed = {(m, _template(p)) for m, p in app.build_router().table()}
    routed |= {(m, path) for path in app.worker_api().app(0).handlers for m in ("GET", "POST")}
    described = set(openapi.operations())
    assert routed - described == set(), "routes without a description"
    assert described - routed == set(), "descriptions of routes that do not exist"


def test_the_description_is_served(api: ServerProcess) -> None:
    doc = api.api("GET", "/api/openapi.json")
    assert doc["openapi"].startswith("3.1")
    assert "/api/jobs" in doc["paths"] and "/workers/heartbeat" in doc["paths"]
    assert set(doc["paths"]["/api/jobs"]) == {"get", "put", "post", "delete"}
    page = api.request("GET", "/api.html")
    assert page.status_code == 200 and "openapi.json" in page.text
