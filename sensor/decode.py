"""Pure decoders: ring-buffer record bytes -> :class:`sensor.events.Event`.

One function per opcode in an explicit table (:data:`DECODERS`). Decoders do no I/O and keep no
state beyond the clock offset captured once, so tests feed them hand-built bytes. Enrichment
(container, ancestry) happens later, in sensor/enrich.py.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Callable, Final

from sensor import layout as L
from sensor import syscalls
from sensor.errors import DataError
from sensor.events import ARGS_UNREAD, NET_HOOK, Event

_FAMILIES: Final = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6", socket.AF_UNIX: "unix"}
_PROTOS: Final = {6: "tcp", 17: "udp"}


class DecodeError(DataError):
    """A record that cannot be decoded (short, unknown opcode). Counted by the reader."""


def boot_offset_ns() -> int:
    """Wall-clock minus CLOCK_MONOTONIC, to turn ``bpf_ktime_get_ns`` into epoch nanoseconds."""
    return time.time_ns() - time.monotonic_ns()


def _cstr(raw: bytes) -> str:
    end = raw.find(b"\0")
    return (raw if end < 0 else raw[:end]).decode("utf-8", "replace")


class Decoder:
    """Decodes records with a fixed monotonic→wall offset (captured at construction)."""

    def __init__(self, offset_ns: int | None = None) -> None:
        self.offset_ns = boot_offset_ns() if offset_ns is None else offset_ns

    def __call__(self, data: bytes) -> Event:
        if len(data) < L.HDR.size:
            raise DecodeError(f"record of {len(data)} bytes is shorter than its header")
        op = int.from_bytes(data[:4], "little")
        fn = DECODERS.get(op)
        if fn is None:
            raise DecodeError(f"unknown opcode {op}")
        if len(data) < L.MIN_RECORD_SIZES[op]:
            raise DecodeError(f"{L.OP_NAMES[op]} record of {len(data)} bytes, need {L.MIN_RECORD_SIZES[op]}")
        return fn(self, data)

    def header(self, data: bytes) -> tuple[_Head, int, int, int]:
        """(time_ns, pid, tid, ppid, uid, gid, comm) — Event's leading fields in order — then the
        cgroup id, the nearest reported ancestor and the record's flags."""
        _op, pid, tid, uid, gid, flags, ktime, cg, comm, ppid, anc = _HDR(data)
        return (ktime + self.offset_ns, pid, tid, ppid, uid, gid, _cstr(comm)), cg, anc, flags


# Positional Event construction: keyword unpacking of a header dict cost a third of each decode.
_Head = tuple[int, int, int, int, int, int, str]
_HDR: Final = L.HDR.unpack_from
_HS: Final = L.HDR.size


_ARGS_AT: Final = L.HDR.size + L.EXEC.size


def _exec(d: Decoder, data: bytes) -> Event:
    """argv arrives as NUL-terminated strings back to back (a cut last one has no NUL); an entry the
    kernel could not read is empty and the record says so (F_ARGS_FAULT, kept in ``flags`` for the
    enricher, which reads the command line from /proc instead)."""
    head, cg, anc, flags = d.header(data)
    _old, argc, args_len, _pad, filename = L.EXEC.unpack_from(data, _HS)
    blob = data[_ARGS_AT:_ARGS_AT + min(args_len, L.ARGS_SIZE)]
    if len(blob) < min(args_len, L.ARGS_SIZE):
        raise DecodeError(f"exec record of {len(data)} bytes, its argv needs {_ARGS_AT + args_len}")
    parts = blob.split(b"\0")
    if blob.endswith(b"\0"):
        parts.pop()  # the last entry's terminator, not an entry
    args = tuple(a.decode("utf-8", "replace") for a in parts[:min(argc, L.ARGS_MAX)])
    return Event("exec", *head, _cstr(filename), args, cg, ancestor_pid=anc, killed=bool(flags & L.F_KILLED),
                 truncated=bool(flags & L.F_ARGS_TRUNC), flags=ARGS_UNREAD if flags & L.F_ARGS_FAULT else 0)


def _fork(d: Decoder, data: bytes) -> Event:
    (t, pid, tid, _ppid, uid, gid, comm), cg, anc, _flags = d.header(data)
    forker, child = L.FORK.unpack_from(data, _HS)  # ppid: the forking thread
    return Event("fork", t, pid, tid, forker, uid, gid, comm, cgroup_id=cg, ancestor_pid=anc, child_pid=child)


