"""What the collector refuses on a sensor link, and what goes on (issue 16 items 4 and 7).

A batch the store can never hold is refused on its own (BatchRefused with the reason) and the
link and the later batches go on; the sensor sets it aside in its spool's quarantine instead of
resending it forever. A database that is gone acknowledges nothing (the sensor resends later).
A sensor that reports more containers, images or names than one session remembers is refused
with RESOURCE_EXHAUSTED."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from collector import sensorlink
from collector.auth import AuthConfig, TokenStore
from collector.convert import finding_to_pb, pb, rpc
from collector.server import create_server
from collector.store import MAX_FINDING_BYTES, SqlStore
from sensor.agent.link import CollectorLink, LinkConfig
from sensor.events import Finding
from sensor.spool import Spool
from tests.integration.helpers import finding
from tests.waiting import wait_for


@pytest.fixture
def open_collector(tmp_path: Path) -> Iterator[tuple[str, SqlStore]]:
    """A collector on port 0 that takes any sensor (--insecure): (address, store)."""
    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(None), insecure=True))
    yield f"127.0.0.1:{port}", store
    server.stop(0)
    store.close()


def hello(sensor_id: str = "s1") -> pb.SensorMessage:
    return pb.SensorMessage(hello=pb.Hello(sensor_id=sensor_id, node="n1", version="t"))


def batch(seq: int, *findings: pb.Finding) -> pb.SensorMessage:
    return pb.SensorMessage(batch=pb.FindingBatch(seq=seq, findings=list(findings)))


def answers(address: str, messages: list[pb.SensorMessage]) -> list[tuple[str, int, str]]:
    """Send ``messages`` on one link, then close it: what the collector answered, as
    (kind, seq, reason) — the welcome ack (seq 0) left out."""
    with grpc.insecure_channel(address) as channel:
        replies = list(rpc.SensorLinkStub(channel).Connect(iter(messages), timeout=30))
    out = [("ack", m.ack.seq, "") if m.WhichOneof("body") == "ack" else
           ("refused", m.refused.seq, m.refused.reason) for m in replies
           if m.WhichOneof("body") in ("ack", "refused")]
    return [a for a in out if a != ("ack", 0, "")]


def oversized(i: int) -> Finding:
    return finding(i).replace(output="x" * (MAX_FINDING_BYTES + 10))


BAD = {"oversized": lambda: finding_to_pb(oversized(2)),
       "not finite": lambda: pb.Finding(kind="new_process", rule="R", priority="WARNING", output="o",
                                        event=finding_to_pb(finding(2)).event, explanation_json='{"score": NaN}')}


@pytest.mark.parametrize("bad", sorted(BAD))
def test_a_refused_batch_is_answered_and_later_batches_go_on(open_collector: Any, bad: str) -> None:
    address, store = open_collector
    got = answers(address, [hello(), batch(1, finding_to_pb(finding(1))), batch(2, BAD[bad]()),
                            batch(3, finding_to_pb(finding(3)))])
    assert [(kind, seq) for kind, seq, _ in got] == [("ack", 1), ("refused", 2), ("ack", 3)]
    reason = got[1][2]
    assert reason.startswith("batch 2 refused: findings[0]")
    assert ("over the limit of 1,048,576 bytes" if bad == "oversized" else "is not a finite number") in reason
    assert sorted(r.finding.output for r in store.list_alerts()) == ["finding 1", "finding 3"]


def test_a_sequence_number_past_int64_is_refused_and_the_link_goes_on(open_collector: Any) -> None:
    address, store = open_collector
    got = answers(address, [hello(), batch(1 << 63, finding_to_pb(finding(1))), batch(5, finding_to_pb(finding(5)))])
    assert got[0][:2] == ("refused", 1 << 63) and "is outside 0 to 2^63-1" in got[0][2]
    assert got[1:] == [("ack", 5, "")]
    assert [r.finding.output for r in store.list_alerts()] == ["finding 5"]


def test_a_database_that_is_gone_acknowledges_nothing(tmp_path: Path, open_collector: Any) -> None:
    """Unavailable is not a refusal: no ack, no BatchRefused (the sensor keeps the batch and resends
    it once the collector can store again); the link ends with UNAVAILABLE and the reason."""
    address, _store = open_collector

    def messages() -> Iterator[pb.SensorMessage]:
        yield hello()
        yield batch(1, finding_to_pb(finding(1)))
        wait_for(lambda: (tmp_path / "c.db").exists() and _store.count_alerts() == 1)
        (tmp_path / "c.db").unlink()
        yield batch(2, finding_to_pb(finding(2)))
        yield batch(3, finding_to_pb(finding(3)))

    seen: list[pb.CollectorMessage] = []
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as info:
        for reply in rpc.SensorLinkStub(channel).Connect(messages(), timeout=30):
            seen.append(reply)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "was deleted while the collector ran" in (info.value.details() or "")
    assert [(m.WhichOneof("body"), m.ack.seq) for m in seen if m.WhichOneof("body") != "policy"] == [
        ("ack", 0), ("ack", 1)]


def test_the_sensor_quarantines_a_refused_batch_and_does_not_resend_it(tmp_path: Path, open_collector: Any,
                                                                        caplog: Any) -> None:
    address, store = open_collector
    caplog.set_level(logging.WARNING)
    spool = Spool(tmp_path / "spool")
    link = CollectorLink(LinkConfig(address, sensor_id="s1"), spool).start()
    link.submit([finding(1)])
    bad = link.submit([oversized(2)])
    link.submit([finding(3)])
    wait_for(lambda: store.count_alerts() == 2 and spool.quarantined == 1)
    link.submit([finding(4)])
    wait_for(lambda: store.count_alerts() == 3 and not list(spool.pending()))
    assert link.stats()["spool_quarantined_batches"] == 1 and link.stats()["link_refused"] == 1
    [aside] = spool.quarantine_files()
    record = spool.read_quarantined(aside)
    assert record["seq"] == bad and "over the limit of 1,048,576 bytes" in record["reason"]
    assert len(record["findings"]) == 1 and record["findings"][0]["output"] == oversized(2).output
    last = link.submit([oversized(5)])  # refused with nothing after it: no later ack covers it
    wait_for(lambda: spool.quarantined == 2)
    link.close()

    def refusals() -> int:
        return sum(f"batch {last} refused" in r.getMessage() for r in caplog.records
                   if r.name == "collector.sensorlink")

    before = refusals()
    restarted = Spool(tmp_path / "spool")
    assert [seq for seq, _ in restarted.pending()] == [] and restarted.quarantined == 2
    again = CollectorLink(LinkConfig(address, sensor_id="s1"), restarted).start()
    again.submit([finding(6)])
    wait_for(lambda: store.count_alerts() == 4)  # the restarted link resent what was pending first
    again.close()
    assert before >= 1 and refusals() == before  # the quarantined batch was never sent again
    assert sorted(r.finding.output for r in store.list_alerts()) == [f"finding {i}" for i in (1, 3, 4, 6)]


# -- item 7: what one sensor's session remembers is bounded --------------------------------------
def link_error(address: str, messages: list[pb.SensorMessage]) -> tuple[grpc.StatusCode, str, list[int]]:
    """(status, details, acked seqs) of a link the collector ends."""
    acked: list[int] = []
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as info:
        for reply in rpc.SensorLinkStub(channel).Connect(iter(messages), timeout=30):
            if reply.WhichOneof("body") == "ack" and reply.ack.seq:
                acked.append(reply.ack.seq)
    return info.value.code(), info.value.details() or "", acked


def test_a_heartbeat_past_the_container_cap_is_resource_exhausted(open_collector: Any) -> None:
    address, _ = open_collector
    ids = [f"c{i}" for i in range(sensorlink.MAX_CONTAINERS + 1)]
    beat = pb.SensorMessage(heartbeat=pb.Heartbeat(containers=ids))
    code, details, _ = link_error(address, [hello(), beat])
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details == ("sensor s1 reported more than 65,536 containers on one link, the most the collector "
                       "remembers for a sensor: link closed (a new link starts afresh)")


@pytest.mark.parametrize(("cap", "what", "vary"), [
    ("MAX_CONTAINERS", "containers", lambda f, i: f.replace(event=f.event.replace(container_id=f"c{i}"))),
    ("MAX_IMAGES", "images", lambda f, i: f.replace(event=f.event.replace(image_id=f"sha256:{i:064x}"))),
    ("MAX_NAMES", "container names", lambda f, i: f.replace(event=f.event.replace(container_name=f"n{i}")))])
def test_findings_past_a_session_cap_are_refused_unstored(open_collector: Any, monkeypatch: Any, cap: str,
                                                          what: str, vary: Any) -> None:
    address, store = open_collector
    monkeypatch.setattr(sensorlink, cap, 3)
    first = [finding_to_pb(vary(finding(i), i)) for i in range(3)]
    over = [finding_to_pb(vary(finding(i), i)) for i in range(3, 5)]
    code, details, acked = link_error(address, [hello(), batch(1, *first), batch(2, *first), batch(3, *over)])
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and f"more than 3 {what} on one link" in details
    assert acked == [1, 2] and store.count_alerts() == 3  # the batch past the cap is not stored, nor acked
    assert answers(address, [hello(), batch(3, *over)]) == [("ack", 3, "")]  # a new link starts afresh


def test_a_hello_longer_than_any_real_one_is_refused(open_collector: Any) -> None:
    address, store = open_collector
    huge = pb.SensorMessage(hello=pb.Hello(sensor_id="s1", node="n" * 100_000))
    code, details, _ = link_error(address, [huge, batch(1, finding_to_pb(finding(1)))])
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "hello.node is 100,000 characters, over the limit of 512"
    assert store.count_alerts() == 0 and store.sensors() == []
