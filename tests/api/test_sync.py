"""POST /workers/sync: every slot of a worker process in one request (docs/protocol.md)."""

from __future__ import annotations

import base64
import random
import socket
from typing import Any

import pytest

from coalition import scheduling
from coalition.worker.link import jittered
from tests.conftest import ServerProcess


def sync(api: ServerProcess, slots: list[dict[str, Any]], expect: int = 200, **host: Any) -> Any:
    body = {"cpu": [5.0, 7.0], "free_memory": 100, "total_memory": 200, "interval": 2.0, **host}
    return api.worker_call("sync", {**body, "slots": slots}, expect=expect)


def test_idle_slots_pick_running_slots_beat_and_are_killed_on_pause(api: ServerProcess) -> None:
    first = api.submit(title="s1", command="sleep 100", affinity="syncy")
    second = api.submit(title="s2", command="sleep 100", affinity="syncy")
    names = ["synchost-1", "synchost-2", "synchost-3"]
    answer = sync(api, [{"name": n, "pick": True} for n in names], affinity="syncy")
    jobs = {a["name"]: a.get("job") for a in answer["slots"]}
    assert [a["name"] for a in answer["slots"]] == names
    assert {j["id"] for j in jobs.values() if j} == {first, second} and jobs["synchost-3"] is None
    assert answer["next"] == scheduling.SYNC_SOON  # jobs were handed out: report back soon
    running = [(n, j) for n, j in jobs.items() if j]
    # The running slots beat with their output; the idle one asks again.
    parts: list[dict[str, Any]] = [
        {"name": n, "job_id": j["id"], "event": j["event"], "log_offset": 0,
         "log": base64.b64encode(f"PROGRESS:{25 * (i + 1)}\n".encode()).decode()}
        for i, (n, j) in enumerate(running)
    ]  # fmt: skip
    answer = sync(api, [*parts, {"name": "synchost-3", "pick": True}], affinity="syncy")
    assert [(a["name"], a["kill"], a.get("job")) for a in answer["slots"]] == [
        (running[0][0], False, None),
        (running[1][0], False, None),
        ("synchost-3", False, None),
    ]
    # The asked cadence while jobs run, within what the test server's 3 s silence timeout allows.
    assert answer["next"] == min(2.0, 3 / 2.5)
    assert api.api("GET", f"/api/jobs/{running[0][1]['id']}/log") == "PROGRESS:25\n"
    assert api.job(running[1][1]["id"])["progress"] == 0.5
    for name in names:
        worker = api.api("GET", f"/api/workers/{name}")
        assert worker["cpu"] == "[5.0, 7.0]" and worker["total_memory"] == 200
    # A pause: the next sync tells that slot (and only that slot) to kill.
    api.api("POST", "/api/pausejobs", [running[0][1]["id"]])
    answer = sync(api, parts)
    assert [(a["name"], a["kill"], a["job_id"]) for a in answer["slots"]] == [
        (running[0][0], True, running[0][1]["id"]),
        (running[1][0], False, running[1][1]["id"]),
    ]
    api.api("POST", "/api/pausejobs", [running[1][1]["id"]])
    # Idle slots that got nothing are told to sync less often (here: up to the timeout's bound).
    answer = sync(api, [{"name": n, "pick": True} for n in names], affinity="nothing-has-this")
    assert answer["next"] == min(4.0, 3 / 2.5) and all(a.get("job") is None for a in answer["slots"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"slots": []}, "slots must be a non-empty list"),
        ({"slots": "w1"}, "slots must be a non-empty list"),
        ({"slots": [{"name": "w1"}] * 2}, "appears twice"),
        ({"slots": [{"name": f"w{i}"} for i in range(257)]}, "at most 256 slots"),
        ({"slots": ["w1"]}, "each slot must be an object"),
        ({"slots": [{"name": ""}]}, "name must be"),
        ({"slots": [{"name": "w1", "job_id": "x"}]}, "job_id must be an integer"),
        ({"slots": [{"name": "w1", "job_id": 1, "log": 5}]}, "base64"),
        ({"slots": [{"name": "w1"}], "interval": 0}, "interval must be"),
        ({"slots": [{"name": "w1"}], "interval": "2"}, "interval must be"),
    ],
)
def test_bad_syncs_are_a_clear_400_and_register_nothing(api: ServerProcess, body: Any, message: str) -> None:
    before = {w["name"] for w in api.api("GET", "/api/workers")}
    r = api.request("POST", "/workers/sync", body)
    assert r.status_code == 400 and message in r.json()["error"], r.text
    assert {w["name"] for w in api.api("GET", "/api/workers")} == before


