"""The store's own contract, method by method (huey's storage tests are the model): every
`Tx` method of store/base.py, run on SQLite and on a private MariaDB through `store.write`
and `store.read`, with no use case in between. The last test fails when a method is added
to the protocol without a test here.
"""

from __future__ import annotations

from typing import Any

from coalition import columns
from coalition.store.base import Tx

TESTED: set[str] = set()


def covers(*names: str) -> Any:
    """Mark the Tx methods a test exercises (checked by test_every_tx_method_is_covered)."""
    TESTED.update(names)
    return lambda fn: fn


def job(**fields: Any) -> dict[str, Any]:
    return {**columns.new_job_row(), "title": "t", "command": "true", "h_key": "k", **fields}


@covers("insert_job", "job", "jobs", "update_job", "update_jobs", "bump_job")
def test_job_rows(store: Any) -> None:
    a = store.write(lambda tx: tx.insert_job(job(title="a", h_key="01")))
    b = store.write(lambda tx: tx.insert_job(job(title="b", h_key="02")))
    assert store.read(lambda tx: tx.job(a))["title"] == "a"
    assert store.read(lambda tx: tx.job(999999)) is None
    assert [r["id"] for r in store.read(lambda tx: tx.jobs([b, 999999, a]))] == [a, b]
    assert store.write(lambda tx: tx.update_job(a, {"retry": 3})) == 1
    assert store.write(lambda tx: tx.update_job(999999, {"retry": 3})) == 0
    store.write(lambda tx: tx.update_jobs([(a, {"timeout": 5}), (b, {"timeout": 6})]))
    assert [r["timeout"] for r in store.read(lambda tx: tx.jobs([a, b]))] == [5, 6]
    assert store.read(lambda tx: tx.jobs([b], ["title", "timeout"])) == [
        {"id": b, "title": "b", "timeout": 6}
    ]
    row = store.write(lambda tx: tx.bump_job(a, {"finished": 2, "total": 1}, 10.0, returning=True))
    assert (row["finished"], row["total"], row["updated_at"]) == (2, 1, 10.0)
    assert store.write(lambda tx: tx.bump_job(a, {"finished": -1}, 11.0)) is None
    assert store.read(lambda tx: tx.job(a))["finished"] == 1


@covers("children", "child_ids_by_title", "delete_jobs", "groups", "unkeyed_jobs")
def test_tree_rows(store: Any) -> None:
    g = store.write(lambda tx: tx.insert_job(job(title="g", command="", children=2, h_key="01")))
    k1 = store.write(lambda tx: tx.insert_job(job(parent=g, title="x", h_key="0102")))
    k2 = store.write(lambda tx: tx.insert_job(job(parent=g, title="x", h_key="0101")))
    assert [r["id"] for r in store.read(lambda tx: tx.children(g))] == [k2, k1]  # dispatch order
    assert set(store.read(lambda tx: tx.children(g, ("id",)))[0]) >= {"id"}
    assert store.read(lambda tx: tx.child_ids_by_title(g, "x")) == [k1, k2]  # oldest first
    assert [r["id"] for r in store.read(lambda tx: tx.groups())] == [g]
    assert store.read(lambda tx: tx.unkeyed_jobs()) == 0
    store.write(lambda tx: tx.insert_job(job(h_key="")))
    assert store.read(lambda tx: tx.unkeyed_jobs()) == 1
    store.write(lambda tx: tx.delete_jobs([k1]))
    assert store.read(lambda tx: tx.child_ids_by_title(g, "x")) == [k2]


