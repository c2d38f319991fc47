"""Exec sessions and probes (issue 17 item 5) on tmp_path /proc and cgroup trees: which runtime-started
process is a session, the mark on its events and its descendants', the rule fields, the trace form,
and learning scoped to a session's command line."""

from __future__ import annotations

import os
from pathlib import Path

from models.engine import ModelEngine
from models.export import seccomp_profile
from rules.engine import RuleEngine
from rules.fields import FIELDS
from sensor.agent.cli import event_json, event_line
from sensor.containers import CgroupIndex
from sensor.enrich import Enricher
from sensor.events import EXEC_SESSION, EXEC_TTY, Event, Finding
from sensor.proctable import ProcessTable
from sensor.runtime import ContainerMeta
from sensor.sessions import is_container_init, started_by_runtime, stdin_is_tty

CID = "c" * 64
SESSION, TTY = EXEC_SESSION, EXEC_SESSION | EXEC_TTY


def fake_proc(root: Path, pid: int, ppid: int, exe: str, args: list[str], nspid: tuple[int, ...] = (),
              stdin: str = "pipe:[77]") -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(f"{pid} (x) S {ppid} 0 0")
    (d / "status").write_text(f"Name:\tx\nNSpid:\t{chr(9).join(map(str, nspid or (pid,)))}\n")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in args) + b"\0")
    os.symlink(exe, d / "exe")
    (d / "fd").mkdir()
    os.symlink(stdin, d / "fd" / "0")


class Host:
    """A host with one running container (init pid 100, its child 101) under a containerd shim."""

    def __init__(self, tmp: Path) -> None:
        self.proc, self.cg = tmp / "proc", tmp / "cg"
        self.dir = self.cg / "docker" / CID
        self.dir.mkdir(parents=True)
        fake_proc(self.proc, 1, 0, "/sbin/init", ["init"])
        fake_proc(self.proc, 10, 1, "/usr/bin/containerd-shim-runc-v2", ["shim"])
        fake_proc(self.proc, 100, 10, "/bin/sleep", ["sleep", "3600"], (100, 1))
        fake_proc(self.proc, 101, 100, "/bin/sh", ["sh"], (101, 2))
        fake_proc(self.proc, 50, 10, "/usr/bin/runc", ["runc", "exec"])
        self.members(100, 101)

    def members(self, *pids: int) -> None:
        (self.dir / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids))


def test_which_parents_are_the_runtime() -> None:
    for pexe in ("/usr/bin/runc", "/usr/sbin/runc", "runc:[2:INIT]", "/usr/bin/crun", "/dev/fd/5",
                 "/usr/bin/containerd-shim-runc-v2", "/usr/libexec/podman/conmon", "[runc]"):
        assert started_by_runtime(pexe), pexe
    for pexe in ("/sbin/docker-init", "/usr/bin/tini", "/bin/sh", "/usr/sbin/nginx", ""):
        assert not started_by_runtime(pexe), pexe


def test_the_init_is_not_a_session_and_a_second_process_is(tmp_path: Path) -> None:
    h = Host(tmp_path)
    assert is_container_init(h.proc, 100, h.dir) is True  # pid 1 of its own pid namespace
    fake_proc(h.proc, 200, 50, "/bin/cat", ["cat", "/tmp/healthy"], (200, 9))
    h.members(100, 101, 200)
    assert is_container_init(h.proc, 200, h.dir) is False
    # a probe gone before anyone looked: the init is still in the cgroup
    assert is_container_init(h.proc, 999, h.dir) is False
    # the container's cgroup and the process both gone: cannot tell
    assert is_container_init(h.proc, 999, tmp_path / "gone") is None


def test_an_init_in_a_shared_pid_namespace_with_children_already(tmp_path: Path) -> None:
    """--pid=host or a pod sharing one: no pid 1; the init's own children in its cgroup are not
    someone before it, an unrelated process is."""
    h = Host(tmp_path)
    fake_proc(h.proc, 300, 10, "/bin/app", ["app"], (300,))
    fake_proc(h.proc, 301, 300, "/bin/worker", ["worker"], (301,))
    fake_proc(h.proc, 302, 301, "/bin/helper", ["helper"], (302,))
    h.members(300, 301, 302, 4242)  # 4242: exited between the listing and the walk
    assert is_container_init(h.proc, 300, h.dir) is True
    fake_proc(h.proc, 303, 50, "/bin/sh", ["sh"], (303,))
    h.members(300, 301, 303)
    assert is_container_init(h.proc, 303, h.dir) is False


