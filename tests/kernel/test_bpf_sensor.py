"""Kernel tier: the real BPF programs against real busybox containers.

Known workloads with exact counts, and a sentinel exec (``/bin/echo SENTINEL-<n>``) that marks
the end of a workload so the test knows every earlier record has been read.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from typing import Iterator

import pytest

from sensor.bpf_loader import ProbeOptions
from sensor.tracer import Tracer
from tests.kernel.helpers import collect_until, sentinel

pytestmark = [pytest.mark.kernel, pytest.mark.docker]


@pytest.fixture(scope="module")
def tracer() -> Iterator[Tracer]:
    t = Tracer(ProbeOptions())
    yield t
    t.close()


def run_in(busybox, script: str, tag: str, network: str = "none"):  # type: ignore[no-untyped-def]
    return busybox(f"{script}; /bin/echo {tag}; sleep 30", network=network)


def test_exact_exec_count_attributed_to_container(tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    c = run_in(busybox, "sleep 0.5; for i in $(seq 23); do /bin/true; done", tag)
    events = collect_until(tracer, sentinel(tag))
    trues = [e for e in events if e.kind == "exec" and e.exe == "/bin/true"
             and e.container_id == c.id]
    assert len(trues) == 23
    assert {e.image for e in trues} == {"cgsentry/busybox:latest"}
    assert {e.container_name for e in trues} == {c.name}
    assert all(e.image_id == c.image.id for e in trues)
    assert all(e.pexe == "/bin/sh" for e in trues), {e.pexe for e in trues}


def test_connect_and_listen_in_network_none_container(tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    c = run_in(busybox, "sleep 0.5; (nc -l -p 8017 &) ; sleep 0.3; "
               "echo hi | nc 127.0.0.1 8017; nc 127.0.0.1 9 </dev/null", tag)
    events = [e for e in collect_until(tracer, sentinel(tag)) if e.container_id == c.id]
    listens = [e for e in events if e.kind == "listen"]
    assert [(e.proto, e.sport) for e in listens] == [("tcp", 8017)]
    connects = {(e.daddr, e.dport, e.proto, e.ret) for e in events if e.kind == "connect"}
    assert ("127.0.0.1", 8017, "tcp", 0) in connects
    assert ("127.0.0.1", 9, "tcp", -111) in connects  # ECONNREFUSED: nothing listens on 9
    accepts = [e for e in events if e.kind == "accept"]
    # busybox nc calls accept(fd, NULL, NULL): the peer is not knowable from tracepoint args,
    # so it is "" rather than a made-up address; the local port comes from the bind record.
    assert accepts and accepts[0].sport == 8017 and accepts[0].daddr in ("", "127.0.0.1")


def test_connect_carries_its_source_address(tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    """connect(2) names only the destination; the source comes from the socket's row in the
    container's own /proc/PID/net/tcp (the client is kept alive by its stdin, so it can be read)."""
    tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    c = run_in(busybox, "sleep 0.5; (sleep 20 | nc -l -p 8018 >/dev/null &) ; sleep 0.3; "
               "(sleep 20 | nc 127.0.0.1 8018 >/dev/null &) ; sleep 0.5", tag)
    events = [e for e in collect_until(tracer, sentinel(tag)) if e.container_id == c.id]
    connects = [e for e in events if e.kind == "connect" and e.dport == 8018]
    assert connects and connects[0].ret == 0
    assert connects[0].saddr == "127.0.0.1" and connects[0].sport not in (0, 8018), connects[0]


