"""A worker's kept-alive connection after an endjob (coalition/server/guard.py, `watch_next`).

The thread that answered an endjob watches its connection for a moment and serves the
slot's next endjob itself; a connection that stays quiet goes back to cheroot's selector.
Either way every request is answered, on the same connection, as a worker sends them.
"""

from __future__ import annotations

from typing import Any

from coalition.worker.link import ServerLink
from tests.api.test_read_deadlines import busy_threads
from tests.support import wait_for


def test_a_slot_of_short_jobs_is_served_on_one_connection_watched_or_not(api: Any) -> None:
    group = api.submit(title="short ones", command="", affinity="linger")
    ids = [api.submit(title=f"t{i}", command="true", parent=group, affinity="linger") for i in range(30)]
    link = ServerLink(api.url)
    ping = {"name": "lingerer", "affinity": "linger"}
    job = link.pickjob(ping)
    conn = link._conn  # noqa: SLF001 - the test is about this connection staying the same
    done = []
    while job is not None:
        done.append(job["id"])
        body = {**ping, "job_id": job["id"], "event": job["event"], "exit_code": 0, "pick": True}
        answer = link.endjob(body)
        assert answer["ok"] and link._conn is conn  # noqa: SLF001
        job = answer["job"]
        if len(done) == 10:
            # Quiet past the watch: the thread lets go (only the scrape's own is busy), and
            # the next endjob comes through the selector, on the same connection.
            wait_for(lambda: busy_threads(api) == 1, what="the watching thread to let go")
    assert sorted(done) == sorted(ids)
    assert all(api.job(i)["state"] == "FINISHED" for i in ids)
    # A bad endjob on a watched connection is a 400, and the connection still serves.
    status, _, _ = link._post("/workers/endjob", b"{not json")  # noqa: SLF001
    assert status == 400
    assert link.endjob({**ping, "job_id": ids[0], "exit_code": 0})["ignored"]