@covers("list_jobs", "count_jobs_by_state", "working_jobs")
def test_job_queries(store: Any) -> None:
    for i, state in enumerate(["WAITING", "WORKING", "ERROR", "WORKING"]):
        store.write(
            lambda tx, i=i, s=state: tx.insert_job(
                job(title=f"j{i}", state=s, user=f"u{i % 2}", h_key=f"{i:02}")
            )
        )
    rows, total = store.read(lambda tx: tx.list_jobs({"parent": 0, "states": ["WORKING"]}, "id", True, 0, 1))
    assert total == 2 and len(rows) == 1 and rows[0]["title"] == "j3"
    rows, total = store.read(lambda tx: tx.list_jobs({"user": "u0", "text": "J2"}, "h_key", False, 0, None))
    assert [r["title"] for r in rows] == ["j2"] and total == 1
    assert store.read(lambda tx: tx.count_jobs_by_state())["WORKING"] == 2
    working, _ = store.read(lambda tx: tx.list_jobs({"states": ["WORKING"]}, "id", False, 0, None))
    assert sorted(r["id"] for r in store.read(lambda tx: tx.working_jobs())) == [r["id"] for r in working]


@covers("first_ready", "claim", "ready_counts", "tagsets", "tagset_id")
def test_pick_primitives(store: Any) -> None:
    linux = store.write(lambda tx: tx.tagset_id("linux"))
    assert store.write(lambda tx: tx.tagset_id("linux")) == linux  # found, not created twice
    assert store.read(lambda tx: tx.tagsets())[linux] == "linux"
    late = store.write(lambda tx: tx.insert_job(job(title="late", tagset=linux, h_key="02")))
    first = store.write(lambda tx: tx.insert_job(job(title="first", tagset=linux, h_key="01")))
    store.write(lambda tx: tx.insert_job(job(title="other", tagset=linux + 1, h_key="00")))
    assert store.read(lambda tx: tx.ready_counts())[linux] == 2
    found = store.write(lambda tx: tx.first_ready([linux]))
    assert found is not None and found[0] == first and found[2] == "first" and found[3] == ""
    # Jobs whose limits are full are passed over.
    store.write(lambda tx: tx.update_job(first, {"limits": "nuke:1"}))
    assert store.write(lambda tx: tx.first_ready([linux], skip_limits=["nuke:1"]))[0] == late
    store.write(lambda tx: tx.update_job(first, {"limits": ""}))
    row = store.write(lambda tx: tx.claim(first, "w1", 7, 100.0))
    assert row is not None and (row["state"], row["worker"], row["run_event"]) == ("WORKING", "w1", 7)
    assert store.write(lambda tx: tx.claim(first, "w2", 8, 101.0)) is None  # compare-and-set
    assert store.write(lambda tx: tx.first_ready([linux]))[0] == late
    assert store.write(lambda tx: tx.first_ready([])) is None


@covers("set_deps", "deps", "deps_of", "dependents", "unfinished_deps")
def test_dependencies(store: Any) -> None:
    a, b, c = (store.write(lambda tx, t=t: tx.insert_job(job(title=t))) for t in "abc")
    store.write(lambda tx: tx.set_deps(c, [a, b]))
    assert sorted(store.read(lambda tx: tx.deps(c))) == [a, b]
    assert sorted(store.read(lambda tx: tx.deps_of([c, a]))) == [(c, a), (c, b)]
    assert store.read(lambda tx: tx.dependents(a)) == [c]
    assert store.read(lambda tx: tx.job(a))["has_dependents"] == 1
    assert store.read(lambda tx: tx.unfinished_deps(c)) == 2
    store.write(lambda tx: tx.update_job(a, {"state": "FINISHED"}))
    assert store.read(lambda tx: tx.unfinished_deps(c)) == 1
    store.write(lambda tx: tx.set_deps(c, [b]))
    assert store.read(lambda tx: tx.deps(c)) == [b]


@covers("affinities", "set_affinities", "register_affinities")
def test_affinity_registry(store: Any) -> None:
    store.write(lambda tx: tx.set_affinities({1: "linux", 3: "gpu"}))
    store.write(lambda tx: tx.register_affinities(["gpu", "nuke", "maya"]))
    names = store.read(lambda tx: tx.affinities())
    assert names[1] == "linux" and names[3] == "gpu" and {"nuke", "maya"} <= set(names.values())
    assert len(set(names)) == len(names) == 4
    store.write(lambda tx: tx.set_affinities({1: ""}))
    assert 1 not in store.read(lambda tx: tx.affinities())


