"""Overhead of the sensor on real workloads inside a container, against no sensor and the tools a
user would reach for instead (BCC's execsnoop + tcpconnect, auditd with execve/connect rules).

BCC's execsnoop and tcpconnect attach kprobes; on a kernel without them (this VM host) they fail
at attach, the JSON says so (``bcc_peers``) and BCC's own ``trace`` tool on the execve and connect
syscall tracepoints stands in: one line per call, like them. A BCC peer counts as running only
once it has printed its header (printed after attaching), and the lines it wrote for the
workload's own execs and connects are counted, so a peer that traced nothing cannot pass as cheap.

Configurations alternate within each repetition (so drift hits all of them alike); each workload
times only its own loop (bench/workload.c, a static binary bind-mounted into the container).
Reports medians, min-max and the ratio to "none", plus the sensor's CPU seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
IMAGE = "cgsentry/busybox:latest"
NAME = "cgsentry-bench"
# Sized so each sample runs ~1-2 s: at 300 execs the spread of the no-sensor baseline alone was
# +-5 %, as wide as the target being measured.
FULL = {"exec": 3000, "connect": 40000, "getppid": 5_000_000, "open": 500_000}
SMOKE = {"exec": 40, "connect": 1000, "getppid": 200_000, "open": 20_000}


def build_workload(out_dir: Path) -> Path:
    exe = out_dir / "workload"
    subprocess.run(["gcc", "-O2", "-static", "-pthread", str(HERE / "workload.c"), "-o", str(exe)], check=True)
    return exe


class Config:
    """A configuration: start() before the workloads, stop() after; returns its own usage."""

    name = "none"

    def start(self) -> None: ...

    def stop(self) -> dict[str, float]:
        return {}


class ProcConfig(Config):
    def __init__(self, name: str, cmds: list[list[str]], ready: Callable[[], bool], env: dict[str, str] | None = None):
        self.name, self.cmds, self.ready, self.env = name, cmds, ready, env
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       env={**os.environ, **(self.env or {})}) for c in self.cmds]
        deadline = time.monotonic() + 60
        while not self.ready() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # let the tools attach everything
        self.ps = [psutil.Process(p.pid) for p in self.procs]
        self.cpu0 = sum(_cpu(p) for p in self.ps)

    def stop(self) -> dict[str, float]:
        cpu = sum(_cpu(p) for p in self.ps) - self.cpu0
        rss = max((_rss(p) for p in self.ps), default=0)
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        return {"cpu_s": round(cpu, 3), "rss_mb": round(rss / 1e6, 1)}


def _cpu(p: psutil.Process) -> float:
    try:
        t = p.cpu_times()
        return float(t.user + t.system + sum(c.cpu_times().user + c.cpu_times().system for c in p.children()))
    except psutil.Error:
        return 0.0


def _rss(p: psutil.Process) -> int:
    try:
        return int(p.memory_info().rss)
    except psutil.Error:
        return 0


class Auditd(Config):
    name = "auditd"

    def start(self) -> None:
        subprocess.run(["auditctl", "-D"], capture_output=True)
        subprocess.run(["auditd"], capture_output=True)
        time.sleep(1)
        for sc in ("execve", "connect"):
            subprocess.run(["auditctl", "-a", "always,exit", "-F", "arch=b64", "-S", sc, "-k", "cgsentry-bench"],
                           check=True, capture_output=True)

    def stop(self) -> dict[str, float]:
        subprocess.run(["auditctl", "-D"], capture_output=True)
        subprocess.run(["pkill", "-x", "auditd"], capture_output=True)
        time.sleep(0.5)
        return {}


# A line of a BCC tool's output that records one of the workload's own operations (the workload
# binary's comm is "workload"; execsnoop names the exec'd program).
BCC_TOOLS: dict[str, tuple[list[str], Callable[[str], bool]]] = {
    "exec": (["/usr/sbin/execsnoop-bpfcc"], lambda line: line.split()[-1:] == ["/bin/true"]),
    "connect": (["/usr/sbin/tcpconnect-bpfcc"], lambda line: " workload " in line),
}
BCC_TRACE = ["/usr/sbin/trace-bpfcc", "t:syscalls:sys_enter_execve", "t:syscalls:sys_enter_connect"]
TRACE_FUNCS = {"exec": "sys_enter_execve", "connect": "sys_enter_connect"}
PEERS: dict[str, Any] = {}  # what happened to each BCC tool tried, for the JSON


class BccTool(ProcConfig):
    """BCC tools (Python scripts) writing to files; ready once every one has printed its header,
    and a tool that exits instead is a :class:`BccToolFailed` naming its last error line."""

    def __init__(self, name: str, tools: list[tuple[list[str], dict[str, Callable[[str], bool]]]], out_dir: Path):
        super().__init__(name, [cmd for cmd, _ in tools], lambda: True, {"PYTHONUNBUFFERED": "1"})
        self.tools, self.out_dir = tools, out_dir

    def _paths(self, i: int) -> tuple[Path, Path]:
        return self.out_dir / f"bcc{i}.out", self.out_dir / f"bcc{i}.err"

    def start(self) -> None:
        self.procs = []
        for i, cmd in enumerate(self.cmds):
            out, err = self._paths(i)
            with open(out, "w") as o, open(err, "w") as e:
                self.procs.append(subprocess.Popen(cmd, stdout=o, stderr=e, env={**os.environ, **(self.env or {})}))
        deadline = time.monotonic() + 180  # compiling under load takes tens of seconds
        while not all(self._paths(i)[0].read_text() for i in range(len(self.procs))):
            dead = [i for i, p in enumerate(self.procs) if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                self._end()
                i = dead[0] if dead else 0
                lines = self._paths(i)[1].read_text().strip().splitlines() or ["no header within 180 s"]
                raise BccToolFailed(" ".join(self.cmds[i]), lines[-1][:300])
            time.sleep(0.2)
        time.sleep(1.0)
        self.ps = [psutil.Process(p.pid) for p in self.procs]
        self.cpu0 = sum(_cpu(p) for p in self.ps)

    def stop(self) -> dict[str, Any]:
        alive = all(p.poll() is None for p in self.procs)
        cpu = sum(_cpu(p) for p in self.ps) - self.cpu0
        rss = sum(_tree_rss(p) for p in self.ps)
        self._end()
        traced: dict[str, int] = {}
        lost = 0
        for i, (_, match) in enumerate(self.tools):
            out, err = self._paths(i)
            lines = out.read_text().splitlines()[1:]
            for wl, pred in match.items():
                traced[wl] = traced.get(wl, 0) + sum(1 for line in lines if pred(line))
            lost += sum(int(w) for line in err.read_text().splitlines() if line.startswith("Possibly lost")
                        for w in line.split() if w.isdigit())
        return {"cpu_s": round(cpu, 3), "rss_mb": round(rss / 1e6, 1), "ran_throughout": alive,
                "traced": traced, "lost_samples": lost}

    def _end(self) -> None:
        for p in self.procs:
            p.send_signal(2)  # SIGINT: the tools' own way to stop
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class BccToolFailed(Exception):
    def __init__(self, cmd: str, reason: str) -> None:
        super().__init__(f"{cmd}: {reason}")
        self.cmd, self.reason = cmd, reason


def _tree_rss(p: psutil.Process) -> int:
    """RSS of a process and its children (a BCC tool is a Python interpreter, maybe with helpers)."""
    try:
        return int(p.memory_info().rss) + sum(_rss(c) for c in p.children(recursive=True))
    except psutil.Error:
        return 0


def bcc_peer(tmp: Path) -> tuple[BccTool | None, dict[str, Any]]:
    """The BCC peer for the exec and connect storms: execsnoop and tcpconnect where they attach,
    BCC's ``trace`` on the syscall tracepoints for whichever does not. Each is started once here to
    prove it attaches; what happened to each goes into the JSON."""
    tried: dict[str, Any] = {}
    tools: list[tuple[list[str], dict[str, Callable[[str], bool]]]] = []
    stand_in: list[str] = []
    for wl, (cmd, pred) in BCC_TOOLS.items():
        probe = BccTool(cmd[0], [(cmd, {wl: pred})], tmp)
        try:
            probe.start()
        except BccToolFailed as err:
            tried[Path(cmd[0]).name] = f"failed: {err.reason}"
            stand_in.append(wl)
            continue
        probe.stop()
        tried[Path(cmd[0]).name] = "attached"
        tools.append((cmd, {wl: pred}))
    if stand_in:
        probes = [f"t:syscalls:{TRACE_FUNCS[wl]}" for wl in stand_in]
        preds = {wl: _trace_line(TRACE_FUNCS[wl]) for wl in stand_in}
        tools.append((BCC_TRACE[:1] + probes, preds))
        tried["trace-bpfcc"] = f"stands in for {', '.join(stand_in)}: {' '.join(probes)}"
    if not tools:
        return None, tried
    parts = [Path(cmd[0]).name.removesuffix("-bpfcc") for cmd, _ in tools]
    if stand_in:
        parts[-1] = f"trace ({'+'.join(stand_in)} syscall tracepoints)"
    return BccTool("bcc: " + " + ".join(parts), tools, tmp), tried


def _trace_line(func: str) -> Callable[[str], bool]:
    """trace's lines are PID TID COMM FUNC [message]: the workload's own calls of ``func``."""
    return lambda line: line.split()[2:4] == ["workload", func]


def sensor_config(name: str, state: Path, ready_file: Path, extra: list[str]) -> ProcConfig:
    cmd = [sys.executable, "-m", "sensor", "run", "--state-dir", str(state), "--learn-s", "1e9", *extra]

    def ready() -> bool:
        return ready_file.exists() and "running" in ready_file.read_text()

    class _Sensor(ProcConfig):
        def start(self) -> None:
            ready_file.write_text("")
            out = open(ready_file, "w")  # noqa: SIM115 - closed when the process ends
            self.procs = [subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)]
            deadline = time.monotonic() + 90
            while not ready() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)
            self.ps = [psutil.Process(p.pid) for p in self.procs]
            self.cpu0 = sum(_cpu(p) for p in self.ps)

    return _Sensor(name, [cmd], ready)


def _floor_config(ready_file: Path) -> ProcConfig:
    """Empty programs on cgsentry's tracepoints (bench/floor.py): what any such sensor pays."""
    cmd = [sys.executable, "-m", "bench.floor"]

    class _Floor(ProcConfig):
        def start(self) -> None:
            out = open(ready_file, "w")  # noqa: SIM115 - closed when the process ends
            self.procs = [subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)]
            deadline = time.monotonic() + 60
            while "running" not in ready_file.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)
            self.ps = [psutil.Process(p.pid) for p in self.procs]
            self.cpu0 = sum(_cpu(p) for p in self.ps)

    return _Floor("floor: empty programs, same tracepoints", [cmd], lambda: True)


