"""Fleet ingest: 1,000 simulated sensors against 1, 2 and 3 collectors on one PostgreSQL.

Real collector processes (``cgsentry collector serve``, one each, on a throwaway PostgreSQL from
Debian's packages; a fresh database per level) and N sensor links from one asyncio client process,
spread round-robin over the collectors. Each sensor says hello, waits for the welcome, then sends
BATCHES batches of FINDINGS findings one at a time, each after the previous one's ack (the ack
comes after the store's commit). Reported per number of collectors: findings/s stored (all
findings over the time from the first batch to the last ack) and the batch ack latency p50/p99.
The store is then checked: the sum of alert counts equals the findings sent (nothing lost, nothing
twice). Bounded in time: 1,000 x 5 x 10 findings per level. ``python -m bench.fleet [--smoke]``
prints JSON and writes bench/results/fleet.json.

All processes share this machine's cores: with 2 cores, the client (1,000 streams in Python), the
collectors and PostgreSQL compete, so more collectors add parallel ingest only as far as cores are
free. The numbers say what this machine does, not how a fleet of hosts scales.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import numpy as np

from bench.ingest import findings
from bench.overhead import machine
from bench.pgserver import create_database, throwaway_postgres
from collector.convert import finding_to_pb, pb, rpc
from collector.store import SqlStore

ROOT = Path(__file__).resolve().parents[1]
BATCHES = 5
FINDINGS = 10


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(url: str, n: int, logdir: Path) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    procs, addrs = [], []
    for i in range(n):
        port = _free_port()
        log = logdir / f"c{i}.log"
        with log.open("wb") as out:
            procs.append(subprocess.Popen([sys.executable, "-m", "collector", "collector", "serve", "--listen",  # noqa: S603
                                           f"127.0.0.1:{port}", "--db", url, "--insecure", "--collector-id", f"c{i}"],
                                          cwd=ROOT, stdout=out, stderr=subprocess.STDOUT))
        addrs.append(f"127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while "collector listening" not in log.read_text():
            if procs[-1].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"collector c{i} did not start: {log.read_text()[-500:]}")
            time.sleep(0.05)
    return procs, addrs


async def _sensor(addr: str, sensor_id: str, stream: int, latencies: list[float], start: asyncio.Event,
                  linked: asyncio.Future[None]) -> int:
    batches = [findings(stream, FINDINGS * BATCHES)[i * FINDINGS:(i + 1) * FINDINGS] for i in range(BATCHES)]
    async with grpc.aio.insecure_channel(addr, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
        call = rpc.SensorLinkStub(ch).Connect()
        await call.write(pb.SensorMessage(hello=pb.Hello(sensor_id=sensor_id, node=sensor_id)))
        await call.read()  # the welcome
        linked.set_result(None)
        await start.wait()
        for seq, batch in enumerate(batches, start=1):
            t0 = time.perf_counter()
            await call.write(pb.SensorMessage(batch=pb.FindingBatch(seq=seq, findings=[finding_to_pb(f)
                                                                                       for f in batch])))
            while True:
                msg = await call.read()
                if msg.WhichOneof("body") == "ack" and msg.ack.seq == seq:
                    break
            latencies.append((time.perf_counter() - t0) * 1000)
        await call.done_writing()
        return len(batches) * FINDINGS


async def _level(addrs: list[str], sensors: int, tag: str) -> dict[str, Any]:
    latencies: list[float] = []
    start = asyncio.Event()
    tasks = []
    loop = asyncio.get_running_loop()
    for wave in range(0, sensors, 100):  # links open in waves, as a fleet reconnecting would
        linked = [loop.create_future() for _ in range(wave, min(wave + 100, sensors))]
        tasks += [asyncio.create_task(_sensor(addrs[i % len(addrs)], f"{tag}-{i:04d}", i, latencies, start,
                                              linked[i - wave]))
                  for i in range(wave, min(wave + 100, sensors))]
        await asyncio.gather(*linked)
    t0 = time.perf_counter()
    start.set()
    sent = sum(await asyncio.gather(*tasks))
    wall = time.perf_counter() - t0
    return {"findings": sent, "seconds": round(wall, 2), "findings_per_s": round(sent / wall),
            "ack_p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "ack_p99_ms": round(float(np.percentile(latencies, 99)), 1)}


def run(smoke: bool = False) -> dict[str, Any]:
    from bench.streams import _raise_nofile

    sensors = 50 if smoke else 1000
    _raise_nofile(sensors * 2 + 256)  # a channel per sensor
    levels = []
    with throwaway_postgres() as server, tempfile.TemporaryDirectory() as tmp:
        for n in (1, 2, 3):
            url = create_database(server, f"fleet{n}")
            procs, addrs = _start(url, n, Path(tmp))
            try:
                result = asyncio.run(_level(addrs, sensors, f"fleet{n}"))
            finally:
                for p in procs:
                    p.terminate()
                    p.wait(30)
            store = SqlStore.open(url)
            stored = store.total_findings(f"fleet{n}-")
            store.close()
            levels.append({"collectors": n, "sensors": sensors, **result, "stored": stored,
                           "exactly_once": stored == result["findings"]})
    return {"benchmark": "fleet", "date": time.strftime("%Y-%m-%d"), "machine": machine(),
            "batches_per_sensor": BATCHES, "findings_per_batch": FINDINGS, "levels": levels}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--smoke", action="store_true", help="50 sensors instead of 1,000")
    args = ap.parse_args(argv)
    out = run(args.smoke)
    text = json.dumps(out, indent=2)
    print(text)
    path = ROOT / "bench" / "results" / ("fleet.smoke.json" if args.smoke else "fleet.json")
    path.write_text(text + "\n")
    return 0 if all(lv["exactly_once"] for lv in out["levels"]) else 1


if __name__ == "__main__":
    sys.exit(main())
