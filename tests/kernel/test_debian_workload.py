"""Kernel tier: a Debian image built from real packages (scripts/host-setup: debootstrap minbase +
nginx-light, logrotate, netcat-openbsd) runs a realistic workload on a compressed schedule under
the sensor daemon: nginx's master and workers, health checks (perl, as Debian's Essential set has
it), ``nginx -s reload``, logrotate with Debian's stock config (its prerotate and postrotate are
``sh -c`` under logrotate, the shape "Shell Spawned by Non-Shell Program" fires on) and a container
restart. The image learns through two rotations and a restart, an operator switches it to alert,
and the same workload, restart included, then raises **no** finding, while each attack is found
at the severity the README's scale gives it (issue 20 items 1, 2 and its Done-when)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.prereqs import missing
from tests.waiting import wait_for

pytestmark = [pytest.mark.kernel, pytest.mark.docker]
IMAGE = "cgsentry/debian-nginx:latest"
SHELL_RULE = "Shell Spawned by Non-Shell Program in Container"
# The compressed schedule: a health check every ~0.5 s, a reload every 8th, a rotation every 16th.
WORKLOAD = r"""
nginx
i=0
while true; do
  perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new("127.0.0.1:80") or exit 1;
    print $s "GET / HTTP/1.0\r\n\r\n"; 1 while <$s>' || echo "health check failed"
  i=$((i + 1))
  if [ $((i % 8)) -eq 0 ]; then nginx -s reload; echo reloaded; fi
  if [ $((i % 16)) -eq 0 ]; then logrotate -f /etc/logrotate.d/nginx; echo rotated; fi
  sleep 0.5
done
"""
PERL_REVERSE_SHELL = ('use Socket; socket(S, PF_INET, SOCK_STREAM, getprotobyname("tcp")); '
                      'connect(S, sockaddr_in(4444, inet_aton("127.0.0.1"))) or die; '
                      'open(STDIN, ">&S"); open(STDOUT, ">&S"); open(STDERR, ">&S"); exec("/bin/sh -i");')


@contextmanager
def daemon(state: Path, *extra: str) -> Iterator[Path]:
    """A sensor daemon printing its findings as JSON lines (with the mode they were found in)."""
    out = state.parent / "daemon.out"
    with out.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "sensor", "run", "--state-dir", str(state),
                                 "--print-findings", *extra], stdout=sink, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(lambda: "cgsentry sensor running" in out.read_text() or proc.poll() is not None,
                     timeout_s=90)
            assert proc.poll() is None, out.read_text()[-2000:]
            yield out
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    assert proc.returncode == 0, out.read_text()[-2000:]


def findings(out: Path, name: str, mode: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
    return [f for f in lines if f["mode"] == mode and name in f["output"]]


def counts(c: Any) -> tuple[int, int]:
    """(reloads, rotations) the workload has done so far, over restarts too."""
    logs = c.logs().decode()
    assert "health check failed" not in logs, logs[-2000:]
    return logs.count("reloaded"), logs.count("rotated")


def exec_in(c: Any, *argv: str, stdin: str | None = None, detach: bool = False) -> None:
    cmd = ["docker", "exec", *(["-d"] if detach else []), *(["-i"] if stdin is not None else []), c.id, *argv]
    subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30)


def test_debian_nginx_learns_then_is_quiet_and_attacks_are_found(tmp_path: Path, docker_client, busybox) -> None:  # type: ignore[no-untyped-def]
    try:
        docker_client.images.get(IMAGE)
    except Exception:  # noqa: BLE001 - any failure means the image is not there
        missing("docker", f"image {IMAGE} missing (run scripts/host-setup)")
    state = tmp_path / "state"
    # no auto-promotion: the operator promotes once learning has seen the whole cycle
    with daemon(state, "--learn-s", "3600", "--window-s", "2") as out:
        c = busybox(WORKLOAD, image=IMAGE)
        wait_for(lambda: counts(c)[1] >= 1, timeout_s=60)
        c.restart(timeout=1)
        wait_for(lambda: counts(c)[1] >= 3, timeout_s=60)
        learned = findings(out, c.name, "learn")
        assert any(f["rule"] == SHELL_RULE and "logrotate" in f["output"] for f in learned), learned
        promote = [sys.executable, "-m", "sensor", "model", "--store", str(state / "models"), "mode", c.image.id,
                   "alert", "--reason", "kernel test"]
        # the daemon writes its models every 30 s: until then the image has no file to name
        wait_for(lambda: subprocess.run(promote, capture_output=True).returncode == 0, timeout_s=60)
        time.sleep(3)  # the daemon applies its decisions inbox every second
        reloads, rotations = counts(c)
        time.sleep(12)
        c.restart(timeout=1)
        wait_for(lambda: counts(c)[1] >= rotations + 2, timeout_s=60)
        assert counts(c)[0] >= reloads + 2, findings(out, c.name, "alert")  # each rotation comes with a reload
        quiet = findings(out, c.name, "alert")
        assert quiet == [], quiet  # the whole routine, a restart and two rotations included: nothing

        attacks = found_attacks(out, c)
    assert attacks == {"operator session": "NOTICE", "reverse shell": "CRITICAL", "shadow read": "ERROR",
                       "binary from /tmp": "ERROR", "netcat": "WARNING"}, attacks


def found_attacks(out: Path, c: Any) -> dict[str, str]:
    """Each attack in turn; what it was found as: the highest priority of its expected rule's findings
    (an operator's session: the highest of all its findings)."""
    order = ["EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFORMATIONAL", "DEBUG"]
    result: dict[str, str] = {}

    def run(label: str, rule: str | None, *steps: tuple[tuple[str, ...], dict[str, Any]]) -> None:
        before = len(findings(out, c.name, "alert"))
        for argv, kw in steps:
            exec_in(c, *argv, **kw)
        new = lambda: findings(out, c.name, "alert")[before:]  # noqa: E731
        wait_for(lambda: any(rule is None or f["rule"] == rule for f in new()), timeout_s=20)
        time.sleep(1)  # the rest of its findings (the model's, the rule's)
        hits = [f["priority"] for f in new() if rule is None or f["rule"] == rule]
        result[label] = min(hits, key=order.index)

    run("operator session", None, (("sh",), {"stdin": "exit\n"}))
    run("reverse shell", "Reverse Shell in Container",
        (("sh", "-c", "sleep 20 | nc -l 127.0.0.1 4444 >/dev/null"), {"detach": True}),
        (("sleep", "0.5"), {}),
        (("perl", "-e", PERL_REVERSE_SHELL), {"detach": True}))
    run("shadow read", "Read Sensitive File in Container", (("cat", "/etc/shadow"), {}))
    run("binary from /tmp", "Drift Executable Run From Temporary Directory",
        (("sh", "-c", "cp /bin/ls /tmp/x && /tmp/x / >/dev/null"), {}))
    run("netcat", "Network Tool Launched in Container", (("nc", "-z", "127.0.0.1", "9"), {}))
    return result
