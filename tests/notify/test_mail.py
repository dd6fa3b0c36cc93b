"""E-mail notifications: which changes call for a mail (pure), and delivery by the background
sender over STARTTLS with a login to a local aiosmtpd sink, retried while the sink is down."""

from __future__ import annotations

import base64
import sqlite3
import ssl
import threading
from pathlib import Path
from typing import Any

from coalition.hierarchy import Transition
from coalition.notify import mails_for, recipient
from tests.authfarm import TOKEN, AuthServer, make_cert
from tests.conftest import free_port
from tests.support import require, wait_for

SMTP_USER, SMTP_PASSWORD = "coalition", "smtp-secret"


def test_recipients() -> None:
    assert recipient("bob@studio.test", "") == "bob@studio.test"
    assert recipient("artist1", "studio.test") == "artist1@studio.test"
    assert recipient("artist1", "") is None
    assert recipient("", "studio.test") is None
    assert recipient("a\r\nBcc: x@evil.example", "studio.test") is None  # no header injection


def _row(**kw: Any) -> dict[str, Any]:
    row = {"id": 7, "title": "shot", "user": "artist1", "children": 0, "run_done": 1, "fail_count": 0}
    row.update(total=0, total_finished=0, total_errors=0, total_working=0)
    row.update(kw)
    return row


def test_which_changes_send_mail() -> None:
    top = _row()
    assert [
        m.subject for m in mails_for(Transition(7, 0, "WORKING", "FINISHED"), top, None, 10, "s.test")
    ] == ['[Coalition] Job "shot" (7) finished']
    errors = mails_for(Transition(7, 0, "WORKING", "ERROR"), top, None, 10, "s.test")
    assert (
        errors[0].subject.startswith("[Coalition] ERRORS in job") and errors[0].recipient == "artist1@s.test"
    )
    # A frame inside a group: no mail of its own...
    group = _row(id=1, children=5, total=5, total_finished=1)
    assert mails_for(Transition(9, 1, "WORKING", "FINISHED"), None, group, 2, "s.test") == []
    # ...but the frame that makes the first N finished sends one, once (a dedupe key).
    group["total_finished"] = 2
    first = mails_for(Transition(9, 1, "WORKING", "FINISHED"), None, group, 2, "s.test")
    assert len(first) == 1 and first[0].dedupe == "first:1" and "first 2 of 5" in first[0].subject
    group["total_finished"] = 3
    assert mails_for(Transition(9, 1, "WORKING", "FINISHED"), None, group, 2, "s.test") == []
    # notifyafter = 0 disables it; a group no bigger than N gets its "finished" mail only.
    assert (
        mails_for(
            Transition(9, 1, "WORKING", "FINISHED"), None, _row(children=2, total=2, total_finished=2), 2, "x"
        )
        == []
    )
    assert mails_for(Transition(9, 1, "WORKING", "FINISHED"), None, group, 0, "s.test") == []
    # Other changes are not news; a title cannot inject header lines.
    assert mails_for(Transition(7, 0, "WAITING", "WORKING"), top, None, 10, "s.test") == []
    evil = mails_for(
        Transition(7, 0, "WORKING", "FINISHED"), _row(title="x\r\nBcc: a@b.c"), None, 1, "s.test"
    )
    assert "\n" not in evil[0].subject and "\r" not in evil[0].subject


class Sink:
    """An aiosmtpd server that requires STARTTLS and a login, and keeps what it receives."""

    def __init__(self, port: int, cert: Any):
        try:
            from aiosmtpd.controller import Controller
        except ImportError:
            require(False, "aiosmtpd not installed: pip install 'coalition[test]'")
        from aiosmtpd.smtp import AuthResult

        self.messages: list[Any] = []
        self.lock = threading.Lock()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert.cert, cert.key)
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                import email

                with sink.lock:
                    sink.messages.append(
                        (session.authenticated, envelope.rcpt_tos, email.message_from_bytes(envelope.content))
                    )
                return "250 OK"

        def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
            good = data.login == SMTP_USER.encode() and data.password == SMTP_PASSWORD.encode()
            return AuthResult(success=good)

        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=port,
            tls_context=context,
            require_starttls=True,
            authenticator=check,
            auth_required=True,
        )

    def __enter__(self) -> Sink:
        self.controller.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.controller.stop()

    def received(self) -> list[Any]:
        with self.lock:
            return list(self.messages)