def test_one_identity_for_an_executable_behind_a_symlinked_directory(tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    """Merged /usr in miniature: /m/bin -> usr/bin. Running /m/bin/busybox and /m/usr/bin/busybox
    is one executable in /m/usr/bin, although each `true` has exited before it is read; both run
    busybox's `true` applet, which is named next to the binary (multi-call naming): /m/usr/bin/true."""
    tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    c = run_in(busybox, "mkdir -p /m/usr/bin && cp /bin/busybox /m/usr/bin/ && ln -s usr/bin /m/bin; sleep 0.5; "
               "/m/bin/busybox true; /m/usr/bin/busybox true", tag)
    events = [e for e in collect_until(tracer, sentinel(tag)) if e.kind == "exec" and e.container_id == c.id]
    runs = [e for e in events if e.args[:1] in (("/m/bin/busybox",), ("/m/usr/bin/busybox",))]
    assert [e.args[0] for e in runs] == ["/m/bin/busybox", "/m/usr/bin/busybox"]
    assert {e.exe for e in runs} == {"/m/usr/bin/true"}, [e.exe for e in runs]


def test_host_process_is_host(tracer) -> None:  # type: ignore[no-untyped-def]
    tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    subprocess.run(["/bin/echo", tag], check=True, capture_output=True)
    ev = collect_until(tracer, sentinel(tag))[-1]
    assert (ev.container_id, ev.image, ev.runtime) == ("host", "host", "host")
    assert ev.ppid == os.getpid()


def test_sensitive_open_and_syscall_in_container(tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    c = run_in(busybox, "sleep 0.5; cat /etc/shadow >/dev/null; echo x > /etc/cgsentry-test; "
               "cat /etc/hostname >/dev/null; chmod 4755 /bin/busybox", tag)
    events = [e for e in collect_until(tracer, sentinel(tag)) if e.container_id == c.id]
    opens = {(e.path, e.ret >= 0) for e in events if e.kind == "open"}
    assert ("/etc/shadow", True) in opens
    assert ("/etc/cgsentry-test", True) in opens  # write below /etc
    assert not any(p == "/etc/hostname" for p, _ in opens)  # a read of /etc is not sensitive
    chmods = [e for e in events if e.kind == "sys" and e.syscall.startswith(("chmod", "fchmodat"))]
    assert chmods and chmods[0].comm == "chmod"


def test_syscall_profile_first_seen_and_counts(tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    c = busybox("sleep 1; for i in $(seq 50); do cat /etc/hostname >/dev/null; done; "
                f"/bin/echo {tag}; sleep 30")
    cg = tracer.enricher.container_cgroup_id(c.id)
    tracer.watcher.set_profile(cg, True)
    events = [e for e in collect_until(tracer, sentinel(tag)) if e.cgroup_id == cg]
    firsts = [e.syscall_nr for e in events if e.kind == "syscall"]
    assert firsts and len(firsts) == len(set(firsts)), "each (cgroup, nr) is reported once"
    counts = {nr: n for (cgid, nr), n in tracer.probe.read_syscall_counts().items() if cgid == cg}
    assert set(firsts) <= set(counts)
    assert max(counts.values()) >= 50  # 50 cats: open/read/close at least 50 times each
    assert tracer.probe.profiling
    tracer.watcher.set_profile(cg, False)
    assert not tracer.probe.profiling  # no profiled cgroup left: the syscall hook is detached


def test_banned_comm_killed_at_exec(tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    tracer.probe.ban_exec(0, "wget")
    try:
        c = run_in(busybox, "sleep 0.5; /usr/bin/wget --help; echo rc=$?", tag)
        events = [e for e in collect_until(tracer, sentinel(tag)) if e.container_id == c.id]
    finally:
        tracer.probe.unban_exec(0, "wget")
    killed = [e for e in events if e.kind == "exec" and e.comm == "wget"]
    assert killed and killed[0].killed
    time.sleep(0.3)
    logs = c.logs().decode()
    assert "rc=137" in logs  # SIGKILL before its first instruction: no usage text at all
    assert "Usage" not in logs and "BusyBox" not in logs


def test_one_page_ring_buffer_counts_drops() -> None:
    """A stalled consumer and a 1-page ring: reserves fail and every failure is counted."""
    from sensor.bpf_loader import BpfProbe

    received: list[bytes] = []
    probe = BpfProbe(ProbeOptions(ring_pages=1, syscall_profile=False, sensitive=False))
    probe.start(received.append)
    try:
        subprocess.run(["/bin/sh", "-c", "for i in $(seq 50); do /bin/true; done"], check=True)
        probe.poll(100)
        drops, with_room = probe.kernel_drops()
    finally:
        probe.close()
    assert drops["exec"] > 0, drops
    assert with_room == 0, "the ring was full the whole time: no failure may be put down to its lock"
    # 50 execs, 1096-byte exec records in a 4 KiB ring nobody drained: most must be lost
    assert drops["exec"] + sum(1 for r in received if r[:4] == b"\x01\x00\x00\x00") >= 50


def test_repeated_connects_are_one_record_and_a_kernel_count(tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    """DESIGN principle 1: 23 connects to one endpoint = 1 ring-buffer record + a counter of 23."""
    from sensor import layout as L

    tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    c = run_in(busybox, "sleep 0.5; for i in $(seq 23); do nc 127.0.0.1 7 </dev/null; done", tag)
    events = [e for e in collect_until(tracer, sentinel(tag)) if e.container_id == c.id]
    connects = [e for e in events if e.kind == "connect" and e.dport == 7]
    assert len(connects) == 1 and connects[0].ret == -111
    cg = connects[0].cgroup_id
    assert tracer.probe.read_kernel_counts()[(cg, L.OP_CONNECT, False)] == 23


def test_a_forgotten_cgroup_reports_its_endpoints_again(tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    """What the enricher asks for when a cgroup's first records went out unattributed."""
    tag, tag2 = (f"SENTINEL-{uuid.uuid4().hex[:8]}" for _ in range(2))
    c = busybox(f"sleep 0.5; nc 127.0.0.1 7 </dev/null; nc 127.0.0.1 7 </dev/null; /bin/echo {tag}; "
                f"while [ ! -e /tmp/go ]; do sleep 0.1; done; nc 127.0.0.1 7 </dev/null; /bin/echo {tag2}; sleep 30")
    first = [e for e in collect_until(tracer, sentinel(tag)) if e.container_id == c.id and e.kind == "connect"]
    assert len(first) == 1  # the second connect was counted in the kernel, not reported
    assert tracer.probe.forget_net_seen(first[0].cgroup_id) >= 1
    subprocess.run(["docker", "exec", c.id, "touch", "/tmp/go"], check=True, capture_output=True, timeout=30)
    again = [e for e in collect_until(tracer, sentinel(tag2)) if e.container_id == c.id and e.kind == "connect"]
    assert len(again) == 1 and again[0].dport == 7


@pytest.mark.parametrize("wake_batch", [1, 4096])
def test_lone_record_is_delivered_whatever_the_wakeup_batch(wake_batch: int) -> None:
    """Records go up without a wakeup until a CPU has ``wake_batch`` of them; the reader must
    still drain a single one within its poll interval, not hold it until the batch fills."""
    from sensor.bpf_loader import BpfProbe

    tag = f"LONE-{uuid.uuid4().hex[:8]}"
    received: list[bytes] = []
    probe = BpfProbe(ProbeOptions(syscall_profile=False, sensitive=False, wake_batch=wake_batch, poll_ms=20))
    probe.start(received.append)
    try:
        probe.poll(0)
        received.clear()
        subprocess.run(["/bin/echo", tag], check=True, capture_output=True)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not any(tag.encode() in r for r in received):
            probe.poll()
    finally:
        probe.close()
    assert any(tag.encode() in r for r in received), f"exec of {tag} not delivered ({len(received)} records)"


def test_udp_socket_created_before_the_sensor_is_reported_as_udp(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The kernel only sees socket(2) of sockets created while it runs; older UDP sockets are
    seeded from /proc at start, so their connects are not mistaken for TCP."""
    import sys

    go = tmp_path / "go"
    script = ("import socket, time, os, sys\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
              "print('ready', flush=True)\n"
              f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
              "s.connect(('127.0.0.1', 5353))\n"
              "try: t.connect(('127.0.0.1', 9))\n"
              "except OSError: pass\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    t = Tracer(ProbeOptions(syscall_profile=False))
    try:
        go.write_text("")
        proc.wait(timeout=10)
        events = collect_until(t, lambda ev: ev.kind == "connect" and ev.pid == proc.pid and ev.dport == 9)
    finally:
        t.close()
    mine = {(e.dport, e.proto) for e in events if e.kind == "connect" and e.pid == proc.pid}
    assert mine == {(5353, "udp"), (9, "tcp")}


def test_fork_only_children_are_counted_in_the_kernel_not_sent(tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    """DESIGN principle 1 for processes: `( : )` forks a subshell that never execs. Its fork and
    exit stay in the kernel as per-cgroup counts; exec'd processes still report their exit."""
    from sensor import layout as L

    tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    c = run_in(busybox, "sleep 0.5; for i in $(seq 20); do ( : ); done; /bin/true", tag)
    events = [e for e in collect_until(tracer, sentinel(tag)) if e.container_id == c.id]
    assert not [e for e in events if e.kind == "fork"]
    true_exec = next(e for e in events if e.kind == "exec" and e.exe == "/bin/true")
    assert true_exec.ppid > 0  # from the kernel's lineage map, not a /proc read
    time.sleep(0.3)
    exits = [e for e in tracer.reader.poll_events() + events if e.kind == "exit"]
    sh_children = [e for e in exits if e.comm == "sh" and e.ppid == true_exec.ppid]
    assert not sh_children, "fork-only subshells reported their exit"
    counts = tracer.probe.read_kernel_counts()
    cg = true_exec.cgroup_id
    assert counts[(cg, L.OP_FORK, True)] >= 21 and counts[(cg, L.OP_EXIT, True)] >= 21, counts


def test_child_forked_before_its_first_record_is_attributed_to_its_parent(tracer) -> None:  # type: ignore[no-untyped-def]
    """A forked child that connects without exec'ing: no fork record went up, yet its connect
    names the parent (header ppid) and the parent's executable."""
    import sys

    port = 20000 + uuid.uuid4().int % 20000  # a fresh endpoint: the kernel reports only first-seen ones
    script = (f"import os, socket\npid = os.fork()\nif pid == 0:\n    s = socket.socket()\n"
              f"    try: s.connect(('127.0.0.1', {port}))\n    except OSError: pass\n    os._exit(0)\n"
              "os.waitpid(pid, 0)\nprint(pid)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    out, _ = parent.communicate(timeout=10)
    child = int(out)
    ev = collect_until(tracer, lambda e: e.kind == "connect" and e.pid == child)[-1]
    assert ev.ppid == parent.pid
    assert ev.exe in (sys.executable, os.path.realpath(sys.executable)), ev.exe  # exec path or /proc seed


def test_records_of_an_urgent_cgroup_wake_the_reader(busybox) -> None:  # type: ignore[no-untyped-def]
    """With wakeups batched far beyond the test's records, a bare poll (no drain) delivers only
    what woke it: nothing from a normal container, the exec from one marked urgent (enforced)."""
    from sensor.bpf_loader import BpfProbe

    received: list[bytes] = []
    probe = BpfProbe(ProbeOptions(syscall_profile=False, sensitive=False, wake_batch=65536))
    probe.start(received.append)
    try:
        c = busybox("sleep 600")
        cg = os.stat(f"/sys/fs/cgroup/unified/docker/{c.id}").st_ino
        probe.poll(0)  # drain what start-up produced
        calm, loud = f"CALM-{uuid.uuid4().hex[:8]}", f"LOUD-{uuid.uuid4().hex[:8]}"
        c.exec_run(["/bin/echo", calm])
        ring = probe._ring  # noqa: SLF001 - the bare epoll: the test is about what wakes it
        assert ring is not None
        if ring.wait(300):
            ring.drain(received.append)
        assert not any(calm.encode() in r for r in received)
        probe.set_cgroup(cg, urgent=True)
        c.exec_run(["/bin/echo", loud])
        deadline = time.monotonic() + 5
        while not any(loud.encode() in r for r in received) and time.monotonic() < deadline:
            if ring.wait(500):
                ring.drain(received.append)
        assert any(loud.encode() in r for r in received)
        assert any(calm.encode() in r for r in received)  # drained by the same wakeup, in order
    finally:
        probe.close()


def test_without_task_storage_the_lru_fallback_carries_argv_and_connects(busybox, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Kernels without BTF get the per-thread state from an LRU hash: same argv, same network."""
    import sensor.bpf_loader as loader

    monkeypatch.setattr(loader, "has_task_storage", lambda: False)
    assert "-DTASK_STORAGE=0" in loader.cflags(ProbeOptions())
    t = Tracer(ProbeOptions(syscall_profile=False))
    try:
        tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
        c = run_in(busybox, "sleep 0.5; /bin/echo one two three; nc 127.0.0.1 9 </dev/null", tag)
        events = [e for e in collect_until(t, sentinel(tag)) if e.container_id == c.id]
    finally:
        t.close()
    assert any(e.kind == "exec" and e.args == ("/bin/echo", "one", "two", "three") for e in events)
    assert any(e.kind == "connect" and e.dport == 9 and e.proto == "tcp" for e in events)


def test_exit_status_of_an_execd_child_and_a_signal_death(tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    """exit_group()'s status rides in the child's lineage entry to its exit record; a process
    killed by a signal never calls exit_group and is flagged as such (-1)."""
    tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    c = run_in(busybox, "sleep 0.5; /bin/sh -c 'exit 3'; /bin/sleep 5 & sleep 0.3; kill -9 $!; wait", tag)
    events = [e for e in collect_until(tracer, sentinel(tag)) if e.container_id == c.id]
    execs = {e.pid: e for e in events if e.kind == "exec"}
    exits = {e.pid: e.exit_code for e in events if e.kind == "exit" and e.pid in execs}
    sh = next(p for p, e in execs.items() if e.args == ("/bin/sh", "-c", "exit 3"))
    sleeper = next(p for p, e in execs.items() if e.args == ("/bin/sleep", "5"))
    assert exits[sh] == 3
    assert exits[sleeper] == -1


def test_program_stats_count_runs_while_the_kernel_counts(tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    """kernel.bpf_stats_enabled on: the exec program's run count grows by at least the container's
    23 execs and its run time with it; off again: the counters stand still."""
    knob = "/proc/sys/kernel/bpf_stats_enabled"
    with open(knob) as f:
        before_knob = f.read().strip()
    exec_prog = "tracepoint__sched__sched_process_exec"
    try:
        with open(knob, "w") as f:
            f.write("1")
        t0, n0 = tracer.probe.program_stats()[exec_prog]
        tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
        run_in(busybox, "sleep 0.5; for i in $(seq 23); do /bin/true; done", tag)
        collect_until(tracer, sentinel(tag))
        t1, n1 = tracer.probe.program_stats()[exec_prog]
        assert n1 - n0 >= 24  # 23 trues and the sentinel echo, plus whatever the host ran
        assert t1 > t0
    finally:
        with open(knob, "w") as f:
            f.write(before_knob)
    if before_knob == "0":
        tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
        run_in(busybox, "sleep 0.3; /bin/true", tag)
        collect_until(tracer, sentinel(tag))
        assert tracer.probe.program_stats()[exec_prog] == (t1, n1)


def test_argv_is_captured_up_to_its_limits_and_truncation_is_flagged(tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    """Exactly ARGS_MAX entries pass whole, and so does an argv of exactly ARGS_SIZE bytes (NULs
    included); one more entry, or one byte more, is cut and flagged; a short argv right after a
    full one carries only its own entries."""
    from sensor import layout as L

    tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    full = [f"f{i}" for i in range(1, L.ARGS_MAX)]  # with argv[0]: exactly ARGS_MAX entries
    over = [f"o{i}" for i in range(1, L.ARGS_MAX + 3)]
    room = L.ARGS_SIZE - len("/bin/echo") - 2  # what one entry after argv[0] may hold, NULs counted
    long_arg = "x" * (L.ARGS_SIZE + 20)
    fits, one_more = "y" * room, "z" * (room + 2)
    c = run_in(busybox, f"sleep 0.5; /bin/echo {' '.join(over)}; /bin/echo {' '.join(full)}; "
                        f"/bin/echo {long_arg}; /bin/echo {fits}; /bin/echo {one_more}; /bin/echo short", tag)
    events = collect_until(tracer, sentinel(tag))
    echoes = [e for e in events if e.kind == "exec" and e.exe == "/bin/echo" and e.container_id == c.id]
    by_first = {e.args[1][:8] if len(e.args) > 1 else "": e for e in echoes}
    cut = by_first["o1"]
    assert cut.args == ("/bin/echo", *over[:L.ARGS_MAX - 1]) and cut.truncated
    whole = by_first["f1"]
    assert whole.args == ("/bin/echo", *full) and not whole.truncated
    long_ev = by_first["x" * 8]
    assert long_ev.args == ("/bin/echo", long_arg[:room + 1]) and long_ev.truncated
    assert by_first["y" * 8].args == ("/bin/echo", fits) and not by_first["y" * 8].truncated
    assert by_first["z" * 8].args == ("/bin/echo", one_more[:room + 1]) and by_first["z" * 8].truncated
    assert by_first["short"].args == ("/bin/echo", "short") and not by_first["short"].truncated


def test_argument_on_a_page_not_faulted_in_is_read_from_proc(tracer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An argv string on a page the exec'ing process never touched (a file mapping, inherited over
    fork without its page-table entries) cannot be read by BPF at execve entry; the kernel copy
    fails, says so, and the enricher reads the argument from /proc/PID/cmdline after the exec."""
    import ctypes
    import mmap

    from sensor.events import ARGS_FROM_PROC, ARGS_UNREAD

    page = tmp_path / "argv-page"
    page.write_bytes(b"3\0".ljust(mmap.PAGESIZE, b"\0"))
    with open(page, "r+b") as f:
        mm = mmap.mmap(f.fileno(), mmap.PAGESIZE)
    arg = ctypes.addressof(ctypes.c_char.from_buffer(mm))  # its address only: the page stays untouched
    path = ctypes.create_string_buffer(b"/bin/sleep")
    argv = (ctypes.c_void_p * 3)(ctypes.addressof(path), arg, None)
    envp = (ctypes.c_void_p * 1)(None)
    execve = ctypes.CDLL(None, use_errno=True).execve
    pid = os.fork()
    if pid == 0:  # the child only execs (or leaves at once)
        execve(path, argv, envp)
        os._exit(127)
    tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    time.sleep(0.3)
    subprocess.run(["/bin/echo", tag], check=True, capture_output=True)
    try:
        events = collect_until(tracer, sentinel(tag))
    finally:
        os.waitpid(pid, 0)
    ev = next(e for e in events if e.kind == "exec" and e.pid == pid)
    assert ev.args == ("/bin/sleep", "3"), ev
    assert ev.flags & ARGS_FROM_PROC and not ev.flags & ARGS_UNREAD


def test_long_command_lines_arrive_whole(tracer, busybox) -> None:  # type: ignore[no-untyped-def]
    """A `sh -c` script of a few hundred bytes with many arguments (logrotate's postrotate shape)
    and a command line past 64 characters (a reverse shell's target) are not cut."""
    tag = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    script = ('for f in "$@"; do [ -s "$f" ] && echo rotated "$f" >/dev/null; done; '
              'test -f /run/nginx.pid && kill -USR1 "$(cat /run/nginx.pid)" 2>/dev/null; true # ' + "p" * 200)
    files = [f"/var/log/nginx/access-{i}.log" for i in range(30)]
    quoted = " ".join(files)
    target = "/bin/echo connect-to-a-fairly-long-hostname.attacker.example.com 4444 --with --extra-arguments"
    c = run_in(busybox, f"sleep 0.5; /bin/sh -c '{script}' rotate {quoted}; {target}", tag)
    events = [e for e in collect_until(tracer, sentinel(tag)) if e.kind == "exec" and e.container_id == c.id]
    rotate = next(e for e in events if e.args[:2] == ("/bin/sh", "-c") and e.args[3:4] == ("rotate",))
    assert rotate.args == ("/bin/sh", "-c", script, "rotate", *files) and not rotate.truncated
    echo = next(e for e in events if e.args[1:2] == ("connect-to-a-fairly-long-hostname.attacker.example.com",))
    assert " ".join(echo.args) == target and not echo.truncated
