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


class RawSensor:
    """A sensor link driven by hand: messages in through a queue, the collector's out in a list."""

    def __init__(self, port: int, sensor_id: str) -> None:
        self.inbox: queue.Queue[pb.SensorMessage | None] = queue.Queue()
        self.got: list[pb.CollectorMessage] = []
        self.inbox.put(pb.SensorMessage(hello=pb.Hello(sensor_id=sensor_id, node=sensor_id)))
        self.call = rpc.SensorLinkStub(grpc.insecure_channel(f"127.0.0.1:{port}")).Connect(iter(self.inbox.get, None))
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        try:
            for msg in self.call:
                self.got.append(msg)
        except grpc.RpcError:
            pass

    def send(self, **body: object) -> None:
        self.inbox.put(pb.SensorMessage(**body))  # type: ignore[arg-type]

    def acked(self, seq: int) -> bool:
        return any(m.WhichOneof("body") == "ack" and m.ack.seq == seq for m in self.got)

    def actions(self) -> list[pb.ContainerAction]:
        return [m.action for m in self.got if m.WhichOneof("body") == "action"]

    def close(self) -> None:
        self.inbox.put(None)
        self.call.cancel()


def test_actions_go_to_the_sensor_that_reported_the_container(tmp_path: Path) -> None:
    from collector.convert import finding_to_pb
    from tests.integration.helpers import finding

    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(None), insecure=True))
    sensors = {sid: RawSensor(port, sid) for sid in ("claimer", "reporter", "late")}
    try:
        wait_for(lambda: len(server.hub.sessions) == 3)
        f = finding(1)
        cid = f.event.container_id
        sensors["claimer"].send(heartbeat=pb.Heartbeat(containers=[cid]))  # a claim, first
        wait_for(lambda: server.hub.owners.get(cid) == ("claimer", False))
        sensors["reporter"].send(batch=pb.FindingBatch(seq=1, findings=[finding_to_pb(f)]))  # a report wins
        wait_for(lambda: server.hub.owners.get(cid) == ("reporter", True))
        sensors["claimer"].send(heartbeat=pb.Heartbeat(containers=[cid]))  # claims again: not obeyed
        sensors["late"].send(batch=pb.FindingBatch(seq=1, findings=[finding_to_pb(f)]))  # reports second
        wait_for(lambda: sensors["late"].acked(1))  # stored; the claim it makes is logged, not obeyed
        stub = rpc.AnalystStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        with pytest.raises(grpc.RpcError):  # nobody answers: the call times out, the action went out once
            stub.ContainerAction(pb.ContainerActionRequest(container_id=cid, action=pb.ACTION_KIND_PAUSE,
                                                           timeout_s=0.5), timeout=5)
        wait_for(lambda: len(sensors["reporter"].actions()) == 1)
        assert sensors["reporter"].actions()[0].container_id == cid
        assert sensors["claimer"].actions() == [] and sensors["late"].actions() == []
        assert cid not in server.hub.sessions["claimer"].containers
        sensors["reporter"].close()  # the holder leaves: the container is free to be claimed again
        wait_for(lambda: "reporter" not in server.hub.sessions)
        assert cid not in server.hub.owners
    finally:
        for s in sensors.values():
            s.close()
        server.stop(0)
        store.close()