@covers(
    "insert_worker", "worker", "workers", "update_worker", "update_workers", "bump_worker", "delete_workers"
)
def test_worker_rows(store: Any) -> None:
    store.write(lambda tx: tx.insert_worker(columns.new_worker_row("w2")))
    store.write(lambda tx: tx.insert_worker({**columns.new_worker_row("w1"), "ip": "10.0.0.1"}))
    store.write(lambda tx: tx.insert_worker({**columns.new_worker_row("w1"), "ip": "changed"}))  # ignored
    assert store.read(lambda tx: tx.worker("w1"))["ip"] == "10.0.0.1"
    assert store.read(lambda tx: tx.worker("nobody")) is None
    assert [w["name"] for w in store.read(lambda tx: tx.workers())] == ["w1", "w2"]
    assert [w["name"] for w in store.read(lambda tx: tx.workers(["w2"]))] == ["w2"]
    assert store.write(lambda tx: tx.update_worker("w1", {"state": "WORKING"}, {"finished": 2})) == 1
    store.write(lambda tx: tx.bump_worker("w1", {"finished": 1, "error": 1}))
    w = store.read(lambda tx: tx.worker("w1"))
    assert (w["state"], w["finished"], w["error"]) == ("WORKING", 3, 1)
    fields = {"ip": "10.0.0.9", "cpu": "[1.0]"}
    assert store.write(lambda tx: tx.update_workers(["w1", "w2", "nobody"], fields)) == 2
    assert [(w["ip"], w["cpu"], w["state"]) for w in store.read(lambda tx: tx.workers())] == [
        ("10.0.0.9", "[1.0]", "WORKING"),
        ("10.0.0.9", "[1.0]", "WAITING"),
    ]
    assert store.write(lambda tx: tx.update_workers([], {"ip": "x"})) == 0
    store.write(lambda tx: tx.delete_workers(["w1"]))
    assert store.read(lambda tx: tx.worker("w1")) is None


@covers("insert_event", "update_event", "delete_event", "events", "purge_events")
def test_events(store: Any) -> None:
    def event(start: float, worker: str = "w1") -> dict[str, Any]:
        return {
            "worker": worker,
            "job_id": 5,
            "job_title": "t",
            "state": "WORKING",
            "start": start,
            "duration": 0.0,
        }

    old = store.write(lambda tx: tx.insert_event(event(10.0)))
    new = store.write(lambda tx: tx.insert_event(event(100.0, "w2")))
    gone = store.write(lambda tx: tx.insert_event(event(101.0)))
    store.write(lambda tx: tx.update_event(old, {"state": "FINISHED", "duration": 3.0}))
    store.write(lambda tx: tx.delete_event(gone))
    assert [e["id"] for e in store.read(lambda tx: tx.events(None, None, None, 10))] == [new, old]
    assert [e["id"] for e in store.read(lambda tx: tx.events(5, "w2", 50.0, 10))] == [new]
    assert store.write(lambda tx: tx.purge_events(50.0)) == 1
    assert [e["id"] for e in store.read(lambda tx: tx.events(None, None, None, 10))] == [new]


@covers("insert_audit", "audit")
def test_audit_rows(store: Any) -> None:
    row = {
        "at": 5.0,
        "actor": "alice",
        "address": "",
        "action": "pause",
        "owner": "bob",
        "target": ",7,",
        "detail": "",
    }
    store.write(lambda tx: tx.insert_audit(row))
    assert store.read(lambda tx: tx.audit({"actor": "alice"}, 10))[0]["action"] == "pause"
    assert store.read(lambda tx: tx.audit({"actor": "carol"}, 10)) == []


@covers("insert_session", "session", "delete_session", "purge_sessions")
def test_session_rows(store: Any) -> None:
    store.write(lambda tx: tx.insert_session("k1", "alice", 1.0, 10.0))
    store.write(lambda tx: tx.insert_session("k2", "bob", 1.0, 100.0))
    assert store.read(lambda tx: tx.session("k1"))["user"] == "alice"
    assert store.write(lambda tx: tx.purge_sessions(50.0)) == 1
    assert (
        store.write(lambda tx: tx.delete_session("k2")) == 1
        and store.read(lambda tx: tx.session("k2")) is None
    )


