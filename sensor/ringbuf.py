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
"""

from __future__ import annotations

import mmap
import select
import struct
from typing import Callable

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HDR_SIZE = 8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
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
        cons_map, prod = self._cons, self._prod
        cons = _U64.unpack_from(cons_map, 0)[0]
        end = _U64.unpack_from(prod, 0)[0]
        mask, base = self.mask, self.page
        unpack_len, pack_pos = _U32.unpack_from, _U64.pack_into
        handed = since_release = 0
        while cons < end:
            off = base + (cons & mask)
            length = unpack_len(prod, off)[0]
            if length & BUSY_BIT:
                break
            body = length & ~(BUSY_BIT | DISCARD_BIT)
            if not length & DISCARD_BIT:
                sink(prod[off + HDR_SIZE:off + HDR_SIZE + body])
                handed += 1
            cons += (body + HDR_SIZE + 7) & ~7
            since_release += 1
            if since_release >= RELEASE_EVERY:
                pack_pos(cons_map, 0, cons)
                since_release = 0
                end = _U64.unpack_from(prod, 0)[0]
        if since_release:
            pack_pos(cons_map, 0, cons)
        return handed

    def close(self) -> None:
        self._epoll.close()
        self._cons.close()
        self._prod.close()
