"""The slot loop and its courier against a scripted server link: outages, kills, timeouts,
hand-backs.

The link is a fake (no HTTP) so that outages happen exactly where the test wants them; the
job processes are real. A sync is recorded as "sync" and, per slot part, as "pickjob" or
"heartbeat", as the per-slot routes it replaces.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from coalition import scheduling
from coalition.worker.agent import Slot
from coalition.worker.control import Control
from coalition.worker.courier import Courier
from coalition.worker.link import Refused, Unreachable
from coalition.worker.metrics import Metrics
from coalition.worker.settings import WorkerSettings
from tests.support import wait_for


class FakeLink:
    """Speaks the worker protocol like the server, with scripted failures."""

    url = "http://127.0.0.1:9"

    def __init__(self, jobs: list[dict[str, Any]] | None = None) -> None:
        self.jobs = list(jobs or [])
        self.down = 0  # the next N calls fail as Unreachable
        self.refuse: int | None = None  # answer the next endjob with this 4xx
        self.kill = False
        self.logs: dict[int, bytearray] = {}
        self.results: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self.lock = threading.Lock()
        self.holding: list[dict[str, Any]] = []  # jobs the next endjob answer hands out to hold
        self.hold_max: int | None = None  # the endjob answers' `hold_max` (None: an older server)
        self.takes_hold: int | None = None  # refuse a bigger `hold` with a 400, as older servers
        self.slow_until: Any = None  # the next endjob with `running` waits for this to be true
        self.endjobs: list[dict[str, Any]] = []

    def _gate(self, route: str) -> None:
        with self.lock:
            self.calls.append(route)
            if self.down > 0:
                self.down -= 1
                raise Unreachable("connection refused")

    def _append(self, body: dict[str, Any]) -> None:
        chunk = base64.b64decode(body.get("log") or "")
        log = self.logs.setdefault(body["job_id"], bytearray())
        offset = body["log_offset"]
        assert offset <= len(log), "a gap in the log"
        log += chunk[len(log) - offset :]

    def pickjob(self, body: dict[str, Any]) -> dict[str, Any] | None:
        self._gate("pickjob")
        return self.jobs.pop(0) if self.jobs else None

    def heartbeat(self, body: dict[str, Any]) -> dict[str, Any]:
        self._gate("heartbeat")
        self._append(body)
        return {"ok": True, "kill": self.kill, "stop": False}

    def sync(self, body: dict[str, Any]) -> dict[str, Any]:
        self._gate("sync")
        answers = []
        for part in body["slots"]:
            if part.get("job_id"):
                answers.append({"name": part["name"], "job_id": part["job_id"], **self.heartbeat(part)})
            else:
                answer: dict[str, Any] = {"name": part["name"], "kill": False, "stop": False}
                if part.get("pick"):
                    answer["job"] = self.pickjob(part)
                answers.append(answer)
        return {"ok": True, "slots": answers, "next": 0.05}

    def endjob(self, body: dict[str, Any]) -> dict[str, Any]:
        self._gate("endjob")
        if self.refuse is not None:
            status, self.refuse = self.refuse, None
            raise Refused(status, "refused")
        if self.takes_hold is not None and int(body.get("hold") or 0) > self.takes_hold:
            raise Refused(400, f"hold must be true, false or a count from 0 to {self.takes_hold}")
        if body.get("running") and self.slow_until is not None:
            wait_for(self.slow_until, timeout=20, what="the slow answer's condition")
            self.slow_until = None
        for part in [*body.get("earlier", []), body]:
            self._append(part)
            self.results.append(part)
        self.endjobs.append(body)
        answer: dict[str, Any] = {"ok": True, "job": self.jobs.pop(0) if body["pick"] and self.jobs else None}
        if self.hold_max is not None:
            answer["hold_max"] = self.hold_max
        if self.holding:
            # As many as are queued for holding, which may be more than asked (a test's way
            # to make a slot run several held jobs while one answer is on its way).
            answer["held"], self.holding = self.holding, []
        return answer

    def twin(self) -> FakeLink:
        return self  # one fake server; its state is behind its lock where it matters

    def close(self) -> None:
        pass

    def log(self, job_id: int) -> str:
        return self.logs.get(job_id, bytearray()).decode()


_couriers: list[tuple[Courier, threading.Thread]] = []


@pytest.fixture(autouse=True)
def _stop_couriers() -> Iterator[None]:
    yield
    while _couriers:
        courier, thread = _couriers.pop()
        courier.stop()
        thread.join(10)


def make_slot(link: FakeLink, control: Control | None = None, **settings: Any) -> Slot:
    """A slot over `link`, with its courier running (stopped at the test's end)."""
    options = {"sleep": 0.05, "killgrace": 1.0, "name": "t", **settings}
    control = control or Control()
    slot = Slot(
        "t",
        WorkerSettings(**options),
        link,  # type: ignore[arg-type]
        Metrics(),
        control,
        sleep=lambda seconds: None,
    )
    courier = Courier(link, Metrics(), control, options["sleep"])
    courier.add([slot])
    thread = threading.Thread(target=courier.run, daemon=True)
    thread.start()
    _couriers.append((courier, thread))
    return slot


def job(job_id: int, command: str, **fields: Any) -> dict[str, Any]:
    return {"id": job_id, "event": 100 + job_id, "command": command, "dir": ".", "environment": "", **fields}


def test_result_and_log_survive_an_outage() -> None:
    link = FakeLink()
    slot = make_slot(link)
    link.down = 10**6  # the server is away for the whole run...
    done = threading.Event()

    def run() -> None:
        slot.run_job(job(1, "echo before; seq 1 50000; echo after; exit 4"))
        done.set()

    threading.Thread(target=run, daemon=True).start()
    # The backlog (over one chunk) goes out in heartbeats first; they are retried.
    wait_for(lambda: link.calls.count("heartbeat") >= 20, what="the delivery to be retried")
    link.down = 0  # ...and comes back
    assert done.wait(10)
    [result] = link.results
    assert result["exit_code"] == 4 and not result["timed_out"] and not result["interrupted"]
    expected = "before\n" + "".join(f"{i}\n" for i in range(1, 50001)) + "after\n"
    assert link.log(1) == expected


def test_server_kill_ends_the_group() -> None:
    link = FakeLink()
    link.kill = True
    slot = make_slot(link)
    slot.run_job(job(2, "sleep 30"))
    [result] = link.results
    assert result["exit_code"] < 0 and not result["interrupted"]
    assert "killed at the server's request" in link.log(2)


def test_local_timeout() -> None:
    link = FakeLink()
    slot = make_slot(link)
    slot.run_job(job(3, "sleep 30", timeout=1))
    [result] = link.results
    assert result["timed_out"] and result["exit_code"] != 0
    assert "timeout (1s) exceeded" in link.log(3)


def test_interruption_hands_the_job_back_and_stops_the_slot() -> None:
    link = FakeLink([job(4, "sleep 30"), job(5, "echo never")])
    control = Control()
    slot = make_slot(link, control)
    thread = threading.Thread(target=slot.run, daemon=True)
    thread.start()
    wait_for(lambda: "heartbeat" in link.calls, what="the job to run")
    control.interrupt("AWS spot terminate at soon")
    thread.join(10)
    assert not thread.is_alive()
    [result] = link.results
    assert result["interrupted"] and result["job_id"] == 4 and result["pick"] is False
    assert "handing the job back (AWS spot terminate at soon)" in link.log(4)
    assert link.jobs and link.jobs[0]["id"] == 5  # nothing more was taken


def test_endjob_hands_out_the_next_job() -> None:
    link = FakeLink([job(6, "echo six"), job(7, "echo seven")])
    control = Control()
    slot = make_slot(link, control)
    thread = threading.Thread(target=slot.run, daemon=True)
    thread.start()
    wait_for(lambda: len(link.results) == 2, what="both jobs")
    control.request_stop(handback=False)
    thread.join(10)
    assert link.calls.count("pickjob") >= 1 and [r["exit_code"] for r in link.results] == [0, 0]
    calls = [c for c in link.calls if c not in ("heartbeat", "sync")]
    assert calls[:3] == ["pickjob", "endjob", "endjob"]  # the second job came with the first endjob
    assert link.log(7) == "seven\n"


def test_a_rejected_result_is_not_retried_for_ever() -> None:
    link = FakeLink()
    link.refuse = 400
    make_slot(link).run_job(job(8, "true"))
    assert link.results == [] and link.calls.count("endjob") == 1


def test_a_token_being_fixed_is_retried() -> None:
    link = FakeLink()
    link.refuse = 401
    make_slot(link).run_job(job(9, "true"))
    assert len(link.results) == 1 and link.calls.count("endjob") == 2


def test_job_handed_over_while_stopping_goes_back_unstarted(tmp_path: Any) -> None:
    marker = tmp_path / "ran"
    link = FakeLink([job(10, f"touch '{marker}'")])
    control = Control()
    control.request_stop(handback=False)
    slot = make_slot(link, control)
    slot.give_back(link.jobs.pop(0))
    [result] = link.results
    assert result["interrupted"] and not marker.exists()


def test_a_slot_asks_to_hold_as_many_as_the_server_says_it_takes() -> None:
    link = FakeLink([job(1, "true"), job(2, "true")])
    link.hold_max = 8  # the server says it takes 8, in each endjob answer
    control = Control()
    slot = make_slot(link, control, workers=1)
    thread = threading.Thread(target=slot.run, daemon=True)
    thread.start()
    wait_for(lambda: {r["job_id"] for r in link.results} == {1, 2}, timeout=20, what="every result")
    control.request_stop(handback=False)
    thread.join(20)
    asked = [e.get("hold") for e in link.endjobs]
    # Before any answer said how many it takes, what every server took; then what it says.
    assert asked == [scheduling.HOLD_FIRST, scheduling.hold_wanted(8)] == [4, 8]


def test_a_result_refused_for_its_hold_by_an_older_server_is_sent_again_asking_less() -> None:
    # Two servers behind one address during a rolling upgrade: every answer comes from the
    # new one (it says 8), every request with more than 4 goes to the old one (a 400). The
    # results must still arrive, each once.
    link = FakeLink([job(1, "true"), job(2, "true"), job(3, "true")])
    link.hold_max, link.takes_hold = 8, 4
    control = Control()
    slot = make_slot(link, control, workers=1)
    thread = threading.Thread(target=slot.run, daemon=True)
    thread.start()
    wait_for(lambda: {r["job_id"] for r in link.results} == {1, 2, 3}, timeout=20, what="every result")
    control.request_stop(handback=False)
    thread.join(20)
    assert sorted(r["job_id"] for r in link.results) == [1, 2, 3]  # none lost, none twice
    assert [e.get("hold") for e in link.endjobs] == [4, 4, 4]  # each accepted asking 4


def test_held_jobs_run_back_to_back_and_their_results_travel_together(tmp_path: Any) -> None:
    marks = [tmp_path / f"ran{i}" for i in range(6)]
    jobs = [job(i, f"echo out{i}; touch {marks[i]}") for i in range(1, 6)]
    link = FakeLink(jobs[:2])  # the courier hands out job 1, job 1's endjob job 2...
    link.holding = jobs[2:]  # ...and jobs 3, 4 and 5 to hold behind it
    # While the slot still holds a job to start, its results wait to go together: jobs 2, 3
    # and 4 go in one endjob, sent when job 5 (the last held) starts. Its answer is slow (it
    # comes once job 5 has run): job 5's result then goes alone.
    link.slow_until = marks[5].exists
    control = Control()
    slot = make_slot(link, control, workers=1)
    thread = threading.Thread(target=slot.run, daemon=True)
    thread.start()
    wait_for(lambda: {r["job_id"] for r in link.results} == {1, 2, 3, 4, 5}, timeout=20, what="every result")
    control.request_stop(handback=False)
    thread.join(20)
    assert sorted(r["job_id"] for r in link.results) == [1, 2, 3, 4, 5]  # each exactly once
    assert all(r["exit_code"] == 0 for r in link.results)
    assert all(link.log(i) == f"out{i}\n" for i in range(1, 6))
    batched = [e for e in link.endjobs if e.get("earlier")]
    assert [([p["job_id"] for p in e["earlier"]], e["job_id"], e["running"]) for e in batched] == [
        ([2, 3], 4, 5)
    ]
