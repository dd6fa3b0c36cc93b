"""The run log buffer: nothing leaves it before the server has it; memory stays bounded."""

from __future__ import annotations

import random

from coalition.worker.spool import RunLog


def drain(log: RunLog, received: bytearray, limit: int) -> None:
    while True:
        offset, chunk = log.pending(limit)
        if not chunk:
            return
        assert offset == len(received)
        received += chunk
        log.ack(offset + len(chunk))


def test_round_trip_through_memory_and_disk(tmp_path) -> None:
    rng = random.Random(7)
    data = rng.randbytes(3_000_000)
    log = RunLog(str(tmp_path), memory_limit=100_000)
    received = bytearray()
    pos = 0
    while pos < len(data):
        n = rng.randint(1, 70_000)
        log.write(data[pos : pos + n])
        pos += n
        if rng.random() < 0.2:  # the server answers now and then
            offset, chunk = log.pending(rng.randint(1, 300_000))
            received += chunk
            assert offset + len(chunk) == len(received)
            log.ack(offset + len(chunk))
        assert len(log._mem) <= 100_000 + 70_000  # bounded memory, whatever the backlog
    drain(log, received, 262_144)
    assert bytes(received) == data
    assert log.size == log.acked == len(data)
    assert not log.spooled
    log.close()


def test_unacknowledged_output_is_resent() -> None:
    log = RunLog(memory_limit=10)
    log.write(b"0123456789abcdef")  # spills to disk
    assert log.spooled
    assert log.pending(4) == (0, b"0123")
    # No answer came (the server was away): the same bytes again.
    assert log.pending(100) == (0, b"0123456789abcdef")
    log.ack(6)
    assert log.pending(100) == (6, b"6789abcdef")
    log.ack(3)  # a late answer for older bytes changes nothing
    assert log.pending(100) == (6, b"6789abcdef")
    log.ack(16)
    assert log.pending(100) == (16, b"")


def test_disk_limit_drops_and_counts_but_keeps_notes() -> None:
    log = RunLog(memory_limit=8, disk_limit=20)
    log.write(b"a" * 15)
    log.write(b"b" * 10)  # over the limit: dropped
    log.write(b"note", force=True)
    assert log.dropped == 10
    assert log.pending(100) == (0, b"a" * 15 + b"note")
    log.close()
