"""Process facts from procfs on injected roots (tmp_path trees): argv the kernel could not read,
one identity per executable, shells wired to sockets, connect sources (issue 20 items 3-6)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from models.engine import ModelEngine
from rules.engine import RuleEngine, default_rule_files
from rules.loader import load_files, load_text
from rules.policy import PolicyChecker, PolicySet
from sensor import layout as L
from sensor.containers import CgroupIndex
from sensor.enrich import Enricher
from sensor.events import ARGS_FROM_PROC, ARGS_UNREAD, EXE_UPPER_LAYER, STDIO_SOCKET, Event
from sensor.procfacts import ProcFacts, agrees, inet_socket, within_limits
from sensor.proctable import ProcessTable
from sensor.runtime import ContainerMeta

CID = "a" * 64


class FakeRuntime:
    def inspect(self, container_id: str) -> ContainerMeta | None:
        return ContainerMeta(container_id, "web-1", "debian:12", "sha256:feed")

    def find(self, id_or_name: str) -> ContainerMeta | None:
        return None

    def stats(self) -> dict[str, int]:
        return {}

KEY = "sha256:feed"
# /proc/net/tcp rows: local 172.17.0.2:51234 -> remote 10.9.8.7:443, established, inode 4242;
# and a socket of another process (inode 77)
TCP = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
       "   0: 020011AC:C822 0708090A:01BB 01 00000000:00000000 00:00000000 00000000     0        0 4242 1\n"
       "   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1\n")
TCP6 = ("  sl  local_address                         remote_address                        st\n"
        "   0: 0000000000000000FFFF00000200A8C0:D431 0000000000000000FFFF00000100A8C0:115C 01 "
        "00000000:00000000 00:00000000 00000000     0        0 9001 1\n")


def merged_usr(tmp_path: Path) -> Path:
    """A Debian-like root: /bin -> usr/bin, /usr/bin/sh -> dash, busybox-style /usr/bin/ls applet."""
    root = tmp_path / "rootfs"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "dash").write_bytes(b"\x7fELF dash")
    os.symlink("dash", root / "usr" / "bin" / "sh")
    os.symlink("usr/bin", root / "bin")
    return root


def proc_dir(procfs: Path, pid: int, root: Path | None = None, cmdline: bytes = b"",
             fds: dict[int, str] | None = None, tcp: str = "", tcp6: str = "") -> Path:
    d = procfs / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "net").mkdir()
    (d / "stat").write_text(f"{pid} (sh) S 1 0 0")
    if root is not None:
        os.symlink(root, d / "root")
    if cmdline:
        (d / "cmdline").write_bytes(cmdline)
    for fd, target in (fds or {}).items():
        os.symlink(target, d / "fd" / str(fd))
    (d / "net" / "tcp").write_text(tcp or TCP.split("\n", 1)[0] + "\n")
    (d / "net" / "tcp6").write_text(tcp6 or TCP6.split("\n", 1)[0] + "\n")
    return d


def exec_ev(pid: int, exe: str, args: tuple[str, ...], **kw: object) -> Event:
    return Event("exec", 1, pid=pid, comm=exe.rsplit("/", 1)[-1][:15], exe=exe, args=args, **kw)  # type: ignore[arg-type]


# -- item 5: argv the kernel could not read ---------------------------------------------------------
def test_unread_argument_is_read_from_proc_and_marked(tmp_path: Path) -> None:
    proc_dir(tmp_path, 30, cmdline=b"sh\0-c\0/usr/sbin/nginx -s reopen\0")
    facts = ProcFacts(tmp_path)
    ev = facts.exec_event(exec_ev(30, "/bin/sh", ("sh", "", "/usr/sbin/nginx -s reopen"), flags=ARGS_UNREAD),
                          KEY, True)
    assert ev.args == ("sh", "-c", "/usr/sbin/nginx -s reopen")
    assert ev.flags & ARGS_FROM_PROC and not ev.flags & ARGS_UNREAD
    assert facts.stats()["args_from_proc"] == 1


def test_unread_argument_stays_marked_when_proc_disagrees_or_is_gone(tmp_path: Path) -> None:
    proc_dir(tmp_path, 31, cmdline=b"nginx: worker process\0")  # exec'd again / rewrote its argv
    facts = ProcFacts(tmp_path)
    for pid in (31, 32):  # 32: exited before we looked
        ev = facts.exec_event(exec_ev(pid, "/bin/sh", ("sh", "", "x"), flags=ARGS_UNREAD), KEY, True)
        assert ev.args == ("sh", "", "x") and ev.flags & ARGS_UNREAD and not ev.flags & ARGS_FROM_PROC
    assert facts.stats()["args_unread"] == 2


def test_procfs_argv_is_held_to_the_kernel_limits() -> None:
    assert within_limits(("a", "b")) == (("a", "b"), False)
    many = tuple(str(i) for i in range(L.ARGS_MAX + 1))
    assert within_limits(many) == (many[:L.ARGS_MAX], True)
    big = ("sh", "x" * L.ARGS_SIZE)
    args, cut = within_limits(big)
    assert cut and args == ("sh", "x" * (L.ARGS_SIZE - 3))  # as the kernel keeps it: the cut entry has no NUL
    assert agrees(("sh", "", "s"), ("sh", "-c", "s"), False)
    assert not agrees(("sh", "", "s"), ("sh", "-c", "t"), False)
    assert not agrees(("sh", "", "s"), ("sh", "-c", "s", "extra"), False)
    assert agrees(("sh", "", "ab"), ("sh", "-c", "abc", "extra"), True)  # the kernel cut the last one
    assert agrees((), ("sh", "-c", "s"), False)  # argv itself unreadable: nothing to compare


# -- item 4: one identity per executable ------------------------------------------------------------
def test_merged_usr_paths_are_one_identity_and_applet_names_stay(tmp_path: Path) -> None:
    root = merged_usr(tmp_path)
    procfs = tmp_path / "proc"
    proc_dir(procfs, 40, root)
    facts = ProcFacts(procfs)
    assert facts.canonical(40, "/bin/sh", KEY) == "/usr/bin/sh"  # not /usr/bin/dash: the name is kept
    assert facts.canonical(40, "/usr/bin/sh", KEY) == "/usr/bin/sh"
    assert facts.canonical(41, "/bin/dash", KEY) == "/usr/bin/dash"  # gone, but the image's /bin is known
    assert facts.canonical(41, "/sbin/x", KEY) == "/sbin/x"  # unknown and gone: as reported
    os.symlink("usr/sbin", root / "sbin")
    (root / "usr" / "sbin").mkdir()
    assert facts.canonical(41, "/sbin/x", KEY, parent=40) == "/usr/sbin/x"  # gone: its parent's root
    assert facts.canonical(40, "/proc/self/fd/3", KEY) == "/proc/self/fd/3"
    assert facts.canonical(40, "/memfd:x (deleted)", KEY) == "/memfd:x (deleted)"


def enricher(tmp_path: Path) -> tuple[Enricher, int, Path]:
    cg = tmp_path / "cg"
    (cg / "docker" / CID).mkdir(parents=True)
    procfs = tmp_path / "proc"
    procfs.mkdir()
    enr = Enricher(CgroupIndex(cg, rescan_ms=0), FakeRuntime(), ProcessTable(procfs))
    return enr, os.stat(cg / "docker" / CID).st_ino, procfs


def test_bin_sh_and_usr_bin_sh_are_one_process_to_baselines_rules_and_bans(tmp_path: Path) -> None:
    enr, cg, procfs = enricher(tmp_path)
    root = merged_usr(tmp_path)
    for pid in (50, 51):
        proc_dir(procfs, pid, root)
    first = enr.enrich(exec_ev(50, "/bin/sh", ("sh", "-c", "x"), cgroup_id=cg))
    second = enr.enrich(exec_ev(51, "/usr/bin/sh", ("sh", "-c", "x"), cgroup_id=cg))
    assert first.exe == second.exe == "/usr/bin/sh"
    models = ModelEngine()
    models.handle(first)
    models.get(first.image_key).set_mode("alert", "test", 2)
    assert [f.kind for f in models.handle(second)] == []  # the baseline knows it: not a new process
    rules = RuleEngine(load_text("- rule: Sh\n  desc: d\n  condition: proc.exe = /usr/bin/sh\n"
                                 "  output: o\n  priority: NOTICE\n"))
    assert rules.handle(first) and rules.handle(second)
    # the kernel ban map is keyed by comm, which both spellings share; the policy sees one exe
    pol = PolicySet.from_dict({"default": {"mode": "enforce", "banned_processes": ["/bin/sh"]}})
    assert pol.for_image(second.image, second.image_id).banned_comms() == ["sh"]
    assert PolicyChecker(pol).handle(first) and PolicyChecker(pol).handle(second)


# -- item 3: a shell wired to a socket ---------------------------------------------------------------
def test_shell_with_socket_stdio_gets_the_remote_end(tmp_path: Path) -> None:
    enr, cg, procfs = enricher(tmp_path)
    proc_dir(procfs, 60, fds={0: "socket:[4242]", 1: "socket:[4242]", 2: "socket:[4242]"}, tcp=TCP)
    proc_dir(procfs, 61, fds={0: "/dev/null", 1: "pipe:[5]", 2: "socket:[77]"}, tcp=TCP)  # a listener: inet
    proc_dir(procfs, 62, fds={0: "/dev/pts/0", 1: "/dev/pts/0", 2: "socket:[555]"})  # unix socket: not inet
    shell = enr.enrich(exec_ev(60, "/bin/sh", ("sh", "-i"), cgroup_id=cg))
    assert shell.flags & STDIO_SOCKET
    assert (shell.proto, shell.family, shell.saddr, shell.sport, shell.daddr, shell.dport) == (
        "tcp", "ipv4", "172.17.0.2", 51234, "10.9.8.7", 443)
    assert enr.enrich(exec_ev(61, "/usr/bin/python3.11", ("python3",), cgroup_id=cg)).flags & STDIO_SOCKET
    assert not enr.enrich(exec_ev(62, "/bin/sh", ("sh",), cgroup_id=cg)).flags & STDIO_SOCKET
    proc_dir(procfs, 63, fds={0: "socket:[4242]"}, tcp=TCP)
    assert not enr.enrich(exec_ev(63, "/usr/sbin/nginx", ("nginx",), cgroup_id=cg)).flags & STDIO_SOCKET
    rules = RuleEngine(load_files(default_rule_files()))
    hits = [f for f in rules.handle(shell) if f.rule == "Reverse Shell in Container"]
    assert hits and hits[0].priority == "CRITICAL" and "172.17.0.2:51234->10.9.8.7:443" in hits[0].output


def test_ipv6_table_and_mapped_addresses(tmp_path: Path) -> None:
    d = proc_dir(tmp_path, 70, tcp6=TCP6)
    ends = inet_socket(d, 9001)
    assert ends is not None and (ends.family, ends.saddr, ends.sport, ends.daddr, ends.dport) == (
        "ipv6", "192.168.0.2", 0xD431, "192.168.0.1", 4444)
    assert inet_socket(d, 12345) is None


# -- item 6: the source of a connect -----------------------------------------------------------------
def test_connect_gets_its_source_address_from_its_socket(tmp_path: Path) -> None:
    enr, cg, procfs = enricher(tmp_path)
    proc_dir(procfs, 80, fds={5: "socket:[4242]"}, tcp=TCP)
    base = Event("connect", 1, pid=80, comm="curl", cgroup_id=cg, family="ipv4", proto="tcp",
                 daddr="10.9.8.7", dport=443, sc_args=(5,))
    ev = enr.enrich(base)
    assert (ev.saddr, ev.sport) == ("172.17.0.2", 51234)
    assert enr.enrich(base.replace(dport=80)).saddr == ""  # fd reused for another socket: not made up
    assert enr.enrich(base.replace(ret=-111)).saddr == ""  # refused: no source worth naming
    rules = RuleEngine(load_text("- rule: C\n  desc: d\n  condition: evt.type = connect\n"
                                 "  output: '%fd.name'\n  priority: NOTICE\n"))
    assert rules.handle(ev)[0].output == "172.17.0.2:51234->10.9.8.7:443"


def test_trace_shows_how_whole_a_command_line_is_and_a_socket_stdio() -> None:
    from sensor.agent.cli import event_json, event_line

    cut = exec_ev(1, "/bin/echo", ("echo", "x" * 10), truncated=True)
    unread = exec_ev(2, "/bin/sh", ("sh", "", "s"), flags=ARGS_UNREAD)
    read = exec_ev(3, "/bin/sh", ("sh", "-c", "s"), flags=ARGS_FROM_PROC)
    shell = exec_ev(4, "/bin/sh", ("sh",), flags=STDIO_SOCKET, proto="tcp", family="ipv4", saddr="10.0.0.2",
                    sport=40000, daddr="10.9.8.7", dport=443)
    assert event_line(cut).endswith("/bin/echo xxxxxxxxxx [truncated]")
    assert event_line(unread).endswith("/bin/sh  s [args unread]")
    assert event_line(read).endswith("/bin/sh -c s")
    assert event_line(shell).endswith("/bin/sh [stdio socket 10.0.0.2:40000->10.9.8.7:443]")
    assert [event_json(e)["args_source"] for e in (cut, unread, read)] == ["kernel", "unread", "proc"]
    assert event_json(cut)["truncated"] and "stdio_socket" not in event_json(cut)
    assert event_json(shell)["stdio_socket"] == {"proto": "tcp", "family": "ipv4", "saddr": "10.0.0.2",
                                                 "sport": 40000, "daddr": "10.9.8.7", "dport": 443}


def test_new_outbound_finding_names_its_source() -> None:
    eng = ModelEngine()
    base = Event("connect", 1, pid=5, comm="curl", exe="/usr/bin/curl", container_id="c1", image="img:1",
                 image_id=KEY, family="ipv4", proto="tcp", daddr="10.0.0.1", dport=80, saddr="172.17.0.2", sport=40000)
    eng.handle(base)
    eng.get(KEY).set_mode("alert", "test", 2)
    [f] = eng.handle(base.replace(time_ns=3, daddr="10.9.8.7", dport=4444, sport=40001))
    assert "tcp 10.9.8.0/24:4444 (172.17.0.2:40001->10.9.8.7:4444)" in f.output
    assert f.explanation["seen"].endswith("(172.17.0.2:40001->10.9.8.7:4444)")


def test_interpreter_that_put_its_connected_socket_on_its_stdio_is_flagged_at_the_connect(tmp_path: Path) -> None:
    """python: socket, connect, os.dup2 onto 0-2, then pty.spawn (the shell gets a pty): the
    process that wired itself to the socket is python, and its connect says so if it is read after
    the dup2. A client that merely connects (the socket on fd 5 only) is not flagged."""
    enr, cg, procfs = enricher(tmp_path)
    wired = {0: "socket:[4242]", 1: "socket:[4242]", 2: "socket:[4242]", 3: "socket:[4242]"}
    proc_dir(procfs, 90, fds=wired, tcp=TCP)
    proc_dir(procfs, 91, fds={0: "/dev/null", 1: "pipe:[1]", 2: "pipe:[1]", 3: "socket:[4242]"}, tcp=TCP)
    proc_dir(procfs, 92, fds=wired, tcp=TCP)
    base = Event("connect", 1, comm="python3", exe="/usr/bin/python3", cgroup_id=cg, family="ipv4", proto="tcp",
                 daddr="10.9.8.7", dport=443, sc_args=(3,))
    shell = enr.enrich(base.replace(pid=90))
    assert shell.flags & STDIO_SOCKET and (shell.saddr, shell.sport) == ("172.17.0.2", 51234)
    assert not enr.enrich(base.replace(pid=91)).flags & STDIO_SOCKET
    assert not enr.enrich(base.replace(pid=92, comm="nginx", exe="/usr/sbin/nginx")).flags & STDIO_SOCKET
    rules = RuleEngine(load_files(default_rule_files()))
    hits = [f for f in rules.handle(shell) if f.rule == "Reverse Shell in Container"]
    assert hits and "172.17.0.2:51234->10.9.8.7:443" in hits[0].output


# -- the cost of a process already gone, and drift that is never remembered --------------------------
MOUNTINFO = "120 69 0:50 / / rw - overlay overlay rw,lowerdir=/l/A,upperdir={upper},workdir=/w\n"


def counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path procfacts asks the file system about, in order."""
    import sensor.procfacts as pf

    seen: list[str] = []
    for name in ("lstat", "stat", "readlink"):
        real = getattr(os, name)

        def spy(path: object, *a: object, _real: Any = real, **kw: object) -> Any:
            seen.append(str(path))
            return _real(path, *a, **kw)
        monkeypatch.setattr(pf.os, name, spy)
    real_open = open

    def spy_open(path: object, *a: object, **kw: object) -> Any:
        seen.append(str(path))
        return real_open(path, *a, **kw)  # type: ignore[call-overload]
    monkeypatch.setattr(pf, "open", spy_open, raising=False)
    return seen