def test_a_coalition_4_form_body_is_refused_on_sync(api: ServerProcess) -> None:
    r = api.request("POST", "/workers/sync", data={"hostname": "c4box"})
    assert r.status_code == 400 and "JSON only" in r.json()["error"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"handed": True, "kill": False, "running": 1, "shortest_run": 0.0}, 1.0),
        ({"handed": False, "kill": True, "running": 2, "shortest_run": 500.0}, 1.0),
        ({"handed": False, "kill": False, "running": 0, "shortest_run": 0.0}, 4.0),  # idle: 2x, capped
        ({"handed": False, "kill": False, "running": 1, "shortest_run": 5.0}, 2.0),
        ({"handed": False, "kill": False, "running": 1, "shortest_run": 600.0}, 3.0),  # long frames
    ],
)
def test_next_sync_policy(kwargs: dict[str, Any], expected: float) -> None:
    assert scheduling.next_sync(2.0, 10.0, **kwargs) == expected


@pytest.mark.parametrize(
    ("timeout", "kwargs", "spread", "expected"),
    [
        (10.0, {"handed": False, "kill": False, "running": 1, "shortest_run": 5.0}, 3.1, 3.1),
        (10.0, {"handed": False, "kill": False, "running": 1, "shortest_run": 5.0}, 1.5, 2.0),  # under asked
        (60.0, {"handed": False, "kill": False, "running": 1, "shortest_run": 5.0}, 10.0, 4.0),  # kill bound
        (60.0, {"handed": False, "kill": False, "running": 0, "shortest_run": 0.0}, 10.0, 10.0),  # idle
        (10.0, {"handed": False, "kill": False, "running": 0, "shortest_run": 0.0}, 10.0, 4.0),  # silence
        (60.0, {"handed": True, "kill": False, "running": 1, "shortest_run": 0.0}, 10.0, 1.0),  # report back
    ],
)
def test_a_big_farm_is_spread_out(
    timeout: float, kwargs: dict[str, Any], spread: float, expected: float
) -> None:
    assert scheduling.next_sync(2.0, timeout, spread=spread, **kwargs) == expected


def test_sync_spread_is_hosts_over_the_rate() -> None:
    assert scheduling.sync_spread(1250, 250.0) == 5.0
    assert scheduling.sync_spread(1250, 0.0) == 0.0  # no limit
    assert scheduling.sync_spread(0, 250.0) == 0.0


def test_the_server_spreads_syncs_by_the_hosts_it_hears(make_server: Any) -> None:
    # syncrate 0.5: three worker processes heard from make a 6 s cadence for idle ones (within
    # the 30 s timeout's bound of 12 s); one running a job stays at 4 s, so a pause still kills.
    server = make_server(syncrate=0.5, timeout=30)
    for host in ("spread-a", "spread-b", "spread-c"):
        sync(server, [{"name": f"{host}-1", "pick": False}], host=host)
    server.stop()
    server.start()  # a fresh process: it counts the hosts at its first sync
    answer = sync(server, [{"name": "spread-a-1", "pick": False}], host="spread-a")
    # 6 s, moved to the host's slot of the cycle: a quarter cycle away at least, so up to 1.25x.
    assert 6.0 / 4 <= answer["next"] <= 6.0 * 1.25
    job = server.submit(title="spread", command="sleep 100")
    answer = sync(server, [{"name": "spread-a-1", "pick": True}], host="spread-a")
    handed = answer["slots"][0]["job"]
    assert handed["id"] == job and answer["next"] == scheduling.SYNC_SOON
    beat = {"name": "spread-a-1", "job_id": job, "event": handed["event"], "log_offset": 0}
    assert 1.0 <= sync(server, [beat], host="spread-a")["next"] <= scheduling.SYNC_KILL_BOUND


