"""The /proc scan that seeds the kernel's socket-type map with pre-existing non-TCP sockets.
Runs against this test process's own real sockets: no root needed."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from sensor.sockseed import OTHER, UDP, existing_sockets, socket_protocol


def test_own_udp_sockets_are_found_and_tcp_and_files_are_not() -> None:
    udp4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # unbound: not in /proc/net/udp
    udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with udp4, udp6, tcp, open(__file__) as f:
        mine = {(fd, proto) for pid, fd, proto in existing_sockets() if pid == os.getpid()}
        assert (udp4.fileno(), UDP) in mine and (udp6.fileno(), UDP) in mine
        assert not {fd for fd, _ in mine} & {tcp.fileno(), f.fileno()}


def test_protocol_of_non_sockets_and_vanished_descriptors_is_empty(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert socket_protocol(Path(f"/proc/self/fd/{fd}")) == ""
    finally:
        os.close(fd)
    assert socket_protocol(tmp_path / "nope") == ""
    assert existing_sockets(tmp_path) == []
    assert OTHER != UDP
