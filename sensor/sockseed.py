"""Inet sockets that existed before the sensor started, for two kernel maps.

TCP listeners go to the ``bound`` map: accept(2) takes its local port from the listener's bind
record, which a listener bound before the sensor started does not have, so its accepts would say
port 0 (and a restarted sensor would call every long-running server's inbound port new). The
port and address come from ``/proc/<pid>/net/tcp{,6}``, read once per network namespace, matched
to the listener's descriptor by socket inode.

Sockets that are not TCP go to the socket-type map.

The BPF programs learn a socket's protocol at socket(2) and treat any socket they did not see
created as TCP (sensor/bpf/sensor.c, ``sock_types``). A long-lived UDP socket created before the
sensor started (a resolver, a metrics agent) would then be reported as TCP; this module finds such
sockets so the loader can seed the map. Each ``/proc/<pid>/fd/<n>`` socket link is asked for its
protocol through the sockfs ``system.sockprotoname`` attribute, which answers for bound and
unbound sockets alike (``/proc/net/udp`` lists only bound ones).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

UDP: int = 17
OTHER: int = 255  # PROTO_OTHER in sensor.c: an inet socket that is neither TCP nor UDP
_PROTOCOLS = {"UDP": UDP, "UDPv6": UDP, "UDP-Lite": UDP, "UDPLITEv6": UDP,
              "RAW": OTHER, "RAWv6": OTHER, "PING": OTHER, "PINGv6": OTHER, "SCTP": OTHER, "SCTPv6": OTHER}


def socket_protocol(fd_link: Path) -> str:
    """The kernel's protocol name of the socket behind a /proc fd link ("" if not a socket)."""
    try:
        return os.getxattr(fd_link, "system.sockprotoname").rstrip(b"\0").decode()
    except OSError:
        return ""


@dataclass(frozen=True)
class Listener:
    """A TCP socket in LISTEN state, as the ``bound`` map keeps it: (tgid, fd) -> family, port, address."""

    tgid: int
    fd: int
    family: int  # AF_INET 2, AF_INET6 10
    port: int
    addr: bytes  # 16 bytes, network order; IPv4 in the first 4


@dataclass
class Seed:
    non_tcp: list[tuple[int, int, int]] = field(default_factory=list)  # (tgid, fd, protocol)
    listeners: list[Listener] = field(default_factory=list)


def _proc_addr(hex_addr: str) -> bytes:
    """/proc/net/tcp prints each 32-bit word of the address as a host-order hex number."""
    words = [bytes.fromhex(hex_addr[i:i + 8]) for i in range(0, len(hex_addr), 8)]
    if sys.byteorder == "little":
        words = [w[::-1] for w in words]
    return b"".join(words).ljust(16, b"\0")


def listening_sockets(pid_dir: Path) -> dict[int, tuple[int, int, bytes]]:
    """socket inode -> (family, port, address) of the TCP listeners in a process's network namespace."""
    out: dict[int, tuple[int, int, bytes]] = {}
    for name, family in (("tcp", 2), ("tcp6", 10)):
        try:
            lines = (pid_dir / "net" / name).read_text(encoding="ascii", errors="replace").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != "0A":  # 0A: TCP_LISTEN
                continue
            try:
                addr, port = cols[1].split(":")
                out[int(cols[9])] = (family, int(port, 16), _proc_addr(addr))
            except ValueError:
                continue
    return out


class _Namespaces:
    """Listening tables per network namespace, each read once (every container has its own)."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[int, tuple[int, int, bytes]]] = {}

    def listeners(self, pid_dir: Path) -> dict[int, tuple[int, int, bytes]]:
        try:
            ns = os.readlink(pid_dir / "ns" / "net")
        except OSError:
            return {}
        if ns not in self.tables:
            self.tables[ns] = listening_sockets(pid_dir)
        return self.tables[ns]


def _process_sockets(pid_dir: Path, tgid: int, seed: Seed, namespaces: _Namespaces) -> None:
    """Add one process's non-TCP inet sockets and TCP listeners to ``seed``."""
    try:
        fds = os.listdir(pid_dir / "fd")
    except OSError:  # exited mid-scan, or a kernel thread
        return
    for fd in fds:
        link = pid_dir / "fd" / fd
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if not target.startswith("socket:[") or not fd.isdigit():
            continue
        proto = _PROTOCOLS.get(socket_protocol(link))
        if proto is not None:
            seed.non_tcp.append((tgid, int(fd), proto))
            continue
        found = namespaces.listeners(pid_dir).get(int(target[8:-1]))
        if found is not None:
            seed.listeners.append(Listener(tgid, int(fd), *found))


def process_listeners(pid: int, proc: Path = Path("/proc")) -> list[Listener]:
    """The TCP listeners one process holds now (inherited ones included)."""
    seed = Seed()
    _process_sockets(proc / str(pid), pid, seed, _Namespaces())
    return seed.listeners


def existing_sockets(proc: Path = Path("/proc")) -> Seed:
    """Every open non-TCP inet socket and TCP listener; vanished processes are skipped."""
    seed, namespaces = Seed(), _Namespaces()
    for entry in os.scandir(proc):
        if entry.name.isdigit():
            _process_sockets(Path(entry.path), int(entry.name), seed, namespaces)
    log.debug("seeding %d pre-existing non-TCP sockets and %d listeners", len(seed.non_tcp), len(seed.listeners))
    return seed