def _exit(d: Decoder, data: bytes) -> Event:
    head, cg, anc, _flags = d.header(data)
    code, _pad = L.EXIT.unpack_from(data, _HS)
    return Event("exit", *head, cgroup_id=cg, ancestor_pid=anc, exit_code=code)


_MAPPED_V4: Final = bytes(10) + b"\xff\xff"
_V4_COMPAT: Final = bytes(12)


def _addr(family: int, raw: bytes) -> str:
    """Text address; "" when the kernel side could not know it (all zero, e.g. accept(fd, NULL,
    NULL) leaves the peer unread); IPv4-mapped IPv6 (dual-stack sockets) prints as IPv4.
    inet_ntop is ten times faster than ipaddress and prints the same text, except for the
    deprecated IPv4-compatible ::a.b.c.d form, left to ipaddress."""
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if family == socket.AF_INET6:
        prefix = raw[:12]
        if prefix == _MAPPED_V4:
            return socket.inet_ntop(socket.AF_INET, raw[12:16])
        if prefix == _V4_COMPAT:
            return str(ipaddress.IPv6Address(raw)) if any(raw) else ""
        return socket.inet_ntop(socket.AF_INET6, raw)
    return ""


def _net(kind: str) -> Callable[[Decoder, bytes], Event]:
    with_saddr, with_daddr = kind != "connect", kind != "listen"
    with_fd = kind == "connect"  # the socket, whose source address userspace reads (sensor/procfacts.py)

    def decode(d: Decoder, data: bytes) -> Event:
        head, cg, anc, hflags = d.header(data)
        ret, fd, fam, proto, sport, dport, _p, saddr, daddr, upath = L.NET.unpack_from(data, _HS)
        hook = bool(hflags & L.F_NET_HOOK)  # no descriptor: nothing to read the source address from
        if fam == socket.AF_UNIX:
            return Event(kind, *head, cgroup_id=cg, ancestor_pid=anc, family="unix", path=_cstr(upath), ret=ret)
        return Event(kind, *head, cgroup_id=cg, ancestor_pid=anc, family=_FAMILIES.get(fam, ""),
                     proto=_PROTOS.get(proto, ""), saddr=_addr(fam, saddr) if with_saddr else "", sport=sport,
                     daddr=_addr(fam, daddr) if with_daddr else "", dport=dport, ret=ret,
                     sc_args=(fd,) if with_fd and not hook else (), flags=NET_HOOK if hook else 0)
    return decode


def _syscall(d: Decoder, data: bytes) -> Event:
    head, cg, anc, _flags = d.header(data)
    nr, _pad = L.SYSCALL.unpack_from(data, _HS)
    return Event("syscall", *head, cgroup_id=cg, ancestor_pid=anc, syscall_nr=nr, syscall=syscalls.name_of(nr),
                 count=1)


def _open(d: Decoder, data: bytes) -> Event:
    head, cg, anc, _flags = d.header(data)
    ret, flags, _mode, path = L.OPEN.unpack_from(data, _HS)
    return Event("open", *head, cgroup_id=cg, ancestor_pid=anc, path=_cstr(path), flags=flags, ret=ret,
                 syscall="openat")


def _sys(d: Decoder, data: bytes) -> Event:
    head, cg, anc, _flags = d.header(data)
    ret, nr, _pad, a0, a1, a2, a3 = L.SYS.unpack_from(data, _HS)
    return Event("sys", *head, cgroup_id=cg, ancestor_pid=anc, ret=ret, syscall_nr=nr,
                 syscall=syscalls.name_of(nr), sc_args=(a0, a1, a2, a3))


DECODERS: Final[dict[int, Callable[[Decoder, bytes], Event]]] = {
    L.OP_EXEC: _exec,
    L.OP_FORK: _fork,
    L.OP_EXIT: _exit,
    L.OP_CONNECT: _net("connect"),
    L.OP_ACCEPT: _net("accept"),
    L.OP_LISTEN: _net("listen"),
    L.OP_SYSCALL: _syscall,
    L.OP_OPEN: _open,
    L.OP_SYS: _sys,
}
