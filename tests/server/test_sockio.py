"""sockio's reader and writer: cheroot's interface over a real socket pair, byte for byte."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from coalition.server.sockio import SocketReader, SocketWriter

Pair = tuple[socket.socket, socket.socket]


@pytest.fixture
def pair() -> Iterator[Pair]:
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


def test_lines_and_a_body_then_a_pipelined_request_stays_buffered(pair: Pair) -> None:
    ours, peer = pair
    sent = b"POST /workers/sync HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n"
    peer.sendall(sent)
    reader = SocketReader(ours)
    assert list(iter(reader.readline, b"\r\n")) == [
        b"POST /workers/sync HTTP/1.1\r\n",
        b"Host: x\r\n",
        b"Content-Length: 5\r\n",
    ]
    assert reader.read(5) == b"hello"
    assert reader.has_data()  # a pipelined request: cheroot serves it at once
    assert reader.readline() == b"GET / HTTP/1.1\r\n"
    assert not reader.has_data()
    assert reader.bytes_read == len(sent)


def test_a_long_line_comes_in_pieces_and_lines_span_receives(pair: Pair) -> None:
    ours, peer = pair
    reader = SocketReader(ours, size=4)  # tiny receives: every line spans several
    peer.sendall(b"x" * 600 + b"\nshort\n")
    pieces = [reader.readline(256), reader.readline(256), reader.readline(256)]
    assert [len(p) for p in pieces] == [256, 256, 89] and pieces[2].endswith(b"\n")
    assert next(reader) == b"short\n"


def test_a_big_body_arrives_whole_across_many_receives(pair: Pair) -> None:
    ours, peer = pair
    body = bytes(range(256)) * 20_000  # 5 MB
    sender = threading.Thread(target=peer.sendall, args=(body + b"tail",))
    sender.start()
    reader = SocketReader(ours)
    assert reader.read(len(body)) == body
    sender.join()
    assert reader.read(4) == b"tail"


def test_the_end_of_the_stream(pair: Pair) -> None:
    ours, peer = pair
    peer.sendall(b"partial line")
    peer.shutdown(socket.SHUT_WR)
    reader = SocketReader(ours)
    assert reader.readline() == b"partial line"
    assert reader.readline() == b"" and reader.read(10) == b"" and reader.read() == b""
    assert list(reader) == []
    reader.close()
    assert reader.closed


def test_read_to_the_end(pair: Pair) -> None:
    ours, peer = pair
    peer.sendall(b"abc\ndef")
    peer.shutdown(socket.SHUT_WR)
    assert SocketReader(ours).read() == b"abc\ndef"


def test_a_silent_peer_times_out_as_with_cheroot(pair: Pair) -> None:
    ours, _ = pair
    ours.settimeout(0.05)
    with pytest.raises(socket.timeout):
        SocketReader(ours).readline()


def test_the_writer_sends_everything_and_counts(pair: Pair) -> None:
    ours, peer = pair
    writer = SocketWriter(ours)
    assert writer.write(b"HTTP/1.1 200 OK\r\n\r\n") == 19
    writer.write(bytearray(b"body"))
    writer.flush()
    assert writer.bytes_written == 23
    assert peer.recv(100) == b"HTTP/1.1 200 OK\r\n\r\nbody"
    writer.close()
    assert writer.closed
