"""Python client of the Coalition REST API, with Coalition 4's `api/coalition.py` shape.

    from coalition.client import Connection
    conn = Connection("render-server", 19211)          # or Connection("https://farm:19211")
    job_id = conn.newJob(title="shot 12", command="render -f 1", affinity="linux")
    job = conn.getJob(job_id)
    with conn:                                          # edits are batched into one request
        job.priority = 2000
        job.title = "shot 12 (urgent)"

Every method raises a subclass of CoalitionError: NotFound, BadRequest, Unauthorized,
ServerUnavailable (no answer, or a 502/503/504). A Connection holds a requests Session: use
one per thread.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import requests

DEFAULT_PORT = 19211


def owner(user: str = "") -> str:
    """The owner to send with a new job: `user`, else the login name of whoever runs this
    (with LDAP the server records the authenticated user instead, whatever is sent)."""
    if user:
        return user
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry (a bare container)
        return ""


class CoalitionError(Exception):
    """A request failed; `status` is the HTTP code when the server answered, `body` its JSON
    error answer (`{"error": ..., ...}`, e.g. a template's `problems`) when it sent one."""

    def __init__(self, message: str, status: int | None = None, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}


class BadRequest(CoalitionError):
    """The server refused the request as malformed (400, 409, 422)."""


class Unauthorized(CoalitionError):
    """Missing or wrong credentials, or not allowed (401, 403)."""


class NotFound(CoalitionError):
    """No such job, worker or route (404)."""


class ServerUnavailable(CoalitionError):
    """The server did not answer, or answered 502/503/504: try again later."""


def _error_for(status: int, message: str, body: dict[str, Any] | None = None) -> CoalitionError:
    if status in (401, 403):
        return Unauthorized(message, status, body)
    if status == 404:
        return NotFound(message, status, body)
    if status in (502, 503, 504):
        return ServerUnavailable(message, status, body)
    if 400 <= status < 500:
        return BadRequest(message, status, body)
    return CoalitionError(message, status, body)


def server_url(host: str = "localhost", port: int | None = None) -> str:
    """`host` + `port`, or a URL (`http(s)://host[:port]`, or `host:port`), as a base URL."""
    text = host.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
        if urlsplit(text).port is None:
            text = f"{text}:{port or DEFAULT_PORT}"
    elif port is not None and urlsplit(text).port is None:
        text = f"{text}:{port}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a server URL: {host!r}")
    return text


def _ids(ids: int | Iterable[int]) -> list[int]:
    return [int(ids)] if isinstance(ids, int) else [int(i) for i in ids]


class Job:
    """A job object returned by the Connection. Don't create such objects yourself.

    Its attributes are the API's job fields (id, parent, title, command, state, ...). Setting
    one inside a `with conn:` block queues an edit, sent when the block ends; outside a block
    it raises CoalitionError, as in Coalition 4.
    """

    def __init__(self, data: Mapping[str, Any], conn: Connection) -> None:
        object.__setattr__(self, "Conn", conn)
        self.__dict__.update(data)

    def __setattr__(self, attr: str, value: Any) -> None:
        conn: Connection = self.__dict__["Conn"]
        if not conn.IntoWith:
            raise CoalitionError("Can't write attributes outside a connection block")
        conn.Jobs.setdefault(self.__dict__["id"], {})[attr] = value
        object.__setattr__(self, attr, value)

    def __repr__(self) -> str:
        d = self.__dict__
        return f"<Job {d.get('id')} {d.get('title', '')!r} {d.get('state')}>"

    def as_dict(self) -> dict[str, Any]:
        """The job's fields as a plain dict."""
        return {k: v for k, v in self.__dict__.items() if k != "Conn"}


