"""E-mail notifications: a job's owner hears when a top-level job (or group) finishes or
fails, and once when the first `notifyafter` jobs of a top-level group have finished.
Never one mail per frame.

Mails are queued in the `outbox` table inside the transaction that changes the job's state
(so a committed state change always has its mail, and a rolled-back one never does) and sent
by `Notifier.drain`, a periodic task that runs on the one server holding the `notifier`
lease. A failed delivery is retried with a growing delay; a permanent refusal (5xx) or too
many attempts gives the mail up, keeping the error in the row.
"""

from __future__ import annotations

import email.utils
import logging
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from .hierarchy import Transition
from .model import ERROR, FINISHED
from .outbox import Outbox
from .store.base import Row, Store, Tx

log = logging.getLogger("coalition.notify")

_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"\\]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+")
_LOCAL = re.compile(r"[A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class MailSettings:
    """The `smtp*` keys of `[server]`, `notifyafter`, and how often the outbox is drained."""

    host: str = ""
    port: int = 587
    tls: bool = True  # STARTTLS, with the certificate verified
    sender: str = ""
    login: str = ""
    password: str = ""
    domain: str = ""  # mail `login@domain` when a job's user is not an address
    cacert: str = ""  # CA bundle for a private SMTP server certificate
    notifyafter: int = 10
    interval: float = 5.0
    timeout: float = 20.0

    @property
    def enabled(self) -> bool:
        """Whether mail is configured at all (`smtphost`)."""
        return bool(self.host)

    @classmethod
    def from_server(cls, s: Any) -> MailSettings:
        """From a `coalition.config.ServerSettings`."""
        return cls(
            host=s.smtphost,
            port=s.smtpport,
            tls=s.smtptls,
            sender=s.smtpsender,
            login=s.smtplogin,
            password=s.smtppasswd,
            domain=s.smtpdomain,
            cacert=s.smtpcacert,
            notifyafter=s.notifyafter,
            interval=s.notifyinterval,
        )


def recipient(user: str, domain: str) -> str | None:
    """Where a job owner's mail goes: the `user` field if it is an address, else
    `user@smtpdomain`; None when neither works (no mail)."""
    user = user.strip()
    if _ADDRESS.fullmatch(user):
        return user
    if domain and _LOCAL.fullmatch(user):
        return f"{user}@{domain}"
    return None


@dataclass(frozen=True)
class Mail:
    """One queued message."""

    recipient: str
    subject: str
    body: str
    dedupe: str | None = None


def _title(row: Row) -> str:
    # Titles are user text: no line breaks in a header, and not a novel either.
    return re.sub(r"[\x00-\x1f\x7f]+", " ", str(row["title"]))[:120]


def mails_for(t: Transition, job: Row | None, root: Row | None, notifyafter: int, domain: str) -> list[Mail]:
    """The mails a state change calls for (pure: rows in, mails out).

    `job` is the row of the job that changed; `root` the row of its top-level ancestor (for
    a nested job)."""
    if t.new == t.old or t.new not in (FINISHED, ERROR):
        return []
    if t.parent == 0 and job is not None:
        to = recipient(job["user"], domain)
        if to is None:
            return []
        name = f'"{_title(job)}" ({job["id"]})'
        if job["children"]:
            counts = (
                f"{job['total_finished']} of {job['total']} jobs finished, "
                f"{job['total_errors']} in error, {job['total_working']} running."
            )
        else:
            counts = f"Runs: {job['run_done']}, failed runs: {job['fail_count']}."
        if t.new == FINISHED:
            return [Mail(to, f"[Coalition] Job {name} finished", f"The job {name} finished.\n\n{counts}\n")]
        return [Mail(to, f"[Coalition] ERRORS in job {name}", f"The job {name} has errors.\n\n{counts}\n")]
    if t.new == FINISHED and notifyafter > 0 and root is not None and root["children"]:
        if root["total_finished"] != notifyafter or root["total"] <= notifyafter:
            return []  # not the crossing (or the "finished" mail will say it all at once)
        to = recipient(root["user"], domain)
        if to is None:
            return []
        name = f'"{_title(root)}" ({root["id"]})'
        return [
            Mail(
                to,
                f"[Coalition] Job {name}: the first {notifyafter} of {root['total']} jobs finished",
                f"The first {notifyafter} of the {root['total']} jobs of {name} finished.\n",
                dedupe=f"first:{root['id']}",
            )
        ]
    return []


class Notifier:
    """Queues mails on job state changes and sends the queue in the background."""

    def __init__(
        self,
        settings: MailSettings,
        store: Store,
        clock: Callable[[], float] = time.time,
        smtp: Callable[..., smtplib.SMTP] = smtplib.SMTP,
    ):
        self.settings = settings
        self.store = store
        self.clock = clock
        self._smtp = smtp
        self.sender = settings.sender or f"coalition@{socket.getfqdn()}"
        self.outbox = Outbox(store, clock, "mail", settings.interval, settings.timeout)
        if settings.login and not settings.tls:
            log.warning("smtplogin is set with smtptls off: the SMTP password travels in clear")

    # -- inside a job transaction -------------------------------------------------------------
    def on_transition(self, tx: Tx, t: Transition) -> None:
        """Queue the mails a job state change calls for (runs inside its transaction)."""
        if t.new == t.old or t.new not in (FINISHED, ERROR):
            return
        job = root = None
        if t.parent == 0:
            job = tx.job(t.job_id)
        elif t.new == FINISHED and self.settings.notifyafter > 0:
            root = _top(tx, t.parent)
        else:
            return
        for mail in mails_for(t, job, root, self.settings.notifyafter, self.settings.domain):
            tx.enqueue_mail(self.outbox.queued(mail.recipient, mail.subject, mail.body, mail.dedupe))

    # -- the background sender ------------------------------------------------------------------
    def drain(self, batch: int = 50) -> int:
        """Send the mails that are due; returns how many were sent."""
        return self.outbox.drain(self._deliver, batch)

    def _deliver(self, rows: list[Row]) -> dict[int, dict[str, Any]]:
        outcomes: dict[int, dict[str, Any]] = {}
        pending = list(rows)
        try:
            with self._connect() as smtp:
                while pending:
                    row = pending[0]
                    try:
                        smtp.send_message(self._message(row))
                        outcomes[row["id"]] = self.outbox.sent()
                    except smtplib.SMTPRecipientsRefused as exc:
                        outcomes[row["id"]] = self._failed(row, _smtp_error(exc), permanent=_permanent(exc))
                    except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
                        outcomes[row["id"]] = self._failed(
                            row, _smtp_error(exc), permanent=exc.smtp_code >= 500
                        )
                    pending.pop(0)
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            # The connection failed: every mail not yet handed over tries again later.
            for row in pending:
                outcomes[row["id"]] = self._failed(row, _smtp_error(exc))
            log.warning("mail to %s:%s failed: %s", self.settings.host, self.settings.port, _smtp_error(exc))
        return outcomes

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        smtp = self._smtp(s.host, s.port, timeout=s.timeout)
        try:
            smtp.ehlo()
            if s.tls:
                # Verified against the system CAs or smtpcacert; never falls back to clear text.
                smtp.starttls(context=ssl.create_default_context(cafile=s.cacert or None))
                smtp.ehlo()
            if s.login:
                smtp.login(s.login, s.password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _message(self, row: Row) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = row["recipient"]
        msg["Subject"] = row["subject"]
        msg["Date"] = email.utils.formatdate(localtime=True)
        msg["Message-ID"] = email.utils.make_msgid(domain=self.sender.rpartition("@")[2] or None)
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
        msg.set_content(row["body"])
        return msg

    def _failed(self, row: Row, error: str, permanent: bool = False) -> dict[str, Any]:
        return self.outbox.failed(row, error, permanent)


def _top(tx: Tx, job_id: int) -> Row | None:
    """The top-level ancestor of a job (the job itself at the top)."""
    row = tx.job(job_id)
    seen: set[int] = set()
    while row is not None and row["parent"] and row["parent"] not in seen:
        seen.add(row["id"])
        row = tx.job(row["parent"])
    return row


def _permanent(exc: smtplib.SMTPRecipientsRefused) -> bool:
    return all(code >= 500 for code, _ in exc.recipients.values())


def _smtp_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