@covers("enqueue_mail", "due_mail", "update_mail", "outbox", "purge_mail")
def test_outbox_rows(store: Any) -> None:
    mail = {"created_at": 1.0, "dedupe": "job-1", "recipient": "a@b", "subject": "s", "body": "b",
            "status": "queued", "attempts": 0, "next_try": 5.0, "last_error": "", "sent_at": 0.0}  # fmt: skip
    assert store.write(lambda tx: tx.enqueue_mail(mail)) is True
    assert store.write(lambda tx: tx.enqueue_mail(mail)) is False  # the dedupe key was queued before
    assert store.write(lambda tx: tx.due_mail(4.0, 10)) == []
    due = store.write(lambda tx: tx.due_mail(6.0, 10))
    assert [m["recipient"] for m in due] == ["a@b"]
    store.write(lambda tx: tx.update_mail(due[0]["id"], {"status": "sent", "sent_at": 7.0}))
    assert store.read(lambda tx: tx.outbox())[0]["status"] == "sent"
    assert store.write(lambda tx: tx.purge_mail(2.0)) == 1 and store.read(lambda tx: tx.outbox()) == []


@covers("submission", "insert_submission", "purge_submissions")
def test_submission_keys(store: Any) -> None:
    assert store.read(lambda tx: tx.submission("key")) is None
    store.write(lambda tx: tx.insert_submission("key", [3, 4], 10.0))
    assert store.read(lambda tx: tx.submission("key")) == [3, 4]
    assert store.write(lambda tx: tx.purge_submissions(5.0)) == 0
    assert store.write(lambda tx: tx.purge_submissions(11.0)) == 1
    assert store.read(lambda tx: tx.submission("key")) is None


@covers("acquire_lease")
def test_leases(store: Any) -> None:
    assert store.write(lambda tx: tx.acquire_lease("reaper", "s1", 0.0, 10.0))
    assert not store.write(lambda tx: tx.acquire_lease("reaper", "s2", 5.0, 10.0))
    assert store.write(lambda tx: tx.acquire_lease("reaper", "s1", 5.0, 10.0))  # renewed
    assert store.write(lambda tx: tx.acquire_lease("reaper", "s2", 16.0, 10.0))  # expired: taken


@covers("count_host_failure", "block_host", "failed_jobs_on", "host_blocks", "lift_host_blocks")
@covers("blocked_keys", "purge_host_failures")
def test_host_failures_and_blocks(store: Any) -> None:
    row = store.write(lambda tx: tx.count_host_failure(7, "w1", 1, 10.0, 0.0, "exit code 1"))
    assert (row["failures"], row["grp"], row["blocked_until"], row["reason"]) == (1, 1, 0.0, "exit code 1")
    row = store.write(lambda tx: tx.count_host_failure(7, "w1", 1, 20.0, 0.0, "exit code 2"))
    assert (row["failures"], row["last_at"], row["reason"]) == (2, 20.0, "exit code 2")
    # A count whose last failure is older than `forgotten` starts again.
    row = store.write(lambda tx: tx.count_host_failure(7, "w1", 1, 100.0, 50.0, "x"))
    assert row["failures"] == 1
    store.write(lambda tx: tx.count_host_failure(8, "w1", 2, 101.0, 0.0, "x"))
    store.write(lambda tx: tx.count_host_failure(9, "w1", 2, 102.0, 0.0, "x"))  # same group as 8
    store.write(lambda tx: tx.count_host_failure(7, "w2", 1, 103.0, 0.0, "x"))
    # Groups 1 and 2 failed on w1, but group 1 failed on w2 too: the job's fault, not w1's.
    assert store.read(lambda tx: tx.failed_jobs_on("w1", 0.0)) == 1
    assert store.read(lambda tx: tx.failed_jobs_on("w2", 0.0)) == 0
    assert store.read(lambda tx: tx.failed_jobs_on("w1", 103.5)) == 0
    assert store.read(lambda tx: tx.host_blocks(0.0)) == []
    store.write(lambda tx: tx.block_host(7, "w1", 500.0))
    store.write(lambda tx: tx.block_host(8, "w1", 200.0))
    blocks = store.read(lambda tx: tx.host_blocks(150.0, worker="w1"))
    assert [(b["job_id"], b["worker"]) for b in blocks] == [(8, "w1"), (7, "w1")]
    assert [b["job_id"] for b in store.read(lambda tx: tx.host_blocks(300.0))] == [7]
    assert store.read(lambda tx: tx.host_blocks(150.0, job_id=7, worker="w2")) == []
    assert store.write(lambda tx: tx.lift_host_blocks(7, "w1")) == 1
    assert store.write(lambda tx: tx.lift_host_blocks(7)) == 1  # w2's count
    assert store.write(lambda tx: tx.lift_host_blocks(999)) == 0
    assert store.write(lambda tx: tx.purge_host_failures(150.0)) == 1  # 9 (8 is blocked to 200)
    a = store.write(lambda tx: tx.insert_job(job(h_key="0a")))
    b = store.write(lambda tx: tx.insert_job(job(h_key="09")))
    store.write(lambda tx: tx.count_host_failure(a, "w3", a, 100.0, 0.0, "x"))
    store.write(lambda tx: tx.count_host_failure(b, "w3", b, 100.0, 0.0, "x"))
    store.write(lambda tx: tx.count_host_failure(999999, "w3", 1, 100.0, 0.0, "x"))  # a deleted job
    for job_id in (a, b, 999999):
        store.write(lambda tx, job_id=job_id: tx.block_host(job_id, "w3", 300.0))
    assert store.read(lambda tx: tx.blocked_keys("w3", 200.0)) == ["09", "0a"]
    assert store.read(lambda tx: tx.blocked_keys("w3", 300.0)) == []
    assert store.read(lambda tx: tx.blocked_keys("w1", 0.0)) == []


