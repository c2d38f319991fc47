"""The process table: seeded from an injected procfs tree (psutil-style), kept current from events."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sensor.events import Event
from sensor.proctable import ProcessTable, read_proc


def fake_proc(root: Path, pid: int, ppid: int, exe: str | None, args: list[str], comm: str = "x y") -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} 0 0 -1")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in args) + (b"\0" if args else b""))
    if exe is not None:
        os.symlink(exe, d / "exe")


def seeded(tmp_path: Path) -> ProcessTable:
    fake_proc(tmp_path, 1, 0, "/sbin/init", ["/sbin/init", "splash"])
    fake_proc(tmp_path, 2, 0, None, [], comm="kthreadd")  # kernel thread: no exe, no cmdline
    fake_proc(tmp_path, 10, 1, "/usr/bin/containerd-shim", ["shim"], comm="evil) R 99 (x")
    fake_proc(tmp_path, 20, 10, "/bin/sh", ["sh", "-c", "while :; do :; done"])
    (tmp_path / "self").mkdir()  # non-numeric entries are ignored
    (tmp_path / "30").mkdir()  # raced: the directory exists but the process is gone
    return ProcessTable(tmp_path)


def test_seed_parses_stat_exe_and_cmdline(tmp_path: Path) -> None:
    table = seeded(tmp_path)
    assert len(table) == 4 and 30 not in table
    assert table.ppid(10) == 1  # comm with ") R 99 (" does not fool the stat parser
    proc = table.get(20)
    assert proc is not None and (proc.exe, proc.args) == ("/bin/sh", ("sh", "-c", "while :; do :; done"))
    kthread = read_proc(tmp_path, 2)
    assert kthread is not None and (kthread.exe, kthread.args, kthread.ppid) == ("[kthreadd]", (), 0)


def test_seed_names_a_process_by_the_path_it_was_started_with(tmp_path: Path) -> None:
    """/proc/PID/exe resolves /bin/sh to /bin/busybox; a live exec reports /bin/sh. A sensor
    restarted under running containers must name their processes the way the baseline learned
    them, or every one of them is a 'new parent' (a finding in review, enforced as a kill)."""
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "busybox").write_bytes(b"\x7fELF")
    (rootfs / "bin" / "cat").write_bytes(b"\x7fELF other")
    os.symlink("/bin/busybox", rootfs / "bin" / "sh")  # absolute: resolved inside the process's root
    procfs = tmp_path / "proc"
    for pid, args in ((10, ["/bin/sh", "-c", "loop"]), (11, ["sh"]), (12, ["/bin/cat"]), (13, ["./sh"])):
        fake_proc(procfs, pid, 1, str(rootfs / "bin" / "busybox"), args)
        os.symlink(rootfs, procfs / str(pid) / "root")
    names = {pid: read_proc(procfs, pid) for pid in (10, 11, 12, 13)}
    assert {pid: p.exe for pid, p in names.items() if p is not None} == {
        10: "/bin/sh", 11: "/bin/sh",  # argv[0], absolute or found on Docker's default PATH
        12: str(rootfs / "bin" / "busybox"),  # argv[0] is another file: exe stands
        13: str(rootfs / "bin" / "busybox")}  # a relative path cannot be checked


def test_seed_finds_a_bare_name_where_the_process_path_finds_it_first(tmp_path: Path) -> None:
    """On a merged-/usr image (/bin -> usr/bin) `sleep` run from a shell is /usr/bin/sleep, the
    first hit on the PATH; looking in /bin first would name it /bin/sleep and differ from the
    live exec."""
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr" / "bin").mkdir(parents=True)
    (rootfs / "usr" / "bin" / "sleep").write_bytes(b"\x7fELF sleep")
    os.symlink("usr/bin", rootfs / "bin")
    procfs = tmp_path / "proc"
    for pid, env in ((20, b""), (21, b"HOME=/\0PATH=/bin:/usr/bin\0")):
        fake_proc(procfs, pid, 1, str(rootfs / "usr" / "bin" / "sleep"), ["sleep", "5"])
        os.symlink(rootfs, procfs / str(pid) / "root")
        (procfs / str(pid) / "environ").write_bytes(env)
    assert read_proc(procfs, 20).exe == "/usr/bin/sleep"  # type: ignore[union-attr]  # Docker's default PATH
    # its own PATH says /bin first: found as /bin/sleep, named by its one identity, as the live exec
    # of /bin/sleep is (sensor/procfacts.py resolves the directory: issue 20 item 4)
    assert read_proc(procfs, 21).exe == "/usr/bin/sleep"  # type: ignore[union-attr]


def test_ancestry_nearest_first_with_depth(tmp_path: Path) -> None:
    table = seeded(tmp_path)
    assert table.ancestry(20) == ("/usr/bin/containerd-shim", "/sbin/init")
    assert table.ancestry(20, depth=1) == ("/usr/bin/containerd-shim",)
    assert table.ancestry(1) == () and table.ancestry(999) == () and table.ppid(999) == 0


def test_ancestors_give_pid_exe_and_argv_per_level_and_why_the_chain_stops(tmp_path: Path) -> None:
    table = seeded(tmp_path)
    assert table.ancestors(20) == (((10, "/usr/bin/containerd-shim", ("shim",)),
                                    (1, "/sbin/init", ("/sbin/init", "splash"))), "")  # up to the top
    assert table.ancestors(20, depth=1) == (((10, "/usr/bin/containerd-shim", ("shim",)),),
                                            "more ancestors above; 1 levels are kept")
    table.update(Event("exec", 1, pid=60, ppid=55, exe="/bin/cat", args=("cat", "/etc/shadow")))
    chain, end = table.ancestors(60)  # its parent exited before the sensor saw it
    assert chain == () and end.startswith("parent pid 55 unknown to the sensor")
    assert table.ancestors(999) == ((), "")  # a process the table does not hold: nothing to say
    # sh -c 'cgsmark; sleep 30': the shell forks cgsmark, then execs its last command; a finding
    # about cgsmark handled after that shows the shell as it was when it ran cgsmark
    table.update(Event("fork", 2, pid=20, ppid=10, child_pid=70))
    table.update(Event("exec", 3, pid=70, ppid=20, exe="/tmp/cgsmark", args=("/tmp/cgsmark",)))
    table.update(Event("exec", 4, pid=20, ppid=10, exe="/bin/sleep", args=("sleep", "30")))
    assert table.ancestors(70, parent_exe="/bin/sh")[0][0] == (20, "/bin/sh", ("sh", "-c", "while :; do :; done"))
    assert table.ancestors(70)[0][0] == (20, "/bin/sleep", ("sleep", "30"))  # the table's present


def test_fork_exec_exit_keep_the_table_current(tmp_path: Path) -> None:
    table = seeded(tmp_path)
    table.update(Event("fork", 1, pid=20, ppid=20, child_pid=21))
    assert table.ppid(21) == 20 and table.exe(21) == "/bin/sh"  # a fork inherits the parent's image
    table.update(Event("exec", 2, pid=21, exe="/usr/bin/nc", args=("nc", "-l")))
    assert table.exe(21) == "/usr/bin/nc" and table.ppid(21) == 20
    table.update(Event("fork", 3, pid=21, ppid=22, child_pid=23))  # forked by a non-main thread 22
    assert table.ancestry(23) == ("/usr/bin/nc", "/bin/sh", "/usr/bin/containerd-shim", "/sbin/init")
    table.update(Event("exec", 4, pid=50, ppid=23, exe="/bin/cat"))  # exec of an unseen pid
    assert table.ancestry(50)[:2] == ("/usr/bin/nc", "/usr/bin/nc")


def test_exit_lingers_then_evicts(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path, linger=2, seed=False)
    for pid in (1, 2, 3):
        table.update(Event("exec", 0, pid=pid, ppid=pid - 1, exe=f"/p{pid}"))
    table.update(Event("exit", 0, pid=3))
    assert table.ancestry(3) == ("/p2", "/p1")  # still resolvable right after its exit
    table.update(Event("exit", 0, pid=2))
    table.update(Event("exit", 0, pid=1))
    assert table.get(3) is None and table.get(1) is not None


def test_pid_reuse_during_linger_belongs_to_the_new_process(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path, linger=1, seed=False)
    table.update(Event("exec", 0, pid=5, ppid=1, exe="/old"))
    table.update(Event("exit", 0, pid=5))
    table.update(Event("fork", 0, pid=1, child_pid=5))
    table.update(Event("exec", 0, pid=5, exe="/new"))
    table.update(Event("exec", 0, pid=6, ppid=1, exe="/x"))
    table.update(Event("exit", 0, pid=6))
    table.update(Event("exit", 0, pid=7))  # unknown pid: ignored, does not push 6 out
    assert table.exe(5) == "/new" and table.exe(6) == "/x"


def test_bounded_size_evicts_exited_before_live(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path, max_size=3, linger=100, seed=False)
    table.update(Event("exec", 0, pid=1, ppid=0, exe="/init"))
    table.update(Event("exec", 0, pid=2, ppid=1, exe="/a"))
    table.update(Event("exit", 0, pid=2))
    table.update(Event("exec", 0, pid=3, ppid=1, exe="/b"))
    table.update(Event("exec", 0, pid=4, ppid=1, exe="/c"))
    assert len(table) == 3 and 2 not in table and 1 in table and table.evicted == 1
    table.update(Event("exec", 0, pid=5, ppid=1, exe="/d"))  # no exited left: the oldest goes
    assert 1 not in table and 5 in table


def test_ancestry_survives_a_cycle_from_pid_reuse(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path, seed=False)
    table.update(Event("exec", 0, pid=7, ppid=8, exe="/seven"))
    table.update(Event("exec", 0, pid=8, ppid=7, exe="/eight"))
    assert table.ancestry(7) == ("/eight",)


def test_seed_from_the_real_proc_uses_psutil() -> None:
    table = ProcessTable()
    me = table.get(os.getpid())
    assert me is not None and me.ppid == os.getppid()
    assert os.path.realpath(me.exe) == os.path.realpath(sys.executable)


def walk(table: ProcessTable, pid: int, depth: int = 8) -> tuple[str, ...]:
    """Reference ancestry, straight from the entries (no cache)."""
    out: list[str] = []
    seen, proc = {pid}, table.get(pid)
    while proc is not None and len(out) < depth and proc.ppid and proc.ppid not in seen:
        seen.add(proc.ppid)
        proc = table.get(proc.ppid)
        if proc is not None:
            out.append(proc.exe)
    return tuple(out)


def test_cached_ancestry_follows_every_change_in_the_chain(tmp_path: Path) -> None:
    table = seeded(tmp_path)
    table.update(Event("fork", 1, pid=20, child_pid=21))
    assert table.ancestry(21)[0] == "/bin/sh"
    table.update(Event("exec", 2, pid=20, exe="/usr/bin/python3"))  # the parent execs later
    assert table.ancestry(21)[:2] == ("/usr/bin/python3", "/usr/bin/containerd-shim")
    table.adopt(40, 35)  # parent unknown: a chain that stops there is not final
    assert table.ancestry(40) == ()
    table.adopt(35, 20)  # a fork-only child of 20: runs 20's image
    assert table.ancestry(40) == ("/usr/bin/python3", "/usr/bin/python3", "/usr/bin/containerd-shim", "/sbin/init")
    table.adopt(20, 0, "/bin/dash")  # pid 20 reused by an unrelated process
    assert table.ancestry(40) == walk(table, 40) == ("/usr/bin/python3", "/bin/dash")


def test_cached_ancestry_matches_a_fresh_walk_under_random_churn(tmp_path: Path) -> None:
    import random

    rng = random.Random(3)
    table = ProcessTable(tmp_path, max_size=60, linger=8, seed=False)
    table.adopt(1, 0, "/sbin/init")
    exes = ["/bin/sh", "/bin/nc", "/usr/bin/python3", "/bin/busybox", "/bin/cat"]
    for t in range(5000):
        pids = [1] + [rng.randrange(2, 90) for _ in range(3)]
        roll = rng.random()
        if roll < 0.3:
            table.update(Event("fork", t, pid=rng.choice(pids), child_pid=pids[1]))
        elif roll < 0.6:
            table.update(Event("exec", t, pid=pids[1], ppid=rng.choice([0, pids[2]]), exe=rng.choice(exes)))
        elif roll < 0.8:
            table.update(Event("exit", t, pid=pids[1]))
        else:
            table.observe(Event("connect", t, pid=pids[1], ppid=pids[2], ancestor_pid=pids[3]), True)
        probe = rng.randrange(1, 90)
        assert table.ancestry(probe) == walk(table, probe), (t, probe)


def test_ancestry_shows_runtime_plumbing_once_and_keeps_nested_shells(tmp_path: Path) -> None:
    """runc forks and re-execs itself on every start: one runtime start is one runc in the chain
    (issue 20 item 6); a shell under a shell is still two shells."""
    fake_proc(tmp_path, 1, 0, "/sbin/init", ["init"])
    fake_proc(tmp_path, 10, 1, "/usr/bin/containerd-shim-runc-v2", ["shim"])
    fake_proc(tmp_path, 11, 10, "/usr/bin/runc", ["runc"])
    fake_proc(tmp_path, 12, 11, "/usr/bin/runc", ["runc", "init"])
    fake_proc(tmp_path, 13, 12, "/usr/bin/runc", ["runc", "init"])
    fake_proc(tmp_path, 20, 13, "/bin/sh", ["sh"])
    fake_proc(tmp_path, 21, 20, "/bin/sh", ["sh", "-c", "x"])
    fake_proc(tmp_path, 22, 21, "/bin/sleep", ["sleep", "1"])
    table = ProcessTable(tmp_path)
    assert table.ancestry(22) == ("/bin/sh", "/bin/sh", "/usr/bin/runc", "/usr/bin/containerd-shim-runc-v2",
                                  "/sbin/init")
