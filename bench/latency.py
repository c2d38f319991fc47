"""Latencies that matter to responders, measured on real containers:
exec in a container -> rule finding in userspace, with the default batched ring wakeups and for a
cgroup marked urgent (an enforced image: a wakeup per record); exec -> the finding stored by a real
collector over the real sensor link (collector in the loop); finding -> container paused (Docker
API vs cgroup freeze) and killed; exec -> in-kernel kill (banned process) — p50/p99 in ms."""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from collector.auth import AuthConfig, TokenStore
from collector.server import create_server
from collector.store import SqlStore
from rules.engine import RuleEngine
from sensor.bpf_loader import ProbeOptions
from sensor.events import Finding
from sensor.link import CollectorLink, LinkConfig
from sensor.response import Responder
from sensor.spool import Spool
from sensor.tracer import Tracer

IMAGE = "cgsentry/busybox:latest"


def pct(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "p50_ms": round(float(np.percentile(xs, 50)), 3),
            "p99_ms": round(float(np.percentile(xs, 99)), 3), "max_ms": round(max(xs), 3)}


def start(name: str) -> str:
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    return subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", IMAGE, "sleep", "3600"],
                          check=True, capture_output=True, text=True).stdout.strip()


class CollectorLoop:
    """A real collector (in-process, loopback, SQLite) and a real sensor link to it."""

    def __init__(self, tmp: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        self.store = SqlStore.open(str(tmp / "collector.db"))
        self.server, _ = create_server(f"127.0.0.1:{port}", self.store, AuthConfig(TokenStore(None), insecure=True))
        self.link = CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id="latency"), Spool(tmp / "spool")).start()
        deadline = time.monotonic() + 20
        while not self.link.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)

    def deliver(self, f: Finding) -> bool:
        """Send one finding and wait until the collector has stored it."""
        before = self.store.total_findings()
        self.link.submit([f])
        deadline = time.monotonic() + 5
        while self.store.total_findings() == before:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        return True

    def close(self) -> None:
        self.link.close(1.0)
        self.server.stop(0).wait()
        self.store.close()


def exec_to_finding(tracer: Tracer, rules: RuleEngine, cid: str, n: int,
                    loop: CollectorLoop | None = None, stored: list[float] | None = None) -> list[float]:
    """exec -> rule finding in userspace; with ``loop``, also exec -> stored by the collector."""
    lat: list[float] = []
    for _ in range(n):
        subprocess.Popen(["docker", "exec", cid, "/usr/bin/nc", "127.0.0.1", "9"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        got = False
        while not got and time.monotonic() < deadline:
            for ev in tracer.reader.poll_events():
                tracer.watcher.observe(ev)
                hits = [f for f in rules.handle(ev) if f.rule.startswith("Network Tool")] \
                    if ev.container_id == cid else []
                if hits:
                    lat.append((time.time_ns() - ev.time_ns) / 1e6)
                    got = True
                    if loop is not None and stored is not None and loop.deliver(hits[0]):
                        stored.append((time.time_ns() - ev.time_ns) / 1e6)
            time.sleep(0.001)
        time.sleep(0.2)
    return lat


def in_kernel_kill(tracer: Tracer, cid: str, cgroup_id: int, n: int) -> tuple[list[float], int]:
    tracer.probe.ban_exec(cgroup_id, "wget")
    lat, killed = [], 0
    for _ in range(n):
        subprocess.run(["docker", "exec", cid, "/usr/bin/wget", "--help"], capture_output=True, timeout=20)
        execs, exits = {}, {}
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not (execs and exits):
            for ev in tracer.reader.poll_events():
                if ev.cgroup_id == cgroup_id and ev.kind == "exec" and ev.killed:
                    execs[ev.pid] = ev.time_ns
                elif ev.cgroup_id == cgroup_id and ev.kind == "exit":
                    exits[ev.pid] = ev.time_ns
            time.sleep(0.005)
        for pid, t in execs.items():
            killed += 1
            if pid in exits:
                lat.append((exits[pid] - t) / 1e6)
    tracer.probe.unban_exec(cgroup_id, "wget")
    return lat, killed


def pause_latency(responder: Responder, cid: str, cgroup_path: str, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"docker": [], "cgroup": []}
    cg_only = Responder(None)
    for _ in range(n):
        for name, r in (("docker", responder), ("cgroup", cg_only)):
            res = r.pause(cid, cgroup_path)
            if res.ok:
                out[name].append(res.latency_ms)
            r.unpause(cid, cgroup_path)
    return out


def run(smoke: bool = False) -> dict[str, Any]:
    n = 5 if smoke else 30
    rules = RuleEngine.load()
    tracer = Tracer(ProbeOptions(), prefixes=rules.open_prefixes())
    cid = start("cgsentry-latency")
    tmp = Path(tempfile.mkdtemp(prefix="cgsentry-latency-"))
    loop = CollectorLoop(tmp)
    try:
        cg = tracer.enricher.container_cgroup_id(cid)
        stored: list[float] = []
        e2f = exec_to_finding(tracer, rules, cid, n, loop, stored)
        tracer.watcher.urgent = lambda ev: ev.container_id == cid  # as if its image were enforced
        tracer.watcher.refresh()
        exec_to_finding(tracer, rules, cid, 1)  # its next record sets the flag
        e2f_urgent = exec_to_finding(tracer, rules, cid, n)
        kill_lat, killed = in_kernel_kill(tracer, cid, cg, n)
        path = tracer.enricher.index.find_container(cid)
        pauses = pause_latency(Responder.create(), cid, path[1] if path else "", n)
        kills = []
        for i in range(3 if smoke else 10):
            victim = start(f"cgsentry-latency-k{i}")
            kills.append(Responder.create().kill(victim).latency_ms)
            subprocess.run(["docker", "rm", "-f", victim], capture_output=True)
    finally:
        loop.close()
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["docker", "rm", "-f", "cgsentry-latency"], capture_output=True)
        tracer.close()
    return {"benchmark": "latency", "smoke": smoke,
            "exec_to_rule_finding": pct(e2f),
            "exec_to_rule_finding_urgent_cgroup": pct(e2f_urgent),
            "exec_to_finding_stored_by_collector": pct(stored),
            "in_kernel_kill_exec_to_exit": {**pct(kill_lat), "killed": killed, "attempts": n},
            "pause_docker_api": pct(pauses["docker"]), "pause_cgroup_freeze": pct(pauses["cgroup"]),
            "kill_container_docker_api": pct(kills),
            "exec_to_paused_docker_p50_ms": round(statistics.median(e2f) + statistics.median(pauses["docker"]), 2)
            if e2f and pauses["docker"] else None}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    print(json.dumps(run(ap.parse_args().smoke), indent=2))
