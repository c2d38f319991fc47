"""The mmap ring reader on a hand-laid ring (a memfd with the kernel's layout): committed records
in order, discarded ones skipped, a record still being written ends the drain, wrap-around reads
through the second mapping, and the consumer position is handed back."""

from __future__ import annotations

import mmap
import os
import struct

import pytest

from sensor.ringbuf import BUSY_BIT, DISCARD_BIT, MmapRing

PAGE = mmap.PAGESIZE
SIZE = 2 * PAGE


class HandRing:
    """consumer page | producer page | data | data again (the kernel maps the data twice)."""

    def __init__(self) -> None:
        self.fd = os.memfd_create("ring")
        os.ftruncate(self.fd, 2 * PAGE + 2 * SIZE)
        self.mem = mmap.mmap(self.fd, 2 * PAGE + 2 * SIZE)
        self.prod = 0

    def put(self, body: bytes, flags: int = 0) -> None:
        rec = struct.pack("<II", len(body) | flags, 0) + body
        rec += b"\0" * (-len(rec) % 8)
        for i, byte in enumerate(rec):  # byte by byte: a record may wrap past the end
            at = (self.prod + i) % SIZE
            self.mem[2 * PAGE + at] = self.mem[2 * PAGE + SIZE + at] = byte
        self.prod += len(rec)
        struct.pack_into("<Q", self.mem, PAGE, self.prod)

    def commit_first_busy(self, at: int) -> None:
        length = struct.unpack_from("<I", self.mem, 2 * PAGE + at % SIZE)[0] & ~BUSY_BIT
        for base in (2 * PAGE, 2 * PAGE + SIZE):
            struct.pack_into("<I", self.mem, base + at % SIZE, length)

    def consumer(self) -> int:
        return int(struct.unpack_from("<Q", self.mem, 0)[0])


@pytest.fixture
def hand() -> HandRing:
    return HandRing()


def test_records_in_order_discards_skipped_busy_stops(hand: HandRing) -> None:
    ring = MmapRing(hand.fd, SIZE, wakeups=False)
    hand.put(b"first")
    hand.put(b"dropped", DISCARD_BIT)
    hand.put(b"x" * 13)
    busy_at = hand.prod
    hand.put(b"not yet", BUSY_BIT)
    hand.put(b"after")
    got: list[bytes] = []
    assert ring.drain(got.append) == 2
    assert got == [b"first", b"x" * 13]
    assert hand.consumer() == busy_at  # stopped at the uncommitted record, space before it released
    hand.commit_first_busy(busy_at)
    assert ring.drain(got.append) == 2
    assert got[2:] == [b"not yet", b"after"]
    assert hand.consumer() == hand.prod
    assert ring.drain(got.append) == 0


def test_a_record_wrapping_the_end_reads_whole(hand: HandRing) -> None:
    ring = MmapRing(hand.fd, SIZE, wakeups=False)
    filler = b"f" * (SIZE - 8 - 8 - 24)  # leaves 24 bytes before the end
    hand.put(filler)
    got: list[bytes] = []
    ring.drain(got.append)
    wrapped = bytes(range(200))
    hand.put(wrapped)  # header + 200 bytes: starts 24 bytes before the end, ends past it
    assert ring.drain(got.append) == 1
    assert got == [filler, wrapped]
    assert hand.consumer() == hand.prod


def test_many_records_release_space_as_they_go(hand: HandRing) -> None:
    ring = MmapRing(hand.fd, SIZE, wakeups=False)
    bodies = [bytes([i % 256]) * (1 + i % 30) for i in range(300)]
    got: list[bytes] = []
    for i in range(0, 300, 50):
        for b in bodies[i:i + 50]:
            hand.put(b)
        ring.drain(got.append)
    assert got == bodies
    assert hand.consumer() == hand.prod


def test_a_size_that_is_not_pages_is_refused() -> None:
    with pytest.raises(OSError, match="power-of-two number of pages"):
        MmapRing(-1, 3 * PAGE)
