"""Chapter 7 of the 4.0 documentation, replayed verbatim with curl against a real server.

The request bodies are copied from the documentation as printed, including its unquoted
numeric keys and trailing commas, which the server reads leniently.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from tests.conftest import ServerProcess
from tests.support import require

PUT_BODY = """{
  "parent": 0,
  "title": "Job 1",
  "command": "echo test",
  "dir": ".",
  "environment": "",
  "state": "WAITING",
  "retry": 10,
  "timeout": 10000,
  "priority": 1000,
  "affinity": "LINUX",
  "user": "render",
  "url": "http://localhost/image.png",
  "progress_pattern": "%percent"
}"""

POST_JOBS_BODY = """{
  123:
  {
    "title": "Job renamed 123",
    "command": "echo renamed",
  },
  124:
  {
    "title": "Job renamed 124",
    "command": "echo renamed",
  }
}"""

POST_WORKERS_BODY = """{
  "worker-1":
  {
    "affinity": "LINUX",
    "active": 0,
  },
  "worker-2":
  {
    "affinity": "LINUX",
    "active": 0,
  }
}"""


def curl(server: ServerProcess, method: str, path: str, body: str | None = None) -> Any:
    """Send a request with curl as a user would type it, return the decoded JSON answer."""
    exe = shutil.which("curl")
    require(exe is not None, "curl not installed: apt-get install curl")
    cmd = [exe, "-s", "-S", "-X", method, server.url + path, "-w", "\n%{http_code}"]
    if body is not None:
        cmd += ["-d", body]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    text, _, code = out.rpartition("\n")
    assert code == "200", f"{method} {path} -> {code} {text}"
    return json.loads(text)


def test_chapter_7_verbatim(make_server: Any) -> None:
    server = make_server()
    # The examples talk about jobs 123..125 and workers worker-1 and worker-2: make them exist.
    ids = server.api(
        "PUT", "/api/jobs", [{"title": f"Job {i}", "command": "echo test"} for i in range(1, 126)]
    )
    assert ids[-1] == 125
    for name in ("worker-1", "worker-2"):
        server.worker_call("pickjob", {"name": name, "affinity": "NONE"})

    roots = curl(server, "GET", "/api/jobs")
    assert len(roots) == 125 and roots[122]["id"] == 123
    assert curl(server, "GET", "/api/jobs/123")["title"] == "Job 123"

    new = curl(server, "PUT", "/api/jobs", PUT_BODY)
    job = server.job(new)
    assert (
        job["title"],
        job["retry"],
        job["timeout"],
        job["affinity"],
        job["user"],
        job["progress_pattern"],
    ) == ("Job 1", 10, 10000, "LINUX", "render", "%percent")

    assert curl(server, "POST", "/api/jobs", POST_JOBS_BODY) == 1
    assert server.job(123)["title"] == "Job renamed 123" and server.job(124)["command"] == "echo renamed"

    assert curl(server, "GET", "/api/jobs/123/children") == []
    assert curl(server, "POST", "/api/jobs/123/dependencies", "[124,125]") == 1
    assert [j["id"] for j in curl(server, "GET", "/api/jobs/123/dependencies")] == [124, 125]
    assert curl(server, "GET", "/api/jobs/123/log") == ""

    assert curl(server, "POST", "/api/pausejobs", "[123,124,125]") == 1
    assert server.job(124)["state"] == "PAUSED"
    assert curl(server, "POST", "/api/startjobs", "[123,124,125]") == 1
    assert curl(server, "POST", "/api/resetjobs", "[123,124,125]") == 1
    assert server.job(123)["state"] == "PENDING"

    workers = curl(server, "GET", "/api/workers")
    assert [w["name"] for w in workers] == ["worker-1", "worker-2"]
    assert curl(server, "POST", "/api/workers", POST_WORKERS_BODY) == 1
    assert [(w["affinity"], w["active"]) for w in server.api("GET", "/api/workers")] == [("LINUX", 0)] * 2
    assert curl(server, "POST", "/api/startworkers", '["worker-1", "worker-2"]') == 1
    assert curl(server, "POST", "/api/stopworkers", '["worker-1", "worker-2"]') == 1
    assert curl(server, "GET", "/api/events?job=123&worker=worker-1&howlong=60") == []

    assert curl(server, "DELETE", "/api/jobs", "[123,124,125]") == 1
    assert server.request("GET", "/api/jobs/123").status_code == 404
    assert curl(server, "DELETE", "/api/workers", '["worker-1", "worker-2"]') == 1
    assert server.api("GET", "/api/workers") == []


def test_chapter_9_http_request(make_server: Any) -> None:
    server = make_server()
    # curl refuses the literal space of the documented URL, so it is sent the way a browser
    # sends it; POST with the same attributes works too.
    out = curl(server, "GET", "/json/addjob?title=job&cmd=echo%20toto&priority=1000&affinity=linux&retry=10")
    job = server.job(out)
    assert (job["title"], job["command"], job["priority"], job["affinity"], job["retry"]) == (
        "job",
        "echo toto",
        1000,
        "linux",
        10,
    )
    out = curl(
        server, "POST", "/json/addjob", "title=job&cmd=echo toto&priority=1000&affinity=linux&retry=10"
    )
    assert server.job(out)["command"] == "echo toto"
