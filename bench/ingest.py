"""Collector ingest: findings/s with several concurrent sensor streams, SQLite vs PostgreSQL.

A real collector (gRPC on loopback, the production servicers and store) and N real sensor links
(sensor/agent/link.py: spool, batching, acks), each from its own thread. A stream is done when its last batch
was acknowledged as stored (and its spool files must then hold nothing left to resend). Then the store is checked:
the sum of alert counts must equal the findings sent (no loss, no double count), with 1 in 5 findings a repeat that
dedupes into an existing alert, and the alert rows must equal the distinct fingerprints sent. Findings
vary over images, rules and containers. Batch ack latency is submit (spooled) -> ack received by the
sensor, i.e. it includes the collector's commit: "paced" with one batch in flight per stream (first
PACED_BATCHES batches), "burst" with the rest submitted at once (queueing included; the rate is
measured on the burst). ``python -m bench.ingest [--smoke]`` prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.overhead import machine
from bench.pgserver import PG_BIN, create_database, throwaway_postgres
from bench.workloads import deviation
from collector.auth import AuthConfig, TokenStore
from collector.server import create_server
from collector.store import SqlStore, fingerprint
from sensor.agent.link import CollectorLink, LinkConfig
from sensor.events import Finding
from sensor.spool import Spool

BATCH = 50  # findings per submit: what a busy sensor flushes per tick
PACED_BATCHES = 10  # per stream, sent one at a time for the unloaded ack latency, before the burst


# (rule, kind, priority, exe): what a busy fleet reports — model and rule findings mixed
KINDS = (("New Process", "new_process", "WARNING", "/tmp/xmrig"),
         ("Shell Spawned by Server", "rule", "ERROR", "/bin/sh"),
         ("Network Tool Launched in Container", "rule", "NOTICE", "/usr/bin/nc"))
IMAGES = ("web:1.4", "api:2.0", "cache:7.2")


def findings(stream: int, n: int) -> list[Finding]:
    """``n`` findings of one stream: 4 in 5 new (a new alert row), 1 in 5 a repeat of an earlier one.
    They rotate over rules, images and four containers per stream, so rows spread over all of them."""
    out: list[Finding] = []
    for i in range(n):
        key = i if i % 5 or i == 0 else i - 1
        rule, kind, prio, exe = KINDS[key % len(KINDS)]
        ev = deviation("new_binary", 1_700_000_000_000_000_000 + i, i=stream % 20).pop()
        ev = ev.replace(exe=exe, args=(exe.rsplit("/", 1)[-1], f"--n={key}"), pid=1000 + key,
                        image=IMAGES[(key // 3) % len(IMAGES)], container_id=f"{stream:04x}{key % 4:060x}",
                        container_name=f"s{stream}-c{key % 4}")
        out.append(Finding(kind, rule, prio, f"stream {stream} finding {key}", ev, time_ns=ev.time_ns + i))
    return out


class TimedSpool(Spool):
    """The sensor's real spool, noting when each batch was appended and when its ack arrived."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.appended: dict[int, float] = {}
        self.ack_ms: list[float] = []
        self.acked_cv = threading.Condition()

    def append(self, batch: list[Finding]) -> int:
        t = time.perf_counter()
        seq = super().append(batch)
        self.appended[seq] = t
        return seq

    def ack(self, seq: int) -> None:
        t = self.appended.pop(seq, None)
        if t is not None:
            self.ack_ms.append((time.perf_counter() - t) * 1e3)
        super().ack(seq)
        with self.acked_cv:
            self.acked_cv.notify_all()

    def wait_acked(self, seq: int, timeout_s: float) -> bool:
        """Cheap, unlike polling ``count()``, which reads the spool files back."""
        with self.acked_cv:
            return self.acked_cv.wait_for(lambda: self.acked >= seq, timeout_s)


