"""The worker's HTTP link against a scripted local HTTP server: answers, error classes,
token header, keep-alive reconnection; and the backoff."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from coalition.worker.link import Backoff, Refused, ServerLink, Unreachable, jittered


class Scripted:
    """Answers each POST with the next (status, body, headers) of `script`."""

    def __init__(self) -> None:
        self.script: list[tuple[int, bytes, dict[str, str], bool]] = []
        self.seen: list[tuple[str, Any, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real server does

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                outer.seen.append((self.path, json.loads(self.rfile.read(length)), dict(self.headers)))
                status, body, headers, drop = outer.script.pop(0)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                # `drop`: close the kept-alive connection without saying so, as a server that
                # restarted or timed the connection out does.
                self.close_connection = drop

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, status: int, body: Any, drop: bool = False, **headers: str) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.script.append((status, data, headers, drop))


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_answers_token_and_keep_alive(scripted: Scripted) -> None:
    scripted.answer(200, {"job": {"id": 3}})
    scripted.answer(200, {"job": None})
    scripted.answer(200, {"ok": True}, Connection="close")
    scripted.answer(200, {"ok": True})
    link = ServerLink(scripted.url + "/", token="s3cret")
    assert link.pickjob({"name": "w"}) == {"id": 3}
    assert link.pickjob({"name": "w"}) is None
    assert link.heartbeat({"name": "w"}) == {"ok": True}
    assert link.endjob({"name": "w"}) == {"ok": True}  # a new connection after "Connection: close"
    path, body, headers = scripted.seen[0]
    assert (path, body, headers["X-Coalition-Token"]) == ("/workers/pickjob", {"name": "w"}, "s3cret")
    link.close()


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (503, {"error": "busy"}, Unreachable),
        (502, b"<html>bad gateway</html>", Unreachable),
        (200, b"<html>proxy</html>", Unreachable),
        (401, {"error": "bad worker token"}, Refused),
        (400, {"error": "name must be a non-empty string"}, Refused),
    ],
)
def test_failures(scripted: Scripted, status: int, body: Any, error: type[Exception]) -> None:
    scripted.answer(status, body)
    with pytest.raises(error) as err:
        ServerLink(scripted.url).heartbeat({"name": "w"})
    if isinstance(body, dict):
        assert body["error"] in str(err.value)
    if error is Refused:
        assert err.value.status == status


def test_no_server() -> None:
    with pytest.raises(Unreachable, match="refused"):
        ServerLink("http://127.0.0.1:9").heartbeat({"name": "w"})


def test_a_silently_closed_connection_is_reopened(scripted: Scripted) -> None:
    scripted.answer(200, {"ok": 1}, drop=True)
    scripted.answer(200, {"ok": 2})
    link = ServerLink(scripted.url)
    assert link.heartbeat({"name": "w"}) == {"ok": 1}
    assert link.heartbeat({"name": "w"}) == {"ok": 2}  # one new connection, no error
    assert len(scripted.seen) == 2


def test_backoff_grows_to_the_cap_and_resets() -> None:
    b = Backoff(initial=0.5, cap=4, jitter=0.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 0.5


def test_jitter_bounds() -> None:
    assert jittered(10, 0.1, lambda: 0.0) == 9.0
    assert jittered(10, 0.1, lambda: 1.0) == 11.0


class RawServer:
    """Answers each connection's requests with the next raw byte strings of `answers` (one
    per request), then closes the connection when told to: answers as proxies send them."""

    def __init__(self, answers: list[bytes], close_after: bool = False) -> None:
        import socket

        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.close_after = close_after
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as rfile:
                while self.answers:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        byte = rfile.read(1)
                        if not byte:
                            break
                        head += byte
                    if not head:
                        break
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    self.requests.append(head + rfile.read(length))
                    conn.sendall(self.answers.pop(0))
                    if self.close_after:
                        break

    def stop(self) -> None:
        self.listener.close()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # Chunked, as a proxy in front of the server may answer, with a trailer.
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'5;x=1\r\n{"ok"\r\n6\r\n: true\r\n1\r\n}\r\n0\r\nX-T: 1\r\n\r\n',
            {"ok": True},
        ),
        # A 100 Continue first, then the answer.
        (b'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"ok": 1}  ', {"ok": 1}),
        # HTTP/1.0 without a length: the body ends with the connection.
        (b'HTTP/1.0 200 OK\r\n\r\n{"ok": 2}', {"ok": 2}),
    ],
)
def test_answers_as_proxies_send_them(answer: bytes, expected: dict[str, Any]) -> None:
    raw = RawServer([answer], close_after=True)
    try:
        assert ServerLink(raw.url, token="t").heartbeat({"name": "w"}) == expected
        # The whole request went in one write: headers and body arrived together.
        [request] = raw.requests
        assert request.startswith(b"POST /workers/heartbeat HTTP/1.1\r\n") and request.endswith(
            b'{"name": "w"}'
        )
        assert b"\r\nX-Coalition-Token: t\r\n" in request
    finally:
        raw.stop()


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.2\r\n",  # not HTTP at all
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}",  # ends inside the body
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n",  # a header line past the limit
    ],
)
def test_broken_answers_are_unreachable_not_crashes(answer: bytes) -> None:
    raw = RawServer([answer], close_after=True)
    try:
        with pytest.raises(Unreachable):
            ServerLink(raw.url).heartbeat({"name": "w"})
    finally:
        raw.stop()


def test_a_token_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="one line"):
        ServerLink("http://127.0.0.1:9", token="a\r\nX-Evil: 1")
