"""Collector stream capacity: analyst call latency with 0, 100 and 1,000 idle sensor streams.

A real collector (``cgsentry collector serve``, its own process, SQLite with 1,000 stored alerts)
and N idle sensors, each on its own gRPC channel and TCP connection (a local subchannel pool, so
gRPC does not multiplex them onto one), each having said hello and holding its link open as a
connected sensor does between batches. With the links up, an analyst lists alerts (the default
100) and lists sensors, one call after another; p50/p99 of each call's latency, and the
collector's RSS and thread count, are reported per level. The collector must list every idle
sensor as connected, or the level is marked failed. ``python -m bench.streams [--smoke]`` prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import numpy as np
import psutil

from bench.ingest import findings
from bench.overhead import machine
from collector.convert import pb, rpc
from collector.store import SqlStore

CALLS = 400  # analyst calls per level and kind
STORED_ALERTS = 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(need, soft), hard), hard))


def _seed(db: Path) -> None:
    store = SqlStore.open(str(db))
    for stream in range(STORED_ALERTS // 100):  # 80 distinct alerts per 100 findings (1 in 5 repeats)
        store.ingest("seed", "node", stream + 1, findings(stream, 125))
    store.close()


class IdleSensors:
    """N sensor links on an event loop in a thread: hello, the welcome read, then idle."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.channels: list[grpc.aio.Channel] = []
        self.calls: list[Any] = []

    def open(self, n: int) -> None:
        asyncio.run_coroutine_threadsafe(self._open(n), self.loop).result(timeout=300)

    async def _open(self, n: int) -> None:
        async def one(i: int) -> None:
            ch = grpc.aio.insecure_channel(self.addr, options=[("grpc.use_local_subchannel_pool", 1)])
            call = rpc.SensorLinkStub(ch).Connect()
            await call.write(pb.SensorMessage(hello=pb.Hello(sensor_id=f"idle-{i:04d}", node=f"node-{i}")))
            await call.read()  # the welcome: the collector holds this link
            self.channels.append(ch)
            self.calls.append(call)
        base = len(self.calls)
        for start in range(base, base + n, 100):  # in waves, as a fleet reconnecting would
            await asyncio.gather(*(one(i) for i in range(start, min(start + 100, base + n))))

    def close(self) -> None:
        async def shut() -> None:
            for call in self.calls:
                call.cancel()
            await asyncio.gather(*(ch.close() for ch in self.channels))
        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def _latencies(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _pct(xs: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(xs, 50)), 2), "p99_ms": round(float(np.percentile(xs, 99)), 2)}


def run(smoke: bool = False) -> dict[str, Any]:
    levels = [0, 20] if smoke else [0, 100, 1000]
    calls = 50 if smoke else CALLS
    _raise_nofile(max(levels) * 2 + 256)
    out: dict[str, Any] = {"benchmark": "streams", "smoke": smoke, "machine": machine(), "calls": calls,
                           "stored_alerts": STORED_ALERTS, "levels": []}
    with tempfile.TemporaryDirectory(prefix="cgsentry-streams-") as tmp:
        db = Path(tmp) / "c.db"
        _seed(db)
        port = _free_port()
        addr = f"127.0.0.1:{port}"
        log = Path(tmp) / "collector.log"  # a file, not a pipe: a thousand "connected" lines fill a pipe
        with log.open("w") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "collector.cli", "collector", "serve", "--listen", addr,
                                     "--db", str(db), "--insecure"], stdout=sink, stderr=subprocess.STDOUT,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        sensors: IdleSensors | None = None
        try:
            deadline = time.monotonic() + 30
            while "listening" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if "listening" not in log.read_text():
                return {**out, "failed": f"collector did not start: {log.read_text()[-300:].strip()}"}
            analyst = rpc.AnalystStub(grpc.insecure_channel(addr))
            analyst.ListSensors(pb.Empty(), timeout=30)  # warm the channel
            sensors = IdleSensors(addr)
            collector = psutil.Process(proc.pid)
            for level in levels:
                t0 = time.perf_counter()
                sensors.open(level - len(sensors.calls))
                connect_s = time.perf_counter() - t0
                listed = analyst.ListSensors(pb.Empty(), timeout=30).sensors
                connected = sum(1 for s in listed if s.connected and s.sensor_id.startswith("idle-"))
                alerts = _latencies(lambda: analyst.ListAlerts(pb.AlertQuery(), timeout=30), calls)
                sens = _latencies(lambda: analyst.ListSensors(pb.Empty(), timeout=30), calls)
                out["levels"].append({
                    "idle_streams": level, "connected_seen": connected, "ok": connected == level,
                    "open_s": round(connect_s, 2), "list_alerts": _pct(alerts), "list_sensors": _pct(sens),
                    "collector_rss_mb": round(collector.memory_info().rss / 2**20, 1),
                    "collector_threads": collector.num_threads()})
        finally:
            if sensors is not None:
                sensors.close()
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    print(json.dumps(run(ap.parse_args().smoke), indent=2))
    sys.exit(0)