@covers("first_ready")
def test_first_ready_skips_blocked_ranges(store: Any) -> None:
    ids = {
        k: store.write(lambda tx, k=k: tx.insert_job(job(h_key=k, tagset=1)))
        for k in ("01", "0101", "0102", "02", "03")
    }
    first = store.write(lambda tx: tx.first_ready([1]))
    assert first[0] == ids["01"]
    # Skipping "01" and everything under it (a blocked group) lands on "02" in one seek.
    assert store.write(lambda tx: tx.first_ready([1], [("01", "01~")]))[0] == ids["02"]
    assert store.write(lambda tx: tx.first_ready([1], [("01", "01~"), ("02", "02~")]))[0] == ids["03"]
    assert store.write(lambda tx: tx.first_ready([1], [("0", "0~")])) is None


@covers("first_ready")
def test_first_ready_skips_blocked_ranges_and_full_limits_together(store: Any) -> None:
    ids = {
        k: store.write(lambda tx, k=k, lim=lim: tx.insert_job(job(h_key=k, tagset=1, limits=lim)))
        for k, lim in (("01", ""), ("02", "nuke:1"), ("0201", "nuke:1"), ("03", "nuke:1"), ("04", ""))
    }
    found = store.write(lambda tx: tx.first_ready([1], [("01", "01~")], ["nuke:1"]))
    assert found[0] == ids["04"] and found[3] == ""
    assert store.write(lambda tx: tx.first_ready([1], [("01", "01~")]))[3] == "nuke:1"


def test_a_failed_write_leaves_nothing(store: Any) -> None:
    def fails(tx: Tx) -> None:
        tx.insert_job(job(title="rolled back"))
        raise RuntimeError("boom")

    try:
        store.write(fails)
    except RuntimeError:
        pass
    assert store.read(lambda tx: tx.list_jobs({}, "id", False, 0, None))[1] == 0


