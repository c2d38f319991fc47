"""The collector's gRPC server: wires the sensor link (:mod:`collector.sensorlink`), the analyst
API (:mod:`collector.analyst`) and the standard health service onto one port.

:func:`create_server` refuses a port another process holds, binds port 0 for tests, and returns
the started server; ``server.stop(grace)`` stops it gracefully. The server is ``grpc.aio`` on an
event loop of its own (:class:`CollectorServer`): streams are coroutines, so open sensor links and
watches never use up the threads that answer analysts.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent import futures
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from collector.analyst import AnalystServicer
from collector.auth import AuthConfig
from collector.convert import rpc
from collector.errors import CollectorError, InvalidArgument, Unavailable
from collector.export import Exporters
from collector.fleet import Fleet
from collector.incidents import Incidents
from collector.sensorlink import HELLO_TIMEOUT_S, Hub, SensorLinkServicer
from collector.store import SqlStore

MAX_MESSAGE_BYTES = 4 << 20
IO_WORKERS = 8  # threads for the links' blocking work (store, exporters); streams themselves hold none
T = TypeVar("T")


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


class MalformedGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Parse requests inside the handler, so a message that is not valid protobuf is answered
    INVALID_ARGUMENT with its reason (grpc.aio would say UNKNOWN and log a traceback)."""

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse = handler.request_deserializer
        method = details.method
        if handler.unary_unary is not None and not inspect.iscoroutinefunction(handler.unary_unary):
            inner_uu = handler.unary_unary

            def unary_unary(raw: bytes, ctx: Any) -> Any:  # runs on the thread pool, like the handler
                try:
                    request = parse(raw)
                except Exception as err:  # noqa: BLE001 - every parse failure is the client's
                    ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, _malformed(method, err))
                return inner_uu(request, ctx)
            return handler._replace(unary_unary=unary_unary, request_deserializer=None)
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            inner_us = handler.unary_stream

            async def unary_stream(raw: bytes, ctx: Any) -> AsyncIterator[Any]:
                try:
                    request = parse(raw)
                except Exception as err:  # noqa: BLE001 - every parse failure is the client's
                    await ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, _malformed(method, err))
                async for reply in inner_us(request, ctx):
                    yield reply
            return handler._replace(unary_stream=unary_stream, request_deserializer=None)
        if handler.stream_stream is not None and inspect.isasyncgenfunction(handler.stream_stream):
            inner_ss = handler.stream_stream

            async def parsed(requests: AsyncIterator[bytes]) -> AsyncIterator[Any]:
                async for raw in requests:
                    try:
                        yield parse(raw)
                    except Exception as err:  # noqa: BLE001 - every parse failure is the client's
                        raise InvalidArgument(_malformed(method, err)) from None

            async def stream_stream(requests: AsyncIterator[bytes], ctx: Any) -> AsyncIterator[Any]:
                async for reply in inner_ss(parsed(requests), ctx):
                    yield reply
            return handler._replace(stream_stream=stream_stream, request_deserializer=None)
        return handler


def _malformed(method: str, err: Exception) -> str:
    return f"{method}: malformed request ({' '.join(str(err).split())[:200] or type(err).__name__})"


