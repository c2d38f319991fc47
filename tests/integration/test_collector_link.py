"""In-process collector (port 0) + the sensor's link: delivery exactly once across collector
and sensor restarts, container actions routed down and audited, auth and input validation."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from collector.auth import AuthConfig, TokenStore
from collector.convert import pb, rpc
from collector.server import create_server
from collector.store import SqlStore
from sensor.agent.link import CollectorLink, LinkCallbacks, LinkConfig
from sensor.response import ActionResult
from sensor.spool import Spool
from tests.integration.helpers import finding
from tests.waiting import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(db: Path, port: int, auth: AuthConfig | None = None) -> tuple[grpc.Server, SqlStore]:
    store = SqlStore.open(str(db))
    server, _ = create_server(f"127.0.0.1:{port}", store, auth or AuthConfig(TokenStore(None), insecure=True))
    return server, store


def test_exactly_once_across_collector_and_sensor_restarts(tmp_path: Path) -> None:
    port = free_port()
    server, store = serve(tmp_path / "c.db", port)
    spool = Spool(tmp_path / "spool")
    link = CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id="s1"), spool).start()
    for i in range(10):
        link.submit([finding(i)])
    wait_for(lambda: store.count_alerts() == 10)
    server.stop(0).wait()  # collector dies mid-stream
    for i in range(10, 20):
        link.submit([finding(i)])  # spooled, never blocks
    link.close(0.5)  # the sensor restarts too, mid-spool
    assert spool.count() >= 10
    server, store = serve(tmp_path / "c.db", port)
    link2 = CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id="s1"), Spool(tmp_path / "spool")).start()
    for i in range(20, 25):
        link2.submit([finding(i)])
    wait_for(lambda: store.count_alerts() == 25)
    wait_for(lambda: link2.spool.count() == 0)
    rows = store.list_alerts(limit=100)
    assert sorted(int(r.finding.output.split()[1]) for r in rows) == list(range(25))
    assert all(r.count == 1 for r in rows)  # nothing stored twice
    link2.close()
    server.stop(0)


def test_container_action_routed_to_sensor_and_audited(tmp_path: Path) -> None:
    port = free_port()
    server, store = serve(tmp_path / "c.db", port)
    done: list[str] = []

    class FakeResponder:
        def act(self, action: str, container_id: str, cgroup_path: str = "", pid: int = 0) -> ActionResult:
            done.append(f"{action} {container_id}")
            return ActionResult(action, container_id, True, "", 1.5, "fake")

    cid = "ab" * 32
    link = CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id="s2", heartbeat_s=0.2), Spool(tmp_path / "sp"),
                         FakeResponder(),  # type: ignore[arg-type]
                         LinkCallbacks(containers=lambda: [cid])).start()
    wait_for(link.connected.is_set)
    time.sleep(0.5)  # a heartbeat tells the collector which containers s2 sees
    stub = rpc.AnalystStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    reply = stub.ContainerAction(pb.ContainerActionRequest(container_id=cid[:12], action=pb.ACTION_KIND_PAUSE,
                                                           reason="test"), timeout=10)
    assert reply.result.ok and done == [f"pause {cid}"]  # the sensor gets the full id a prefix resolved to
    audit = store.audit_entries()
    assert audit[0]["action"] == "pause" and audit[0]["result"] == "ok" and audit[0]["actor"] == "anonymous"
    with pytest.raises(grpc.RpcError) as info:
        stub.ContainerAction(pb.ContainerActionRequest(container_id="ffff", action=pb.ACTION_KIND_PAUSE), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    link.close()
    server.stop(0)


@pytest.fixture
def secured(tmp_path: Path) -> Any:
    tokens = TokenStore(tmp_path / "tokens")
    toks = {role: tokens.add(role, role) for role in ("viewer", "responder", "admin", "sensor")}
    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(tokens))
    yield port, toks, store
    server.stop(0)


def test_roles_and_tokens_are_enforced(secured: Any) -> None:
    port, toks, _ = secured
    stub = rpc.AnalystStub(grpc.insecure_channel(f"127.0.0.1:{port}"))

    def code(method: str, req: Any, token: str) -> grpc.StatusCode:
        md = [("authorization", f"Bearer {token}")] if token else []
        try:
            getattr(stub, method)(req, metadata=md, timeout=5)
            return grpc.StatusCode.OK
        except grpc.RpcError as err:
            return err.code()

    assert code("ListAlerts", pb.AlertQuery(), "") == grpc.StatusCode.UNAUTHENTICATED
    assert code("ListAlerts", pb.AlertQuery(), "wrong") == grpc.StatusCode.UNAUTHENTICATED
    assert code("ListAlerts", pb.AlertQuery(), toks["viewer"]) == grpc.StatusCode.OK
    pause = pb.ContainerActionRequest(container_id="x", action=pb.ACTION_KIND_PAUSE)
    assert code("ContainerAction", pause, toks["viewer"]) == grpc.StatusCode.PERMISSION_DENIED
    assert code("ContainerAction", pause, toks["responder"]) == grpc.StatusCode.NOT_FOUND  # allowed, no sensor
    mode = pb.ImageModeRequest(image="busybox:latest", mode="enforce", default_action="pause-container")
    assert code("SetImageMode", mode, toks["responder"]) == grpc.StatusCode.PERMISSION_DENIED
    assert code("SetImageMode", mode, toks["admin"]) == grpc.StatusCode.OK
    bad = pb.ImageModeRequest(image="busybox:latest", mode="panic")
    assert code("SetImageMode", bad, toks["admin"]) == grpc.StatusCode.INVALID_ARGUMENT
    assert code("ListAlerts", pb.AlertQuery(), toks["sensor"]) == grpc.StatusCode.PERMISSION_DENIED
    rules = pb.RuleSet(name="team", yaml="- list: x\n  items: [a]\n")
    assert code("PushRules", rules, toks["responder"]) == grpc.StatusCode.PERMISSION_DENIED
    assert code("PushRules", rules, toks["admin"]) == grpc.StatusCode.OK
    assert code("ListRuleSets", pb.Empty(), toks["viewer"]) == grpc.StatusCode.OK


def test_sensor_may_only_report_for_itself(secured: Any, tmp_path: Path) -> None:
    port, toks, store = secured
    link = CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id="other-sensor", token=toks["sensor"]),
                         Spool(tmp_path / "sp")).start()
    link.submit([finding(1)])
    time.sleep(1.5)
    assert not link.connected.is_set() and store.count_alerts() == 0
    link.close()
    ok = CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id="sensor", token=toks["sensor"]),
                       Spool(tmp_path / "sp2")).start()
    ok.submit([finding(2)])
    wait_for(lambda: store.count_alerts() == 1)
    ok.close()


def test_oversized_and_malformed_messages_are_refused(tmp_path: Path) -> None:
    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(None), insecure=True))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)])
    stub = rpc.AnalystStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.ListAlerts(pb.AlertQuery(image="x" * (5 << 20)), timeout=5)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    raw = channel.unary_unary("/cgsentry.v1.Analyst/ListAlerts")
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\xff\xff\xff garbage", timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    sensor = rpc.SensorLinkStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        list(sensor.Connect(iter([pb.SensorMessage(heartbeat=pb.Heartbeat())]), timeout=5))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # first message must be hello
    server.stop(0)


def test_pushed_rule_sets_reach_connected_and_later_sensors(tmp_path: Path) -> None:
    port = free_port()
    server, store = serve(tmp_path / "c.db", port)
    got: dict[str, list[tuple[str, str]]] = {"s1": [], "s2": []}

    def link(sid: str) -> CollectorLink:
        return CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id=sid, heartbeat_s=0.2), Spool(tmp_path / sid),
                             None,  # type: ignore[arg-type]
                             LinkCallbacks(on_rules=lambda name, text: got[sid].append((name, text)))).start()

    first = link("s1")
    wait_for(first.connected.is_set)
    stub = rpc.AnalystStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    text = ("- rule: Pushed\n  desc: d\n  condition: spawned_process and proc.name = zz\n  output: o\n"
            "  priority: WARNING\n")
    reply = stub.PushRules(pb.RuleSet(name="team", yaml=text), timeout=10)
    assert (reply.name, reply.rules, reply.sensors) == ("team", 1, 1)  # uses the library's macro
    wait_for(lambda: got["s1"] == [("team", text)])
    with pytest.raises(grpc.RpcError) as info:
        stub.PushRules(pb.RuleSet(name="team", yaml="- rule: [unclosed"), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "invalid YAML" in (info.value.details() or "")
    with pytest.raises(grpc.RpcError) as info:
        stub.PushRules(pb.RuleSet(name="../x", yaml=text), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    later = link("s2")  # connects after the push: gets the stored set on connect
    wait_for(lambda: got["s2"] == [("team", text)])
    assert [(r.name, r.actor) for r in stub.ListRuleSets(pb.Empty(), timeout=10).sets] == [("team", "anonymous")]
    stub.PushRules(pb.RuleSet(name="team", yaml=""), timeout=10)  # removal
    wait_for(lambda: got["s1"][-1] == ("team", "") and got["s2"][-1] == ("team", ""))
    assert store.rulesets() == [] and store.audit_entries()[0]["action"] == "remove rules"
    first.close()
    later.close()
    server.stop(0)
