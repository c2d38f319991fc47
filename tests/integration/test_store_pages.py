"""Listings bounded by the transport (issue 16 item 5), through the collector as it serves them:
findings of about 1 MiB each must not make the default `alerts list` exceed gRPC's 4 MiB limit."""

from __future__ import annotations

import json
from pathlib import Path

import grpc

from bench.workloads import deviation
from collector.auth import AuthConfig, TokenStore
from collector.convert import pb, rpc
from collector.server import create_server
from collector.store import SqlStore
from sensor.events import Finding


def big(i: int, size: int) -> Finding:
    ev = deviation("new_binary", 1_700_000_000_000_000_000 + i, i=i).pop()
    return Finding("new_process", "New Process", "WARNING", "o" * size, ev, time_ns=ev.time_ns)


def test_the_default_listing_of_large_findings_fits_one_message(tmp_path: Path) -> None:
    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(None), insecure=True))
    try:
        for i in range(5):  # 5 x 0.9 MiB: 4.5 MiB in one message would be refused
            store.ingest("s1", "n", i + 1, [big(i, 900 << 10)])
        legacy = json.dumps(big(9, 6 << 20).to_dict())  # stored by a collector without per-finding limits
        first = store.list_alerts(limit=1)[0].id
        store._exec("UPDATE alerts SET finding = ? WHERE id = ?", (legacy, first))  # noqa: SLF001
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            analyst = rpc.AnalystStub(channel)
            listed = analyst.ListAlerts(pb.AlertQuery(), timeout=30).alerts
            assert 1 <= len(listed) <= 3 and listed[0].id == first
            shown = analyst.GetAlert(pb.AlertId(id=first), timeout=30)
            assert "characters cut: the finding is" in shown.finding.output
    finally:
        server.stop(0)
        store.close()
