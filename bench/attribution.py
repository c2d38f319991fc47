"""Where the default sensor's cost on a storm comes from, measured inside one running sensor.

bench/overhead.py compares the workload with and without the whole sensor. That ratio mixes
three things: the tracepoints being enabled at all (bench/floor.py), the work of cgsentry's BPF
programs, and the Python pipeline behind the ring. Here the real daemon (alert mode, full rule
library) runs in-process and:

1. **BPF programs**: with ``kernel.bpf_stats_enabled=1`` the kernel times every program run;
   the deltas per program over a storm (:meth:`BpfProbe.program_stats`), medians of five storms,
   give ns per run and µs per operation, as a share of the operation's wall time in the A/B
   below, where the kernel does not count (the connect storm's client and acceptor threads run
   side by side, so there it is a share of wall time, not of CPU time).
2. **Python pipeline**: storms alternate between the pipeline processing every record (decode,
   enrich, models, rules, policy) and the same records drained from the ring and discarded.
   Programs, maps, cgroup flags and ring wakeups are identical in both, so the paired ratio is
   what the Python work costs the workload, and the sensor's CPU per operation is read for each.
   On the connect storm the kernel's first-seen filter leaves the pipeline a handful of records
   per storm, so both modes do the same work there: that column is an A/A test of the method.

    .venv/bin/python -m bench.attribution [--smoke]    # JSON on stdout (needs root and Docker)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import psutil

from bench import overhead
from sensor.agent.daemon import Daemon, register
from sensor.events import Event

SIZES = {"exec": 3000, "connect": 40000}
SMOKE_SIZES = {"exec": 100, "connect": 2000}
STATS_KNOB = Path("/proc/sys/kernel/bpf_stats_enabled")


class _InProcessSensor:
    """The sensor daemon in a thread, with a switch that discards records instead of processing."""

    def __init__(self, tmp: Path) -> None:
        policy = tmp / "alert.yaml"
        policy.write_text("images:\n  - match: 'cgsentry/*'\n    mode: alert\n")
        ap = argparse.ArgumentParser()
        register(ap.add_subparsers())
        self.daemon = Daemon(ap.parse_args(["run", "--state-dir", str(tmp / "state"), "--learn-s", "1e9",
                                            "--policy", str(policy)]))
        self.discard = threading.Event()
        reader = self.daemon.tracer.reader
        process: Callable[[int], list[Event]] = reader.poll_events

        def poll_events(max_events: int = 4096) -> list[Event]:
            if self.discard.is_set():
                reader._queue.clear()  # noqa: SLF001 - drained from the ring, then dropped unread
                return []
            return process(max_events)

        reader.poll_events = poll_events  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # its banner would corrupt the JSON on stdout
            self.daemon.run()

    def close(self) -> None:
        self.daemon.stop.set()
        self.thread.join(30)
        if self.thread.is_alive():  # its programs would stay attached under the benchmarks after it
            raise RuntimeError("the in-process sensor daemon did not stop within 30 s")


def _storm(workload: str, n: int, sensor: _InProcessSensor | None = None) -> float:
    """ns per operation of one storm in the bench container (NaN if it failed); with ``sensor``,
    first make sure its daemon is still running, so a crash cannot pass for a free sensor."""
    if sensor is not None and not sensor.thread.is_alive():
        raise RuntimeError("the in-process sensor daemon died during the benchmark")
    return overhead.storm(workload, n)


def program_costs(sensor: _InProcessSensor, workload: str, n: int, storms: int) -> dict[str, Any]:
    """``storms`` storms with the kernel timing every program: per program that ran at least once
    per ten operations, the median over storms of its cost (one storm's figures move by a third
    from one storm to the next on this VM)."""
    knob_before = STATS_KNOB.read_text().strip()
    probe = sensor.daemon.tracer.probe
    per_storm: list[tuple[float, dict[str, tuple[int, int]]]] = []
    try:
        STATS_KNOB.write_text("1")
        for _ in range(storms):
            before = probe.program_stats()
            op_ns = _storm(workload, n, sensor)
            after = probe.program_stats()
            per_storm.append((op_ns, {k: (t1 - before.get(k, (0, 0))[0], c1 - before.get(k, (0, 0))[1])
                                      for k, (t1, c1) in after.items()}))
    finally:
        STATS_KNOB.write_text(knob_before)
    per_storm = [(op, d) for op, d in per_storm if math.isfinite(op)]  # a failed storm is left out
    if not per_storm:
        raise RuntimeError(f"every {workload} storm failed")
    programs = {}
    for name in per_storm[0][1]:
        ns = [d[name][0] for _, d in per_storm]
        runs = [d[name][1] for _, d in per_storm]
        if statistics.median(runs) * 10 >= n:
            per_run = statistics.median(t / max(r, 1) for t, r in zip(ns, runs, strict=True))
            programs[name] = {"runs_per_op": round(statistics.median(runs) / n, 2), "ns_per_run": round(per_run),
                              "us_per_op": round(statistics.median(ns) / n / 1000, 2)}
    by_cost = dict(sorted(programs.items(), key=lambda kv: -kv[1]["us_per_op"]))
    total_us = sum(p["us_per_op"] for p in programs.values())
    op_us = statistics.median(op for op, _ in per_storm) / 1000
    return {"storms": storms, "op_us_stats_on": round(op_us, 1), "programs": by_cost,
            "total_us_per_op": round(total_us, 2)}


def pipeline_ab(sensor: _InProcessSensor, workload: str, n: int, pairs: int) -> dict[str, Any]:
    """Alternating storms, pipeline on vs. records discarded; the paired slowdown with processing
    on, and the sensor's CPU per operation in each mode."""
    proc = psutil.Process()
    samples: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for i in range(pairs):
        for processing in ((True, False) if i % 2 == 0 else (False, True)):
            (sensor.discard.clear if processing else sensor.discard.set)()
            time.sleep(0.3)  # the other mode's last batch is handled before timing starts
            c0 = sum(proc.cpu_times()[:2])
            samples[processing].append(_storm(workload, n, sensor))
            time.sleep(0.05)
            cpu[processing].append((sum(proc.cpu_times()[:2]) - c0) / n * 1e6)
    sensor.discard.clear()
    lo, hi = overhead.paired_ci(samples[True], samples[False])
    return {"pairs": pairs,
            "processing_slowdown_pct": overhead._finite((overhead.paired_median(samples[True], samples[False]),)),
            "processing_slowdown_ci95_pct": overhead._finite((lo, hi)),  # noqa: SLF001
            "op_us_processing": round(statistics.median(overhead.succeeded(samples[True])) / 1000, 1),
            "op_us_discarding": round(statistics.median(overhead.succeeded(samples[False])) / 1000, 1),
            "sensor_cpu_us_per_op_processing": round(statistics.median(cpu[True]), 1),
            "sensor_cpu_us_per_op_discarding": round(statistics.median(cpu[False]), 1),
            "samples_ns": {"processing": samples[True], "discarding": samples[False]}}


