"""The tables behind sessions, the audit trail and the mail outbox, on SQLite and on a
private MariaDB (the two DDLs must stay in step), driven through the service with a
hand-moved clock; and the mail sender's retry policy against a scripted SMTP server."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coalition.audit import Actor
from coalition.joblogs import JobLogs
from coalition.model import JobSpec
from coalition.notify import MailSettings, Notifier
from coalition.store import MysqlStore, SqliteStore
from coalition.usecases import Context, Settings, UseCases
from coalition.usecases.access import Sessions
from coalition.usecases.messages import Ping


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        db: Any = SqliteStore(str(tmp_path / "c.db"))
    else:
        maria = request.getfixturevalue("mariadb")
        db = MysqlStore(maria.host, maria.port, maria.user, maria.password, maria.new_database())
    db.init()
    yield db
    db.close()


def test_sessions(store: Any, tmp_path: Path) -> None:
    clock = Clock()
    sessions = Sessions(
        Context(store, JobLogs(str(tmp_path / "logs"), 1 << 20), Settings(), clock), lifetime=100
    )
    token = sessions.login("alice")
    assert sessions.user(token) == "alice" and sessions.user(token + "x") is None
    clock.now += 101
    assert sessions.user(token) is None
    assert sessions.purge() == 1
    token = sessions.login("bob", "10.0.0.2")
    assert sessions.logout(token) == "bob" and sessions.user(token) is None and sessions.logout(token) is None
    actions = [r["action"] for r in store.read(lambda tx: tx.audit({}, 10))]
    assert actions.count("login") == 2 and actions.count("logout") == 1


def test_audit_filters(store: Any, tmp_path: Path) -> None:
    clock = Clock()
    uc = UseCases.over(Context(store, JobLogs(str(tmp_path / "logs"), 1 << 20), Settings(), clock))
    one = uc.operator.submit(JobSpec(title="a", command="true", user="alice"), Actor("alice", "10.0.0.1"))
    many = [
        uc.operator.submit(JobSpec(title=f"b{i}", command="true", user="bob"), Actor("admin"))
        for i in range(11)
    ]
    uc.operator.pause([one, many[-1]], Actor("wrangler"))
    everything = uc.reads.audit({}, 100)
    assert [e["action"] for e in everything[:2]] == ["pause", "pause"]  # one row per owner
    assert {tuple(e["jobs"]) for e in everything[:2]} == {(one,), (many[-1],)}
    # `job` matches whole ids only (job 1 is not job 11).
    assert [e["jobs"] for e in uc.reads.audit({"target": str(one)}, 100)] == [[one], [one]]
    alice_sees = uc.reads.audit({"viewer": "alice"}, 100)
    assert {(e["user"], e["action"]) for e in alice_sees} == {("alice", "create"), ("wrangler", "pause")}
    assert uc.reads.audit({"actor": "admin"}, 5)[0]["user"] == "admin"
    assert len(uc.reads.audit({"since": clock.now + 1}, 100)) == 0


def test_notifications_are_queued_in_the_state_change(store: Any, tmp_path: Path) -> None:
    clock = Clock()
    uc = UseCases.over(Context(store, JobLogs(str(tmp_path / "logs"), 1 << 20), Settings(), clock))
    sent: list[Any] = []
    notifier = Notifier(MailSettings(host="smtp", domain="s.test", notifyafter=2), store, clock, _smtp(sent))
    uc.ctx.on_transition.append(notifier.on_transition)
    group = uc.operator.submit(JobSpec(title="shot", command="", user="alice"))
    for i in range(4):
        uc.operator.submit(JobSpec(title=f"f{i}", command="true", parent=group, user="alice"))
    for _ in range(4):
        job = uc.workers.pick(Ping("w"))
        assert job is not None
        uc.workers.end(Ping("w"), job["id"], job["event"], 0, b"", None)
    queued = store.read(lambda tx: tx.outbox())
    assert sorted(r["subject"] for r in queued) == [
        f'[Coalition] Job "shot" ({group}) finished',
        f'[Coalition] Job "shot" ({group}): the first 2 of 4 jobs finished',
    ]
    assert notifier.drain() == 2 and len(sent) == 2
    assert notifier.drain() == 0  # sent once only
    # Resetting and finishing again: a new "finished" mail, but never a second "first 2".
    uc.operator.reset([group])
    for _ in range(4):
        job = uc.workers.pick(Ping("w"))
        assert job is not None
        uc.workers.end(Ping("w"), job["id"], job["event"], 0, b"", None)
    assert notifier.drain() == 1 and sent[-1]["Subject"].endswith("finished")


def test_sender_retries_with_backoff_then_gives_up(store: Any) -> None:
    clock = Clock()
    sent: list[Any] = []
    failures = {"left": 2}
    notifier = Notifier(MailSettings(host="smtp", interval=5), store, clock, _smtp(sent, failures))
    store.write(lambda tx: tx.enqueue_mail(_mail("a@s.test")))
    assert notifier.drain() == 0  # connection refused
    row = store.read(lambda tx: tx.outbox())[0]
    assert row["attempts"] == 1 and row["next_try"] == clock.now + 10 and "refused" in row["last_error"]
    assert notifier.drain() == 0  # not due yet: nothing attempted
    clock.now += 10
    assert notifier.drain() == 0
    clock.now += 20
    assert notifier.drain() == 1 and sent[0]["To"] == "a@s.test"
    # A permanent refusal (5xx) gives up at once, keeping the reason.
    store.write(lambda tx: tx.enqueue_mail(_mail("nobody@s.test")))
    assert notifier.drain() == 0
    bad = [r for r in store.read(lambda tx: tx.outbox()) if r["recipient"] == "nobody@s.test"][0]
    assert bad["status"] == "failed" and "550" in bad["last_error"]


def _mail(to: str) -> dict[str, Any]:
    return {
        "created_at": 0.0,
        "dedupe": None,
        "recipient": to,
        "subject": "s",
        "body": "b",
        "status": "queued",
        "attempts": 0,
        "next_try": 0.0,
        "last_error": "",
        "sent_at": 0.0,
    }


def _smtp(sent: list[Any], failures: dict[str, int] | None = None) -> Any:
    """A scripted smtplib.SMTP: refuses connections while `failures` lasts, refuses the
    recipient nobody@ permanently, keeps the rest."""

    class FakeSMTP:
        def __init__(self, host: str, port: int, timeout: float) -> None:
            if failures and failures["left"] > 0:
                failures["left"] -= 1
                raise ConnectionRefusedError("connection refused")

        def __enter__(self) -> FakeSMTP:
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

        def ehlo(self) -> None:
            pass

        def starttls(self, context: Any) -> None:
            pass

        def login(self, user: str, password: str) -> None:
            pass

        def close(self) -> None:
            pass

        def send_message(self, msg: Any) -> None:
            if msg["To"].startswith("nobody@"):
                raise smtplib.SMTPRecipientsRefused({msg["To"]: (550, b"no such user")})
            sent.append(msg)

    return FakeSMTP