def _mail_keys(port: int, cert: Any, **extra: Any) -> dict[str, Any]:
    return {
        "smtphost": "127.0.0.1",
        "smtpport": port,
        "smtptls": 1,
        "smtpcacert": cert.cert,
        "smtpsender": "farm@studio.test",
        "smtplogin": SMTP_USER,
        "smtppasswd": SMTP_PASSWORD,
        "smtpdomain": "studio.test",
        "notifyinterval": 0.1,
        "workertoken": TOKEN,
        **extra,
    }


def _run(farm: AuthServer, jid: int, code: int = 0) -> None:
    tag = f"m{jid}"
    farm.request("POST", "/api/jobs", {str(jid): {"affinity": tag}}).raise_for_status()
    job = farm.worker("pickjob", {"name": f"w{jid}", "affinity": tag}).json()["job"]
    assert job and job["id"] == jid
    body = {"name": f"w{jid}", "job_id": jid, "event": job["event"], "exit_code": code}
    body["log"] = base64.b64encode(b"PROGRESS:100\n").decode()
    assert farm.worker("endjob", body).status_code == 200


def test_group_mails_once_after_n_and_once_at_the_end(make_auth_server: Any, tmp_path: Path) -> None:
    cert = make_cert(tmp_path / "tls")
    port = free_port()
    with Sink(port, cert) as sink:
        farm = make_auth_server(**_mail_keys(port, cert, notifyafter=2))
        group = farm.submit(title="shot 10", command="", user="artist1")
        frames = [farm.submit(title=f"f{i}", command="true", parent=group, user="artist1") for i in range(5)]
        failing = farm.submit(title="lone", command="false", user="bob@elsewhere.test", retry=0)
        for jid in frames:
            _run(farm, jid)
        _run(farm, failing, code=1)
        got = wait_for(lambda: len(sink.received()) >= 3 and sink.received(), timeout=15, what="3 mails")
        subjects = sorted(m["Subject"] for _, _, m in got)
        assert subjects == [
            f'[Coalition] ERRORS in job "lone" ({failing})',
            f'[Coalition] Job "shot 10" ({group}) finished',
            f'[Coalition] Job "shot 10" ({group}): the first 2 of 5 jobs finished',
        ]
        # Delivered over STARTTLS after logging in; to the address, or login@smtpdomain.
        assert all(auth for auth, _, _ in got)
        rcpts = {m["Subject"]: to for _, to, m in got}
        assert rcpts[subjects[0]] == ["bob@elsewhere.test"] and rcpts[subjects[1]] == ["artist1@studio.test"]
        assert all(m["From"] == "farm@studio.test" and m["Auto-Submitted"] for _, _, m in got)
        # Five frames, three mails: and no more arrive (the outbox is empty of queued mail).
        db = sqlite3.connect(str(farm.datadir / "coalition.db"))
        wait_for(lambda: db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'queued'").fetchone()[0] == 0)
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 3
        db.close()
        assert len(sink.received()) == 3


def test_mail_waits_for_a_server_that_is_down(make_auth_server: Any, tmp_path: Path) -> None:
    cert = make_cert(tmp_path / "tls")
    port = free_port()  # nothing listens there yet
    farm = make_auth_server(**_mail_keys(port, cert))
    jid = farm.submit(title="late", command="true", user="artist2")
    _run(farm, jid)  # the request returns although no mail can go: it is sent in the background
    db = sqlite3.connect(str(farm.datadir / "coalition.db"))

    def failed_once() -> bool:
        row = db.execute("SELECT attempts, last_error, status FROM outbox").fetchone()
        return bool(row and row[0] >= 1 and row[1] and row[2] == "queued")

    wait_for(failed_once, timeout=15, what="a failed delivery attempt")
    with Sink(port, cert) as sink:
        got = wait_for(sink.received, timeout=20, what="the retried mail")
        assert got[0][2]["Subject"] == f'[Coalition] Job "late" ({jid}) finished'
    wait_for(lambda: db.execute("SELECT status FROM outbox").fetchone()[0] == "sent")
    db.close()


def test_an_untrusted_smtp_certificate_is_never_used(make_auth_server: Any, tmp_path: Path) -> None:
    cert = make_cert(tmp_path / "tls")
    other = make_cert(tmp_path / "other")  # the server trusts a different CA
    port = free_port()
    with Sink(port, cert) as sink:
        farm = make_auth_server(**_mail_keys(port, other))
        jid = farm.submit(title="x", command="true", user="artist1")
        _run(farm, jid)
        db = sqlite3.connect(str(farm.datadir / "coalition.db"))
        wait_for(
            lambda: (
                "CERTIFICATE_VERIFY_FAILED"
                in (db.execute("SELECT last_error FROM outbox").fetchone() or ("",))[0]
            )
        )
        db.close()
        assert sink.received() == []