def configs(tmp: Path, smoke: bool) -> list[Config]:
    policy = tmp / "alert.yaml"
    policy.write_text("images:\n  - match: 'cgsentry/*'\n    mode: alert\n")
    out: list[Config] = [Config(),
                         sensor_config("cgsentry (alert, full rule library)", tmp / "s1", tmp / "s1.out",
                                       ["--policy", str(policy)]),
                         sensor_config("cgsentry (learning: syscall profile on)", tmp / "s2", tmp / "s2.out", []),
                         sensor_config("cgsentry lean (alert: no syscall tracepoint)", tmp / "s3", tmp / "s3.out",
                                       ["--policy", str(policy), "--profile", "lean"])]
    if smoke:
        return out
    floor_out = tmp / "floor.out"
    out.insert(1, _floor_config(floor_out))
    peer, tried = bcc_peer(tmp)
    PEERS.clear()
    PEERS.update(tried)
    if peer is not None:
        out.append(peer)
    if shutil.which("auditctl") and shutil.which("auditd"):
        out.append(Auditd())
    return out


def storm(workload: str, n: int, exe_in_container: str = "/bench/workload") -> float:
    """ns per operation of one run of ``workload`` in the bench container; NaN if it failed."""
    res = subprocess.run(["docker", "exec", NAME, exe_in_container, workload, str(n)], capture_output=True,
                         text=True, timeout=600)
    return int(res.stdout.strip()) / n if res.returncode == 0 else float("nan")


