"""Decoders on hand-built bytes (no kernel): every opcode, addresses, truncation, bad input."""

from __future__ import annotations

import socket

import pytest

from sensor import layout as L
from sensor.decode import DecodeError, Decoder
from sensor.events import ARGS_UNREAD


def hdr(op: int, pid: int = 42, flags: int = 0, comm: bytes = b"sh", cg: int = 7, ppid: int = 0) -> bytes:
    return L.HDR.pack(op, pid, pid + 1, 1000, 1001, flags, 5_000, cg, comm, ppid, 0)


def exec_rec(flags: int, exe: bytes, argc: int, *args: bytes, cut: bytes = b"") -> bytes:
    """An exec record as the kernel sends it: argv NUL-terminated back to back, then a cut entry."""
    blob = b"".join(a + b"\0" for a in args) + cut
    return hdr(L.OP_EXEC, flags=flags) + L.EXEC.pack(42, argc, len(blob), 0, exe) + blob


DEC = Decoder(offset_ns=1_000_000)


def test_exec_with_args_and_killed_flag() -> None:
    data = exec_rec(L.F_KILLED | L.F_ARGS_TRUNC, b"/usr/bin/nc", 3, b"nc", b"-l", b"-p", b"ignored-beyond-argc")
    ev = DEC(data)
    assert (ev.kind, ev.exe, ev.args) == ("exec", "/usr/bin/nc", ("nc", "-l", "-p"))
    assert (ev.pid, ev.tid, ev.uid, ev.gid, ev.cgroup_id, ev.comm) == (42, 43, 1000, 1001, 7, "sh")
    assert ev.time_ns == 5_000 + 1_000_000
    assert ev.killed and ev.truncated


def test_exec_argv_is_whole_past_64_bytes_and_a_cut_entry_is_kept() -> None:
    script = b"for f in /var/log/nginx/*.log; do [ -s $f ] && kill -USR1 $(cat /run/nginx.pid); done"
    ev = DEC(exec_rec(0, b"/bin/sh", 3, b"sh", b"-c", script))
    assert ev.args == ("sh", "-c", script.decode()) and not ev.truncated
    cut = DEC(exec_rec(L.F_ARGS_TRUNC, b"/bin/echo", 3, b"echo", b"a", cut=b"x" * 100))
    assert cut.args == ("echo", "a", "x" * 100) and cut.truncated
    empty = DEC(exec_rec(0, b"/bin/echo", 3, b"echo", b"", b"b"))
    assert empty.args == ("echo", "", "b")  # an empty argument is an argument


def test_exec_entry_the_kernel_could_not_read_is_marked() -> None:
    ev = DEC(exec_rec(L.F_ARGS_FAULT, b"/bin/sh", 3, b"sh", b"", b"script"))
    assert ev.args == ("sh", "", "script") and ev.flags & ARGS_UNREAD
    assert not DEC(exec_rec(0, b"/bin/sh", 1, b"sh")).flags


def test_exec_record_shorter_than_its_argv_is_refused() -> None:
    data = exec_rec(0, b"/bin/sh", 2, b"sh", b"-c")
    with pytest.raises(DecodeError, match="argv needs"):
        DEC(data[:-2])


def test_fork_exit() -> None:
    fork = DEC(hdr(L.OP_FORK) + L.FORK.pack(42, 99))
    assert (fork.kind, fork.ppid, fork.child_pid) == ("fork", 42, 99)
    ex = DEC(hdr(L.OP_EXIT) + L.EXIT.pack(-1, 0))
    assert (ex.kind, ex.exit_code) == ("exit", -1)


def net(op: int, fam: int, proto: int, sport: int, dport: int, s: bytes, d: bytes, ret: int = 0,
        upath: bytes = b"") -> bytes:
    return hdr(op) + L.NET.pack(ret, 3, fam, proto, sport, dport, 0, s.ljust(16, b"\0"),
                                d.ljust(16, b"\0"), upath)


def test_connect_ipv4_tcp_refused() -> None:
    ev = DEC(net(L.OP_CONNECT, socket.AF_INET, 6, 0, 8080, b"", socket.inet_aton("127.0.0.1"), -111))
    assert (ev.kind, ev.family, ev.proto, ev.daddr, ev.dport, ev.ret) == (
        "connect", "ipv4", "tcp", "127.0.0.1", 8080, -111)
    assert ev.saddr == ""


