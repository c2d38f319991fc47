"""Kernel tier: the sensor daemon (a real process, real BPF) enforcing on real containers, and
restarting under running ones.

- a container paused by policy, unpaused by an operator, that misbehaves again is paused again;
- a banned busybox applet the kernel's comm match misses is killed from userspace, and the
  finding says so;
- a daemon restarted under a running container keeps to its learned baseline: processes seeded
  from /proc carry the names live execs had, and accepts on a listener bound before the restart
  carry its port;
- a pid the process table still holds for its last owner, handed to a container's process, is
  named by its new owner (what made the restart test flaky after a pid wrap).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from models.baseline import ModelConfig
from models.engine import ModelEngine
from sensor.journal import read_journal
from tests.kernel.sensord import daemon, findings, paused
from tests.waiting import wait_for

pytestmark = [pytest.mark.kernel, pytest.mark.docker]


def test_policy_pauses_again_after_an_operator_unpause(tmp_path: Path, busybox) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "policy.yaml"
    policy.write_text("images:\n- match: 'cgsentry/busybox:*'\n  mode: enforce\n  default_action: pause-container\n")
    with daemon(tmp_path / "state", "--policy", str(policy)) as out:
        c = busybox("sleep 1; nc 127.0.0.1 9 </dev/null; sleep 3600")
        wait_for(lambda: paused(c), timeout_s=30)
        time.sleep(6)  # past one burst: a later misbehaviour is a new one
        subprocess.run(["docker", "unpause", c.id], check=True, capture_output=True)
        assert not paused(c)
        subprocess.run(["docker", "exec", c.id, "nc", "127.0.0.1", "9"], capture_output=True, timeout=30)
        wait_for(lambda: paused(c), timeout_s=30)
        subprocess.run(["docker", "unpause", c.id], check=True, capture_output=True)
    assert sum(f["action"] == "pause-container" for f in findings(out)) >= 2, findings(out)


def test_banned_applet_missed_by_the_kernel_is_killed_from_userspace(tmp_path: Path, busybox) -> None:  # type: ignore[no-untyped-def]
    """Debian's static busybox runs `nc` from a shell as /proc/self/exe with comm "exe", which the
    kernel's banned-comm map cannot match; the policy check names the applet and kills it. Under the
    lean profile: the full one reads argv in the kernel and bans by the applet argv[0] names
    (tests/kernel/test_multicall.py), while lean has no argv there."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("images:\n- match: 'cgsentry/busybox:*'\n  mode: enforce\n  banned_processes: [nc]\n")
    with daemon(tmp_path / "state", "--policy", str(policy), "--profile", "lean") as out:
        c = busybox("sleep 1; nc -l -p 17999 127.0.0.1; echo rc=$?; sleep 3600")
        wait_for(lambda: "rc=" in c.logs().decode(), timeout_s=30)
        banned = [f for f in findings(out) if f["rule"] == "Policy: banned process"]
    assert "rc=137" in c.logs().decode()  # SIGKILL
    assert banned and banned[0]["action"] == "kill-process", findings(out)
    assert "killed at exec by the kernel" not in banned[0]["output"]  # so the kill was the sensor's


def test_restarted_daemon_keeps_to_the_baseline_of_a_running_container(tmp_path: Path, busybox) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    learn = ("--learn-s", "6", "--stable-s", "3", "--window-s", "1")
    config = ModelConfig(window_s=1, min_learn_s=6, stable_s=3)
    with daemon(state, *learn):  # the first daemon sees the container start: live execs, a live bind
        c = busybox("httpd -p 127.0.0.1:17998 -h /; "
                    "while true; do wget -q -O /dev/null http://127.0.0.1:17998/ 2>/dev/null; sleep 0.3; done")
        time.sleep(2)
        subprocess.run(["docker", "exec", c.id, "sh", "-c", "true"], capture_output=True, timeout=30)
        time.sleep(18)  # learns, turns stable, promotes; the model is saved at stop
    assert ModelEngine.open(state / "models", config).mode(c.image.id) == "alert"
    learned = ModelEngine.open(state / "models", config).images[c.image.id].profile.items
    assert ("tcp", 17998) in learned["inbound"], learned["inbound"]
    # docker exec's parent, learned for that exec session's command line (its own items stay the container's)
    assert ("sh -c true", "parent", "/bin/sh '[runtime]'") in learned["session"], learned["session"]
    journal = tmp_path / "second.msgpack"
    with daemon(state, *learn, "--record", str(journal)) as out:
        time.sleep(8)  # sleeps and wgets whose parent was seeded from /proc, accepts on the old listener
        subprocess.run(["docker", "exec", c.id, "sh", "-c", "true"], capture_output=True, timeout=30)
        time.sleep(2)
    mine = [f for f in findings(out) if c.name in f["output"] or c.id[:12] in f["output"]]
    assert not mine, [f["output"] for f in mine]
    # ... and not because the second daemon saw nothing: it saw the steady work, named as learned
    seen = [ev for ev in read_journal(journal) if ev.container_id == c.id]
    assert any(ev.kind == "accept" and ev.sport == 17998 for ev in seen), "no accept with the listener's port"
    assert any(ev.kind == "exec" and ev.exe == "/bin/sleep" and ev.pexe == "/bin/sh" for ev in seen)


LAST_PID = Path("/proc/sys/kernel/ns_last_pid")


def _hand_over(pid: int, container_id: str, timeout_s: float = 3.0) -> bool:
    """Keep the host's next pid at ``pid`` (free) until a process of the container takes it;
    False if another process took it first or none came."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            owner = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            LAST_PID.write_text(str(pid - 1))
            time.sleep(0.005)
            continue
        return container_id in owner
    return False


def test_a_reused_pid_is_named_by_its_new_owner(tmp_path: Path, busybox) -> None:  # type: ignore[no-untyped-def]
    """A pid comes back after pid_max (32768 on many hosts) wraps, and the daemon's process table
    may still hold its last owner: exited before the daemon attached, or lingering after its exit
    for late events. The flaky restarted-daemon test above was that: a busybox child of the
    container's sh, given such a pid, was named by the old owner's directory and parent (a New
    Process WARNING). Here the pid of a host python that exited is handed to the container's next
    child (ns_last_pid), which is named as it ran: /bin/sleep under /bin/sh."""
    c = busybox("while true; do sleep 1; done")
    journal = tmp_path / "journal.msgpack"
    reused = 0
    with daemon(tmp_path / "state", "--record", str(journal)):
        for _ in range(30):
            old = subprocess.Popen(["python3", "-c", "import time; time.sleep(30)"])
            time.sleep(0.5)  # its exec is seen: the table holds it
            old.kill()
            old.wait()  # its exit is seen too: it lingers
            if _hand_over(old.pid, c.id):
                reused = old.pid
                break
        assert reused, "no container process got a reused pid in 30 tries"
        time.sleep(1)
    execs = [ev for ev in read_journal(journal) if ev.kind == "exec" and ev.pid == reused and ev.container_id == c.id]
    assert execs and all((ev.exe, ev.pexe) == ("/bin/sleep", "/bin/sh") for ev in execs), execs
