"""Collector -> sensors: fleet baselines merged from every sensor's snapshot, and a suppressed
model alert that becomes part of the image's baseline on the sensors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import grpc
import msgpack

from bench.workloads import IMAGE_ID, deviation
from collector.auth import AuthConfig, TokenStore
from collector.convert import pb, rpc
from collector.server import create_server
from collector.store import SqlStore
from models import store as model_store
from models.engine import ModelEngine
from sensor.agent.link import CollectorLink, LinkCallbacks, LinkConfig
from sensor.spool import Spool
from tests.integration.helpers import FLEET_CFG as CFG
from tests.integration.helpers import learned
from tests.waiting import wait_for


def test_fleet_baseline_reaches_the_other_sensor(tmp_path: Path) -> None:
    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(None), insecure=True))
    a_eng = learned(range(0, 2))
    received: list[tuple[str, bytes]] = []
    snap = msgpack.packb(model_store.to_dict(a_eng.images[IMAGE_ID]), use_bin_type=True)
    b = CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id="b"), Spool(tmp_path / "b"),
                      callbacks=LinkCallbacks(on_baseline=lambda k, p: received.append((k, p)))).start()
    wait_for(b.connected.is_set)
    other = "sha256:" + "e" * 64
    a = CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id="a", heartbeat_s=0.2, snapshot_s=0.2),
                      Spool(tmp_path / "a"), callbacks=LinkCallbacks(
                          snapshots=lambda: [(IMAGE_ID, snap), (other, snap)],
                          container_images=lambda: {"c" * 64: IMAGE_ID})).start()
    wait_for(lambda: bool(received))
    time.sleep(0.5)  # a few more snapshot rounds
    # only the image a's containers run: a snapshot of another image changes no fleet baseline
    assert {k for k, _ in received} == {IMAGE_ID} and store.snapshots(other) == []
    key, payload = received[0]
    b_eng = ModelEngine(CFG)
    merged = b_eng.merge_snapshot(msgpack.unpackb(payload, raw=False, strict_map_key=False))
    assert key == IMAGE_ID and merged.mode == "alert"  # the second node does not relearn from zero
    assert len(merged.profile.containers) == 2
    assert b_eng.handle(deviation("new_binary", 2_000_000_000 * 10**9)[0])  # and detects at once
    a.close()
    b.close()
    server.stop(0)


def test_suppressed_model_alert_joins_the_baseline(tmp_path: Path) -> None:
    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(None), insecure=True))
    eng = learned(range(0, 1))
    accepted: list[Any] = []
    link = CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id="s"), Spool(tmp_path / "s"),
                         callbacks=LinkCallbacks(on_accept=accepted.append)).start()
    [finding] = eng.handle(deviation("new_listen_port", 2_000_000_000 * 10**9)[0])
    link.submit([finding])
    wait_for(lambda: store.count_alerts() == 1)
    stub = rpc.AnalystStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    alert_id = stub.ListAlerts(pb.AlertQuery(), timeout=5).alerts[0].id
    stub.UpdateAlert(pb.AlertUpdate(id=alert_id, status=pb.ALERT_STATUS_SUPPRESSED, comment="debug port"), timeout=5)
    wait_for(lambda: bool(accepted))
    item = accepted[0]
    assert (item.dimension, json.loads(item.key_json), item.reason) == ("listen", ["tcp", 4444], "debug port")
    b = eng.get(item.image_key)
    b.accept(item.dimension, tuple(json.loads(item.key_json)), item.actor, time.time_ns(), item.reason)
    again = deviation("new_listen_port", 2_000_000_001 * 10**9, i=1)[0]
    assert eng.handle(again) == []  # the same port in another container is now expected
    assert b.life.audit[-1]["action"] == "accept listen tcp 4444"
    assert "baseline item sent to 1 sensor" in store.audit_entries()[0]["result"]
    link.close()
    server.stop(0)
