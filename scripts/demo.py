"""The cgsentry demo (``make demo``): collector + sensor + a container that learns, deviates and
gets paused — everything real, everything on loopback, in under two minutes.

1. start the collector (SQLite, loopback, a token per role) with its web console, and the sensor daemon;
2. start a busybox web container (httpd + a wget loop inside its own ``--network none`` netns);
3. let its image learn a baseline (short demo learning period);
4. switch the image to ``enforce`` with action ``pause`` through the collector;
5. make the container misbehave: a shell runs ``nc`` to a loopback port;
6. show the alert with its explanation, its incident, and that Docker reports the container paused;
7. end by printing the console's URL and a viewer token (run from a terminal, the collector, its
   console and the paused container stay up until Enter).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

IMAGE = "cgsentry/busybox:latest"
NAME = "cgsentry-demo"
PY = sys.executable
WORKLOAD = ("httpd -f -p 8080 -h /var/www & "
            "while true; do wget -q -O /dev/null http://127.0.0.1:8080/; sleep 1; done")


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cgsentry(*args: str, server: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "collector", "--server", server, *args], capture_output=True, text=True,
                          timeout=60)


def docker(*args: str, check: bool = True) -> str:
    res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    if check and res.returncode != 0:
        raise SystemExit(f"demo: docker {' '.join(args[:2])} failed: {res.stderr.strip()}")
    return res.stdout.strip()


def wait_line(proc: subprocess.Popen[str], needle: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            print(f"    {line.rstrip()}", flush=True)
            if needle in line:
                return line
        elif proc.poll() is not None:
            raise SystemExit(f"demo: process exited ({proc.returncode}) before printing {needle!r}")
    raise SystemExit(f"demo: {needle!r} not seen within {timeout_s:.0f}s")


def add_token(tokens: Path, name: str, role: str) -> str:
    res = subprocess.run([PY, "-m", "collector", "collector", "token", "add", name, "--role", role, "--tokens",
                          str(tokens)], capture_output=True, text=True, check=True)
    return res.stdout.strip()


def incidents(console: str, token: str) -> list[dict[str, Any]]:
    """The console's incidents, through its JSON API as a script would call it."""
    req = urllib.request.Request(f"{console}api/incidents",  # noqa: S310 - an http URL of our own
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - the demo's own loopback console
        out: list[dict[str, Any]] = json.loads(resp.read())["incidents"]
        return out


def wait_alert(server: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        res = cgsentry("alerts", "list", "--json", "--image", IMAGE, server=server)
        if res.returncode == 0:
            paused = [a for a in json.loads(res.stdout) if a["action"] == "pause-container"]
            if paused:
                return paused[0]
        time.sleep(0.5)
    raise SystemExit("demo: no alert with action pause-container arrived")


def wait_mode(server: str, mode: str, timeout_s: float) -> dict[str, Any]:
    """The image as `cgsentry images list` shows it once its sensor reports ``mode``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        res = cgsentry("images", "list", "--json", server=server)
        if res.returncode == 0:
            mine = [i for i in json.loads(res.stdout) if i["image"] == IMAGE and i["mode"] == mode]
            if mine:
                return mine[0]
        time.sleep(1)
    raise SystemExit(f"demo: {IMAGE} did not reach {mode} mode within {timeout_s:.0f}s")


def main() -> int:
    if os.geteuid() != 0:
        print("demo: run as root (the sensor loads BPF programs): sudo make demo", file=sys.stderr)
        return 77
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="cgsentry-demo-"))
    port = free_port()
    server = f"127.0.0.1:{port}"
    web = f"127.0.0.1:{free_port()}"
    procs: list[subprocess.Popen[str]] = []
    docker("rm", "-f", NAME, check=False)
    try:
        tokens = work / "tokens"
        os.environ["CGSENTRY_TOKEN"] = add_token(tokens, "demo-admin", "admin")  # the CLI calls below
        viewer = add_token(tokens, "demo-viewer", "viewer")
        sensor_token = add_token(tokens, "demo-sensor", "sensor")
        say(f"collector on {server} (SQLite {work}/demo.db), web console on {web}")
        collector = subprocess.Popen([PY, "-m", "collector", "collector", "serve", "--listen", server, "--db",
                                      str(work / "demo.db"), "--tokens", str(tokens), "--web", web],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(collector)
        wait_line(collector, "collector listening", 30)
        console = wait_line(collector, "console on", 30).split("console on ", 1)[1].strip()
        say("sensor: compiling and attaching the BPF programs")
        sensor = subprocess.Popen([PY, "-m", "sensor", "run", "--collector", server, "--state-dir",
                                   str(work / "state"), "--learn-s", "20", "--stable-s", "8", "--window-s", "4",
                                   "--snapshot-s", "3",
                                   "--sensor-id", "demo-sensor", "--token", sensor_token, "--print-findings"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(sensor)
        wait_line(sensor, "cgsentry sensor running", 60)
        say(f"container {NAME}: busybox httpd on 8080 and a wget loop, --network none")
        docker("run", "-d", "--name", NAME, "--network", "none", IMAGE, "sh", "-c", WORKLOAD)
        say("learning the image's baseline (20 s of observed activity, stable for 8 s)")
        promoted = wait_mode(server, "alert", 90)
        say(f"collector: {IMAGE} is in {promoted['mode']} mode, set by {promoted['set_by']}")
        say("operator: switch the image to enforce, action pause")
        print("    " + cgsentry("images", "mode", IMAGE, "enforce", "--action", "pause", server=server).stdout.strip())
        time.sleep(2)
        say("attack: a shell in the container runs nc to a loopback port")
        subprocess.run(["docker", "exec", NAME, "sh", "-c", "nc 127.0.0.1 9999 </dev/null; true"],
                       capture_output=True, timeout=20)
        alert = wait_alert(server, 20)
        say(f"alert {alert['id']} stored by the collector")
        print(cgsentry("alerts", "show", str(alert["id"]), server=server).stdout)
        print(cgsentry("alerts", "list", server=server).stdout)
        time.sleep(1)
        paused = docker("inspect", "-f", "{{.State.Paused}}", NAME)
        say(f"docker inspect {NAME}: Paused={paused}")
        print(cgsentry("audit", "list", server=server).stdout)
        found = incidents(console, viewer)
        for inc in found[:3]:
            print(f"    incident #{inc['id']}: {inc['priority']} {inc['status']}, {inc['distinct_findings']} distinct "
                  f"finding(s), strongest action {inc['action']}, container {inc['container_name']}")
        elapsed = time.monotonic() - t0
        ok = paused == "true" and bool(found)
        say(f"demo {'PASSED' if ok else 'FAILED'} in {elapsed:.0f}s")
        say(f"web console: {console}  (log in with the viewer token below)")
        print(f"    viewer token: {viewer}", flush=True)
        if sys.stdin.isatty():
            input("    the collector, its console and the paused container stay up: press Enter to stop ")
        return 0 if ok else 1
    finally:
        docker("unpause", NAME, check=False)
        docker("rm", "-f", NAME, check=False)
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
