"""Malformed protobuf from a sensor: random bytes and mutated valid messages are either refused by
protobuf's own decoder (the gRPC layer answers that, before our code) or decode to messages whose
findings convert (collector/convert.py), export as JSON (Falco form, webhook) and are stored or
refused with a CollectorError; and a live collector fed them over a real stream keeps answering."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st

from collector.auth import AuthConfig, TokenStore
from collector.convert import event_to_pb, finding_from_pb, finding_to_pb, pb, rpc
from collector.errors import CollectorError
from collector.export import falco_json
from collector.server import create_server
from collector.store import SqlStore, fingerprint
from sensor.events import Event, Finding
from tests.fuzz.inputs import findings, fuzz, mutated

VALID = pb.SensorMessage(
    batch=pb.FindingBatch(seq=7, findings=[finding_to_pb(f) for f in findings()])).SerializeToString()
_EVENT = pb.Event(kind="exec", time_ns=1, args=["sh"], sc_args=[1])
# each field of a Finding set to an edge value: protobuf-valid, but not what a sensor sends
EDGES = st.builds(pb.Finding, kind=st.text(max_size=8), rule=st.text(max_size=8), priority=st.text(max_size=8),
                  output=st.text(max_size=20), time_ns=st.sampled_from([0, -1, 2**63 - 1, -(2**63)]),
                  tags=st.lists(st.text(max_size=4), max_size=3),
                  explanation_json=st.one_of(st.text(max_size=12), st.sampled_from(
                      ["[1, 2]", "3", "null", '"x"', '{"a": NaN}', "{" * 50, "[" * 100_000 + "]" * 100_000,
                       '{"expected": {"x": 1}}'])),
                  event=st.one_of(st.just(_EVENT), st.builds(
                      pb.Event, kind=st.text(max_size=6), time_ns=st.sampled_from([0, -1, 2**63 - 1]),
                      pid=st.sampled_from([0, -1, 2**63 - 1]), dport=st.sampled_from([0, -1, 65536, 2**63 - 1]),
                      cgroup_id=st.sampled_from([0, 2**64 - 1]), sc_args=st.lists(st.sampled_from([0, 2**64 - 1]))),
                  ))
MESSAGES = st.one_of(st.binary(max_size=300), mutated(VALID),
                     st.lists(EDGES, max_size=3).map(lambda fs: pb.SensorMessage(
                         batch=pb.FindingBatch(seq=1, findings=fs)).SerializeToString()))


def _usable(f: Finding) -> None:
    json.dumps(falco_json(f, "node"))
    json.dumps(f.to_dict(), default=str)
    fingerprint("s1", f)
    assert finding_from_pb(finding_to_pb(f)) == f


@fuzz(600)
@given(data=MESSAGES)
def test_a_malformed_message_decodes_to_usable_findings_or_is_refused(data: bytes) -> None:
    try:
        msg = pb.SensorMessage.FromString(data)
    except DecodeError:
        return  # what grpc's deserializer raises: the call fails before the servicer runs
    for f in msg.batch.findings:
        _usable(finding_from_pb(f))


@fuzz(100)
@given(data=MESSAGES)
def test_findings_from_a_malformed_batch_are_stored_or_refused(tmp_path: Path, data: bytes) -> None:
    try:
        msg = pb.SensorMessage.FromString(data)
    except DecodeError:
        return
    store = SqlStore.open(str(tmp_path / "c.db"))
    try:
        try:
            store.ingest("s1", "node", msg.batch.seq % 2**63, [finding_from_pb(f) for f in msg.batch.findings])
        except CollectorError:
            return
        for row in store.list_alerts(limit=10):
            json.dumps(falco_json(row.finding, row.node))
    finally:
        store.close()


def test_an_event_round_trips_with_every_field_at_its_edge() -> None:
    ev = Event("exec", 2**63 - 1, pid=2**63 - 1, cgroup_id=2**64 - 1, sc_args=(2**64 - 1,), syscall_nr=-1)
    assert finding_from_pb(pb.Finding(kind="k", event=event_to_pb(ev))).event == ev


@pytest.fixture
def collector(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(None), insecure=True))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel
    channel.close()
    server.stop(0).wait()
    store.close()


def test_a_live_collector_fed_malformed_streams_keeps_answering(collector: grpc.Channel) -> None:
    """Raw bytes on the sensor link (the stub's serializer bypassed), a few streams of them."""
    connect = collector.stream_stream("/cgsentry.v1.SensorLink/Connect", request_serializer=lambda b: b,
                                      response_deserializer=pb.CollectorMessage.FromString)
    hello = pb.SensorMessage(hello=pb.Hello(sensor_id="fz", node="n")).SerializeToString()
    cases = [b"\xff" * 9, VALID[:-3], VALID[:5] + b"\x00" * 8 + VALID[13:], b"\x12\x80\x80\x80\x80\x10",
             pb.SensorMessage(batch=pb.FindingBatch(seq=2**64 - 1)).SerializeToString()]
    for case in cases:
        try:
            for _ in connect(iter([hello, VALID, case]), timeout=3):
                pass
        except grpc.RpcError as err:
            assert err.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL,
                                  grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.CANCELLED), err
    analyst = rpc.AnalystStub(collector)
    assert len(analyst.ListAlerts(pb.AlertQuery(), timeout=5).alerts) == 3  # VALID, stored once
