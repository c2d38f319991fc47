"""Enrichment and the process table on injected host roots (tmp_path trees), psutil-style."""

from __future__ import annotations

import os
from pathlib import Path

from sensor.containers import CgroupIndex
from sensor.enrich import Enricher
from sensor.events import Event
from sensor.proctable import ProcessTable
from sensor.runtime import ContainerMeta, NullRuntime, normalize_image

CID = "a" * 64


class FakeRuntime:
    def __init__(self) -> None:
        self.calls = 0

    def inspect(self, container_id: str) -> ContainerMeta | None:
        self.calls += 1
        return ContainerMeta(container_id, "web-1", "busybox:latest", "sha256:feed")

    def stats(self) -> dict[str, int]:
        return {}


def fake_proc(root: Path, pid: int, ppid: int, exe: str, args: list[str]) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(f"{pid} (x y) S {ppid} 0 0")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in args) + b"\0")
    os.symlink(exe, d / "exe")


def make(tmp_path: Path, runtime=None) -> tuple[Enricher, int, int]:  # type: ignore[no-untyped-def]
    cg = tmp_path / "cg"
    (cg / "docker" / CID).mkdir(parents=True)
    (cg / "init.scope").mkdir()
    proc = tmp_path / "proc"
    fake_proc(proc, 1, 0, "/sbin/init", ["init"])
    fake_proc(proc, 10, 1, "/usr/bin/containerd-shim", ["shim"])
    fake_proc(proc, 20, 10, "/bin/sh", ["sh", "-c", "loop"])
    enr = Enricher(CgroupIndex(cg, rescan_ms=0), runtime or FakeRuntime(), ProcessTable(proc))
    return enr, os.stat(cg / "docker" / CID).st_ino, os.stat(cg / "init.scope").st_ino


def test_container_event_gets_image_and_ancestry(tmp_path: Path) -> None:
    enr, cg, _ = make(tmp_path)
    enr.enrich(Event("fork", 1, pid=20, ppid=20, child_pid=21, cgroup_id=cg))
    ev = enr.enrich(Event("exec", 2, pid=21, exe="/usr/bin/nc", args=("nc",), cgroup_id=cg))
    assert (ev.container_id, ev.container_name, ev.image, ev.image_id) == (
        CID, "web-1", "busybox:latest", "sha256:feed")
    assert ev.ppid == 20 and ev.pexe == "/bin/sh"
    assert ev.ancestry == ("/bin/sh", "/usr/bin/containerd-shim", "/sbin/init")


def test_host_and_unknown_cgroups_are_never_dropped(tmp_path: Path) -> None:
    enr, _, host_cg = make(tmp_path)
    host = enr.enrich(Event("exec", 1, pid=1, cgroup_id=host_cg))
    assert (host.container_id, host.image, host.runtime) == ("host", "host", "host")
    unknown = enr.enrich(Event("exec", 1, pid=1, cgroup_id=987654321))
    assert unknown.runtime == "unknown" and enr.stats()["unknown_cgroups"] == 1


def test_runtime_is_asked_once_per_cgroup(tmp_path: Path) -> None:
    rt = FakeRuntime()
    enr, cg, _ = make(tmp_path, rt)
    for i in range(100):
        enr.enrich(Event("connect", i, pid=20, cgroup_id=cg))
    assert rt.calls == 1


def test_without_runtime_the_cgroup_path_still_names_the_container(tmp_path: Path) -> None:
    enr, cg, _ = make(tmp_path, NullRuntime())
    ev = enr.enrich(Event("exec", 1, pid=20, cgroup_id=cg))
    assert (ev.container_id, ev.container_name, ev.runtime, ev.image) == (CID, CID[:12], "docker", "")


def test_busybox_applet_reexec_is_named_after_the_applet(tmp_path: Path) -> None:
    enr, cg, _ = make(tmp_path)
    enr.enrich(Event("fork", 1, pid=20, child_pid=30, cgroup_id=cg))
    ev = enr.enrich(Event("exec", 2, pid=30, comm="exe", exe="/proc/self/exe", args=("nc", "-l"),
                          cgroup_id=cg))
    assert (ev.exe, ev.comm) == ("/bin/nc", "nc")


def test_proctable_exit_lingers_then_evicts(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path, linger=2, seed=False)
    for pid in (1, 2, 3):
        table.update(Event("exec", 0, pid=pid, ppid=pid - 1, exe=f"/p{pid}"))
    table.update(Event("exit", 0, pid=3))
    assert table.ancestry(3) == ("/p2", "/p1")  # still resolvable right after its exit
    table.update(Event("exit", 0, pid=2))
    table.update(Event("exit", 0, pid=1))
    assert table.get(3) is None and table.get(1) is not None


def test_normalize_image() -> None:
    assert normalize_image("busybox") == "busybox:latest"
    assert normalize_image("reg:5000/team/app") == "reg:5000/team/app:latest"
    assert normalize_image("app:1.2") == "app:1.2"
    assert normalize_image("app@sha256:00") == "app@sha256:00"
