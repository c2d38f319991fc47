"""The collector's gRPC server: wires the sensor link (:mod:`collector.sensorlink`), the analyst
API (:mod:`collector.analyst`) and the standard health service onto one port.

:func:`create_server` refuses a port another process holds, binds port 0 for tests, and returns
the started server; ``server.stop(grace)`` stops it gracefully.
"""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from collector.analyst import AnalystServicer
from collector.auth import AuthConfig
from collector.convert import rpc
from collector.errors import CollectorError, Unavailable
from collector.export import Exporters
from collector.sensorlink import Hub, SensorLinkServicer
from collector.store import SqlStore

MAX_MESSAGE_BYTES = 4 << 20


@dataclass
class TlsConfig:
    cert: bytes
    key: bytes
    ca: bytes | None = None  # set: require client certificates (mTLS for sensors)


def check_bindable(addr: str) -> None:
    """Raise the one-line reason ``host:port`` cannot be listened on (in use, not local,
    privileged port), so that gRPC's bind, which only says "failed" after C-level log lines,
    is not the one to find out. A gRPC listener uses SO_REUSEADDR, so this does too: a port
    with connections in TIME_WAIT is free, one with a listener is not."""
    import errno
    import socket

    from sensor.errors import EX_NOPERM

    host, _, port = addr.rpartition(":")
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (OSError, ValueError) as err:
        raise Unavailable(f"cannot listen on {addr}: {getattr(err, 'strerror', None) or err}") from None
    errors: list[OSError] = []
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
            except OSError as err:
                errors.append(err)
    # Another listener on any of the addresses splits clients between two collectors: refuse.
    all_failed = errors[0] if errors and len(errors) == len(infos) else None
    first = next((e for e in errors if e.errno == errno.EADDRINUSE), all_failed)
    if first is None:
        return
    if first.errno == errno.EADDRINUSE:
        raise Unavailable(f"cannot listen on {addr}: address in use (is another collector running there?)")
    if first.errno == errno.EACCES:
        raise CollectorError(f"cannot listen on {addr}: permission denied (ports below 1024 need root or "
                             "CAP_NET_BIND_SERVICE)", exit_code=EX_NOPERM)
    raise Unavailable(f"cannot listen on {addr}: {first.strerror} (is it an address of this host?)")


def create_server(addr: str, store: SqlStore, auth: AuthConfig, tls: TlsConfig | None = None,
                  exporters: Exporters | None = None, workers: int = 32) -> tuple[grpc.Server, int]:
    """Build and start the server; returns (server, bound port) — port 0 picks a free one.

    A port another process listens on is an error (Unavailable), never shared: gRPC's default
    SO_REUSEPORT would let a second collector bind it too, and the kernel would then split
    sensors and clients between two databases at random."""
    check_bindable(addr)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=[
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    hub = Hub(store)
    rpc.add_SensorLinkServicer_to_server(SensorLinkServicer(hub, auth, exporters or Exporters()), server)
    rpc.add_AnalystServicer_to_server(AnalystServicer(hub, auth), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        if tls is None:
            port = server.add_insecure_port(addr)
        else:
            # gRPC Python either requires client certificates or never asks for them: with a CA
            # configured every client (sensor or analyst CLI) must present one; roles still come
            # from tokens, sensor identities from the CN of a sensor certificate (collector.auth).
            creds = grpc.ssl_server_credentials([(tls.key, tls.cert)], root_certificates=tls.ca,
                                                require_client_auth=tls.ca is not None)
            port = server.add_secure_port(addr, creds)
    except RuntimeError:  # "Failed to bind": taken between the check above and now
        port = 0
    if port == 0:
        raise Unavailable(f"cannot listen on {addr}: address in use (taken meanwhile), or gRPC refused the TLS "
                          "certificate or key")
    server.start()
    for name in ("", "cgsentry.v1.SensorLink", "cgsentry.v1.Analyst"):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    server.hub = hub  # for in-process tests and the web console
    return server, port


__all__ = ["create_server", "check_bindable", "TlsConfig", "MAX_MESSAGE_BYTES"]
