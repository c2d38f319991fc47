"""Latencies that matter to responders, measured on real containers:
exec in a container -> rule finding in userspace, with the default batched ring wakeups and for a
cgroup marked urgent (an enforced image: a wakeup per record); exec -> the finding stored by a real
collector over the real sensor link (collector in the loop); finding -> container paused (Docker
API vs cgroup freeze) and killed; exec -> in-kernel kill (banned process) — p50/p99 in ms.

``collector_loop``: the real sensor daemon (in-process) linked to a real collector. (a) The image is
set to enforce / pause through the collector's Analyst API and the policy is pushed over the link;
the sensor pauses locally (edge enforcement) — exec -> paused and exec -> alert stored at the
collector. (b) The image is in alert mode and the pause decision is the collector's: as soon as the
alert is stored, a ContainerAction(pause) goes analyst -> collector -> sensor link -> runtime and
back — exec -> paused with the collector making the decision."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np

from collector.auth import AuthConfig, TokenStore
from collector.convert import pb, rpc
from collector.server import create_server
from collector.store import SqlStore
from rules.engine import RuleEngine
from sensor.agent.daemon import Daemon, register
from sensor.agent.link import CollectorLink, LinkConfig
from sensor.bpf_loader import ProbeOptions
from sensor.events import Finding
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
        execs: dict[int, int] = {}
        exits: dict[int, int] = {}
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



class DaemonLoop:
    """The real sensor daemon in a thread, linked to a real in-process collector (loopback, SQLite);
    policy changes and container actions go through the collector's Analyst API like an operator's."""

    def __init__(self, tmp: Path) -> None:
        self.store = SqlStore.open(str(tmp / "loop.db"))
        self.server, port = create_server("127.0.0.1:0", self.store, AuthConfig(TokenStore(None), insecure=True))
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.analyst = rpc.AnalystStub(self.channel)
        ap = argparse.ArgumentParser()
        register(ap.add_subparsers())
        self.daemon = Daemon(ap.parse_args(["run", "--collector", f"127.0.0.1:{port}", "--sensor-id", "latency",
                                            "--state-dir", str(tmp / "sensor")]))
        self.paused: list[tuple[int, int]] = []  # (exec event ns, pause done ns) per local pause
        execute = self.daemon.execute

        def timed(f: Finding, action: str) -> None:
            execute(f, action)
            if action == "pause-container":
                self.paused.append((f.event.time_ns, time.time_ns()))

        self.daemon.execute = timed  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait(lambda: self.daemon.link is not None and self.daemon.link.connected.is_set(), 20)

    def _run(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # its banner would corrupt the JSON on stdout
            self.daemon.run()

    def set_mode(self, mode: str, action: str) -> None:
        self.analyst.SetImageMode(pb.ImageModeRequest(image=IMAGE, mode=mode, default_action=action), timeout=10)
        wait(lambda: self.daemon.policies.for_image(IMAGE).mode == mode, 10)

    def pauses_audited_ok(self) -> int:
        """Pauses the sensor reported back as done (the collector's audit log): proof, not timing."""
        return sum(1 for e in self.store.audit_entries(10000) if e["action"] == "pause" and e["result"] == "ok")

    def close(self) -> None:
        self.daemon.stop.set()
        self.thread.join(30)
        self.channel.close()
        self.server.stop(0).wait()
        self.store.close()


def wait(cond: Callable[[], bool], timeout_s: float, step_s: float = 0.0005) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(step_s)
    return True


def grew(count: Callable[[], int], than: int) -> Callable[[], bool]:
    return lambda: count() > than


def _exec_nc(cid: str, port: int) -> subprocess.Popen[bytes]:
    """A network tool in the container; a new port each round makes a new alert row, not a repeat."""
    return subprocess.Popen(["docker", "exec", cid, "/usr/bin/nc", "127.0.0.1", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _exec_ns(store: SqlStore, port: int) -> int:
    """Kernel time of the exec behind the stored alert for this round's port (0: none)."""
    return next((r.finding.event.time_ns for r in store.list_alerts(limit=20)
                 if str(port) in r.finding.event.args), 0)


def _settle(proc: subprocess.Popen[bytes], cid: str) -> None:
    """Unpause (whoever paused) and let the exec finish, so the next round starts clean."""
    subprocess.run(["docker", "unpause", cid], capture_output=True)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    time.sleep(0.3)


def enforced_by_policy(loop: DaemonLoop, cid: str, n: int) -> dict[str, list[float]]:
    """Policy from the collector, pause decided on the sensor: exec -> paused, exec -> alert stored."""
    loop.set_mode("enforce", "pause-container")
    out: dict[str, list[float]] = {"paused": [], "stored": []}
    for i in range(n):
        loop.daemon.gate.forget(cid)  # act again on this container, whatever the burst window
        before, done = loop.store.total_findings(), len(loop.paused)
        proc = _exec_nc(cid, 1000 + i)
        stored = wait(grew(loop.store.total_findings, before), 10)
        t_stored = time.time_ns()
        if wait(grew(loop.paused.__len__, done), 5):
            t_exec, t_paused = loop.paused[done]
            out["paused"].append((t_paused - t_exec) / 1e6)
            if stored:
                out["stored"].append((t_stored - t_exec) / 1e6)
        _settle(proc, cid)
    return out


def paused_by_collector(loop: DaemonLoop, cid: str, n: int) -> dict[str, list[float]]:
    """Alert mode on the sensor; the collector decides: stored alert -> ContainerAction(pause)."""
    loop.set_mode("alert", "alert")
    out: dict[str, list[float]] = {"paused": [], "stored": []}
    for i in range(n):
        before = loop.store.total_findings()
        proc = _exec_nc(cid, 2000 + i)
        if wait(grew(loop.store.total_findings, before), 10):
            t_stored = time.time_ns()
            reply = loop.analyst.ContainerAction(pb.ContainerActionRequest(
                container_id=cid, action=pb.ACTION_KIND_PAUSE, reason="latency bench"), timeout=15)
            t_paused = time.time_ns()
            t_exec = _exec_ns(loop.store, 2000 + i) if reply.result.ok else 0
            if t_exec:
                out["stored"].append((t_stored - t_exec) / 1e6)
                out["paused"].append((t_paused - t_exec) / 1e6)
        _settle(proc, cid)
    return out


def collector_loop(n: int) -> dict[str, Any]:
    cid = start("cgsentry-latency-loop")
    tmp = Path(tempfile.mkdtemp(prefix="cgsentry-latency-loop-"))
    logging.getLogger("sensor.agent.daemon").setLevel(logging.ERROR)  # a warning per pause otherwise
    loop = DaemonLoop(tmp)
    try:
        local = enforced_by_policy(loop, cid, n)
        local_ok = loop.pauses_audited_ok()
        central = paused_by_collector(loop, cid, n)
        central_ok = loop.pauses_audited_ok() - local_ok
    finally:
        loop.close()
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["docker", "rm", "-f", "cgsentry-latency-loop"], capture_output=True)
    return {"rounds": n,
            "enforce_policy_pushed_by_collector": {"exec_to_paused": pct(local["paused"]),
                                                   "exec_to_alert_stored": pct(local["stored"]),
                                                   "pauses_audited_ok": local_ok},
            "pause_decided_by_collector": {"exec_to_alert_stored": pct(central["stored"]),
                                           "exec_to_paused": pct(central["paused"]),
                                           "pauses_audited_ok": central_ok}}


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
        tracer.watcher.mode = lambda ev: "enforce" if ev.container_id == cid else ""  # as if enforced
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
            if e2f and pauses["docker"] else None,
            "collector_loop": collector_loop(n)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    print(json.dumps(run(ap.parse_args().smoke), indent=2))