@covers("put_thumbnail", "thumbnail")
def test_thumbnails_one_per_job_replaced_and_deleted_with_the_job(store: Any) -> None:
    group = store.write(lambda tx: tx.insert_job(job(title="g", leaf=0)))
    kid = store.write(lambda tx: tx.insert_job(job(parent=group)))
    store.write(lambda tx: tx.put_thumbnail([kid, group], kid, "image/jpeg", b"\xff\xd8one", 1.0))
    store.write(lambda tx: tx.put_thumbnail([kid, group], kid, "image/png", b"\x89PNG two\x00", 2.0))
    row = store.read(lambda tx: tx.thumbnail(group))
    assert (row["source"], row["mime"], bytes(row["data"]), row["updated_at"]) == (
        kid,
        "image/png",
        b"\x89PNG two\x00",
        2.0,
    )
    assert store.read(lambda tx: tx.thumbnail(999)) is None
    store.write(lambda tx: tx.delete_jobs([kid]))
    assert store.read(lambda tx: tx.thumbnail(kid)) is None and store.read(lambda tx: tx.thumbnail(group))


@covers("finished_runs")
def test_finished_runs_of_a_groups_children(store: Any) -> None:
    group = store.write(lambda tx: tx.insert_job(job(title="g", leaf=0)))
    kid = store.write(lambda tx: tx.insert_job(job(parent=group)))
    other = store.write(lambda tx: tx.insert_job(job()))

    def run(job_id: int, state: str, duration: float) -> dict[str, Any]:
        return {"worker": "w", "job_id": job_id, "job_title": "t", "state": state, "start": 1.0,
                "duration": duration, "cpu_time": duration / 2, "peak_memory": 300}  # fmt: skip

    for job_id, state, duration in ((kid, "ERROR", 1.0), (kid, "FINISHED", 4.0), (other, "FINISHED", 9.0)):
        store.write(lambda tx, j=job_id, s=state, d=duration: tx.insert_event(run(j, s, d)))
    rows = store.read(lambda tx: tx.finished_runs(group))
    assert [(r["job_id"], r["duration"], r["cpu_time"], r["peak_memory"]) for r in rows] == [
        (kid, 4.0, 2.0, 300)
    ]
    assert store.read(lambda tx: tx.finished_runs(kid)) == []


@covers("limits", "limit", "put_limit", "delete_limit", "acquire_limit", "release_limit")
@covers("set_limit_external", "limit_users", "lower_limit")
def test_limits_are_compare_and_set_counters(store: Any) -> None:
    store.write(lambda tx: tx.put_limit("nuke", 2, 1.0))
    store.write(lambda tx: tx.put_limit("nuke", 9, 2.0, create_only=True))  # kept as it is
    assert store.read(lambda tx: tx.limit("nuke"))["capacity"] == 2
    assert store.write(lambda tx: tx.acquire_limit("nuke", 1, 0.0))
    assert store.write(lambda tx: tx.acquire_limit("nuke", 1, 0.0))
    assert not store.write(lambda tx: tx.acquire_limit("nuke", 1, 0.0))  # full: nothing taken
    assert store.read(lambda tx: tx.limit("nuke"))["in_use"] == 2
    store.write(lambda tx: tx.release_limit("nuke", 1))
    store.write(lambda tx: tx.set_limit_external("nuke", 1, 3.0))  # a licence used elsewhere
    assert not store.write(lambda tx: tx.acquire_limit("nuke", 1, 0.0))
    store.write(lambda tx: tx.release_limit("nuke", 5))  # never below zero
    assert store.read(lambda tx: tx.limit("nuke"))["in_use"] == 0
    store.write(lambda tx: tx.release_limit("nuke", -1))  # a forced take (a re-adopted run)
    assert store.read(lambda tx: tx.limit("nuke"))["in_use"] == 1
    # A licence a log rule found missing counts until its time is up.
    store.write(lambda tx: tx.set_limit_external("nuke", 0, 3.0))
    assert store.write(lambda tx: tx.lower_limit("nuke", 10.0, 70.0)) == 1
    assert not store.write(lambda tx: tx.acquire_limit("nuke", 1, 69.0))
    assert store.write(lambda tx: tx.acquire_limit("nuke", 1, 71.0))
    store.write(lambda tx: tx.release_limit("nuke", 1))
    assert store.write(lambda tx: tx.lower_limit("nobody", 10.0, 70.0)) == 0
    assert not store.write(lambda tx: tx.acquire_limit("unknown", 1, 0.0))
    store.write(lambda tx: tx.put_limit("arnold", 5, 4.0))
    assert [r["name"] for r in store.read(lambda tx: tx.limits())] == ["arnold", "nuke"]
    held = store.write(
        lambda tx: tx.insert_job(job(state="WORKING", limits_held="arnold:2,nuke:1", h_key="01"))
    )
    store.write(lambda tx: tx.insert_job(job(state="WORKING", limits_held="nukex:1", h_key="02")))
    assert [r["id"] for r in store.read(lambda tx: tx.limit_users("nuke"))] == [held]
    assert store.write(lambda tx: tx.delete_limit("arnold")) == 1
    assert store.read(lambda tx: tx.limit("arnold")) is None


