"""Failed connects are new endpoints too, and a scan is one finding (issue 21 item 3)."""

from __future__ import annotations

from models.baseline import ModelConfig
from models.engine import ModelEngine
from sensor.events import Event

CID = "c" * 64
IMAGE = "sha256:scan"
S = 1_000_000_000


def conn(t: float, daddr: str, dport: int, ret: int = 0, proto: str = "tcp", family: str = "ipv4") -> Event:
    return Event("connect", int(t * S), pid=7, comm="app", exe="/app", container_id=CID, container_name="web-1",
                 image="app:1", image_id=IMAGE, runtime="docker", proto=proto, family=family,
                 daddr=daddr, dport=dport, ret=ret)


def engine() -> ModelEngine:
    eng = ModelEngine(ModelConfig(window_s=1, min_learn_s=1, stable_s=1))
    for t in range(5):
        eng.handle(conn(t, "10.0.0.5", 5432))  # the database, learned
        eng.handle(conn(t + 0.5, "10.0.0.5", 5432, ret=-111))  # ... also while it was down
    eng.set_mode(IMAGE, "alert", "test", 6 * S)
    return eng


def test_refused_and_timed_out_connects_to_new_endpoints_are_findings() -> None:
    eng = engine()
    assert eng.handle(conn(10, "10.0.0.5", 5432, ret=-111)) == []  # a known peer, down: quiet
    assert eng.handle(conn(10.1, "10.0.0.5", 5432)) == []  # ... and reconnected
    refused = eng.handle(conn(11, "203.0.113.9", 4444, ret=-111))
    assert [f.rule for f in refused] == ["New Outbound Endpoint"]
    assert "ECONNREFUSED" in refused[0].output
    timed_out = eng.handle(conn(12, "2001:db8::1", 53, ret=-110, proto="udp", family="ipv6"))
    assert [f.rule for f in timed_out] == ["New Outbound Endpoint"] and "ETIMEDOUT" in timed_out[0].output


def test_many_new_endpoints_are_one_scan_finding() -> None:
    eng = engine()
    found = []
    for i, port in enumerate(range(20, 60)):
        found += eng.handle(conn(20 + i * 0.01, "10.0.0.9", port, ret=-111))
    rules = [f.rule for f in found]
    assert rules.count("New Outbound Endpoint") == 7  # the first seven, before it was a scan
    scans = [f for f in found if f.rule == "Outbound Scan"]
    assert [f.explanation["count"] for f in scans] == [8, 16, 32]  # again only when it doubles
    assert scans[0].priority == "ERROR" and scans[-1].explanation["failed"] == 32
    assert scans[-1].explanation["hosts"] == ["10.0.0.9"] and scans[-1].explanation["ports"][:2] == [20, 21]
    assert "32 new endpoints" in scans[-1].output and "ports 20, 21" in scans[-1].output
    # a host sweep on one port is a scan too (each host its own endpoint, though one /24 item)
    sweep = []
    for i in range(10):
        sweep += eng.handle(conn(100 + i * 0.01, f"192.168.7.{i + 1}", 22, ret=-113))
    assert [f.explanation["count"] for f in sweep if f.rule == "Outbound Scan"] == [8]
    assert "hosts 192.168.7.1, 192.168.7.2," in [f for f in sweep if f.rule == "Outbound Scan"][0].output


def test_a_few_new_endpoints_spread_out_are_not_a_scan() -> None:
    eng = engine()
    found = []
    for i in range(10):
        found += eng.handle(conn(200 + i * 11, f"198.51.{i}.1", 443))  # over 10 s apart
    assert "Outbound Scan" not in [f.rule for f in found]
    assert [f.rule for f in found].count("New Outbound Endpoint") == 10