def test_a_gone_process_is_looked_for_once_not_field_by_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    procfs = tmp_path / "proc"
    procfs.mkdir()
    facts = ProcFacts(procfs)
    seen = counting(monkeypatch)
    ev = exec_ev(900, "/bin/sh", ("sh", "", "x"), flags=ARGS_UNREAD, cgroup_id=5)  # argv, drift, stdio: all want it
    out = facts.exec_event(ev, KEY, True)
    assert out.flags & ARGS_UNREAD and not out.flags & STDIO_SOCKET
    assert [p for p in seen if "/900" in p] == [f"{procfs}/900"]
    assert facts.stats()["exec_gone"] == 1 and facts.stats()["args_unread"] == 1


def test_a_rootless_parent_is_not_asked_again_for_a_second_of_event_time(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    procfs = tmp_path / "proc"
    proc_dir(procfs, 10)  # there, but its root cannot be read (as in a replayed journal's fake tree)
    facts = ProcFacts(procfs)
    seen = counting(monkeypatch)
    for pid, t in ((901, 1), (902, 500_000_000), (903, 1_200_000_000)):
        facts.exec_event(Event("exec", t, pid=pid, comm="wget", exe="/usr/bin/wget", args=("wget",)), KEY, True, 10)
    assert seen.count(f"{procfs}/10/root") == 2  # at 0 s and again after a second, not at 0.5 s
    # a parent that can be read stands in (uncached negative answers: asked at each exec)
    root = merged_usr(tmp_path)
    proc_dir(procfs, 11, root)
    sh = Event("exec", 1_300_000_000, pid=904, comm="sh", exe="/bin/sh", args=("sh",))
    assert facts.exec_event(sh, KEY, False, 11).exe == "/usr/bin/sh"


def drift_tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A container (pids 20-29) whose image has /bin/ls, a hard-link applet, and /bin/cat -> busybox."""
    root, upper, procfs = tmp_path / "root", tmp_path / "upper", tmp_path / "proc"
    (root / "bin").mkdir(parents=True)
    (upper / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_bytes(b"\x7fELF busybox")
    os.link(root / "bin" / "busybox", root / "bin" / "ls")
    os.symlink("/bin/busybox", root / "bin" / "cat")
    for pid in range(20, 30):
        d = proc_dir(procfs, pid, root)
        (d / "mountinfo").write_text(MOUNTINFO.format(upper=upper))
    return root, upper, procfs


def test_drift_sees_a_binary_replaced_after_its_first_run(tmp_path: Path) -> None:
    root, upper, procfs = drift_tree(tmp_path)
    facts = ProcFacts(procfs)
    drift = lambda pid, exe: facts.exec_event(exec_ev(pid, exe, (exe.rsplit("/", 1)[-1],), cgroup_id=7),  # noqa: E731
                                              KEY, True).flags & EXE_UPPER_LAYER
    assert not drift(20, "/bin/ls") and not drift(21, "/bin/cat")  # the image's own
    (upper / "bin" / "ls").write_bytes(b"\x7fELF dropped")  # cp x /bin/ls in the container
    assert drift(22, "/bin/ls")
    assert drift(23, "/bin/ls")  # and again: nothing about it is remembered
    assert not drift(24, "/bin/cat")
    (upper / "bin" / "busybox").write_bytes(b"\x7fELF dropped")  # what the image's symlink leads to
    assert drift(25, "/bin/cat")
    os.symlink("/bin/busybox", upper / "bin" / "sh")  # a symlink made in the container, to a dropped file
    assert drift(26, "/bin/sh")
    assert drift(99, "/bin/ls")  # gone already: its name is still looked for in the upper layer
    assert facts.stats()["exec_drift"] == 5


# -- a reused pid is a new process (tests/kernel/test_enforce.py's restarted daemon) ----------------
def test_an_exec_by_a_reused_pid_is_named_from_its_own_parent_not_the_pids_last_owner(tmp_path: Path) -> None:
    """pid 600 ran python and exited unseen (before the sensor attached: the table still holds it),
    or exited seen and lingers for late events; then the pid went to a busybox child of the
    container's sh, which runs sleep as /proc/self/exe. The header's parent (the kernel's, from
    the fork) is sh, not the table's: it is sh's child, /bin/sleep under /bin/sh, as learned."""
    for lingering in (False, True):
        enr, cg, procfs = enricher(tmp_path / str(lingering))
        for pid, ppid, exe, cmd in ((1, 0, "/sbin/init", b"init\0"), (500, 1, "/bin/sh", b"/bin/sh\0-c\0loop\0"),
                                    (600, 1, "/usr/bin/python3.11", b"python3\0x.py\0")):
            if pid == 600 and lingering:
                continue
            d = proc_dir(procfs, pid, cmdline=cmd)
            (d / "stat").write_text(f"{pid} (x) S {ppid} 0 0")
            os.symlink(exe, d / "exe")
        enr.procs.seed()
        if lingering:
            enr.enrich(Event("exec", 5, pid=600, ppid=1, comm="python3", exe="/usr/bin/python3.11", args=("python3",)))
            enr.enrich(Event("exit", 6, pid=600, ppid=1, comm="python3"))
        ev = enr.enrich(Event("exec", 10, pid=600, ppid=500, comm="sleep", exe="/proc/self/exe",
                              args=("sleep", "0.3"), cgroup_id=cg))
        assert (ev.exe, ev.pexe, ev.ancestry) == ("/bin/sleep", "/bin/sh", ("/bin/sh", "/sbin/init")), lingering