@covers("frame_dependents", "frame_units", "unfinished_frame_units", "mark_has_dependents")
def test_frame_dependency_lookups(store: Any) -> None:
    render = store.write(lambda tx: tx.insert_job(job(title="render", command="", leaf=0, h_key="01")))
    units = [
        store.write(
            lambda tx, a=a: tx.insert_job(
                job(parent=render, first_frame=a, last_frame=a + 4, h_key=f"01{a:04}")
            )
        )
        for a in (1, 6, 11)
    ]
    comp = store.write(lambda tx: tx.insert_job(job(title="comp", frame_dep=render, h_key="02")))
    assert store.read(lambda tx: tx.frame_dependents(render)) == [comp]
    assert [r["id"] for r in store.read(lambda tx: tx.frame_units(render, (5, 6)))] == units[:2]
    assert len(store.read(lambda tx: tx.frame_units(render, None))) == 3
    store.write(lambda tx: tx.update_job(units[0], {"state": "FINISHED"}))
    left = store.read(lambda tx: tx.unfinished_frame_units(render, (1, 7), 10))
    assert [r["id"] for r in left] == [units[1]]
    # A unit that covers no known frame (last < first) overlaps every span.
    store.write(lambda tx: tx.update_job(units[2], {"first_frame": 0, "last_frame": -1}))
    assert [r["id"] for r in store.read(lambda tx: tx.unfinished_frame_units(render, (1, 2), 10))] == [
        units[2]
    ]
    store.write(lambda tx: tx.mark_has_dependents(render))
    assert all(r["has_dependents"] for r in store.read(lambda tx: tx.jobs([render, *units])))


@covers("ready_users", "running_by_user", "first_ready_of")
def test_fair_share_lookups(store: Any) -> None:
    a1 = store.write(lambda tx: tx.insert_job(job(user="ann", tagset=1, h_key="01")))
    b1 = store.write(lambda tx: tx.insert_job(job(user="bob", tagset=1, h_key="03")))
    store.write(lambda tx: tx.insert_job(job(user="bob", tagset=1, h_key="02", limits="nuke:1")))
    store.write(lambda tx: tx.insert_job(job(user="cat", state="WORKING", tagset=1, h_key="00")))
    assert store.read(lambda tx: tx.ready_users()) == ["ann", "bob"]
    assert store.read(lambda tx: tx.running_by_user()) == {"cat": 1}
    assert store.write(lambda tx: tx.first_ready_of([1], "bob", ["nuke:1"]))[0] == b1
    assert store.write(lambda tx: tx.first_ready_of([1, 2], "ann"))[0] == a1
    assert store.write(lambda tx: tx.first_ready_of([1], "dan")) is None


@covers("reaping_due")
def test_reaping_due(store: Any) -> None:
    def worker(name: str, **fields: Any) -> None:
        row = {**columns.new_worker_row(name), "state": "WAITING", "ping_time": 100.0, **fields}
        store.write(lambda tx: tx.insert_worker(row))

    def due(silent_before: float | None, now: float = 200.0, grace: float = 10.0) -> bool:
        return bool(store.read(lambda tx: tx.reaping_due(silent_before, now, grace)))

    assert not due(50.0)
    worker("w1")
    worker("gone", state="TIMEOUT", ping_time=1.0)  # already reaped: not due again
    assert not due(50.0) and due(150.0) and not due(None)
    # A running job past its timeout (start 100 + timeout 60 + grace 10 < 200).
    store.write(lambda tx: tx.insert_job(job(state="WORKING", worker="w1", start_time=100.0, timeout=60)))
    assert due(None) and not due(None, now=170.0)
    store.write(lambda tx: tx.update_job(1, {"timeout": 0}))
    assert not due(None)
    # A running job whose worker row was deleted.
    store.write(lambda tx: tx.insert_job(job(state="WORKING", worker="nobody", start_time=190.0)))
    assert due(None)


