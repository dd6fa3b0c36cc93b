"""Webhooks: which changes call for a delivery (pure), and signed deliveries from a real
server (and a real worker) to a local receiver that checks every signature, retried while
the receiver fails, given up when it refuses for good."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from coalition.hierarchy import Transition
from coalition.webhooks import events_for, sign
from tests.support import wait_for
from tests.worker.helpers import wait_state

SECRET = "hook-secret"


def _row(**kw: Any) -> dict[str, Any]:
    row = {"id": 7, "parent": 0, "title": "shot", "user": "artist1", "state": "FINISHED", "children": 0}
    row.update(total=0, total_finished=0, total_errors=0, run_done=1, fail_count=0)
    row.update(kw)
    return row


def test_which_changes_call_for_a_webhook() -> None:
    def names(t: Transition, row: dict[str, Any]) -> list[str]:
        return [event for event, _ in events_for(t, row)]

    assert names(Transition(7, 0, "WORKING", "FINISHED"), _row()) == ["job.finished"]
    assert names(Transition(7, 0, "WORKING", "ERROR"), _row(state="ERROR")) == ["job.failed"]
    group = _row(children=4, total=4, total_finished=4)
    assert names(Transition(7, 0, "WORKING", "FINISHED"), group) == ["job.finished", "group.finished"]
    assert names(Transition(8, 3, "WORKING", "FINISHED"), _row(id=8, parent=3, children=2)) == [
        "group.finished"
    ]
    assert names(Transition(9, 3, "WORKING", "FINISHED"), _row(id=9, parent=3)) == []  # a frame: none
    assert names(Transition(7, 0, "WAITING", "WORKING"), _row()) == []
    assert names(Transition(7, 0, "FINISHED", "FINISHED"), _row()) == []


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"event":"job.finished"}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k", 1700000000, body) == f"sha256={expected}"


def payload_errors(event: dict[str, Any]) -> list[str]:
    """What is wrong with a delivered payload against its schema in the OpenAPI document's
    `webhooks` section (the documented contract), as messages."""
    import jsonschema

    from coalition.server.openapi import spec

    hook = spec()["webhooks"].get(event["event"])
    if hook is None:
        return [f"{event['event']}: not in the OpenAPI webhooks section"]
    schema = hook["post"]["requestBody"]["content"]["application/json"]["schema"]
    errors = jsonschema.Draft202012Validator(schema).iter_errors(event)
    return [f"{event['event']}: {e.message}" for e in errors]


def test_every_event_sent_is_described_in_the_openapi_document() -> None:
    from coalition.server.openapi import spec
    from coalition.webhooks import EVENTS

    assert sorted(spec()["webhooks"]) == sorted(EVENTS)


class Receiver:
    """A local webhook receiver: checks each signature; answers from `script` (then 200)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.bad: list[str] = []
        self.script: list[int] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stamp = self.headers["X-Coalition-Timestamp"]
                mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
                with outer.lock:
                    status = outer.script.pop(0) if outer.script else 200
                    if not hmac.compare_digest(self.headers["X-Coalition-Signature"], f"sha256={mac}"):
                        outer.bad.append(self.headers["X-Coalition-Signature"])
                        status = 401
                    elif abs(time.time() - int(stamp)) > 300:
                        outer.bad.append(f"stale timestamp {stamp}")
                        status = 401
                    elif status == 200:
                        event = json.loads(body)
                        assert event["event"] == self.headers["X-Coalition-Event"]
                        outer.received.append(event)
                        outer.bad += payload_errors(event)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/coalition"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def events(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.received if e["event"] == name]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_signed_deliveries_from_a_real_farm(make_server: Any, make_worker: Any) -> None:
    receiver = Receiver()
    refusing = Receiver()  # a URL that answers 410 Gone: given up at once
    refusing.script = [410] * 100
    try:
        server = make_server(
            webhooks=f"{receiver.url} {refusing.url}", webhooksecret=SECRET, notifyinterval=0.1, timeout=3
        )
        receiver.script = [503]  # the first delivery fails: it must come again
        worker = make_worker(server.url, name="hookw")
        ok = server.submit(title="ok", command="true", user="artist1")
        bad = server.submit(title="bad", command="exit 2", retry=0)
        group = server.submit(title="shot 10", command="", paused=True)
        for frame in range(3):
            server.submit(title=f"f{frame}", command="true", parent=group)
        server.api("POST", "/api/startjobs", [group])
        wait_state(server, group, "FINISHED")
        wait_for(lambda: receiver.events("group.finished"), what="group.finished")
        [done] = wait_for(lambda: [e for e in receiver.events("job.finished") if e["job"]["id"] == ok])
        assert done["job"]["user"] == "artist1" and done["job"]["state"] == "FINISHED"
        [failed] = wait_for(lambda: receiver.events("job.failed"), what="job.failed")
        assert failed["job"]["id"] == bad and failed["job"]["fail_count"] == 1
        [finished_group] = receiver.events("group.finished")
        assert finished_group["job"]["total_finished"] == 3
        # One delivery per change, none per frame.
        assert sorted(e["job"]["id"] for e in receiver.events("job.finished")) == [ok, group]
        # A worker killed with -9 falls silent: worker.lost.
        worker.proc.send_signal(signal.SIGKILL)
        [lost] = wait_for(lambda: receiver.events("worker.lost"), timeout=30, what="worker.lost")
        assert lost["worker"]["name"] == "hookw"
        assert receiver.bad == [] and refusing.bad == []
        # The delivery status is visible: sent after a retry here, given up there. (The
        # sender records a delivery once its POST is answered: the receiver may see it first.)

        def settled() -> list[dict[str, Any]]:
            rows = server.api("GET", "/api/webhooks")
            return rows if all(d["status"] in ("sent", "failed") for d in rows) else []

        deliveries = wait_for(settled, what="every delivery sent or given up")
        mine = [d for d in deliveries if d["url"] == receiver.url]
        assert mine and all(d["status"] == "sent" for d in mine)
        assert max(d["attempts"] for d in mine) == 2  # the one that met the 503 went twice
        gone = [d for d in deliveries if d["url"] == refusing.url]
        assert gone and all(d["status"] == "failed" and "410" in d["last_error"] for d in gone)
        assert all(d["attempts"] == 1 for d in gone)
    finally:
        receiver.stop()
        refusing.stop()


