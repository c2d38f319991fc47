"""Collector ingest: findings/s with several concurrent sensor streams, SQLite vs PostgreSQL.

A real collector (gRPC on loopback, the production servicers and store) and N real sensor links
(sensor/link.py: spool, batching, acks), each from its own thread. A stream is done when its spool
is empty, i.e. every batch was acknowledged as stored. Then the store is checked: the sum of alert
counts must equal the findings sent (no loss, no double count), with 1 in 5 findings a repeat that
dedupes into an existing alert. ``python -m bench.ingest [--smoke]`` prints JSON.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.overhead import machine
from bench.pgserver import PG_BIN, create_database, throwaway_postgres
from bench.workloads import deviation
from collector.auth import AuthConfig, TokenStore
from collector.server import create_server
from collector.store import SqlStore
from sensor.events import Finding
from sensor.link import CollectorLink, LinkConfig
from sensor.spool import Spool

BATCH = 50  # findings per submit: what a busy sensor flushes per tick


def findings(stream: int, n: int) -> list[Finding]:
    """``n`` findings of one stream: 4 in 5 new (a new alert row), 1 in 5 a repeat of an earlier one."""
    out: list[Finding] = []
    for i in range(n):
        key = i if i % 5 or i == 0 else i - 1
        ev = deviation("new_binary", 1_700_000_000_000_000_000 + i, i=stream % 20).pop()
        out.append(Finding("new_process", "New Process", "WARNING", f"stream {stream} finding {key}",
                           ev.replace(exe=f"/tmp/s{stream}-{key}", pid=1000 + key), time_ns=ev.time_ns + i))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(url: str, streams: int, per_stream: int, tmp: Path) -> dict[str, Any]:
    store = SqlStore.open(url)
    port = _free_port()
    server, _ = create_server(f"127.0.0.1:{port}", store, AuthConfig(TokenStore(None), insecure=True))
    work = [findings(s, per_stream) for s in range(streams)]
    links = [CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id=f"bench-{streams}-{s}", node="bench"),
                           Spool(tmp / f"spool-{streams}-{s}")).start() for s in range(streams)]
    try:
        deadline = time.monotonic() + 30
        while not all(link.connected.is_set() for link in links) and time.monotonic() < deadline:
            time.sleep(0.01)

        def send(link: CollectorLink, batch: list[Finding]) -> None:
            for i in range(0, len(batch), BATCH):
                link.submit(batch[i:i + BATCH])

        t0 = time.perf_counter()
        threads = [threading.Thread(target=send, args=(link, w)) for link, w in zip(links, work, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.monotonic() + 300
        while any(link.spool.count() for link in links) and time.monotonic() < deadline:
            time.sleep(0.005)
        seconds = time.perf_counter() - t0
        stored = store.total_findings(f"bench-{streams}-")
    finally:
        for link in links:
            link.close(1.0)
        server.stop(0).wait()
        store.close()
    sent = streams * per_stream
    return {"streams": streams, "findings_sent": sent, "findings_stored": stored, "lossless": stored == sent,
            "seconds": round(seconds, 2), "findings_per_s": round(sent / seconds)}


def run(smoke: bool = False) -> dict[str, Any]:
    plan = [1, 2] if smoke else [1, 4, 8]
    per_stream = 200 if smoke else 2000
    out: dict[str, Any] = {"benchmark": "ingest", "smoke": smoke, "machine": machine(), "batch": BATCH,
                           "per_stream": per_stream, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="cgsentry-ingest-") as tmp_s:
        tmp = Path(tmp_s)
        out["backends"]["sqlite"] = [measure(f"sqlite:///{tmp}/c{n}.db", n, per_stream, tmp / "sq") for n in plan]
        if PG_BIN is None:
            out["backends"]["postgresql"] = {"skipped": "PostgreSQL server binaries missing"}
            return out
        with throwaway_postgres() as base:
            out["backends"]["postgresql"] = [measure(create_database(base, f"ingest{n}"), n, per_stream, tmp / "pg")
                                             for n in plan]
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    print(json.dumps(run(ap.parse_args().smoke), indent=2))
    sys.exit(0)