def test_connect_ipv6_udp_and_mapped_v4() -> None:
    v6 = socket.inet_pton(socket.AF_INET6, "::1")
    ev = DEC(net(L.OP_CONNECT, socket.AF_INET6, 17, 0, 53, b"", v6))
    assert (ev.family, ev.proto, ev.daddr) == ("ipv6", "udp", "::1")
    mapped = socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1")
    acc = DEC(net(L.OP_ACCEPT, socket.AF_INET6, 6, 80, 40000, b"", mapped))
    assert (acc.daddr, acc.dport, acc.sport) == ("127.0.0.1", 40000, 80)


def test_accept_with_unknown_peer_is_empty_not_zero_address() -> None:
    ev = DEC(net(L.OP_ACCEPT, socket.AF_INET6, 6, 8017, 0, b"", b""))
    assert ev.daddr == "" and ev.sport == 8017


def test_unix_connect_carries_path() -> None:
    ev = DEC(net(L.OP_CONNECT, socket.AF_UNIX, 0, 0, 0, b"", b"", upath=b"/var/run/docker.sock"))
    assert (ev.family, ev.path) == ("unix", "/var/run/docker.sock")


def test_listen_uses_local_side() -> None:
    ev = DEC(net(L.OP_LISTEN, socket.AF_INET, 6, 8080, 0, socket.inet_aton("0.0.0.0"), b""))
    assert (ev.kind, ev.saddr, ev.sport, ev.daddr) == ("listen", "0.0.0.0", 8080, "")


def test_syscall_open_sys() -> None:
    sc = DEC(hdr(L.OP_SYSCALL) + L.SYSCALL.pack(59, 0))
    assert (sc.kind, sc.syscall_nr, sc.syscall) == ("syscall", 59, "execve")
    op = DEC(hdr(L.OP_OPEN) + L.OPEN.pack(3, 0o101, 0o644, b"/etc/shadow"))
    assert (op.kind, op.path, op.flags, op.ret) == ("open", "/etc/shadow", 0o101, 3)
    sy = DEC(hdr(L.OP_SYS) + L.SYS.pack(-1, 101, 0, 16, 1234, 0, 0))
    assert (sy.kind, sy.syscall, sy.sc_args[:2], sy.ret) == ("sys", "ptrace", (16, 1234), -1)


def test_unknown_syscall_number_named_generically() -> None:
    assert DEC(hdr(L.OP_SYSCALL) + L.SYSCALL.pack(999, 0)).syscall == "syscall_999"


@pytest.mark.parametrize("data, msg", [
    (b"\x01\x00", "shorter than its header"),
    (hdr(77) + b"\0" * 64, "unknown opcode 77"),
    (hdr(L.OP_EXEC) + b"\0" * 10, "exec record of"),
])
def test_bad_records_raise_decode_error(data: bytes, msg: str) -> None:
    with pytest.raises(DecodeError, match=msg):
        DEC(data)


def test_header_carries_the_kernel_lineage_parent() -> None:
    ev = DEC(hdr(L.OP_CONNECT, ppid=7) + L.NET.pack(0, 3, 2, 6, 0, 80, 0, b"", b"\x7f\0\0\x01", b""))
    assert (ev.kind, ev.pid, ev.ppid) == ("connect", 42, 7)


def test_addresses_print_as_ipaddress_does() -> None:
    """inet_ntop on the hot path, ipaddress as the reference: same text for every form."""
    import ipaddress
    import random

    from sensor.decode import _addr

    rng = random.Random(5)
    samples = [bytes(16), bytes(15) + b"\1", bytes(12) + b"\1\2\3\4", bytes(10) + b"\xff\xff\x7f\0\0\1",
               socket.inet_pton(socket.AF_INET6, "fe80::1:0:0:1"), socket.inet_pton(socket.AF_INET6, "1:0:2::3")]
    samples += [bytes(rng.choice((0, 0, rng.randrange(256))) for _ in range(16)) for _ in range(2000)]
    for raw in samples:
        v6 = ipaddress.IPv6Address(raw)
        want = str(v6.ipv4_mapped or v6) if any(raw) else ""
        assert _addr(socket.AF_INET6, raw) == want, raw.hex()
        assert _addr(socket.AF_INET, raw) == str(ipaddress.IPv4Address(raw[:4]))
