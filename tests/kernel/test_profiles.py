"""Kernel tier: one detection suite under both probe profiles.

``full`` attaches syscall tracepoints (every syscall on the host pays for them); ``lean`` attaches
none: exec/fork/exit come from scheduler tracepoints, network from cgroup socket hooks. Each
behaviour runs in a real busybox container; each profile must find what it promises and list
what it cannot (a rule lean cannot fire is named by ``unavailable_rules``, never silently absent).
"""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from rules.engine import RuleEngine
from sensor.agent.daemon import choose_profile, profile_banner, unavailable_rules
from sensor.bpf_loader import ProbeOptions
from sensor.events import Event
from sensor.tracer import Tracer
from tests.kernel.helpers import collect_until, sentinel

pytestmark = [pytest.mark.kernel, pytest.mark.docker]
RULES = RuleEngine.load()
IMAGE = "cgsentry/busybox:latest"

# (behaviour, rule, needs a syscall tracepoint). Lean reads argv from /proc after the exec, so a
# busybox applet that exits at once is nameless there (bench: 0 of 200 short execs had argv);
# the tools here stay running, as an attacker's listener or shell does.
SUITE = [
    ("nc -l -p 9001 </dev/null & sleep 0.5", "Network Tool Launched in Container", False),
    ("cp /bin/busybox /tmp/evil && /tmp/evil true", "Drift Executable Run From Temporary Directory", False),
    ("httpd -p 80 -h /var/www; sleep 0.3", "Listener on Privileged Port in Container", False),
    ("nc -w 1 127.0.0.1 4444 </dev/null", "Outbound Connection to Miner Pool Port", False),
    ("cat /etc/shadow >/dev/null", "Read Sensitive File in Container", True),
    ("chmod 4755 /bin/busybox", "Setuid Bit Set on File", True),
]


@pytest.fixture(scope="module", params=["full", "lean"])
def tracer(request: pytest.FixtureRequest) -> Iterator[Tracer]:
    profile = request.param
    t = Tracer(ProbeOptions(profile=profile, sensitive=profile == "full"), prefixes=RULES.open_prefixes())
    yield t
    t.close()


def _events(tracer: Tracer, busybox, script: str) -> tuple[list[Event], str]:  # type: ignore[no-untyped-def]
    """The container's events up to a sentinel that outlives its exec: lean reads argv from
    /proc, so a sentinel that exits at once (echo) could lose its argv; `sleep 30 0.N` does not."""
    tag = f"0.{uuid.uuid4().int % 10**9:09d}"
    c = busybox(f"sleep 0.5; {script}; exec /bin/sleep 30 {tag}")
    events = collect_until(tracer, sentinel(tag))
    assert (events[-1].container_id, events[-1].image) == (c.id, IMAGE), f"sentinel not attributed: {events[-1]}"
    return [ev for ev in events if ev.container_id == c.id], c.id


@pytest.mark.parametrize("script, rule, needs_syscalls", SUITE)
def test_each_profile_finds_what_it_promises(tracer: Tracer, busybox, script: str, rule: str,  # type: ignore[no-untyped-def]
                                             needs_syscalls: bool) -> None:
    profile = tracer.probe.options.profile
    events, _ = _events(tracer, busybox, script)
    fired = {f.rule for ev in events for f in RULES.handle(ev)}
    if profile == "lean" and needs_syscalls:
        assert rule not in fired
        assert rule in unavailable_rules("lean", RULES.rules())  # said, not silently absent
        assert rule in profile_banner("lean", RULES.rules())
    else:
        assert rule in fired, f"{profile}: {rule} did not fire; saw {sorted(fired)}"


def test_lean_attaches_no_syscall_tracepoint(tracer: Tracer) -> None:
    attached = tracer.probe.attached_syscall_tracepoints
    if tracer.probe.options.profile == "full":
        assert any(tp.startswith("syscalls:sys_enter_execve") for tp in attached)
    else:
        assert [tp for tp in attached if not tp.startswith("raw_syscalls")] == []


def test_both_see_argv_listen_connect_and_accept(tracer: Tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    """Inside one container: a listener, a client that connects to it, the accept the listener
    gets, and the long-running server's command line (lean reads argv from /proc). busybox nc
    accepts with a NULL peer buffer: the full profile cannot know the peer (README, limits);
    lean's accept comes from the socket itself and has it."""
    events, _ = _events(tracer, busybox, "nc -l -p 7070 -e /bin/cat & sleep 0.3; "
                                         "echo hi | nc -w 1 127.0.0.1 7070; sleep 0.3")
    kinds = {(ev.kind, ev.sport if ev.kind != "connect" else ev.dport) for ev in events}
    assert ("listen", 7070) in kinds and ("connect", 7070) in kinds and ("accept", 7070) in kinds, kinds
    listener = next(ev for ev in events if ev.kind == "exec" and "-l" in ev.args)
    assert listener.args[:3] == ("nc", "-l", "-p")
    accept = next(ev for ev in events if ev.kind == "accept")
    assert accept.comm == "nc"  # the listener's process, even though softirq context ran the hook
    assert accept.daddr == ("127.0.0.1" if tracer.probe.options.profile == "lean" else "")


def test_auto_profile_is_lean_only_without_rules_that_need_syscalls() -> None:
    assert choose_profile("auto", RULES.rules()) == "full"  # the library reads sensitive files
    exec_only = [r for r in RULES.rules() if r.kinds and "exec" in r.kinds]
    assert choose_profile("auto", exec_only) == "lean"
    assert choose_profile("lean", RULES.rules()) == "lean"
    assert unavailable_rules("auto", RULES.rules()) == []  # auto turns full for them instead
    assert "need syscall tracepoints" in profile_banner("auto", RULES.rules(), full=True)


def test_auto_switches_between_lean_and_full_at_run_time(busybox) -> None:  # type: ignore[no-untyped-def]
    """The auto profile takes the syscall tracepoints on and off as rules come and go (a rule
    push), never with the socket hooks at the same time: a connect is reported once, by the
    source of the state the probe is in."""
    t = Tracer(ProbeOptions(profile="auto", sensitive=True, auto_full=False), prefixes=RULES.open_prefixes())
    try:
        probe = t.probe

        def connects(port: int) -> list[Event]:
            events, _ = _events(t, busybox, f"nc -w 1 127.0.0.1 {port} </dev/null")
            return [ev for ev in events if ev.kind == "connect" and ev.dport == port]

        from sensor.events import NET_HOOK

        assert not probe.full and probe.attached_syscall_tracepoints == []
        lean = connects(4441)
        assert len(lean) == 1 and lean[0].flags & NET_HOOK
        assert probe.set_full(True) and probe.full
        assert any(tp.startswith("syscalls:sys_enter_openat") for tp in probe.attached_syscall_tracepoints)
        full = connects(4442)
        assert len(full) == 1 and not full[0].flags & NET_HOOK
        assert probe.set_full(False) and not probe.full and probe.attached_syscall_tracepoints == []
        assert len(connects(4443)) == 1
        assert not probe.set_full(False)  # no change, nothing done
    finally:
        t.close()
