"""Open streams cannot starve the collector: sensor links and watches are coroutines, so more of
them than the analyst thread pool has threads still leave analysts answered; a stream that never
says hello is closed; a message that is not protobuf is refused with INVALID_ARGUMENT."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from collector.auth import AuthConfig, TokenStore
from collector.convert import pb, rpc
from collector.server import create_server
from collector.store import SqlStore
from tests.waiting import wait_for


def _hello_then_idle(sensor_id: str, stop: threading.Event) -> Iterator[pb.SensorMessage]:
    yield pb.SensorMessage(hello=pb.Hello(sensor_id=sensor_id, node="n"))
    stop.wait()


def test_more_open_streams_than_threads_leave_analysts_answered(tmp_path: Path) -> None:
    store = SqlStore.open(str(tmp_path / "c.db"))
    workers = 4  # the analyst pool; the old server held one of these per open stream
    server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(None), insecure=True), workers=workers)
    stop = threading.Event()
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for _ in range(3 * workers)]
    calls = []
    try:
        for i, ch in enumerate(channels[:2 * workers]):  # sensors that said hello and stay idle
            calls.append(rpc.SensorLinkStub(ch).Connect(_hello_then_idle(f"s{i}", stop)))
        for ch in channels[2 * workers:]:  # analysts watching for alerts
            calls.append(rpc.AnalystStub(ch).WatchAlerts(pb.AlertQuery()))
        wait_for(lambda: len(server.hub.sessions) == 2 * workers)
        stub = rpc.AnalystStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        for _ in range(3 * workers):  # more calls than threads, one after another: none waits for a stream
            assert len(stub.ListSensors(pb.Empty(), timeout=5).sensors) == 2 * workers
    finally:
        stop.set()
        for c in calls:
            c.cancel()
        server.stop(0)
        store.close()


def test_a_stream_without_hello_is_closed(tmp_path: Path) -> None:
    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(None), insecure=True),
                                 hello_timeout_s=0.5)
    silent: queue.Queue[pb.SensorMessage] = queue.Queue()  # never yields a message
    try:
        stream = rpc.SensorLinkStub(grpc.insecure_channel(f"127.0.0.1:{port}")).Connect(iter(silent.get, None))
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            next(stream)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "no hello within 0.5 s" in (info.value.details() or "")
        assert time.monotonic() - start < 10  # closed by the server, not by a client deadline (none set)
        assert server.hub.sessions == {}
    finally:
        silent.put(None)  # type: ignore[arg-type]
        server.stop(0)
        store.close()


def test_messages_that_are_not_protobuf_are_invalid_argument(tmp_path: Path) -> None:
    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(None), insecure=True))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary("/cgsentry.v1.Analyst/ListAlerts")(b"\xff\xff\xff garbage", timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed request" in (info.value.details() or "")
        with pytest.raises(grpc.RpcError) as info:
            list(channel.unary_stream("/cgsentry.v1.Analyst/WatchAlerts")(b"\xff\xff\xff garbage", timeout=5))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed request" in (info.value.details() or "")
        hello = pb.SensorMessage(hello=pb.Hello(sensor_id="s", node="n")).SerializeToString()
        connect = channel.stream_stream("/cgsentry.v1.SensorLink/Connect")
        with pytest.raises(grpc.RpcError) as info:
            list(connect(iter([hello, b"\xff\xff\xff garbage"]), timeout=5))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed request" in (info.value.details() or "")
    finally:
        server.stop(0)
        store.close()
