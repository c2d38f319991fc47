"""Sustained storms against the full userspace pipeline (decode, enrich, models, rules): offered
event rate vs. delivered and dropped (kernel reserve failures, queue overflows), per ring size.
Each full-size storm lasts at least 10 s; ``events_per_op`` shows what reaches userspace per
operation (exec + exit per exec: forks stay in the kernel; connects are filtered to first-seen)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.overhead import build_workload
from models.baseline import ModelConfig
from models.engine import ModelEngine
from rules.engine import RuleEngine
from sensor.bpf_loader import ProbeOptions
from sensor.tracer import Tracer

NAME = "cgsentry-drops"


def storm(exe_dir: Path, workload: str, n: int, parallel: int) -> tuple[float, int]:
    """Run ``parallel`` copies of the workload in the container; (seconds, total operations)."""
    t0 = time.monotonic()
    procs = [subprocess.Popen(["docker", "exec", NAME, "/bench/workload", workload, str(n)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(parallel)]
    for p in procs:
        p.wait(timeout=600)
    return time.monotonic() - t0, n * parallel


def measure(exe_dir: Path, ring_pages: int, workload: str, n: int, parallel: int) -> dict[str, Any]:
    rules = RuleEngine.load()
    models = ModelEngine(ModelConfig(min_learn_s=1e9))
    tracer = Tracer(ProbeOptions(ring_pages=ring_pages), prefixes=rules.open_prefixes())
    stop = threading.Event()
    handled = [0]

    def consume() -> None:
        while not stop.is_set():
            batch = tracer.reader.poll_events()
            for ev in batch:
                tracer.watcher.observe(ev)
                models.handle(ev)
                rules.handle(ev)
            handled[0] += len(batch)
            if not batch:
                time.sleep(0.005)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    try:
        secs, ops = storm(exe_dir, workload, n, parallel)
        time.sleep(1.0)
    finally:
        stop.set()
        t.join(timeout=10)
        stats = tracer.close()
    return {"workload": workload, "ring_pages": ring_pages, "parallel": parallel, "seconds": round(secs, 1),
            "offered_ops_per_s": round(ops / secs), "events_handled": handled[0],
            "events_per_op": round(handled[0] / max(1, ops), 3),
            "kernel_drops": stats["kernel_drops"], "kernel_drops_with_room": stats["kernel_drops_with_room"],
            "queue_drops": stats["queue_drops"],
            "received": stats["received"]}


def run(smoke: bool = False) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="cgsentry-drops-"))
    build_workload(tmp)
    subprocess.run(["docker", "rm", "-f", NAME], capture_output=True)
    subprocess.run(["docker", "run", "-d", "--name", NAME, "--network", "none", "-v", f"{tmp}:/bench:ro",
                    "cgsentry/busybox:latest", "sleep", "100000"], check=True, capture_output=True)
    # Full: storms sized to last >= 10 s on the 2-core reference VM (the issue's "sustained for
    # 10 s"): 4 exec workers (~2.8k execs/s there with the pipeline running, 3.7k without it)
    # and 2 connect workers (~34k connects/s).
    plan = [("exec", 100, 2), ("connect", 5000, 2)] if smoke else [("exec", 8000, 4), ("connect", 180_000, 2)]
    rings = [256] if smoke else [16, 256]
    out = []
    try:
        for ring in rings:
            for workload, n, par in plan:
                out.append(measure(tmp, ring, workload, n, par))
    finally:
        subprocess.run(["docker", "rm", "-f", NAME], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return {"benchmark": "drops", "smoke": smoke, "runs": out}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    print(json.dumps(run(ap.parse_args().smoke), indent=2))