def test_stdin_tty(tmp_path: Path) -> None:
    h = Host(tmp_path)
    fake_proc(h.proc, 200, 50, "/bin/sh", ["sh"], (200, 9), stdin="/dev/pts/0")
    fake_proc(h.proc, 201, 50, "/bin/sh", ["sh"], (201, 10), stdin="/dev/null")
    assert stdin_is_tty(h.proc, 200) and not stdin_is_tty(h.proc, 201) and not stdin_is_tty(h.proc, 12345)


def _enricher(h: Host) -> tuple[Enricher, int]:
    class Runtime:
        def inspect(self, container_id: str) -> ContainerMeta | None:
            return ContainerMeta(container_id, "web", "busybox:latest", "sha256:feed")

        def find(self, id_or_name: str) -> ContainerMeta | None:
            return None

        def stats(self) -> dict[str, int]:
            return {}

    return Enricher(CgroupIndex(h.cg, rescan_ms=0), Runtime(), ProcessTable(h.proc)), os.stat(h.dir).st_ino


def test_a_session_and_its_descendants_carry_the_mark(tmp_path: Path) -> None:
    h = Host(tmp_path)
    enr, cg = _enricher(h)  # the sensor started before the session
    fake_proc(h.proc, 200, 50, "/bin/sh", ["sh"], (200, 9), stdin="/dev/pts/3")
    h.members(100, 101, 200)
    leader = enr.enrich(Event("exec", 1, pid=200, ppid=50, exe="/bin/sh", args=("sh",), cgroup_id=cg))
    assert leader.pexe == "/usr/bin/runc" and leader.flags & TTY == TTY
    enr.enrich(Event("fork", 2, pid=200, ppid=200, child_pid=201, cgroup_id=cg))
    child = enr.enrich(Event("exec", 3, pid=201, ppid=200, exe="/bin/id", args=("id",), cgroup_id=cg))
    grandchild = enr.enrich(Event("connect", 4, pid=202, ppid=201, cgroup_id=cg, family="ipv4", daddr="127.0.0.1"))
    opened = enr.enrich(Event("open", 5, pid=201, cgroup_id=cg, path="/etc/shadow", flags=os.O_RDONLY))
    assert child.flags & TTY == TTY and grandchild.flags & TTY == TTY
    assert opened.flags == os.O_RDONLY  # open(2)'s flags are left alone
    # the container's own tree: its init's child is not in a session
    own = enr.enrich(Event("exec", 6, pid=101, ppid=100, exe="/bin/cat", args=("cat",), cgroup_id=cg))
    assert not own.flags & SESSION


def test_the_containers_start_is_not_a_session(tmp_path: Path) -> None:
    h = Host(tmp_path)
    enr, cg = _enricher(h)
    fake_proc(h.proc, 400, 10, "/bin/sleep", ["sleep", "1"], (400, 1), stdin="/dev/pts/1")
    h.members(400)
    init = enr.enrich(Event("exec", 1, pid=400, ppid=10, exe="/bin/sleep", args=("sleep", "1"), cgroup_id=cg))
    assert init.pexe == "/usr/bin/containerd-shim-runc-v2" and not init.flags & SESSION


def test_an_init_exec_ing_its_service_stays_the_containers_own(tmp_path: Path) -> None:
    """A pod sharing the sandbox's pid namespace: the init is not pid 1, and an orphan of its tree
    (reparented to the sandbox's pid 1, outside the cgroup) is there when the entrypoint script
    execs the service: that exec is not a new process the runtime started."""
    h = Host(tmp_path)
    enr, cg = _enricher(h)
    fake_proc(h.proc, 600, 10, "/bin/sh", ["sh", "entrypoint"], (600, 5))
    h.members(600)
    enr.procs.adopt(600, 10, "/usr/bin/runc")  # runc init, until it execs the entrypoint
    start = enr.enrich(Event("exec", 1, pid=600, ppid=10, exe="/bin/sh", args=("sh", "entrypoint"), cgroup_id=cg))
    assert not start.flags & SESSION
    fake_proc(h.proc, 601, 1, "/bin/daemon", ["daemon"], (601, 6))  # an orphan of its tree
    h.members(600, 601)
    service = enr.enrich(Event("exec", 2, pid=600, ppid=10, exe="/bin/httpd", args=("httpd",), cgroup_id=cg))
    assert not service.flags & SESSION
    # while a process that ran the runtime's image until its exec is a session
    enr.procs.adopt(602, 50, "/usr/bin/runc")
    probe = enr.enrich(Event("exec", 3, pid=602, ppid=50, exe="/bin/cat", args=("cat",), cgroup_id=cg))
    assert probe.flags & SESSION