def test_next_sync_never_lets_a_worker_look_silent_or_a_pause_wait() -> None:
    # A worker asking for a slow cadence still beats within the server's silence timeout, and
    # within SYNC_KILL_BOUND while it runs jobs; nothing goes below SYNC_MIN.
    for asked in (0.01, 0.5, 2.0, 30.0, 3600.0):
        for timeout in (1.0, 10.0, 60.0, 600.0):
            cases = ((0, 0.0, 0.0), (1, 1.0, 0.0), (3, 1000.0, 0.0), (0, 0.0, 1e6), (2, 5.0, 1e6))
            for running, run, spread in cases:
                value = scheduling.next_sync(
                    asked, timeout, handed=False, kill=False, running=running, shortest_run=run, spread=spread
                )
                assert scheduling.SYNC_MIN <= value <= max(scheduling.SYNC_MIN, timeout / 2.5)
                if running:
                    assert value <= scheduling.SYNC_KILL_BOUND


def test_endjob_hands_out_a_held_job_over_http_and_refuses_nonsense(api: ServerProcess) -> None:
    ids = [api.submit(title=f"h{i}", command="true", affinity="holdy") for i in range(3)]
    who = {"name": "holdhost", "affinity": "holdy"}
    first = api.worker_call("pickjob", who)["job"]
    assert first["id"] == ids[0]
    ended = {**who, "job_id": first["id"], "event": first["event"], "exit_code": 0, "elapsed": 0.01}
    answer = api.worker_call("endjob", {**ended, "pick": True, "hold": True})
    assert (answer["job"]["id"], [j["id"] for j in answer["held"]]) == (ids[1], [ids[2]])
    assert answer["hold_max"] == scheduling.HOLD_DEPTH == 8  # how many a slot may ask to hold
    nxt, held = answer["job"], answer["held"][0]
    running = {**who, "job_id": nxt["id"], "event": nxt["event"], "exit_code": 0}
    # A slot that runs its held job cannot also take one to start now; nor be running the
    # job it reports.
    err = api.worker_call("endjob", {**running, "running": held["id"], "pick": True}, expect=400)
    assert "running" in err["error"]
    err = api.worker_call("endjob", {**running, "running": nxt["id"]}, expect=400)
    assert "running" in err["error"]
    err = api.worker_call("endjob", {**running, "running": "x"}, expect=400)
    assert "running must be an integer" in err["error"]
    for bad, why in (
        ({"hold": 99}, "hold must be"),
        ({"hold": 9}, "hold must be true, false or a count from 0 to 8"),
        ({"hold": "2"}, "hold must be"),
        ({"earlier": {}}, "earlier must be a list"),
        ({"earlier": [1]}, "each of earlier"),
        ({"earlier": [{"job_id": nxt["id"], "exit_code": 0}]}, "reported twice"),
        ({"earlier": [{"job_id": 5}]}, "exit_code must be an integer"),
    ):
        err = api.worker_call("endjob", {**running, "running": held["id"], **bad}, expect=400)
        assert why in err["error"], (bad, err)
    answer = api.worker_call("endjob", {**running, "running": held["id"], "hold": True})
    assert answer["held"] == [] and "kill" not in answer and answer["job"] is None
    answer = api.worker_call("endjob", {**who, "job_id": held["id"], "event": held["event"], "exit_code": 0})
    assert answer["held"] == []  # always there: this server hands out held jobs
    assert [api.api("GET", f"/api/jobs/{i}")["state"] for i in ids] == ["FINISHED"] * 3


