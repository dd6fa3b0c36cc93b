"""The read deadlines (issue 12, slowloris; coalition/server/guard.py): a request's headers
must arrive within `headertimeout` seconds, its body within `bodytimeout` seconds plus one
per 64 KB. A connection past its deadline is closed and its thread freed, and the server
answers others all along.

The servers here shorten the two timeouts (they are `[server]` keys) so that each test takes
seconds; the 64 KB/s pace is the real one. The attackers' pauses are their pace (the attack
itself), read through select(); every wait for the server is on a condition.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Any

from tests.api.test_metrics import scrape, value
from tests.support import Pinger, read_answer, status_of, wait_for


def busy_threads(server: Any) -> float:
    """HTTP threads reading or answering a request now (the scrape itself is one)."""
    return value(scrape(server)["coalition_http_threads"], state="busy")


def cut(server: Any, late: str) -> float:
    """Connections the server cut for their late `late` ("headers" or "body")."""
    return value(scrape(server)["coalition_http_cut_total"], late=late)


def test_headers_trickled_past_the_deadline_are_cut_and_free_their_threads(make_server: Any) -> None:
    server = make_server(headertimeout=2)
    attackers: dict[socket.socket, float] = {}
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"GET /api/ping HTTP/1.1\r\nHost: victim\r\n")
        attackers[sock] = time.monotonic()
    closed: dict[socket.socket, float] = {}
    answers: list[bytes] = []
    most_busy = 0.0
    with Pinger(server.url) as pings:
        deadline = time.monotonic() + 2 + 6
        while len(closed) < len(attackers) and time.monotonic() < deadline:
            most_busy = max(most_busy, busy_threads(server))
            alive = [s for s in attackers if s not in closed]
            readable, _, _ = select.select(alive, [], [], 0.25)  # a header line every 0.25 s
            for sock in alive:
                if sock in readable:  # an answer, or the end of the connection
                    answers.append(read_answer(sock))
                    closed[sock] = time.monotonic()
                    continue
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    closed[sock] = time.monotonic()
    for sock in attackers:
        sock.close()
    assert len(closed) == len(attackers), f"{len(closed)} of {len(attackers)} cut"
    held = sorted(closed[s] - attackers[s] for s in attackers)
    assert 1.9 <= held[0] and held[-1] <= 2 + 3, held  # at the deadline, not before
    assert answers == [b""] * len(attackers), answers[:3]  # cut, not answered
    assert most_busy >= len(attackers)  # each held a thread while it trickled...
    wait_for(lambda: busy_threads(server) == 1, timeout=5, what="the threads to be freed")  # ...not after
    assert cut(server, "headers") == len(attackers) and cut(server, "body") == 0
    assert pings.worst < 1.0 and not pings.failures, (pings.worst, pings.failures[:3])


SIZE = 256 * 1024  # with bodytimeout = 1: 1 + 256 KB / 64 KB/s = a 5 s deadline


def send_slowly(request: str, port: int, body: bytes, step: int, pace: float, out: dict[str, Any]) -> None:
    """Send `request` ("PUT /api/jobs") with `body`, by `step` bytes every `pace` seconds; out:
    status (0: cut without an answer), answer, seconds from the end of the headers to the
    answer or the cut, bytes sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = f"{request} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode())
        started = time.monotonic()
        sent = 0
        answer = b""
        while time.monotonic() - started < 20:
            readable, _, _ = select.select([sock], [], [], pace if sent else 0)
            if readable:  # an answer, or the end of the connection
                answer = read_answer(sock)
                break
            if sent < len(body):
                try:
                    sock.sendall(body[sent : sent + step])
                except OSError:  # cut while sending
                    break
                sent += step
        out.update(
            status=status_of(answer),
            answer=answer.partition(b"\r\n\r\n")[2],
            seconds=time.monotonic() - started,
            sent=min(sent, len(body)),
        )


def test_a_body_slower_than_the_pace_is_cut_off_and_a_faster_one_is_taken(make_server: Any) -> None:
    server = make_server(bodytimeout=1)
    job = b'{"command": "true", "title": "fast enough"}'
    beat = b'{"name": "slow-worker"}'
    runs: dict[str, dict[str, Any]] = {"slow-api": {}, "slow-workers": {}, "fast": {}, "unread": {}}
    senders = [
        # 16 KB/s: a quarter of the pace, cut at 5 s with most of the body unsent
        ("PUT /api/jobs", server.port, job.ljust(SIZE), 8192, 0.5, runs["slow-api"]),
        ("POST /workers/heartbeat", server.port, beat.ljust(SIZE), 8192, 0.5, runs["slow-workers"]),
        # 128 KB/s: twice the pace; it takes 2 s, longer than bodytimeout, and is answered
        ("PUT /api/jobs", server.port, job.ljust(SIZE), 32768, 0.25, runs["fast"]),
        # a body nobody reads (an unknown route), trickled: small enough for the server to
        # read and drop before its 404, and cut at its own deadline: 1 s + 1 s per 64 KB
        ("POST /api/nope", server.port, b"x" * 65536, 2048, 0.5, runs["unread"]),
    ]
    threads = [threading.Thread(target=send_slowly, args=args, daemon=True) for args in senders]
    with Pinger(server.url) as pings:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    fast = runs["fast"]
    assert fast["status"] == 200 and fast["answer"].isdigit(), fast
    assert fast["seconds"] > 1.5  # outlasted bodytimeout: the deadline grows with the body
    assert server.job(int(fast["answer"]))["title"] == "fast enough"
    for name in ("slow-api", "slow-workers"):
        run = runs[name]
        assert run["status"] == 0 and run["sent"] < SIZE, (name, run)  # cut, without an answer
        assert 4.9 <= run["seconds"] <= 5 + 3, (name, run)  # at the deadline, not before
    unread = runs["unread"]
    assert unread["status"] == 0 and unread["sent"] < 65536 and 1.9 <= unread["seconds"] <= 2 + 3, unread
    wait_for(lambda: busy_threads(server) == 1, timeout=5, what="the threads to be freed")
    assert cut(server, "body") == 3 and cut(server, "headers") == 0
    assert pings.worst < 1.0 and not pings.failures, (pings.worst, pings.failures[:3])