def test_a_probe_without_a_terminal_and_an_exited_one(tmp_path: Path) -> None:
    h = Host(tmp_path)
    enr, cg = _enricher(h)
    # ExecSync's `cat /tmp/healthy`, gone before the sensor looks: the init is in the cgroup still
    probe = enr.enrich(Event("exec", 1, pid=210, ppid=50, exe="/bin/cat", args=("cat", "/tmp/healthy"),
                             cgroup_id=cg))
    assert probe.flags & (SESSION | EXEC_TTY) == SESSION


def test_trace_output_shows_the_mark() -> None:
    ev = Event("exec", 1, pid=7, comm="sh", exe="/bin/sh", args=("sh",), flags=TTY, container_id=CID)
    assert event_json(ev)["exec_session"] == {"tty": True}
    assert "[exec session, tty]" in event_line(ev)
    probe = ev.replace(flags=SESSION)
    assert event_json(probe)["exec_session"] == {"tty": False} and "[exec session]" in event_line(probe)
    assert "exec_session" not in event_json(ev.replace(flags=0))
    assert "exec_session" not in event_json(Event("open", 1, path="/x", flags=SESSION))


def test_rule_fields() -> None:
    tty = Event("exec", 1, flags=TTY)
    assert FIELDS["proc.is_exec_session"].get(tty) is True and FIELDS["proc.tty"].get(tty) == 1
    probe = Event("connect", 1, flags=SESSION)
    assert FIELDS["proc.is_exec_session"].get(probe) is True and FIELDS["proc.tty"].get(probe) == 0
    opened = Event("open", 1, flags=TTY)  # O_NONBLOCK | O_DSYNC, not a session
    assert FIELDS["proc.is_exec_session"].get(opened) is False and FIELDS["proc.tty"].get(opened) == 0


def test_terminal_shell_rule_fires_on_a_tty_session_only() -> None:
    engine = RuleEngine.load()  # the library as the sensor loads it
    base = Event("exec", 1, pid=9, comm="sh", exe="/bin/sh", args=("sh",), pexe="/usr/bin/runc", container_id=CID,
                 container_name="web", image="busybox:latest")
    fired = [f for f in engine.handle(base.replace(flags=TTY)) if f.rule == "Terminal Shell in Container"]
    assert [f.priority for f in fired] == ["NOTICE"] and "exec_session=True tty=1" in fired[0].output
    for quiet in (base.replace(flags=SESSION), base):
        assert not [f for f in engine.handle(quiet) if f.rule == "Terminal Shell in Container"]


# -- learning ---------------------------------------------------------------------------------------
IMAGE = "sha256:probe"


def ev(kind: str, t: int, args: tuple[str, ...], flags: int = SESSION, pid: int = 0, container_id: str = CID,
       **kw: object) -> Event:
    return Event(kind, t * 1_000_000_000, pid=pid or 500 + t, comm=args[0][:15], exe="/bin/" + args[0], args=args,
                 flags=flags, cgroup_id=7, container_id=container_id, container_name="web",
                 image="busybox:latest", image_id=IMAGE, **kw)  # type: ignore[arg-type]


