"""Analyst streaming and health: WatchAlerts delivers only new alerts matching its filter, needs a
token like every other RPC, and the standard grpc.health.v1 service reports SERVING."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from collector.auth import AuthConfig, TokenStore
from collector.convert import finding_from_pb, pb, rpc
from collector.server import create_server
from collector.store import SqlStore
from sensor.events import EXEC, Event, Finding


def _finding(i: int, image: str) -> Finding:
    ev = Event(EXEC, 1_700_000_000_000_000_000 + i, pid=i, exe=f"/bin/x{i}", container_id="c" * 64, image=image)
    return Finding("new_process", "New Process", "WARNING", f"finding {i}", ev, time_ns=ev.time_ns)


@pytest.fixture
def live(tmp_path: Path) -> Any:
    tokens = TokenStore(tmp_path / "tokens")
    viewer = tokens.add("ana", "viewer")
    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(tokens))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel, store, [("authorization", f"Bearer {viewer}")]
    channel.close()
    server.stop(0)
    store.close()


def test_health_reports_serving(live: Any) -> None:
    channel, _, _ = live
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "cgsentry.v1.SensorLink", "cgsentry.v1.Analyst"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_watch_streams_only_new_matching_alerts(live: Any) -> None:
    channel, store, md = live
    store.ingest("s1", "n1", 1, [_finding(0, "web:1")])  # before the watch: not streamed
    stream = rpc.AnalystStub(channel).WatchAlerts(pb.AlertQuery(image="web:1"), metadata=md, timeout=20)
    got: list[int] = []

    def read() -> None:
        try:
            for alert in stream:
                got.append(int(finding_from_pb(alert.finding).output.split()[1]))
        except grpc.RpcError:
            pass  # cancelled at the end of the test

    threading.Thread(target=read, daemon=True).start()
    # the watch starts when the server runs the handler, which the client cannot observe: keep
    # adding alerts (one per image) until some arrive, then check what did.
    seq = 1
    while not got and seq < 200:
        seq += 1
        store.ingest("s1", "n1", seq, [_finding(2 * seq, "db:1"), _finding(2 * seq + 1, "web:1")])
        time.sleep(0.1)
    store.ingest("s1", "n1", 1000, [_finding(9999, "web:1")])
    deadline = time.monotonic() + 10
    while 9999 not in got and time.monotonic() < deadline:
        time.sleep(0.05)
    stream.cancel()
    assert got and got[-1] == 9999, got
    assert all(i % 2 == 1 for i in got[:-1]), got  # only web:1, never db:1 nor the pre-watch alert 0
    assert got == sorted(set(got))  # each alert once, in order


def test_watch_without_token_is_refused(live: Any) -> None:
    channel, _, _ = live
    with pytest.raises(grpc.RpcError) as info:
        next(rpc.AnalystStub(channel).WatchAlerts(pb.AlertQuery(), timeout=5))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_watch_streams_a_resolved_alert_again_when_it_recurs(live: Any) -> None:
    """A recurrence reopens an alert under its old id; a watch that only streamed new ids missed it."""
    channel, store, md = live
    store.ingest("s1", "n1", 1, [_finding(7, "web:1")])
    [row] = store.list_alerts()
    store.update_alert(row.id, "resolved", "patched")
    stream = rpc.AnalystStub(channel).WatchAlerts(pb.AlertQuery(image="web:1"), metadata=md, timeout=20)
    got: list[tuple[int, str]] = []

    def read() -> None:
        try:
            for alert in stream:
                got.append((alert.id, finding_from_pb(alert.finding).output))
        except grpc.RpcError:
            pass

    threading.Thread(target=read, daemon=True).start()
    seq, later = 1, _finding(7, "web:1")
    while not any(i == row.id for i, _ in got) and seq < 100:  # the watch starts at some point: recur until seen
        seq += 1
        later = Finding(later.kind, later.rule, later.priority, f"finding {seq}", later.event.replace(
            time_ns=later.event.time_ns + 1000), time_ns=later.time_ns + 1000)
        store.ingest("s1", "n1", seq, [later])
        if seq % 2:  # resolve it again, so the next recurrence reopens it again
            store.update_alert(row.id, "resolved", "patched")
        time.sleep(0.3)
    stream.cancel()
    assert any(i == row.id for i, _ in got), got
    assert store.get_alert(row.id).status == "open"
