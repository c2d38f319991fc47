"""Enrichment and the process table on injected host roots (tmp_path trees), psutil-style."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from sensor.containers import CgroupIndex
from sensor.enrich import Enricher
from sensor.errors import EX_NOINPUT, SensorError
from sensor.events import Event
from sensor.proctable import ProcessTable
from sensor.runtime import ContainerMeta, DockerRuntime, NullRuntime, meta_from_attrs, normalize_image

CID = "a" * 64


class FakeRuntime:
    def __init__(self) -> None:
        self.calls = 0

    def inspect(self, container_id: str) -> ContainerMeta | None:
        self.calls += 1
        return ContainerMeta(container_id, "web-1", "busybox:latest", "sha256:feed")

    def find(self, id_or_name: str) -> ContainerMeta | None:
        return self.inspect(CID) if id_or_name in ("web-1", CID[:6]) else None

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


def test_runtime_reexec_from_a_descriptor_keeps_its_binary_name(tmp_path: Path) -> None:
    """runc re-execs a sealed copy of itself as /dev/fd/N, N differing between `docker run` and
    `docker exec`: the processes it starts must not get a parent named after the descriptor."""
    enr, cg, host_cg = make(tmp_path)
    enr.enrich(Event("exec", 1, pid=40, ppid=10, comm="runc", exe="/usr/sbin/runc", args=("runc", "init"),
                     cgroup_id=host_cg))
    runc = enr.enrich(Event("exec", 2, pid=40, ppid=10, comm="runc", exe="/dev/fd/5", args=("runc", "init"),
                            cgroup_id=host_cg))
    assert runc.exe == "/usr/sbin/runc"
    sh = enr.enrich(Event("exec", 3, pid=40, ppid=10, comm="sh", exe="/bin/sh", args=("sh",), cgroup_id=cg))
    assert sh.exe == "/bin/sh" and sh.pexe == "/usr/bin/containerd-shim"
    enr.enrich(Event("fork", 4, pid=40, child_pid=41, cgroup_id=cg))
    child = enr.enrich(Event("exec", 5, pid=41, comm="ls", exe="/bin/ls", cgroup_id=cg))
    assert child.pexe == "/bin/sh"


def test_fileless_exec_from_a_descriptor_keeps_the_descriptor_path(tmp_path: Path) -> None:
    """A payload exec'd from a descriptor chooses its own comm (the file's name): it must not pass
    for its caller's binary, nor for a runtime's self-copy inside a container."""
    enr, cg, host_cg = make(tmp_path)
    ev = enr.enrich(Event("exec", 1, pid=20, comm="sh", exe="/proc/self/fd/3", args=("sh",), cgroup_id=cg))
    assert ev.exe == "/proc/self/fd/3"  # /bin/sh exec'd a payload it named "sh"
    enr.enrich(Event("exec", 2, pid=21, ppid=20, comm="runc", exe="/usr/sbin/runc", cgroup_id=cg))
    ev = enr.enrich(Event("exec", 3, pid=21, ppid=20, comm="runc", exe="/dev/fd/4", cgroup_id=cg))
    assert ev.exe == "/dev/fd/4"  # a "runc" inside a container is not the runtime
    enr.enrich(Event("exec", 4, pid=50, ppid=1, comm="python3", exe="/usr/bin/python3", cgroup_id=host_cg))
    ev = enr.enrich(Event("exec", 5, pid=50, ppid=1, comm="python3", exe="/dev/fd/7", cgroup_id=host_cg))
    assert ev.exe == "/dev/fd/7"  # on the host, only runtimes


def test_network_events_carry_their_process_command_line(tmp_path: Path) -> None:
    enr, cg, _ = make(tmp_path)
    enr.enrich(Event("exec", 1, pid=20, exe="/usr/bin/nc", args=("nc", "127.0.0.1", "9"), cgroup_id=cg))
    conn = enr.enrich(Event("connect", 2, pid=20, cgroup_id=cg, dport=9))
    assert (conn.exe, conn.args) == ("/usr/bin/nc", ("nc", "127.0.0.1", "9"))


def test_normalize_image() -> None:
    assert normalize_image("busybox") == "busybox:latest"
    assert normalize_image("reg:5000/team/app") == "reg:5000/team/app:latest"
    assert normalize_image("app:1.2") == "app:1.2"
    assert normalize_image("app@sha256:00") == "app@sha256:00"


def test_enrich_owned_fills_the_same_fields_in_place(tmp_path: Path) -> None:
    enr, cg, _ = make(tmp_path)
    copied = enr.enrich(Event("connect", 5, pid=20, cgroup_id=cg, dport=80))
    raw = Event("connect", 5, pid=20, cgroup_id=cg, dport=80)
    owned = enr.enrich_owned(raw)
    assert owned is raw and owned == copied
    assert (owned.exe, owned.ppid, owned.pexe, owned.image) == ("/bin/sh", 10, "/usr/bin/containerd-shim",
                                                                  "busybox:latest")


def test_fork_and_exit_keep_their_fields_and_get_the_parent_exe(tmp_path: Path) -> None:
    enr, cg, _ = make(tmp_path)
    fork = enr.enrich(Event("fork", 1, pid=20, ppid=20, child_pid=21, cgroup_id=cg))
    assert (fork.ppid, fork.child_pid, fork.exe, fork.pexe, fork.ancestry) == (20, 21, "/bin/sh", "/bin/sh", ())
    ex = enr.enrich(Event("exit", 2, pid=21, exit_code=3, cgroup_id=cg))
    assert (ex.exit_code, ex.ppid, ex.exe) == (3, 20, "/bin/sh")  # the exited entry still resolves


def test_a_cgroup_created_right_after_a_scan_resolves_on_its_first_event(tmp_path: Path) -> None:
    """A container's connect 10 ms after another container's events went out unattributed (the
    rescan was rate-limited) and, reported once by the kernel, was never learned."""
    enr, _, _ = make(tmp_path)
    new_dir = tmp_path / "cg" / "system.slice" / f"docker-{'b' * 64}.scope"
    enr.index.scan()
    new_dir.mkdir(parents=True)
    enr.index.rescan_ns = 10**15
    ev = enr.enrich(Event("connect", 1, pid=20, cgroup_id=os.stat(new_dir).st_ino, dport=80))
    assert (ev.container_id, ev.runtime) == ("b" * 64, "docker")
    assert enr.stats()["unknown_cgroups"] == 0


def test_a_cgroup_that_resolves_late_asks_the_kernel_to_report_its_endpoints_again(tmp_path: Path) -> None:
    enr, _, _ = make(tmp_path)
    resolved: list[int] = []
    enr.on_resolved = resolved.append
    cg = 987654  # its first event came before userspace could see its directory
    assert enr.enrich(Event("connect", 1, pid=20, cgroup_id=cg)).runtime == "unknown"
    enr.index._paths[cg] = f"/system.slice/docker-{'b' * 64}.scope"  # noqa: SLF001 - what a later scan finds
    ev = enr.enrich(Event("connect", 2, pid=20, cgroup_id=cg))
    assert (ev.container_id, ev.runtime) == ("b" * 64, "docker") and resolved == [cg]
    enr.enrich(Event("connect", 3, pid=20, cgroup_id=cg))
    assert resolved == [cg]  # once
    assert enr.stats()["unknown_cgroups"] == 1 and enr.stats()["unknown_events"] == 1


def test_missing_runtime_metadata_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class LateRuntime(FakeRuntime):
        def inspect(self, container_id: str) -> ContainerMeta | None:
            self.calls += 1
            return None if self.calls == 1 else super().inspect(container_id)

    rt = LateRuntime()
    enr, cg, _ = make(tmp_path, rt)
    first = enr.enrich(Event("exec", 1, pid=20, cgroup_id=cg))
    assert (first.container_id, first.container_name, first.image) == (CID, CID[:12], "")
    enr.enrich(Event("exec", 1, pid=20, cgroup_id=cg))
    assert rt.calls == 1  # inside the retry interval: no new lookup
    monkeypatch.setattr("sensor.enrich.RETRY_NS", 0)
    assert enr.enrich(Event("exec", 2, pid=20, cgroup_id=cg)).image == "busybox:latest"


def test_container_cgroup_id_by_name_or_prefix(tmp_path: Path) -> None:
    enr, cg, _ = make(tmp_path)
    assert enr.container_cgroup_id("web-1") == cg
    assert enr.container_cgroup_id(CID[:6]) == cg
    with pytest.raises(SensorError, match="container 'nope' not found") as info:
        enr.container_cgroup_id("nope")
    assert info.value.exit_code == EX_NOINPUT


def test_create_wires_the_injected_roots(tmp_path: Path) -> None:
    (tmp_path / "cg" / "init.scope").mkdir(parents=True)
    fake_proc(tmp_path / "proc", 1, 0, "/sbin/init", ["init"])
    enr = Enricher.create(docker=False, procfs_root=tmp_path / "proc", cgroupfs_root=tmp_path / "cg")
    ev = enr.enrich(Event("exec", 1, pid=1, cgroup_id=os.stat(tmp_path / "cg").st_ino))
    assert ev.runtime == "host" and ev.exe == "" and len(enr.procs) == 1


class NotFound(Exception):
    """Named like docker.errors.NotFound, which the runtime recognises by name."""


class FakeDockerAPI:
    def __init__(self, attrs: dict[str, dict[str, Any]], down: bool = False) -> None:
        self.attrs, self.down, self.calls = attrs, down, 0

    def inspect_container(self, cid: str) -> dict[str, Any]:
        self.calls += 1
        if self.down:
            raise ConnectionError("socket gone")
        if cid not in self.attrs:
            raise NotFound(cid)
        return self.attrs[cid]

    def inspect_image(self, ref: str) -> dict[str, Any]:
        return {"Id": "sha256:" + "9" * 64}


class FakeDockerClient:
    def __init__(self, api: FakeDockerAPI) -> None:
        self.api = api


ATTRS = {"Id": CID, "Name": "/web-1", "Image": "sha256:feed",
         "Config": {"Image": "cgsentry/busybox", "Labels": {"io.kubernetes.pod.name": "p",
                                                            "io.kubernetes.pod.namespace": "ns"}},
         "State": {"Pid": 42, "StartedAt": "2024-05-01T10:11:12.000000007Z"}}


def test_meta_from_inspect_document() -> None:
    meta = meta_from_attrs(ATTRS)
    assert (meta.id, meta.name, meta.image, meta.image_id, meta.pid) == (
        CID, "web-1", "cgsentry/busybox:latest", "sha256:feed", 42)
    assert (meta.pod, meta.namespace, meta.started_ns) == ("p", "ns", 1714558272_000000007)


def test_docker_runtime_caches_and_negative_caches() -> None:
    api = FakeDockerAPI({CID: ATTRS})
    rt = DockerRuntime(FakeDockerClient(api), follow_events=False)
    assert rt.inspect(CID) == meta_from_attrs(ATTRS) and api.calls == 1
    assert rt.inspect(CID) == meta_from_attrs(ATTRS) and api.calls == 1  # the second answer is cached
    assert rt.inspect("f" * 64) is None and rt.inspect("f" * 64) is None and api.calls == 2
    assert rt.find("web-1") is not None and api.calls == 2  # by name from the cache
    assert rt.stats()["runtime_errors"] == 0 and rt.stats()["runtime_available"] == 1


def test_dead_daemon_opens_the_circuit() -> None:
    api = FakeDockerAPI({CID: ATTRS}, down=True)
    rt = DockerRuntime(FakeDockerClient(api), follow_events=False)
    for _ in range(10):
        assert rt.inspect(CID) is None
    assert api.calls == 1 and rt.stats()["runtime_errors"] == 1 and rt.stats()["runtime_available"] == 0


def test_start_event_of_a_container_already_removed_keeps_its_image() -> None:
    rt = DockerRuntime(FakeDockerClient(FakeDockerAPI({})), follow_events=False)
    rt._on_event({"Action": "start", "id": CID, "Actor": {"Attributes": {
        "image": "cgsentry/busybox:latest", "name": "brief", "team": "x"}}})
    meta = rt.inspect(CID)
    assert meta is not None and (meta.name, meta.image, meta.image_id) == (
        "brief", "cgsentry/busybox:latest", "sha256:" + "9" * 64)
    assert meta.labels == {"team": "x"}


def test_destroyed_containers_expire_after_the_grace_period(monkeypatch: pytest.MonkeyPatch) -> None:
    rt = DockerRuntime(FakeDockerClient(FakeDockerAPI({CID: ATTRS})), follow_events=False)
    rt._on_event({"Action": "start", "id": CID})
    rt._on_event({"Action": "destroy", "id": CID})
    assert rt.stats()["runtime_cached"] == 1  # still there for late events
    monkeypatch.setattr(DockerRuntime, "GRACE_S", -1.0)
    rt._on_event({"Action": "die", "id": "other"})
    assert rt.stats()["runtime_cached"] == 0 and rt.stats()["runtime_events"] == 3


def test_no_docker_socket_degrades(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    rt = DockerRuntime(timeout_s=1.0)
    assert rt.inspect(CID) is None and rt.find("web-1") is None
    assert rt.stats()["runtime_available"] == 0 and rt.stats()["runtime_errors"] == 1


def test_child_forked_in_the_kernel_is_adopted_from_the_header_ppid(tmp_path: Path) -> None:
    """Forks stay in the kernel: a child's first record (here a connect) carries its parent in
    the header, and the child runs its parent's image until it execs."""
    enr, cg, _ = make(tmp_path)
    conn = enr.enrich(Event("connect", 5, pid=21, ppid=20, cgroup_id=cg, dport=80))
    assert (conn.exe, conn.ppid, conn.pexe) == ("/bin/sh", 20, "/bin/sh")
    ex = enr.enrich(Event("exec", 6, pid=21, ppid=20, exe="/usr/bin/nc", args=("nc",), cgroup_id=cg))
    assert ex.ancestry == ("/bin/sh", "/usr/bin/containerd-shim", "/sbin/init")
    orphan = enr.enrich(Event("connect", 7, pid=99, ppid=0, cgroup_id=cg))
    assert (orphan.exe, orphan.ppid) == ("", 0)  # nothing known: nothing made up


