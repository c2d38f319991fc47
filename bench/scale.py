"""Scale and a realistic server: the sensor daemon's CPU and memory with 1, 10 and 50 running
containers of 5 images, and a busybox httpd (host network, loopback) under wrk, with and without
the sensor."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

BASE = "cgsentry/busybox:latest"
LOOP = ("httpd -p 127.0.0.1:8080 -h /var/www; "
        "while true; do wget -q -O /dev/null http://127.0.0.1:8080/; sleep 1; done")


def images(n: int) -> list[str]:
    """n images with distinct ids (a marker file committed on top of the base image)."""
    out = [BASE]
    for i in range(1, n):
        tag = f"cgsentry/bench-img{i}:latest"
        if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode != 0:
            cid = subprocess.run(["docker", "run", "-d", BASE, "sh", "-c", f"echo {i} > /etc/img; sleep 1"],
                                 check=True, capture_output=True, text=True).stdout.strip()
            subprocess.run(["docker", "wait", cid], capture_output=True)
            subprocess.run(["docker", "commit", cid, tag], check=True, capture_output=True)
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
        out.append(tag)
    return out


def sensor(state: Path, profile: str = "auto") -> tuple[subprocess.Popen[str], psutil.Process, float]:
    """The sensor daemon with the full rule library, and its start-up time (exec to "running")."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "sensor", "run", "--state-dir", str(state), "--learn-s", "30",
                             "--stable-s", "10", "--profile", profile], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and "running" not in proc.stdout.readline():
        pass
    return proc, psutil.Process(proc.pid), time.monotonic() - t0


def containers_run(n: int, imgs: list[str], seconds: float, tmp: Path, profile: str = "auto") -> dict[str, Any]:
    names = [f"cgsentry-scale-{i}" for i in range(n)]
    for i, name in enumerate(names):
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", imgs[i % len(imgs)], "sh", "-c",
                        LOOP], check=True, capture_output=True)
    proc, ps, start_s = sensor(tmp / f"state-{n}-{profile}", profile)
    try:
        cpu0 = ps.cpu_times()
        samples = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            samples.append(ps.memory_info().rss)
            time.sleep(0.5)
        cpu1 = ps.cpu_times()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    return {"containers": n, "images": min(n, len(imgs)), "seconds": seconds, "profile": profile,
            "start_s": round(start_s, 1),
            "sensor_cpu_pct_of_one_core": round(100 * cpu / seconds, 1),
            "sensor_rss_mb_peak": round(max(samples) / 1e6, 1)}


def wrk(seconds: int) -> float:
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "http://127.0.0.1:18080/"], capture_output=True,
                         text=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else float("nan")


def server_run(seconds: int, reps: int, tmp: Path, smoke: bool) -> dict[str, Any]:
    """busybox httpd on the host network under wrk, with every configuration of bench/overhead.py
    (no sensor, the floor, cgsentry alert and learning, the BCC peer, auditd), alternating."""
    from bench.overhead import configs

    name = "cgsentry-httpd"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "host", BASE, "httpd", "-f", "-p",
                    "127.0.0.1:18080", "-h", "/var/www"], check=True, capture_output=True)
    time.sleep(1)
    cfgs = configs(tmp, smoke)
    res: dict[str, list[float]] = {c.name: [] for c in cfgs}
    try:
        for _ in range(reps):
            for cfg in cfgs:
                cfg.start()
                try:
                    res[cfg.name].append(wrk(seconds))
                finally:
                    cfg.stop()
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    from bench.overhead import PEERS

    base = statistics.median(res["none"])
    return {"workload": "busybox httpd (host network, loopback) under wrk -t2 -c16", "bcc_peers": dict(PEERS),
            "requests_per_s": res,
            "median_requests_per_s": {k: round(statistics.median(v)) for k, v in res.items()},
            "overhead_pct": {k: round((base / statistics.median(v) - 1) * 100, 1) for k, v in res.items()}}


def run(smoke: bool = False) -> dict[str, Any]:
    if not shutil.which("wrk"):
        return {"benchmark": "scale", "skipped": "wrk missing (apt-get install wrk)"}
    tmp = Path(tempfile.mkdtemp(prefix="cgsentry-scale-"))
    try:
        imgs = images(2 if smoke else 5)
        counts = (1, 3) if smoke else (1, 10, 50)
        scale = [containers_run(n, imgs, 6 if smoke else 20, tmp) for n in counts]
        scale.append(containers_run(counts[-1], imgs, 6 if smoke else 20, tmp, "lean"))
        server = server_run(2 if smoke else 5, 1 if smoke else 3, tmp, smoke)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"benchmark": "scale", "smoke": smoke, "scale": scale, "server": server}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    print(json.dumps(run(ap.parse_args().smoke), indent=2))