def probe_events(t: int, container_id: str = CID) -> list[Event]:
    """A liveness probe `sh -c 'wget -q -O- localhost:8080'`: the shell, its wget, wget's connect."""
    cmd = ("sh", "-c", "wget -q -O- localhost:8080")
    wget = ("wget", "-q", "-O-", "localhost:8080")
    return [ev("exec", t, cmd, pexe="/usr/bin/runc", container_id=container_id),
            ev("exec", t, wget, pexe="/bin/sh", container_id=container_id, pid=900 + t),
            ev("connect", t, wget, pexe="/bin/sh", container_id=container_id, pid=900 + t, proto="tcp",
               family="ipv4", daddr="127.0.0.1", dport=8080),
            ev("syscall", t, wget, container_id=container_id, pid=900 + t, syscall="socket", syscall_nr=41)]


def learned_engine() -> ModelEngine:
    eng = ModelEngine()
    for t in range(1, 20):
        for e in probe_events(t):
            assert eng.handle(e) == []
        eng.handle(ev("exec", t, ("sleep", "1"), flags=0, pexe="/bin/sh"))  # the container's own loop
    eng.set_mode(IMAGE, "alert", "test", 21 * 10**9)
    return eng


def test_a_learned_probe_is_quiet_on_every_repetition_in_alert_mode() -> None:
    eng = learned_engine()
    for t in range(30, 60):  # a new container of the image too: items are the image's
        for e in probe_events(t, container_id=CID if t % 2 else "d" * 64):
            assert eng.handle(e) == [], e
    items = eng.get(IMAGE).profile.items
    assert ("sh -c 'wget -q -O- localhost:8080'", "parent", "/bin/sh '[runtime]'") in items["session"]
    assert ("wget -q -O- localhost:8080", "outbound", "tcp 8080 127.0.0.1") in items["session"]
    assert not items["outbound"]  # nothing learned for the container's own tree
    # but a syscall is the container's: the kernel reports it once, for whoever made it first
    assert (41,) in items["syscall"]
    assert ("/bin/sleep", 0) in items["process"] and ("/bin/sh", 0) not in items["process"]


def test_another_command_line_in_a_session_is_found() -> None:
    eng = learned_engine()
    found = eng.handle(ev("exec", 40, ("sh",), pexe="/usr/bin/runc", flags=TTY))
    assert [(f.rule, f.priority) for f in found] == [("New Process", "NOTICE")]
    assert found[0].explanation["session"] == "sh" and "exec_session" in found[0].tags
    assert "in exec session sh " in found[0].output
    # expected: the same kind of item under other command lines
    assert "sh -c 'wget -q -O- localhost:8080': process /bin/sh 0" in found[0].explanation["expected"]
    # the probe's child with another argv, and its connect elsewhere
    other = ("wget", "-q", "-O-", "evil.example:80")
    assert [f.rule for f in eng.handle(ev("exec", 41, other, pexe="/bin/sh", pid=77))] == ["New Process"]
    assert [f.rule for f in eng.handle(ev("connect", 41, ("wget", "-q", "-O-", "localhost:8080"), pid=78,
                                          proto="tcp", family="ipv4", daddr="127.0.0.1", dport=9999))] == [
        "New Outbound Endpoint"]


def test_the_probes_command_in_the_containers_own_tree_is_found() -> None:
    eng = learned_engine()
    own = probe_events(50)
    for e in own:
        e.flags = 0
    found = {f.rule for e in own for f in eng.handle(e)}
    assert {"New Process", "New Outbound Endpoint"} <= found and "New Syscall" not in found


def test_a_learnable_rules_finding_is_scoped_to_the_session() -> None:
    eng = ModelEngine()
    probe = ev("exec", 1, ("cat", "/etc/shadow"), pexe="/usr/bin/runc")
    rule = Finding("rule", "Read Sensitive File", "WARNING", "o", probe, source="rule")
    assert eng.rule_finding(rule, "learn") is not None  # learned, still reported while learning
    eng.set_mode(IMAGE, "alert", "test", 5 * 10**9)
    assert eng.rule_finding(rule.replace(event=probe.replace(time_ns=6 * 10**9)), "alert") is None
    other = probe.replace(args=("cat", "/etc/shadow", "/etc/passwd"))
    assert eng.rule_finding(rule.replace(event=other), "alert") is not None
    assert eng.rule_finding(rule.replace(event=probe.replace(flags=0)), "alert") is not None


def test_seccomp_export_keeps_the_probes_syscalls() -> None:
    eng = learned_engine()
    assert "socket" in seccomp_profile(eng.get(IMAGE))["syscalls"][0]["names"]