@covers("cpu_hosts_alive", "host_workers", "hosts_alive", "idle_hosts")
def test_cpu_hosts_alive(store: Any) -> None:
    def worker(name: str, **fields: Any) -> None:
        row = {**columns.new_worker_row(name), "state": "WAITING", "ping_time": 100.0, **fields}
        store.write(lambda tx: tx.insert_worker(row))

    assert not store.read(lambda tx: tx.cpu_hosts_alive(0.0))
    worker("gpu", gpus=2)
    worker("gone", ping_time=10.0)
    worker("off", active=0)
    worker("sick", state="SICK")
    assert not store.read(lambda tx: tx.cpu_hosts_alive(50.0))
    worker("cpu", cores=16)
    assert store.read(lambda tx: tx.cpu_hosts_alive(50.0))
    assert not store.read(lambda tx: tx.cpu_hosts_alive(150.0))
    worker("cpu-2", host="cpu")
    worker("cpu-3", host="cpu")
    assert [r["name"] for r in store.read(lambda tx: tx.host_workers("cpu"))] == ["cpu-2", "cpu-3"]
    assert store.read(lambda tx: tx.host_workers("nobody")) == []
    # Worker processes heard from lately: slots of one host count once, rows without a host
    # (Coalition 4 workers) and silent hosts not at all.
    worker("render-1", host="render")
    worker("old-1", host="old", ping_time=10.0)
    assert store.read(lambda tx: tx.hosts_alive(50.0)) == 2  # cpu, render
    assert store.read(lambda tx: tx.hosts_alive(5.0)) == 3
    assert store.read(lambda tx: tx.hosts_alive(150.0)) == 0
    # Hosts with a slot waiting for work: not the sick, stopped, silent or busy ones.
    worker("busy-1", host="busy", state="WORKING")
    idle = store.read(lambda tx: tx.idle_hosts(50.0, 10))
    assert sorted(idle) == ["", "cpu", "render"]  # '' : the rows without a host (gpu, cpu)
    assert len(store.read(lambda tx: tx.idle_hosts(50.0, 2))) == 2
    assert store.read(lambda tx: tx.idle_hosts(150.0, 10)) == []


@covers("put_openjd_job", "openjd_job")
def test_openjd_jobs(store: Any) -> None:
    group = store.write(lambda tx: tx.insert_job(job(title="openjd", command="", h_key="01")))
    task = store.write(
        lambda tx: tx.insert_job(job(parent=group, openjd='{"job":1,"step":"s","task":{}}', h_key="0101"))
    )
    template = '{"name": "' + "é" * 100_000 + '"}'  # big (MEDIUMTEXT on MariaDB) and not ASCII
    store.write(lambda tx: tx.put_openjd_job(group, template, '{"N": {"type": "INT", "value": "3"}}', 5.0))
    row = store.read(lambda tx: tx.openjd_job(group))
    assert (row["template"], row["parameters"], row["created_at"]) == (
        template,
        '{"N": {"type": "INT", "value": "3"}}',
        5.0,
    )
    assert store.read(lambda tx: tx.openjd_job(task)) is None
    assert store.read(lambda tx: tx.job(task))["openjd"] == '{"job":1,"step":"s","task":{}}'
    store.write(lambda tx: tx.delete_jobs([group, task]))  # the template goes with its group
    assert store.read(lambda tx: tx.openjd_job(group)) is None


def test_every_tx_method_is_covered() -> None:
    methods = {n for n in dir(Tx) if not n.startswith("_")}
    assert methods - TESTED == set(), "Tx methods without a contract test"
    assert TESTED - methods == set(), "tests naming methods Tx does not have"
