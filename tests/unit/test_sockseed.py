"""The /proc scan that seeds the kernel's socket-type map with pre-existing non-TCP sockets and
its bind map with pre-existing TCP listeners. Runs against this test process's own real sockets:
no root needed."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from sensor.sockseed import OTHER, UDP, Listener, existing_sockets, socket_protocol


def test_own_udp_sockets_are_found_and_tcp_and_files_are_not() -> None:
    udp4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # unbound: not in /proc/net/udp
    udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with udp4, udp6, tcp, open(__file__) as f:
        mine = {(fd, proto) for pid, fd, proto in existing_sockets().non_tcp if pid == os.getpid()}
        assert (udp4.fileno(), UDP) in mine and (udp6.fileno(), UDP) in mine
        assert not {fd for fd, _ in mine} & {tcp.fileno(), f.fileno()}


def test_protocol_of_non_sockets_and_vanished_descriptors_is_empty(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert socket_protocol(Path(f"/proc/self/fd/{fd}")) == ""
    finally:
        os.close(fd)
    assert socket_protocol(tmp_path / "nope") == ""
    seed = existing_sockets(tmp_path)
    assert seed.non_tcp == [] and seed.listeners == []
    assert OTHER != UDP


def test_own_tcp_listeners_are_found_with_port_and_address() -> None:
    """Listeners bound before the sensor started: their accepts need the port from somewhere."""
    v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    idle = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # bound, not listening: not a listener
    with v4, v6, idle:
        v4.bind(("127.0.0.1", 0))
        v4.listen()
        v6.bind(("::1", 0))
        v6.listen()
        idle.bind(("127.0.0.1", 0))
        mine = {s.fd: s for s in existing_sockets().listeners if s.tgid == os.getpid()}
        assert set(mine) == {v4.fileno(), v6.fileno()}
        assert mine[v4.fileno()] == Listener(os.getpid(), v4.fileno(), 2, v4.getsockname()[1],
                                             socket.inet_pton(socket.AF_INET, "127.0.0.1") + bytes(12))
        assert mine[v6.fileno()] == Listener(os.getpid(), v6.fileno(), 10, v6.getsockname()[1],
                                             socket.inet_pton(socket.AF_INET6, "::1"))