def test_applet_reexec_of_a_kernel_forked_child_is_still_named(tmp_path: Path) -> None:
    """No fork record precedes the exec now: the child is adopted from the header ppid first, so
    busybox's /proc/self/exe re-exec still resolves to the applet beside the parent's binary."""
    enr, cg, _ = make(tmp_path)
    enr.enrich(Event("exec", 1, pid=20, ppid=10, exe="/bin/busybox", args=("sh",), cgroup_id=cg))
    ev = enr.enrich(Event("exec", 2, pid=30, ppid=20, exe="/proc/self/exe", comm="exe", args=("nc", "x"),
                          cgroup_id=cg))
    # the parent, busybox run as sh, is named by the applet it runs (issue 21 item 2)
    assert (ev.exe, ev.comm, ev.pexe) == ("/bin/nc", "nc", "/bin/sh")


def test_child_of_a_fork_only_parent_is_adopted_through_the_nearest_reported_ancestor(tmp_path: Path) -> None:
    """`(nc -e /bin/sh &)`: sh forks a subshell that forks again and execs nc. The subshell never
    exec'd, so no record named it; the header's ancestor_pid (sh) stands in for its image."""
    enr, cg, _ = make(tmp_path)
    enr.enrich(Event("exec", 1, pid=20, ppid=10, exe="/bin/busybox", args=("sh",), cgroup_id=cg))
    ev = enr.enrich(Event("exec", 2, pid=31, ppid=30, ancestor_pid=20, exe="/proc/self/exe", comm="exe",
                          args=("nc", "-e", "/bin/sh"), cgroup_id=cg))
    # the parent, busybox run as sh, is named by the applet it runs (issue 21 item 2)
    assert (ev.exe, ev.comm, ev.ppid, ev.pexe) == ("/bin/nc", "nc", 30, "/bin/sh")
    assert ev.ancestry[:2] == ("/bin/sh", "/bin/sh")  # the subshell, then sh itself


