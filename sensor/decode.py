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
from sensor.events import Event

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
        if len(data) < L.RECORD_SIZES[op]:
            raise DecodeError(f"{L.OP_NAMES[op]} record of {len(data)} bytes, need {L.RECORD_SIZES[op]}")
        return fn(self, data)

    def header(self, data: bytes, kind: str) -> dict[str, object]:
        _op, pid, tid, uid, gid, flags, ktime, cg, comm, ppid, anc = L.HDR.unpack_from(data)
        return {"kind": kind, "time_ns": ktime + self.offset_ns, "pid": pid, "tid": tid, "ppid": ppid,
                "ancestor_pid": anc,
                "uid": uid, "gid": gid, "cgroup_id": cg, "comm": _cstr(comm), "flags": flags}


def _exec(d: Decoder, data: bytes) -> Event:
    h = d.header(data, "exec")
    _old, argc, filename, blob = L.EXEC.unpack_from(data, L.HDR.size)
    argc = min(argc, L.ARGS_MAX)
    args = tuple(_cstr(blob[i * L.ARG_LEN:(i + 1) * L.ARG_LEN]) for i in range(argc))
    flags = int(h.pop("flags"))  # type: ignore[call-overload]
    return Event(**h, exe=_cstr(filename), args=args, killed=bool(flags & L.F_KILLED),  # type: ignore[arg-type]
                 truncated=bool(flags & L.F_ARGS_TRUNC))


def _fork(d: Decoder, data: bytes) -> Event:
    h = d.header(data, "fork")
    h.pop("flags")
    h["ppid"], child = L.FORK.unpack_from(data, L.HDR.size)  # the forking thread
    return Event(**h, child_pid=child)  # type: ignore[arg-type]


def _exit(d: Decoder, data: bytes) -> Event:
    h = d.header(data, "exit")
    h.pop("flags")
    code, _pad = L.EXIT.unpack_from(data, L.HDR.size)
    return Event(**h, exit_code=code)  # type: ignore[arg-type]


def _addr(family: int, raw: bytes) -> str:
    """Text address; "" when the kernel side could not know it (all zero, e.g. accept(fd, NULL,
    NULL) leaves the peer unread); IPv4-mapped IPv6 (dual-stack sockets) prints as IPv4."""
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Address(raw[:4]))
    if family == socket.AF_INET6:
        if not any(raw):
            return ""
        v6 = ipaddress.IPv6Address(raw)
        return str(v6.ipv4_mapped or v6)
    return ""


def _net(kind: str) -> Callable[[Decoder, bytes], Event]:
    def decode(d: Decoder, data: bytes) -> Event:
        h = d.header(data, kind)
        h.pop("flags")
        ret, _fd, fam, proto, sport, dport, _p, saddr, daddr, upath = L.NET.unpack_from(
            data, L.HDR.size)
        if fam == socket.AF_UNIX:
            return Event(**h, family="unix", path=_cstr(upath), ret=ret)  # type: ignore[arg-type]
        return Event(**h, family=_FAMILIES.get(fam, ""), proto=_PROTOS.get(proto, ""),  # type: ignore[arg-type]
                     saddr=_addr(fam, saddr) if kind != "connect" else "", sport=sport,
                     daddr=_addr(fam, daddr) if kind != "listen" else "", dport=dport, ret=ret)
    return decode


def _syscall(d: Decoder, data: bytes) -> Event:
    h = d.header(data, "syscall")
    h.pop("flags")
    nr, _pad = L.SYSCALL.unpack_from(data, L.HDR.size)
    return Event(**h, syscall_nr=nr, syscall=syscalls.name_of(nr), count=1)  # type: ignore[arg-type]


def _open(d: Decoder, data: bytes) -> Event:
    h = d.header(data, "open")
    h.pop("flags")
    ret, flags, _mode, path = L.OPEN.unpack_from(data, L.HDR.size)
    return Event(**h, path=_cstr(path), flags=flags, ret=ret, syscall="openat")  # type: ignore[arg-type]


def _sys(d: Decoder, data: bytes) -> Event:
    h = d.header(data, "sys")
    h.pop("flags")
    ret, nr, _pad, a0, a1, a2, a3 = L.SYS.unpack_from(data, L.HDR.size)
    return Event(**h, ret=ret, syscall_nr=nr, syscall=syscalls.name_of(nr),  # type: ignore[arg-type]
                 sc_args=(a0, a1, a2, a3))


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
