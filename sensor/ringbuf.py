"""The consumer side of a BPF ring buffer, read through mmap instead of libbpf's callbacks.

libbpf's ``ring_buffer__consume`` calls back into Python once per record, through ctypes and
BCC's wrapper: three Python frames, a foreign-function trampoline and a ``string_at`` copy each.
On an exec storm that was a fifth of the sensor's CPU. The ring's layout is kernel ABI
(``kernel/bpf/ringbuf.c``, used the same way by libbpf's ``ringbuf.c``), so the reader walks it
itself:

- page 0, read-write: the consumer position, which only we advance;
- page 1, read-only: the producer position, advanced by the kernel at each reserve;
- then the data pages, mapped twice in a row, so a record that wraps reads contiguously.

Each record starts with an 8-byte header: a u32 length whose bit 31 says the producer has not
committed it yet (stop there) and bit 30 that it was discarded (skip it), then a u32 page offset
the kernel uses. Records are 8-byte aligned. Positions are u64 byte counters; x86 and arm64 read
an aligned u64 in one access, and on x86 loads are not reordered with loads, so reading the
producer position before the records it covers needs no fence.

Every shared word is read and written through a memoryview cast to its width ("Q", "I"), which
CPython moves with one memcpy, i.e. one aligned load or store. Not through ``struct``:
``pack_into`` zeroes its target before writing the value, so the kernel could read a consumer
position of 0 mid-update, decide the ring was full and refuse a reserve. That cost one to three
records per 10 s exec storm on an idle 1 MiB ring until it was found; ``unpack_from`` reads
little-endian fields a byte at a time, and could tear the producer position the same way.
"""

from __future__ import annotations

import mmap
import select
from typing import Callable

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HDR_SIZE = 8
# Hand space back to the producer at least this often within one drain, as libbpf does per record.
RELEASE_EVERY = 256


class RingError(OSError):
    """The ring buffer map cannot be mapped (not a ring buffer, or a kernel before 5.8)."""


class MmapRing:
    def __init__(self, map_fd: int, size: int, *, wakeups: bool = True) -> None:
        if size <= 0 or size & (size - 1) or size % mmap.PAGESIZE:
            raise RingError(f"ring buffer size {size} is not a power-of-two number of pages")
        page = mmap.PAGESIZE
        self.size, self.mask, self.page = size, size - 1, page
        try:
            self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
            self._prod = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        except (OSError, ValueError) as err:
            raise RingError(f"cannot mmap ring buffer map fd {map_fd}: {err}") from err
        self._cons_pos = memoryview(self._cons).cast("Q")  # [0]: the consumer position
        self._prod_pos = memoryview(self._prod).cast("Q")  # [0]: the producer position
        self._words = memoryview(self._prod).cast("I")     # record headers, by u32 index
        self._epoll = select.epoll()
        if wakeups:  # off only for tests that lay a ring out in a plain file
            self._epoll.register(map_fd, select.EPOLLIN)

    def wait(self, timeout_ms: int) -> bool:
        """Block until the kernel wakes the reader or ``timeout_ms`` passes; True if woken.

        Level-triggered like libbpf's epoll: after a drain empties the ring, records submitted
        with BPF_RB_NO_WAKEUP do not end the wait, which is what batching wakeups relies on."""
        return bool(self._epoll.poll(timeout_ms / 1000.0))

    def drain(self, sink: Callable[[bytes], object]) -> int:
        """Hand each committed record to ``sink`` (as bytes, copied out of the ring), in order,
        until the first one still being written; returns how many were handed over."""
        prod, cons_pos, prod_pos, words = self._prod, self._cons_pos, self._prod_pos, self._words
        cons = cons_pos[0]
        end = prod_pos[0]
        mask, base = self.mask, self.page
        handed = since_release = 0
        while cons < end:
            off = base + (cons & mask)
            length = words[off >> 2]
            if length & BUSY_BIT:
                break
            body = length & ~(BUSY_BIT | DISCARD_BIT)
            if not length & DISCARD_BIT:
                sink(prod[off + HDR_SIZE:off + HDR_SIZE + body])
                handed += 1
            cons += (body + HDR_SIZE + 7) & ~7
            since_release += 1
            if since_release >= RELEASE_EVERY:
                cons_pos[0] = cons
                since_release = 0
                end = prod_pos[0]
        if since_release:
            cons_pos[0] = cons
        return handed

    def close(self) -> None:
        for view in (self._cons_pos, self._prod_pos, self._words):
            view.release()  # an mmap with views still exported refuses to close
        self._epoll.close()
        self._cons.close()
        self._prod.close()