def test_a_live_accept_without_its_port_is_handed_to_the_listener_lookup(tmp_path: Path) -> None:
    enr, cg, _ = make(tmp_path)
    asked: list[Event] = []

    def lookup(ev: Event) -> None:
        asked.append(ev)
        ev.sport = 8080

    enr.on_portless_accept = lookup
    portless = enr.enrich_owned(Event("accept", 1, pid=20, cgroup_id=cg, family="ipv4"))
    known = enr.enrich_owned(Event("accept", 2, pid=20, cgroup_id=cg, family="ipv4", sport=443))
    assert asked == [portless] and portless.sport == 8080 and known.sport == 443
    assert portless.exe == "/bin/sh"  # asked after enrichment: the lookup keys on pid and binary


def test_seen_containers_and_cgroup_path(tmp_path: Path) -> None:
    """What the daemon tells the collector (containers seen) and gives the responder (a path)."""
    enr, cg, host_cg = make(tmp_path)
    assert enr.seen_containers() == []
    enr.enrich(Event("exec", 1, pid=20, exe="/bin/sh", args=("sh",), cgroup_id=host_cg))
    enr.enrich(Event("exec", 2, pid=20, exe="/bin/sh", args=("sh",), cgroup_id=cg))
    assert enr.seen_containers() == [CID]  # the host is left out
    assert enr.cgroup_path(CID[:12]) == f"/docker/{CID}"
    assert enr.cgroup_path("f00") == ""
    assert enr.cgroup_path("") == ""
