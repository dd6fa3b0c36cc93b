"""Effects happen once, after the commit, however often the engine runs a transaction.

* SQLite group commit: one member of a batch fails; the batch is rolled back and the others
  are run again. Their effects (log lines) appear exactly once, and the failed member's
  effects not at all.
* MariaDB: the connection is cut right after the server committed, before its answer reaches
  us (a loopback proxy between PyMySQL and a private MariaDB drops the COMMIT's OK packet).
  The engine reconnects and runs the submission again; its idempotency key makes that rerun
  return the jobs already created instead of creating them twice.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coalition.errors import NotFound
from coalition.joblogs import JobLogs
from coalition.model import JobEdit, JobSpec
from coalition.store import MysqlStore, SqliteStore
from coalition.usecases import Context, Settings, UseCases
from coalition.usecases.messages import Ping
from tests.support import Clock, wait_for


def _farm(store: Any, tmp_path: Path) -> UseCases:
    store.init()
    return UseCases.over(Context(store, JobLogs(str(tmp_path / "logs"), 1 << 20), Settings(), Clock()))


def test_sqlite_group_commit_member_failure_applies_effects_once(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "coalition.db"))
    uc = _farm(store, tmp_path)
    paused, beating, doomed = (uc.operator.submit(JobSpec(title=t, command="sleep 100")) for t in "abc")
    running = {}
    for name in ("w1", "w2", "w3"):
        job = uc.workers.pick(Ping(name))
        assert job is not None
        running[job["id"]] = (name, job["event"])
    assert set(running) == {paused, beating, doomed}

    # A first writer holds the group commit open, so the next three queue into one batch.
    inside, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=store.write, args=(lambda tx: (inside.set(), release.wait(10)),))
    holder.start()
    assert inside.wait(10)
    outcomes: dict[str, Any] = {}

    def run(key: str, fn: Any) -> None:
        try:
            outcomes[key] = fn()
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcomes[key] = exc

    w_name, w_event = running[beating]
    members = [
        ("pause", lambda: uc.operator.pause([paused])),
        # Pauses a running job (an effect: a log note), then fails on an unknown job.
        (
            "fails",
            lambda: uc.operator.edit({doomed: JobEdit({"paused": True}), 999999: JobEdit({"paused": True})}),
        ),
        ("beat", lambda: uc.workers.heartbeat(Ping(w_name), beating, w_event, b"frame 1 of 9\n", 0)),
    ]
    threads = []
    for i, (key, fn) in enumerate(members):
        t = threading.Thread(target=run, args=(key, fn))
        t.start()
        threads.append(t)
        queued = i + 1
        wait_for(lambda n=queued: store.queued_writes() == n, what=f"{queued} queued writes")
    release.set()
    for t in [holder, *threads]:
        t.join(20)

    assert isinstance(outcomes["fails"], NotFound)
    assert outcomes["pause"] is None and not outcomes["beat"].kill
    assert uc.reads.log(paused).count("paused: the server told the worker to kill the job") == 1
    assert uc.reads.log(beating).count("frame 1 of 9") == 1
    # The failed member changed nothing, on disk neither.
    assert "paused" not in uc.reads.log(doomed)
    assert uc.reads.job(doomed)["state"] == "WORKING"
    store.close()


class CommitCutter:
    """A loopback TCP proxy to MariaDB that, when armed, lets one COMMIT through and cuts the
    connection before the server's answer comes back: the commit happened, the client
    cannot know."""

    COMMIT = b"\x03COMMIT"

    def __init__(self, port: int):
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.cuts = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            cut = threading.Event()
            threading.Thread(target=self._upstream, args=(client, server, cut), daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client, cut), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket, cut: threading.Event) -> None:
        buf = b""
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buf += data
                while len(buf) >= 4:  # whole MySQL packets: 3-byte length, sequence, payload
                    size = int.from_bytes(buf[:3], "little") + 4
                    if len(buf) < size:
                        break
                    packet, buf = buf[:size], buf[size:]
                    if self.armed.is_set() and packet[4:] == self.COMMIT:
                        self.armed.clear()
                        cut.set()  # before the server can answer
                    server.sendall(packet)
        except OSError:
            pass
        finally:
            _hang_up(server)

    def _downstream(self, server: socket.socket, client: socket.socket, cut: threading.Event) -> None:
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                if cut.is_set():  # the COMMIT's OK: swallowed, and the client cut off
                    self.cuts += 1
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            # shutdown, not only close: the other pump is blocked in recv on these sockets,
            # and a close alone would neither wake it nor send the FIN PyMySQL waits for.
            _hang_up(client)
            _hang_up(server)

    def close(self) -> None:
        self._closed = True
        self.listener.close()


def _hang_up(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone
    sock.close()


@pytest.fixture
def cutter(mariadb: Any) -> Iterator[tuple[CommitCutter, Any]]:
    proxy = CommitCutter(mariadb.port)
    yield proxy, mariadb
    proxy.close()


@pytest.mark.mysql
def test_mysql_commit_answer_lost_creates_no_job_twice(
    cutter: tuple[CommitCutter, Any], tmp_path: Path
) -> None:
    proxy, db = cutter
    name = db.new_database()
    store = MysqlStore(db.host, proxy.port, db.user, db.password, name)
    uc = _farm(store, tmp_path)
    proxy.armed.set()
    ids = uc.operator.submit_many(
        [JobSpec(title="once", command="true"), JobSpec(title="twice?", command="true")]
    )
    assert proxy.cuts == 1, "the COMMIT's answer was not cut: the test proved nothing"
    direct = MysqlStore(db.host, db.port, db.user, db.password, name)
    rows, total = direct.read(lambda tx: tx.list_jobs({}, "id", False, 0, None))
    assert total == 2 and [r["id"] for r in rows] == ids
    assert [r["title"] for r in rows] == ["once", "twice?"]
    direct.close()
    store.close()


@pytest.mark.mysql
def test_mysql_commit_answer_lost_applies_log_effects_once(
    cutter: tuple[CommitCutter, Any], tmp_path: Path
) -> None:
    proxy, db = cutter
    store = MysqlStore(db.host, proxy.port, db.user, db.password, db.new_database())
    uc = _farm(store, tmp_path)
    jid = uc.operator.submit(JobSpec(title="a", command="sleep 100"))
    job = uc.workers.pick(Ping("w1"))
    assert job is not None and job["id"] == jid
    proxy.armed.set()
    beat = uc.workers.heartbeat(Ping("w1"), jid, job["event"], b"line one\n", 0)
    assert proxy.cuts == 1 and not beat.kill
    # The rerun found the log offset already advanced: the chunk is appended once.
    assert uc.reads.log(jid) == "line one\n"
    store.close()