def succeeded(values: list[float]) -> list[float]:
    """The runs that did not fail (NaN), or [NaN] if none: left out, not a poisoned median."""
    return [x for x in values if np.isfinite(x)] or [float("nan")]


def run_workloads(exe_in_container: str, sizes: dict[str, int], host_exe: Path) -> dict[str, float]:
    out = {wl: storm(wl, n, exe_in_container) for wl, n in sizes.items() if wl != "host_getppid"}
    if "host_getppid" in sizes:  # a process outside any container: the cost on unwatched processes
        res = subprocess.run([str(host_exe), "getppid", str(sizes["host_getppid"])], capture_output=True, text=True)
        out["host_getppid"] = int(res.stdout.strip()) / sizes["host_getppid"]
    return out


def run(smoke: bool = False, reps: int = 5, workloads: tuple[str, ...] | None = None,
        only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Every configuration on every workload, ``reps`` times; ``workloads`` and ``only`` (names of
    configurations besides "none") narrow it, for a longer A/B on one workload."""
    sizes = dict(SMOKE if smoke else FULL)
    sizes["host_getppid"] = sizes["getppid"]
    if workloads:
        sizes = {wl: n for wl, n in sizes.items() if wl in workloads}
    reps = 1 if smoke else reps
    tmp = Path(tempfile.mkdtemp(prefix="cgsentry-bench-"))
    exe = build_workload(tmp)
    subprocess.run(["docker", "rm", "-f", NAME], capture_output=True)
    subprocess.run(["docker", "run", "-d", "--name", NAME, "--network", "none", "-v", f"{tmp}:/bench:ro", IMAGE,
                    "sleep", "100000"], check=True, capture_output=True)
    samples: dict[str, dict[str, list[float]]] = {}
    usage: dict[str, list[dict[str, Any]]] = {}
    try:
        cfgs = configs(tmp, smoke)
        unknown = set(only or ()) - {c.name for c in cfgs}
        if unknown:
            raise SystemExit(f"unknown configuration(s) {sorted(unknown)}; known: {[c.name for c in cfgs]}")
        cfgs = [c for c in cfgs if only is None or c.name == "none" or c.name in only]
        for rep in range(reps):
            for cfg in cfgs if rep % 2 == 0 else cfgs[::-1]:  # alternate, so no config always runs first
                cfg.start()
                try:
                    ns = run_workloads("/bench/workload", sizes, exe)
                finally:
                    used = cfg.stop()
                for wl, v in ns.items():
                    samples.setdefault(cfg.name, {}).setdefault(wl, []).append(v)
                usage.setdefault(cfg.name, []).append(used)
    finally:
        subprocess.run(["docker", "rm", "-f", NAME], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return summarize(samples, usage, sizes, reps, smoke)


def paired_ratios(runs: list[float], base: list[float]) -> np.ndarray:
    """Each repetition's sample over the no-sensor sample of the same repetition (drift between
    repetitions cancels); pairs where either run failed (NaN) are left out."""
    ratios = np.asarray(runs, dtype=float) / np.asarray(base, dtype=float)
    return ratios[np.isfinite(ratios)]


def paired_median(runs: list[float], base: list[float]) -> float:
    """Median slowdown over the pairs, in percent."""
    ratios = paired_ratios(runs, base)
    return round(float(np.median(ratios) - 1) * 100, 1) if len(ratios) else float("nan")


def paired_ci(runs: list[float], base: list[float], n_boot: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval, in percent, of the median slowdown over the pairs (see
    :func:`paired_ratios`), repetitions resampled with replacement. With 5 repetitions it is
    close to the pairs' min-max."""
    ratios = paired_ratios(runs, base)
    if len(ratios) < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    meds = np.median(rng.choice(ratios, size=(n_boot, len(ratios)), replace=True), axis=1)
    lo, hi = np.percentile(meds, [2.5, 97.5])
    return (round(float(lo - 1) * 100, 1), round(float(hi - 1) * 100, 1))


