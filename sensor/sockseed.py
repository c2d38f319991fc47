"""Inet sockets that existed before the sensor started and are not TCP, for the kernel's
socket-type map.

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


def _process_sockets(pid_dir: Path) -> list[tuple[int, int]]:
    """(fd, protocol number) of one process's non-TCP inet sockets."""
    try:
        fds = os.listdir(pid_dir / "fd")
    except OSError:  # exited mid-scan, or a kernel thread
        return []
    out = []
    for fd in fds:
        link = pid_dir / "fd" / fd
        try:
            if not os.readlink(link).startswith("socket:["):
                continue
        except OSError:
            continue
        proto = _PROTOCOLS.get(socket_protocol(link))
        if proto is not None and fd.isdigit():
            out.append((int(fd), proto))
    return out


def existing_sockets(proc: Path = Path("/proc")) -> list[tuple[int, int, int]]:
    """(tgid, fd, protocol) of every open non-TCP inet socket; vanished processes are skipped."""
    found = [(int(e.name), fd, proto) for e in os.scandir(proc) if e.name.isdigit()
             for fd, proto in _process_sockets(Path(e.path))]
    log.debug("seeding %d pre-existing non-TCP sockets", len(found))
    return found
