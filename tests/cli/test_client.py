"""coalition.client against a real server: Coalition 4's API shape, plus the additions."""

from __future__ import annotations

from typing import Any

import pytest

from coalition.client import BadRequest, CoalitionError, Connection, NotFound, ServerUnavailable, Unauthorized


@pytest.fixture
def conn(server: Any) -> Connection:
    host, port = server.url.removeprefix("http://").split(":")
    return Connection(host, int(port))  # Coalition 4's (host, port) form


def test_new_job_and_get(conn: Connection, server: Any) -> None:
    parent = conn.newJob(title="shot")
    job_id = conn.newJob(
        parent,
        "frame 1",
        "render -f 1",
        "/tmp",
        "A=1",
        "WAITING",
        False,
        500,
        30,
        "linux",
        "alice",
        "P:%percent",
        [],
        retry=2,
        url="http://x",
    )
    job = conn.getJob(job_id)
    assert (job.id, job.parent, job.title, job.command, job.dir, job.priority, job.timeout) == (
        job_id,
        parent,
        "frame 1",
        "render -f 1",
        "/tmp",
        500,
        30,
    )
    assert (job.affinity, job.user, job.progress_pattern, job.retry, job.url) == (
        "linux",
        "alice",
        "P:%percent",
        2,
        "http://x",
    )
    assert [c.id for c in conn.getJobChildren(parent)] == [job_id]
    paused = conn.newJob(parent="shot", command="x", paused=True)  # parent by title
    assert (conn.getJob(paused).parent, conn.getJob(paused).state) == (parent, "PAUSED")
    assert sorted(j.id for j in conn.jobs(parent)) == [job_id, paused]


def test_new_job_takes_any_job_field(conn: Connection, server: Any) -> None:
    job_id = conn.newJob(command="render", cores=4, memory=8000, gpus=1, exclusive=True, retry=2)
    job = server.job(job_id)
    assert (job["cores"], job["memory"], job["gpus"], job["exclusive"], job["retry"]) == (4, 8000, 1, 1, 2)
    with pytest.raises(CoalitionError, match="gpus"):
        conn.newJob(command="render", gpus=-1)


def test_new_job_without_a_user_belongs_to_the_login_name(
    conn: Connection, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass

    mine = conn.newJob(title="mine", command="true")
    assert conn.getJob(mine).user == getpass.getuser() != ""
    # The login name of whoever runs the script, looked up at each submission (getpass reads
    # LOGNAME first): not a name fixed when the module was imported.
    monkeypatch.setenv("LOGNAME", "artist7")
    assert getpass.getuser() == "artist7"
    assert conn.getJob(conn.newJob(title="theirs", command="true")).user == "artist7"
    # A user given by name still wins.
    assert conn.getJob(conn.newJob(title="given", command="true", user="alice")).user == "alice"


def test_batched_edits(conn: Connection, server: Any) -> None:
    a, b = conn.newJob(command="a"), conn.newJob(command="b")
    ja, jb = conn.getJob(a), conn.getJob(b)
    with pytest.raises(CoalitionError, match="outside a connection block"):
        ja.title = "nope"
    calls: list[tuple[str, str]] = []
    original = conn.request

    def spy(method: str, path: str, *args: Any, **kw: Any) -> Any:
        calls.append((method, path))
        return original(method, path, *args, **kw)

    conn.request = spy  # type: ignore[method-assign]
    with conn:
        ja.title = "renamed a"
        ja.priority = 5
        jb.dependencies = [a]
    assert calls == [("POST", "/api/jobs")]  # one request for every edit
    assert (server.job(a)["title"], server.job(a)["priority"]) == ("renamed a", 5)
    assert [j.id for j in conn.getJobDependencies(b)] == [a]
    conn.setJobDependencies(b, [])
    assert conn.getJobDependencies(b) == []
    with pytest.raises(BadRequest):
        conn.setJobDependencies(a, [a])  # a cycle


def test_failed_block_sends_nothing(conn: Connection, server: Any) -> None:
    job = conn.getJob(conn.newJob(command="x", title="before"))
    with pytest.raises(RuntimeError), conn:
        job.title = "after"
        raise RuntimeError("oops")
    assert server.job(job.id)["title"] == "before"


def test_state_commands_log_events(conn: Connection, server: Any) -> None:
    job_id = conn.newJob(command="x")
    conn.pause(job_id)
    assert conn.getJob(job_id).state == "PAUSED"
    conn.start([job_id])
    conn.reset(job_id)
    conn.reset(job_id, errors_only=True)
    assert conn.getJob(job_id).state == "WAITING"
    assert conn.log(job_id) == ""
    assert conn.log_range(job_id, 0)["size"] == 0
    assert conn.events(job=job_id) == []
    conn.delete(job_id)
    with pytest.raises(NotFound):
        conn.getJob(job_id)


def test_workers_and_affinities(conn: Connection, server: Any) -> None:
    server.worker_call("pickjob", {"name": "node1", "affinity": "linux"})
    assert [w["name"] for w in conn.getWorkers()] == ["node1"]
    conn.editWorkers({"node1": {"affinity": "linux,gpu", "active": 0}})
    assert conn.worker("node1")["affinity"] == "linux,gpu"
    conn.workers_action("start", ["node1"])
    assert conn.worker("node1")["active"] == 1
    conn.setAffinities({1: "linux", 2: "gpu"})
    assert set(conn.getAffinities().values()) >= {"linux", "gpu"}
    conn.workers_action("delete", ["node1"])
    assert conn.getWorkers() == []


def test_url_form_and_errors(server: Any) -> None:
    conn = Connection(server.url + "/")
    assert conn.url == server.url
    with pytest.raises(BadRequest, match="unknown field"):
        conn.request("PUT", "/api/jobs", {"priorty": 3})
    with pytest.raises(ServerUnavailable):
        Connection("http://127.0.0.1:9").getWorkers()


def test_unauthorized(make_server: Any) -> None:
    server = make_server(workertoken="s3cret")
    conn = Connection(server.url)
    with pytest.raises(Unauthorized):
        conn.request("POST", "/workers/pickjob", {"name": "x"})