def _finite(values: tuple[float, ...]) -> Any:
    """None instead of NaNs, which are not JSON; a 1-tuple unpacked."""
    if not all(np.isfinite(values)):
        return None
    return values[0] if len(values) == 1 else values


def summarize(samples: dict[str, dict[str, list[float]]], usage: dict[str, list[dict[str, Any]]],
              sizes: dict[str, int], reps: int, smoke: bool) -> dict[str, Any]:
    def cell(v: list[float], none: list[float], base: float) -> dict[str, Any]:
        ok = succeeded(v)
        median = statistics.median(ok)
        return {"ns_per_op_median": round(median, 1), "min": round(min(ok), 1), "max": round(max(ok), 1),
                "overhead_pct": round((median / base - 1) * 100, 1),
                "overhead_paired_pct": _finite((paired_median(v, none),)),
                "overhead_ci95_pct": _finite(paired_ci(v, none)),
                "samples": [round(x, 1) if np.isfinite(x) else None for x in v]}

    base = {wl: statistics.median(succeeded(v)) for wl, v in samples["none"].items()}
    table: dict[str, Any] = {}
    for cfg, per in samples.items():
        table[cfg] = {wl: cell(v, samples["none"][wl], base[wl]) for wl, v in per.items()}
        if usage.get(cfg) and usage[cfg][0]:
            table[cfg]["process"] = {"cpu_s_median": statistics.median(u["cpu_s"] for u in usage[cfg]),
                                     "rss_mb_peak": max(u["rss_mb"] for u in usage[cfg])}
            if "traced" in usage[cfg][0]:  # a BCC peer: proof that it ran and traced the workload
                table[cfg]["process"]["per_rep"] = [
                    {"ran_throughout": u["ran_throughout"], "lost_samples": u["lost_samples"],
                     **{f"traced_{wl}": n for wl, n in u["traced"].items()}} for u in usage[cfg]]
    out = {"benchmark": "overhead", "smoke": smoke, "reps": reps, "sizes": sizes, "machine": machine(),
           "results": table}
    if PEERS:
        out["bcc_peers"] = dict(PEERS)
    return out


def machine() -> dict[str, Any]:
    virt = subprocess.run(["systemd-detect-virt"], capture_output=True, text=True).stdout.strip() if shutil.which(
        "systemd-detect-virt") else ""
    if not virt:
        virt = "vm" if "hypervisor" in Path("/proc/cpuinfo").read_text() else "none"
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), "?")
    return {"cores": os.cpu_count(), "cpu": model, "kernel": os.uname().release, "virtualised": virt,
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--workloads", nargs="*", choices=sorted(FULL) + ["host_getppid"])
    ap.add_argument("--only", nargs="*", metavar="CONFIG", help="configurations besides none")
    a = ap.parse_args()
    print(json.dumps(run(a.smoke, a.reps, tuple(a.workloads or ()) or None, tuple(a.only) if a.only else None),
                     indent=2))