def test_a_host_turning_sick_is_told_once_by_a_signed_webhook(
    make_server: Any, make_worker: Any, tmp_path: Any
) -> None:
    receiver = Receiver()
    try:
        server = make_server(webhooks=receiver.url, webhooksecret=SECRET, notifyinterval=0.1, sickjobs=2)
        # One host, two slots: a long run holds the first while two short ones fail on the
        # second and turn the host SICK; the long one then fails too, on a host already SICK.
        release = tmp_path / "release"
        make_worker(server.url, name="sickhook", workers=2)
        slow = server.submit(
            title="slow", command=f"while [ ! -e {release} ]; do sleep 0.05; done; exit 1", retry=0
        )
        wait_for(lambda: server.job(slow)["state"] == "WORKING", timeout=30, what="the slow run")
        first = server.submit(title="a", command="exit 1", retry=0)
        second = server.submit(title="b", command="exit 2", retry=0)
        [sick] = wait_for(lambda: receiver.events("worker.sick"), timeout=30, what="worker.sick")
        slots = {w["name"]: w for w in server.api("GET", "/api/workers")}
        assert set(slots) == {"sickhook-1", "sickhook-2"}
        worker = sick["worker"]
        assert worker["host"] == "sickhook" and worker["name"] in slots
        assert worker["reason"].startswith("sick: runs of 2 different jobs failed within 900 s")
        # Told in the transaction that turned it SICK: the slot is SICK by then.
        assert slots[worker["name"]]["state"] == "SICK"
        assert worker["reason"] == slots[worker["name"]]["reason"]
        assert worker["last_job"] in (first, second) and worker["ip"]
        release.write_text("go")  # the slow run fails now, on a host already SICK
        wait_for(lambda: server.job(slow)["state"] == "ERROR", timeout=30, what="the slow run's failure")
        failed = wait_for(lambda: len(receiver.events("job.failed")) == 3 and receiver.events("job.failed"))
        assert sorted(e["job"]["id"] for e in failed) == sorted([slow, first, second])
        wait_for(
            lambda: {w["state"] for w in server.api("GET", "/api/workers")} == {"SICK"},
            timeout=30,
            what="both slots SICK",
        )
        assert receiver.bad == []  # every signature good, every payload as the OpenAPI says
        # One host turned SICK once: one delivery, one SICK event.
        deliveries = [d for d in server.api("GET", "/api/webhooks") if d["event"] == "worker.sick"]
        assert [d["url"] for d in deliveries] == [receiver.url]
        assert len(receiver.events("worker.sick")) == 1
        events = server.api("GET", "/api/events", params={"howlong": 3600})
        assert [e["worker"] for e in events if e["state"] == "SICK"] == ["sickhook"]
    finally:
        receiver.stop()


def test_webhooks_need_a_secret(tmp_path: Any) -> None:
    from coalition.config import ConfigError, load_server_settings

    ini = tmp_path / "c.ini"
    ini.write_text("[server]\nwebhooks = http://127.0.0.1:9/h\n")
    try:
        load_server_settings(str(ini))
    except ConfigError as exc:
        assert "webhooksecret" in str(exc)
    else:
        raise AssertionError("webhooks without a secret were accepted")
    ini.write_text("[server]\nwebhooks = ftp://x\nwebhooksecret = s\n")
    try:
        load_server_settings(str(ini))
    except ConfigError as exc:
        assert "[server] webhooks" in str(exc) and "http://" in str(exc)
    else:
        raise AssertionError("a non-HTTP webhook URL was accepted")


def test_autoscaler_decisions_are_queued_with_their_event(tmp_path: Any) -> None:
    from coalition.joblogs import JobLogs
    from coalition.store import SqliteStore
    from coalition.usecases import Context
    from coalition.usecases.cloudfarm import CloudFarm
    from coalition.webhooks import WebhookSender, WebhookSettings

    store = SqliteStore(str(tmp_path / "c.db"))
    store.init()
    ctx = Context(store, JobLogs(str(tmp_path / "logs"), 1 << 20))
    sender = WebhookSender(WebhookSettings(("http://127.0.0.1:9/a", "http://127.0.0.1:9/b"), SECRET), store)
    ctx.on_event.append(sender.queue)
    CloudFarm(ctx).record_event("cloud: launched 2 instances (aws, linux)")
    rows = store.read(lambda tx: tx.outbox(10, "webhook"))
    assert sorted(r["recipient"] for r in rows) == ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]
    assert {r["subject"] for r in rows} == {"autoscaler.decision"}
    assert json.loads(rows[0]["body"])["decision"] == "cloud: launched 2 instances (aws, linux)"
    # Mail is another channel: the mail sender never sees a webhook.
    assert store.read(lambda tx: tx.due_mail(1e12, 10)) == []
    # And /metrics counts the decision (farm-wide, from the events).
    from coalition.usecases.reads import Reads

    assert Reads(ctx).farm_counts()["autoscaler"] == {"hour": 1}