class CollectorServer:
    """A started collector: a ``grpc.aio`` server on an event loop of its own thread.

    Sensor links and alert watches are coroutines on that loop, so a thousand idle sensors cost
    no threads; unary analyst calls run on the ``workers`` thread pool (they block on the store
    or on a sensor's answer), and the links' blocking work on a small I/O pool. The methods
    mirror ``grpc.Server``'s for the launcher and tests: :meth:`stop` and
    :meth:`wait_for_termination`; ``hub`` is the connected sensors, for in-process callers."""

    def __init__(self, store: SqlStore, auth: AuthConfig, exporters: Exporters, workers: int,
                 hello_timeout_s: float, collector_id: str = "") -> None:
        self.hub = Hub(store)
        self.incidents = Incidents.attach(store)  # filed in ingest's transaction from now on
        self.collector_id = collector_id
        self.fleet: Fleet | None = None
        self._store, self._auth, self._exporters = store, auth, exporters
        self.auth = auth  # the web console (collector.webserver) checks the same tokens
        self._pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="analyst")
        self._io = futures.ThreadPoolExecutor(max_workers=IO_WORKERS, thread_name_prefix="collector-io")
        self._hello_timeout_s = hello_timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="collector-loop", daemon=True)
        self._stopped = threading.Event()
        self._server: grpc.aio.Server | None = None

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def start(self, addr: str, tls: TlsConfig | None) -> int:
        self._thread.start()
        try:
            port = self._call(self._start(addr, tls))
            if self._store.dialect == "postgres" and self._store.url:
                # one of a fleet on this database: pushes and actions reach the others' sensors
                self.fleet = Fleet(self._store, self.hub, self.hub.collector_id,
                                   f"{addr.rsplit(':', 1)[0]}:{port}").start()
                self.hub.fleet = self.fleet
            return port
        except BaseException:
            self.stop(0)
            raise

    async def _start(self, addr: str, tls: TlsConfig | None) -> int:
        server = grpc.aio.server(migration_thread_pool=self._pool, interceptors=[MalformedGuard()], options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
        self._server = server
        rpc.add_SensorLinkServicer_to_server(
            SensorLinkServicer(self.hub, self._auth, self._exporters, self._io, self._hello_timeout_s), server)
        rpc.add_AnalystServicer_to_server(AnalystServicer(self.hub, self._auth, self._io), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        try:
            if tls is None:
                port: int = server.add_insecure_port(addr)
            else:
                # gRPC Python either requires client certificates or never asks for them: with a CA
                # configured every client (sensor or analyst CLI) must present one; roles still come
                # from tokens, sensor identities from the CN of a sensor certificate (collector.auth).
                creds = grpc.ssl_server_credentials([(tls.key, tls.cert)], root_certificates=tls.ca,
                                                    require_client_auth=tls.ca is not None)
                port = server.add_secure_port(addr, creds)
        except RuntimeError:  # "Failed to bind": taken between the check and now
            port = 0
        if port == 0:
            raise Unavailable(f"cannot listen on {addr}: address in use (taken meanwhile), or gRPC refused the "
                              "TLS certificate or key")
        self.hub.collector_id = self.collector_id or f"{socket.gethostname()}:{port}"
        await server.start()
        for name in ("", "cgsentry.v1.SensorLink", "cgsentry.v1.Analyst"):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        return port

    def stop(self, grace: float | None) -> threading.Event:
        """Stop serving (open streams get ``grace`` seconds), end the loop; returns a set event."""
        if not self._stopped.is_set():
            if self.fleet is not None:
                self.fleet.stop()
            if self._server is not None and self._loop.is_running():
                self._call(self._server.stop(grace))
            if self._loop.is_running():
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=10)
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._io.shutdown(wait=False, cancel_futures=True)
            self._stopped.set()
        return self._stopped

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)


def create_server(addr: str, store: SqlStore, auth: AuthConfig, tls: TlsConfig | None = None,
                  exporters: Exporters | None = None, workers: int = 32,
                  hello_timeout_s: float = HELLO_TIMEOUT_S, collector_id: str = "") -> tuple[CollectorServer, int]:
    """Build and start the server; returns (server, bound port) — port 0 picks a free one.

    A port another process listens on is an error (Unavailable), never shared: gRPC's default
    SO_REUSEPORT would let a second collector bind it too, and the kernel would then split
    sensors and clients between two databases at random. ``collector_id`` names this collector
    in the sensors table (default HOST:PORT); on PostgreSQL it joins the fleet (:mod:`collector.fleet`)."""
    check_bindable(addr)
    server = CollectorServer(store, auth, exporters or Exporters(), workers, hello_timeout_s, collector_id)
    port = server.start(addr, tls)
    return server, port


__all__ = ["create_server", "check_bindable", "CollectorServer", "TlsConfig", "MAX_MESSAGE_BYTES"]
