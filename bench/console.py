"""The web console with a year of alerts: incidents page and incident page latency, SQLite vs PostgreSQL.

The store is filled through the production ingest (alerts and incidents in one transaction per
batch of 1,000) with 1,000,000 findings spread over a year: bursts of 20 findings (one attack, one
process tree, a few seconds apart) in 500 containers, one finding in five a repeat, plus one big
incident of 5,000 findings. Then a real console (uvicorn on loopback, the production Console) is
asked over HTTP, as a bearer-token script (the same pages a browser session gets): the incidents
page (first page, a priority filter, a free-text filter, a deep page by cursor), incident pages
(random ones and the biggest) and the dashboard (the year ends now, so its last 24 hours hold
findings). Reports p50/p95/p99 ms per page and the fill rate.
``python -m bench.console [--smoke]`` prints JSON.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bench.overhead import machine
from bench.pgserver import PG_BIN, create_database, throwaway_postgres
from bench.workloads import deviation
from collector.auth import AuthConfig, TokenStore
from collector.consoleviews import dashboard
from collector.incidents import Incidents
from collector.sensorlink import Hub
from collector.store import SqlStore
from collector.webserver import start_web
from sensor.events import Finding

YEAR_NS = 365 * 86400 * 10**9
T0 = time.time_ns() // 10**9 * 10**9 - YEAR_NS  # the year ends now: the dashboard's last 24 hours hold findings
BURST = 20
BATCH = 1000
BIG = 5000
RULES = (("New Process", "new_process", "WARNING"), ("Shell Spawned By Web Server", "rule", "ERROR"),
         ("Reverse Shell", "rule", "CRITICAL"), ("New Outbound", "new_outbound", "NOTICE"))
ROOTS = ("/usr/sbin/nginx", "/usr/bin/python3", "/usr/local/bin/node")


def findings(n: int) -> Iterator[Finding]:
    """``n`` findings: one big incident of BIG (or n/5) findings, then bursts of BURST over a year."""
    base = deviation("new_binary", T0, i=0).pop()
    big = min(BIG, n // 5)
    bursts = max(1, (n - big) // BURST)
    for i in range(n):
        b, j = (0, i) if i < big else (1 + (i - big) // BURST, (i - big) % BURST)
        t = T0 + (b * YEAR_NS) // (bursts + 1) + j * 1_000_000_000
        key = j if j % 5 else max(j - 1, 0)  # one in five repeats the finding before it
        rule, kind, prio = RULES[key % len(RULES)]
        exe = f"/tmp/tool{key % 50}"
        ev = base.replace(time_ns=t, exe=exe, args=(exe, f"--burst={b}", f"--n={key}"), pid=1000 + key,
                          ancestry=("/bin/sh", ROOTS[b % len(ROOTS)]), container_id=f"{b % 500:064x}",
                          container_name=f"app-{b % 500}", image=f"app{b % 7}:1.{b % 3}")
        yield Finding(kind, rule, prio, f"{rule}: {exe} in app-{b % 500}", ev, time_ns=t,
                      tags=("T1059",) if kind == "rule" else ())


def fill(store: SqlStore, n: int) -> float:
    """Ingest ``n`` findings; returns findings/s."""
    t0 = time.perf_counter()
    stream = findings(n)
    for seq in range((n + BATCH - 1) // BATCH):
        store.ingest("bench-sensor", "node", seq, list(itertools.islice(stream, BATCH)))
    return n / (time.perf_counter() - t0)


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.array(samples_s) * 1000
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1)}


class Client:
    """A keep-alive HTTP/1.1 client with a bearer token: the standard library's, which sends a
    request in one write (httpx's two writes met Nagle and delayed ACKs: a 40 ms floor)."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> None:
        self.conn.request("GET", path, headers=self.headers)
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status} {body[:200]!r}")


def measure(client: Client, paths: list[str]) -> dict[str, float]:
    samples = []
    for path in paths:
        t0 = time.perf_counter()
        client.get(path)
        samples.append(time.perf_counter() - t0)
    return percentiles(samples)


def one_backend(url: str, n: int, requests: int, tmp: Path) -> dict[str, Any]:
    store = SqlStore.open(url)
    incidents = Incidents.attach(store)
    rate = fill(store, n)
    tokens = TokenStore(tmp / "tokens")
    token = tokens.add("bench", "viewer")
    web = start_web("127.0.0.1:0", Hub(store), incidents, AuthConfig(tokens))
    try:
        c = Client(web.port, token)
        page = incidents.list_page(limit=50)
        deep = incidents.list_page(limit=50, cursor=incidents.list_page(limit=1000).cursor).cursor
        ids = [i for i, in store.execute("SELECT id FROM incidents").fetchall()]
        big = int(store.execute("SELECT id FROM incidents ORDER BY distinct_findings DESC, id LIMIT 1").fetchone()[0])
        rnd = random.Random(7)
        measure(c, ["/incidents"] * 3)  # warm-up (templates compiled, caches filled)
        out = {
            "findings": n, "fill_findings_per_s": round(rate),
            "incidents": len(ids), "alerts": store.count_alerts(),
            "biggest_incident_distinct": incidents.get(big).distinct_findings,
            "incidents_page": measure(c, ["/incidents"] * requests),
            "incidents_page_critical": measure(c, ["/incidents?priority=CRITICAL"] * requests),
            "incidents_page_text": measure(c, [f"/incidents?q=app-{rnd.randrange(500)}"
                                               for _ in range(requests)]),
            "incidents_page_deep": measure(c, [f"/incidents?cursor={deep}"] * requests) if deep else {},
            "incident_page": measure(c, [f"/incidents/{rnd.choice(ids)}" for _ in range(requests)]),
            "incident_page_biggest": measure(c, [f"/incidents/{big}"] * requests),
            "api_incidents": measure(c, ["/api/incidents"] * requests),
            "dashboard": measure(c, ["/"] * requests),
            "dashboard_findings_24h": sum(s["total"] for s in dashboard(store, incidents)["series"]),
        }
        assert page.rows, "no incidents were filed"
    finally:
        web.stop()
        store.close()
    return out


def run(smoke: bool = False) -> dict[str, Any]:
    n, requests = (5_000, 20) if smoke else (1_000_000, 200)
    out: dict[str, Any] = {"benchmark": "console", "machine": machine(), "findings": n, "requests": requests,
                           "results": {}}
    with tempfile.TemporaryDirectory(prefix="cgsentry-console-bench-") as tmp:
        out["results"]["sqlite"] = one_backend(str(Path(tmp) / "c.db"), n, requests, Path(tmp))
        if PG_BIN is None:
            out["results"]["postgres"] = {"skipped": "PostgreSQL server binaries missing"}
        else:
            with throwaway_postgres() as pg:
                out["results"]["postgres"] = one_backend(create_database(pg, "console"), n, requests, Path(tmp))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    print(json.dumps(run(args.smoke), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