def run(smoke: bool = False, pairs: int = 32) -> dict[str, Any]:
    sizes = SMOKE_SIZES if smoke else SIZES
    pairs = 2 if smoke else pairs
    tmp = Path(tempfile.mkdtemp(prefix="cgsentry-attr-"))
    overhead.build_workload(tmp)
    subprocess.run(["docker", "rm", "-f", overhead.NAME], capture_output=True)
    subprocess.run(["docker", "run", "-d", "--name", overhead.NAME, "--network", "none", "-v", f"{tmp}:/bench:ro",
                    overhead.IMAGE, "sleep", "100000"], check=True, capture_output=True)
    out: dict[str, Any] = {"benchmark": "attribution", "smoke": smoke, "sizes": sizes}
    sensor = None
    try:
        sensor = _InProcessSensor(tmp)
        for wl, n in sizes.items():
            # the container's cgroup is known and flagged, and the storm past its first-run
            # slowness (connect storms ran ~2x slower for their first two or three), before timing
            for _ in range(1 if smoke else 3):
                _storm(wl, n, sensor)
            bpf = program_costs(sensor, wl, n, 1 if smoke else 5)
            pipe = pipeline_ab(sensor, wl, n, pairs)
            # the share is of the operation's time with the kernel not counting: storms with
            # bpf_stats on ran slower (connect: 62 vs 34 us), more than the counting itself costs
            bpf["share_pct"] = round(bpf["total_us_per_op"] / pipe["op_us_discarding"] * 100, 2)
            out[wl] = {"bpf": bpf, "pipeline": pipe}
    finally:
        if sensor is not None:
            sensor.close()
        subprocess.run(["docker", "rm", "-f", overhead.NAME], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true")
    print(json.dumps(run(ap.parse_args().smoke), indent=2))