class Connection:
    """A connection to the Coalition server.

    :param host: the server's host name, or a URL such as ``https://farm:19211``
    :param port: the server port (19211 by default)
    :param auth: ``(user, password)`` for HTTP Basic authentication (LDAP-enabled servers)
    :param cacert: a CA bundle file to verify an https server with
    :param timeout: seconds to wait for an answer
    """

    def __init__(
        self,
        host: str = "localhost",
        port: int | None = None,
        *,
        auth: tuple[str, str] | None = None,
        cacert: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = server_url(host, port)
        self.timeout = timeout
        self.session = requests.Session()
        if auth is not None:
            self.session.auth = auth
        # Passed on every request: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE from the
        # environment override Session.verify (requests issue #3829), which would silently
        # ignore the CA file asked for here.
        self.cacert = cacert
        self.IntoWith = False
        self.Jobs: dict[int, dict[str, Any]] = {}
        self.Workers: dict[str, dict[str, Any]] = {}

    # -- transport ---------------------------------------------------------------------------
    def request(
        self, method: str, path: str, body: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        """One API call: the decoded JSON answer, or a CoalitionError subclass."""
        kwargs: dict[str, Any] = {"timeout": self.timeout}
        if self.cacert:
            kwargs["verify"] = self.cacert
        if body is not None:
            kwargs["json"] = body
        if params:
            kwargs["params"] = {k: v for k, v in params.items() if v is not None}
        try:
            response = self.session.request(method, self.url + path, **kwargs)
        except requests.RequestException as exc:
            raise ServerUnavailable(f"{self.url}: {str(exc).splitlines()[0][:300]}") from None
        if response.status_code >= 400:
            raise _error_for(
                response.status_code, f"{_error_text(response)} ({method} {path})", _error_body(response)
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CoalitionError(f"{method} {path}: the answer is not JSON", response.status_code) from None

    def close(self) -> None:
        """Drop pooled connections."""
        self.session.close()

    # -- Coalition 4 API -----------------------------------------------------------------------
    def newJob(  # Coalition 4's camelCase names are the API
        self,
        parent: int | str = 0,
        title: str = "",
        command: str = "",
        dir: str = ".",  # the API's field name
        environment: str = "",
        state: str = "WAITING",
        paused: bool = False,
        priority: int = 1000,
        timeout: int = 0,
        affinity: str = "",
        user: str = "",
        progress_pattern: str = "",
        dependencies: Iterable[int] | str = (),
        *,
        retry: int | None = None,
        url: str = "",
        local_progress_pattern: str = "",
        **fields: Any,
    ) -> int:
        """Create a job; returns its id. `parent` is an id, a title or an `a|b` path of titles.
        Any other field of `PUT /api/jobs` may be given by name: `cores=4, gpus=1`,
        `limits="nuke:1"`, `retry=3`..."""
        body: dict[str, Any] = {
            "parent": parent,
            "title": title,
            "command": command,
            "dir": dir or ".",
            "environment": environment,
            "state": state,
            "paused": bool(paused),
            "priority": priority,
            "timeout": timeout,
            "affinity": affinity,
            "user": owner(user),
            "dependencies": dependencies if isinstance(dependencies, str) else list(dependencies),
        }
        if progress_pattern:
            body["progress_pattern"] = progress_pattern
        if local_progress_pattern:
            body["local_progress_pattern"] = local_progress_pattern
        if retry is not None:
            body["retry"] = retry
        if url:
            body["url"] = url
        body.update(fields)
        return _job_id(self.request("PUT", "/api/jobs", body))

    def getJob(self, id: int) -> Job:
        """The job `id`."""
        return Job(self.request("GET", f"/api/jobs/{int(id)}"), self)

    def getJobChildren(self, id: int) -> list[Job]:
        """The direct children of job `id`."""
        return [Job(j, self) for j in self.request("GET", f"/api/jobs/{int(id)}/children")]

    def getJobDependencies(self, id: int) -> list[Job]:
        """The jobs job `id` depends on."""
        return [Job(j, self) for j in self.request("GET", f"/api/jobs/{int(id)}/dependencies")]

    def setJobDependencies(self, id: int, ids: Iterable[int]) -> Any:
        """Replace the dependencies of job `id` (a cycle is refused with BadRequest)."""
        return self.request("POST", f"/api/jobs/{int(id)}/dependencies", _ids(ids))

    def getWorkers(self) -> list[dict[str, Any]]:
        """Every worker, as dicts."""
        return self.request("GET", "/api/workers")

    def editWorkers(self, workers: Mapping[str, Mapping[str, Any]]) -> Any:
        """Edit workers: `{name: {"affinity": "...", "active": 0}}`."""
        return self.request("POST", "/api/workers", dict(workers))

    def setAffinities(self, data: Mapping[Any, str]) -> Any:
        """Name the numbered affinities: `{1: "linux", 2: "gpu"}`."""
        return self.request("POST", "/api/affinities", {str(k): v for k, v in data.items()})

    def getAffinities(self) -> dict[str, str]:
        """The affinity registry, `{number: name}`."""
        return self.request("GET", "/api/affinities")

    def __enter__(self) -> Connection:
        self.Jobs = {}
        self.Workers = {}
        self.IntoWith = True
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.IntoWith = False
        if exc_type is not None:
            return  # the block failed: send nothing half-done
        if self.Jobs:
            self.request("POST", "/api/jobs", {str(k): v for k, v in self.Jobs.items()})
        if self.Workers:
            self.request("POST", "/api/workers", self.Workers)
        self.Jobs, self.Workers = {}, {}

    # -- additions -----------------------------------------------------------------------------
    def jobs(self, parent: int = 0, **filters: Any) -> list[Job]:
        """Children of `parent` (root jobs by default); filters as in docs/protocol.md."""
        params = {"parent": parent, **filters}
        answer = self.request("GET", "/api/jobs", params=params)
        rows = answer["jobs"] if isinstance(answer, dict) else answer
        return [Job(j, self) for j in rows]

    def delete(self, ids: int | Iterable[int]) -> Any:
        """Delete jobs (and their children); running ones are killed."""
        return self.request("DELETE", "/api/jobs", _ids(ids))

    def pause(self, ids: int | Iterable[int]) -> Any:
        """Pause jobs; running ones are killed within one heartbeat."""
        return self.request("POST", "/api/pausejobs", _ids(ids))

    def start(self, ids: int | Iterable[int]) -> Any:
        """Un-pause jobs."""
        return self.request("POST", "/api/startjobs", _ids(ids))

    def reset(self, ids: int | Iterable[int], errors_only: bool = False) -> Any:
        """Run jobs again from scratch (only their ERROR leaves with `errors_only`)."""
        route = "/api/reseterrorjobs" if errors_only else "/api/resetjobs"
        return self.request("POST", route, _ids(ids))

    def log(self, id: int) -> str:
        """The whole log of job `id`."""
        return self.request("GET", f"/api/jobs/{int(id)}/log") or ""

    def log_range(self, id: int, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        """Part of a log: `{"data": str, "offset": int, "size": int}`."""
        return self.request("GET", f"/api/jobs/{int(id)}/log", params={"offset": offset, "limit": limit})

    def events(
        self, job: int | None = None, worker: str | None = None, howlong: int | None = None
    ) -> list[Any]:
        """Runs, newest first, filtered by job, worker, and age in seconds."""
        return self.request("GET", "/api/events", params={"job": job, "worker": worker, "howlong": howlong})

    def worker(self, name: str) -> dict[str, Any]:
        """One worker."""
        return self.request("GET", f"/api/workers/{quote(name, safe='')}")

    def workers_action(self, action: str, names: Iterable[str]) -> Any:
        """`stop`, `start`, `terminate`, `delete` or `clearsick` workers by name."""
        names = [str(n) for n in names]
        if action == "delete":
            return self.request("DELETE", "/api/workers", names)
        if action == "clearsick":
            return self.request("POST", "/api/clearsickworkers", names)
        if action not in ("stop", "start", "terminate"):
            raise ValueError(f"unknown worker action: {action}")
        return self.request("POST", f"/api/{action}workers", names)


def _job_id(answer: Any) -> int:
    if isinstance(answer, dict) and "id" in answer:
        return int(answer["id"])
    if isinstance(answer, bool) or not isinstance(answer, (int, str)):
        raise CoalitionError(f"unexpected answer to a job creation: {str(answer)[:100]}")
    return int(answer)


def _error_body(response: requests.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and body.get("error"):
            return str(body["error"])
    except ValueError:
        pass
    text = (response.text or "").strip()
    if text:
        return text.splitlines()[0][:200]
    return f"HTTP {response.status_code} {response.reason or ''}".strip()
