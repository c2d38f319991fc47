"""Kernel tier: exec probes and operator sessions (issue 17 item 5) in real containers, under the real
sensor daemon, with Docker and with the CRI containerd of scripts/host-setup (CRI ExecSync is how the
kubelet runs an exec probe).

A container whose init loops on ``sleep`` (and runs ``cat /tmp/healthy`` itself on SIGUSR1) learns
while a liveness-style probe ``cat /tmp/healthy`` is exec'd in it; an operator switches the image to
alert. Then the same probe, repeated, raises nothing; the same binary with another argv in an exec
session is a finding that names the session; the probe's exact command run by the container's own
init is a finding too (what sessions did covers only sessions); and ``docker exec -t`` with a shell
is a NOTICE "Terminal Shell in Container" marked as a tty session. ``trace --json`` shows the mark.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from bench.runtime_attribution import CriPod, cgroup_init_pid
from tests.kernel.sensord import daemon, findings
from tests.prereqs import CRI_SOCKET
from tests.waiting import wait_for

pytestmark = [pytest.mark.kernel]
PROBE = ("cat", "/tmp/healthy")
OTHER = ("cat", "/proc/version")  # the probe's binary with another argv (a file every container has)
INIT = "touch /tmp/healthy; trap 'cat /tmp/healthy' USR1; while :; do sleep 0.3; done"
LEARN_PROBES, ALERT_PROBES = 5, 7


def promote(state: Path, image_key: str) -> None:
    """An operator switches the image to alert (once the daemon has written its model)."""
    cmd = [sys.executable, "-m", "sensor", "model", "--store", str(state / "models"), "mode", image_key, "alert",
           "--reason", "kernel test"]
    wait_for(lambda: subprocess.run(cmd, capture_output=True).returncode == 0, timeout_s=60)
    time.sleep(3)  # the daemon applies its decisions inbox every second


def alerts(out: Path, name: str) -> list[dict[str, Any]]:
    """Alert-mode findings whose output names ``name`` ("": all of them)."""
    return [f for f in findings(out) if f["mode"] == "alert" and name in f["output"]]


def probe_scenario(out: Path, state: Path, image_key: str, name: str, exec_in: Callable[..., object],
                   init_pid: int) -> list[dict[str, Any]]:
    """Learn with the probe, promote, probe again, then the other argv and the own tree's run of
    the probe's command; the alert-mode findings about the container, in order."""
    for _ in range(LEARN_PROBES):
        exec_in(*PROBE)
        time.sleep(0.3)
    promote(state, image_key)
    for _ in range(ALERT_PROBES):
        exec_in(*PROBE)
        time.sleep(0.3)
    exec_in(*OTHER)  # also the sentinel: every probe before it was handled when its finding shows
    wait_for(lambda: any("in exec session cat /proc/version" in f["output"] for f in alerts(out, name)),
             timeout_s=30)
    os.kill(init_pid, signal.SIGUSR1)
    wait_for(lambda: any(own_cat(f) for f in alerts(out, name)), timeout_s=30)
    return alerts(out, name)


def own_cat(f: dict[str, Any]) -> bool:
    return f["rule"] == "New Process" and "new process /bin/cat (parent /bin/sh" in f["output"] and (
        "exec session" not in f["output"])


def check(found: list[dict[str, Any]]) -> None:
    other = next(i for i, f in enumerate(found) if "in exec session cat /proc/version" in f["output"])
    before = [f for f in found[:other] if "/proc/version" not in f["output"]]  # a rule's, on the other argv
    assert before == [], before  # the learned probe, repeated in alert mode: nothing
    assert (found[other]["rule"], found[other]["priority"]) == ("New Process", "NOTICE"), found[other]
    assert any(own_cat(f) and f["priority"] == "WARNING" for f in found[other:]), found


@pytest.mark.docker
def test_docker_probe_session_tty_and_own_tree(tmp_path: Path, busybox) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    with daemon(state, "--learn-s", "3600", "--snapshot-s", "1") as out:
        c = busybox(INIT)

        def exec_in(*argv: str) -> None:
            assert c.exec_run(list(argv)).exit_code == 0

        found = probe_scenario(out, state, c.image.id, c.name, exec_in, int(c.attrs["State"]["Pid"]))
        check(found)
        # docker exec -t: an operator's terminal; alive while the sensor reads its stdin
        assert c.exec_run(["sh", "-c", "sleep 2"], tty=True).exit_code == 0
        wait_for(lambda: any(f["rule"] == "Terminal Shell in Container" for f in alerts(out, c.name)), timeout_s=30)
    shells = [f for f in alerts(out, c.name) if f["rule"] == "Terminal Shell in Container"]
    assert [f["priority"] for f in shells] == ["NOTICE"], shells
    assert "exec_session=True tty=1" in shells[0]["output"] and "cmdline=sh -c sleep 2" in shells[0]["output"]


@pytest.fixture
def pod() -> Iterator[CriPod]:
    p = CriPod("payments", f"web-{uuid.uuid4().hex[:6]}", {"app": "web"}, {"app": ["/bin/sh", "-c", INIT]})
    yield p
    p.close()


@pytest.mark.cri
def test_cri_exec_sync_probe_and_own_tree(tmp_path: Path, pod: CriPod) -> None:
    state = tmp_path / "state"
    with daemon(state, "--no-docker", "--cri-socket", CRI_SOCKET, "--learn-s", "3600", "--snapshot-s", "1") as out:
        def exec_in(*argv: str) -> None:
            assert pod.exec("app", *argv).exit_code == 0

        # this daemon sees only the CRI containerd, and only the pod's image is switched to alert
        found = probe_scenario(out, state, pod.image_id(), "", exec_in, cgroup_init_pid(pod.cgroup("app")))
    check(found)


@pytest.mark.docker
def test_trace_shows_the_session_mark(tmp_path: Path, busybox) -> None:  # type: ignore[no-untyped-def]
    c = busybox("while :; do sleep 0.7; done")
    out, err = tmp_path / "trace.out", tmp_path / "trace.err"
    with out.open("w") as stdout, err.open("w") as stderr:  # files, not pipes: nobody reads until it ends
        trace = subprocess.Popen([sys.executable, "-m", "sensor", "trace", "--json", "--container", c.name,
                                  "--duration", "30"], stdout=stdout, stderr=stderr, text=True)
        while trace.poll() is None:  # until the trace ends: whatever it saw once it was up
            c.exec_run(list(PROBE))
            c.exec_run(["sh", "-c", "sleep 0.5"], tty=True)
            time.sleep(0.5)
    assert trace.returncode == 0, err.read_text()[-2000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    execs = [o for o in lines if o["kind"] == "exec"]
    probes = [o for o in execs if o["args"] == list(PROBE)]
    shells = [o for o in execs if o["args"] == ["sh", "-c", "sleep 0.5"]]
    own = [o for o in execs if o["args"] == ["sleep", "0.7"]]
    assert probes and all(o["exec_session"] == {"tty": False} for o in probes), probes
    assert shells and all(o["exec_session"] == {"tty": True} for o in shells), shells
    assert own and not any("exec_session" in o for o in own), own