def _in_threads(fn: Callable[[CollectorLink, TimedSpool, list[Finding]], None], links: list[CollectorLink],
                work: list[list[Finding]]) -> float:
    """``fn`` per stream, each in its own thread; the seconds until all returned."""
    t0 = time.perf_counter()
    threads = [threading.Thread(target=fn, args=(link, link.spool, w)) for link, w in zip(links, work, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def paced(link: CollectorLink, spool: TimedSpool, batch: list[Finding]) -> None:
    """One batch in flight: the ack latency of a sensor that is not backlogged."""
    for i in range(0, len(batch), BATCH):
        spool.wait_acked(link.submit(batch[i:i + BATCH]), 60)


def burst(link: CollectorLink, spool: TimedSpool, batch: list[Finding]) -> None:
    """Everything at once, as a sensor draining its spool after an outage: the ingest rate."""
    last = 0
    for i in range(0, len(batch), BATCH):
        last = link.submit(batch[i:i + BATCH])
    spool.wait_acked(last, 300)


def _ms(xs: list[float], q: int) -> float | None:
    return round(float(np.percentile(xs, q)), 2) if xs else None


def measure(url: str, streams: int, per_stream: int, tmp: Path) -> dict[str, Any]:
    store = SqlStore.open(url)
    server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(None), insecure=True))
    work = [findings(s, per_stream) for s in range(streams)]
    n_paced = min(PACED_BATCHES, per_stream // BATCH // 2) * BATCH
    spools = [TimedSpool(tmp / f"spool-{streams}-{s}") for s in range(streams)]
    links = [CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id=f"bench-{streams}-{s}", node="bench"),
                           spools[s]).start() for s in range(streams)]
    try:
        deadline = time.monotonic() + 30
        while not all(link.connected.is_set() for link in links) and time.monotonic() < deadline:
            time.sleep(0.01)
        _in_threads(paced, links, [w[:n_paced] for w in work])
        paced_ms = [x for sp in spools for x in sp.ack_ms]
        for sp in spools:
            sp.ack_ms = []
        seconds = _in_threads(burst, links, [w[n_paced:] for w in work])
        unacked = sum(sp.count() for sp in spools)  # the spool files agree: nothing left to resend
        stored, rows = store.total_findings(f"bench-{streams}-"), store.count_alerts()
    finally:
        for link in links:
            link.close(1.0)
        server.stop(0).wait()
        store.close()
    sent, burst_ms = streams * per_stream, [x for sp in spools for x in sp.ack_ms]
    distinct = len({fingerprint(f"bench-{streams}-{s}", f) for s, w in enumerate(work) for f in w})
    return {"streams": streams, "findings_sent": sent, "findings_stored": stored,
            "lossless": stored == sent and unacked == 0, "alert_rows": rows, "alert_rows_expected": distinct,
            "burst_findings": sent - streams * n_paced, "seconds": round(seconds, 2),
            "findings_per_s": round((sent - streams * n_paced) / seconds),
            "batches_acked": len(paced_ms) + len(burst_ms),
            "batch_ack_paced_p50_ms": _ms(paced_ms, 50), "batch_ack_paced_p99_ms": _ms(paced_ms, 99),
            "batch_ack_burst_p50_ms": _ms(burst_ms, 50), "batch_ack_burst_p99_ms": _ms(burst_ms, 99)}


def run(smoke: bool = False, backends: tuple[str, ...] = ("sqlite", "postgresql")) -> dict[str, Any]:
    plan = [1, 2] if smoke else [1, 4, 8]
    per_stream = 200 if smoke else 2000
    out: dict[str, Any] = {"benchmark": "ingest", "smoke": smoke, "machine": machine(), "batch": BATCH,
                           "per_stream": per_stream, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="cgsentry-ingest-") as tmp_s:
        tmp = Path(tmp_s)
        if "sqlite" in backends:
            out["backends"]["sqlite"] = [measure(f"sqlite:///{tmp}/c{n}.db", n, per_stream, tmp / "sq")
                                         for n in plan]
        if "postgresql" not in backends:
            return out
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
