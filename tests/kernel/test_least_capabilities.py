"""The sensor traces with CAP_BPF and CAP_PERFMON alone (kernel 5.8+), as the Kubernetes DaemonSet
(deploy/kubernetes/sensor.yaml) claims: every other capability is dropped from the bounding set
(root without them) and a sentinel exec is still seen. With CAP_BPF alone it cannot load its
programs, and says so in one line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.prereqs import missing

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
KEEP = ("cap_bpf", "cap_perfmon")
BPF, PERFMON = 39, 38  # capability numbers (linux/capability.h)


def _drop_all_but(keep: tuple[str, ...]) -> str:
    printed = subprocess.run(["capsh", "--print"], capture_output=True, text=True, check=True).stdout
    bounding = re.search(r"^Bounding set =(.*)$", printed, re.M)
    assert bounding is not None, printed
    caps = [c for c in bounding.group(1).strip().split(",") if c]
    return ",".join(c for c in caps if c not in keep)


def test_the_sensor_traces_with_bpf_and_perfmon_only() -> None:
    if shutil.which("capsh") is None:
        missing("kernel", "capsh not installed (apt-get install libcap2-bin)")
    tag = f"C{uuid.uuid4().hex[:8]}"
    trace = subprocess.Popen(["capsh", f"--drop={_drop_all_but(KEEP)}", "--", "-c",  # noqa: S607
                              f"exec {sys.executable} -m sensor trace --json --no-docker --no-syscalls "
                              "--duration 90"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    loop = subprocess.Popen(["sh", "-c", f"while :; do /bin/echo {tag} >/dev/null; sleep 0.2; done"])  # noqa: S607
    try:
        time.sleep(0.5)  # capsh has exec'd the sensor by now: same pid
        status = Path(f"/proc/{trace.pid}/status").read_text()
        effective = int(re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]
        assert effective == (1 << BPF) | (1 << PERFMON), hex(effective)
        assert trace.stdout is not None
        seen = False
        for line in trace.stdout:  # ends when the trace does (at worst --duration)
            ev = json.loads(line)
            if ev["kind"] == "exec" and ev["args"] == ["/bin/echo", tag]:
                seen = True
                break
        assert seen, trace.stderr.read() if trace.stderr else ""
        assert Path(f"/proc/{trace.pid}/status").exists()  # still running: attached, reading, no error
    finally:
        loop.kill()
        trace.kill()
        loop.wait()
        trace.wait()


def test_without_perfmon_the_sensor_says_it_cannot_load() -> None:
    if shutil.which("capsh") is None:
        missing("kernel", "capsh not installed (apt-get install libcap2-bin)")
    res = subprocess.run(["capsh", f"--drop={_drop_all_but(('cap_bpf',))}", "--", "-c",  # noqa: S607
                          f"exec {sys.executable} -m sensor trace --json --no-docker --no-syscalls --duration 5"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 71 and "cannot load BPF programs" in last and "doctor" in last, res.stderr