def test_hosts_that_synced_together_are_spread_over_the_cycle_after_one_answer() -> None:
    # 1,000 worker processes answered at the same instant (a restart, a pick storm): their
    # next syncs land each in its own slot, spread evenly, within the bound.
    now, interval = 1_000_000.25, 4.0
    waits = [
        scheduling.phase_aligned(interval, scheduling.host_phase(f"render{i:04d}"), now, interval)
        for i in range(1000)
    ]
    assert min(waits) >= interval / 4 - 1e-9 and max(waits) <= interval
    # With the worker's +-10% jitter (seeded here), the busiest half second of the next
    # cycle has under a third of the hosts; unaligned, half of them came in one half second.
    rand = random.Random(7).random
    for moved, most in ((waits, 300), ([interval] * 1000, 1000)):
        ends = [jittered(w, 0.1, rand) for w in moved]
        busiest = max(sum(1 for t in ends if k / 2 <= t < (k + 1) / 2) for k in range(10))
        assert busiest < most if moved is waits else busiest >= 450
    # A host comes back to its slot whenever it syncs: the cycle is `interval` on average.
    phase = scheduling.host_phase("render0001")
    first = now + scheduling.phase_aligned(interval, phase, now, 60.0)
    late = first + 0.3  # its worker's jitter
    again = late + scheduling.phase_aligned(interval, phase, late, 60.0)
    assert again - first == pytest.approx(interval, abs=0.002)
    # Short cadences (after a hand-out or a kill) are not moved; a ceiling is never passed.
    assert scheduling.phase_aligned(1.0, phase, now, 60.0) == 1.0
    assert scheduling.phase_aligned(30.0, phase, now, 4.0) <= 4.0


def test_an_idle_host_is_woken_by_udp_when_a_change_may_bring_work(api: ServerProcess) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ours,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as elsewhere,
    ):
        ours.bind(("127.0.0.1", 0))
        elsewhere.bind(("127.0.0.2", 0))
        ours.settimeout(10)
        elsewhere.setblocking(False)
        token, other = "b" * 32, "c" * 32
        slot = [{"name": "wakehost-1", "pick": True}]
        # Idle (nothing matches its affinity), listening where its request comes from.
        wake = {"ip": "127.0.0.1", "port": ours.getsockname()[1], "token": token}
        answer = sync(api, slot, affinity="nothing-for-wakehost", host="wakehost", wake=wake)
        assert answer["slots"][0].get("job") is None
        # Another host claims an address its request did not come from: never sent to.
        lying = {"ip": "127.0.0.2", "port": elsewhere.getsockname()[1], "token": other}
        sync(api, [{"name": "liar-1", "pick": True}], affinity="nothing-for-liar", host="liar", wake=lying)
        api.submit(title="work", command="true", affinity="somewhere-else", paused=True)
        data, sender = ours.recvfrom(256)
        assert data == b"coalition-wake " + token.encode() and sender[0] == "127.0.0.1"
        with pytest.raises(BlockingIOError):  # sent in the same round as ours, had it been
            elsewhere.recvfrom(256)


@pytest.mark.parametrize(
    ("wake", "message"),
    [
        ("127.0.0.1:5000", "wake must be an object"),
        ({"ip": "127.0.0.1", "port": "5000", "token": "d" * 32}, "wake.port"),
        ({"ip": "127.0.0.1", "port": 5000, "token": "<script>" * 4}, "wake.token"),
    ],
)
def test_a_malformed_wake_is_a_400(api: ServerProcess, wake: Any, message: str) -> None:
    answer = sync(api, [{"name": "badwake-1", "pick": True}], expect=400, wake=wake)
    assert message in answer["error"]


def test_an_idle_host_is_woken_when_an_endjob_releases_dependents(api: ServerProcess) -> None:
    first = api.submit(title="dep first", command="true", affinity="depwake-a")
    second = api.submit(title="dep second", command="true", affinity="depwake-b", dependencies=[first])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ours:
        ours.bind(("127.0.0.1", 0))
        ours.settimeout(10)
        token = "e" * 32
        wake = {"ip": "127.0.0.1", "port": ours.getsockname()[1], "token": token}
        # Idle: the only job for it waits for `first`.
        answer = sync(
            api, [{"name": "depwake-1", "pick": True}], affinity="depwake-b", host="depwake", wake=wake
        )
        assert answer["slots"][0].get("job") is None
        runner = sync(api, [{"name": "deprunner-1", "pick": True}], affinity="depwake-a", host="deprunner")
        job = runner["slots"][0]["job"]
        assert job["id"] == first
        api.worker_call(
            "endjob", {"name": "deprunner-1", "job_id": first, "event": job["event"], "exit_code": 0}
        )
        assert api.job(second)["state"] == "WAITING"
        data, _ = ours.recvfrom(256)  # no operator's change: the endjob itself woke it
        assert data == b"coalition-wake " + token.encode()
