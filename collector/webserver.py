"""The web console's server: uvicorn on a port of its own, in a thread of its own, beside the
collector's gRPC server and on the same store, sensor links and tokens.

:func:`start_web` binds first (so ``127.0.0.1:0`` works for tests and a taken port is a one-line
error), then serves until :meth:`WebServer.stop`. With TLS files the console is HTTPS (and its
cookies Secure), and with the CA of ``--tls-dir`` every client presents a certificate it signed, as
on the gRPC port (the token still gives the role); without TLS it is refused off loopback unless the
operator allows plaintext, as the gRPC listener is.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from dataclasses import dataclass

from collector.auth import AuthConfig
from collector.errors import Unavailable
from collector.incidents import Incidents
from collector.sensorlink import Hub

log = logging.getLogger(__name__)


@dataclass
class WebTls:
    certfile: str
    keyfile: str
    cafile: str = ""  # set: every client presents a certificate this CA signed (mTLS), as on gRPC


class WebServer:
    def __init__(self, thread: threading.Thread, server: object, port: int) -> None:
        self._thread, self._server, self.port = thread, server, port

    def stop(self) -> None:
        self._server.should_exit = True  # type: ignore[attr-defined]
        self._thread.join(timeout=10)


def _bind(addr: str) -> socket.socket:
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and without it
    # a keep-alive response (headers and body in two writes) waits 40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as err:
        sock.close()
        raise Unavailable(f"--web {addr}: cannot listen: {err.strerror}") from None
    sock.listen(128)
    return sock


def start_web(addr: str, hub: Hub, incidents: Incidents, auth: AuthConfig, tls: WebTls | None = None) -> WebServer:
    """Serve the console on ``addr`` (HOST:PORT, port 0 picks one); returns the running server."""
    import uvicorn

    from collector.console import Console
    from collector.websession import Sessions

    sock = _bind(addr)
    console = Console(hub, incidents, Sessions(auth), secure_cookies=tls is not None)
    tls_options: dict[str, object] = {}
    if tls is not None:
        tls_options = {"ssl_certfile": tls.certfile, "ssl_keyfile": tls.keyfile}
        if tls.cafile:
            tls_options.update(ssl_ca_certs=tls.cafile, ssl_cert_reqs=ssl.CERT_REQUIRED)
    config = uvicorn.Config(console.app, log_level="warning", access_log=False, lifespan="off",
                            server_header=False, **tls_options)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    port = int(sock.getsockname()[1])
    started = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(_serve(server, sock, started))
        finally:
            loop.close()
            sock.close()

    thread = threading.Thread(target=run, name="web-console", daemon=True)
    thread.start()
    if not started.wait(10):
        raise Unavailable(f"--web {addr}: the console did not start")
    return WebServer(thread, server, port)


async def _serve(server: object, sock: socket.socket, started: threading.Event) -> None:
    task = asyncio.ensure_future(server.serve(sockets=[sock]))  # type: ignore[attr-defined]
    while not server.started and not task.done():  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)
    started.set()
    await task
