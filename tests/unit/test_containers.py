"""cgroup path parsing for every runtime layout, and the cgroup id index on a tmp_path tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sensor.containers import CgroupIndex, ContainerRef, find_cgroup2_root, parse_cgroup_path

A = "a" * 64
B = "0123456789abcdef" * 4
UID = "6f0c4e2a-1b2c-4d5e-8f90-123456789abc"
UID_ = UID.replace("-", "_")


@pytest.mark.parametrize(("path", "expected"), [
    # Docker, cgroupfs and systemd drivers
    (f"/docker/{A}", ContainerRef("docker", A)),
    (f"/system.slice/docker-{A}.scope", ContainerRef("docker", A)),
    # docker-in-docker: the innermost container wins
    (f"/docker/{A}/docker/{B}", ContainerRef("docker", B)),
    (f"/system.slice/docker-{A}.scope/docker/{B}", ContainerRef("docker", B)),
    # containerd: plain namespaces, nerdctl scopes, systemd spec left literal under containerd.service
    (f"/k8s.io/{A}", ContainerRef("containerd", A, namespace="k8s.io")),
    (f"/default/{A}", ContainerRef("containerd", A, namespace="default")),
    # `ctr run` (containerd 1.6, cgroup v1 and v2 alike): /<namespace>/<the name the user chose>
    ("/default/ctrtest", ContainerRef("containerd", "ctrtest", namespace="default")),
    ("/default/web.1_x-y", ContainerRef("containerd", "web.1_x-y", namespace="default")),
    (f"/system.slice/nerdctl-{A}.scope", ContainerRef("containerd", A)),
    (f"/system.slice/containerd.service/kubepods-burstable-pod{UID_}.slice:cri-containerd:{A}",
     ContainerRef("containerd", A, UID, "burstable")),
    # Kubernetes, systemd driver, every QoS class and runtime
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{A}.scope",
     ContainerRef("containerd", A, UID, "burstable")),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{A}.scope",
     ContainerRef("crio", A, UID, "besteffort")),
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/docker-{A}.scope", ContainerRef("docker", A, UID, "guaranteed")),
    # crun puts the container's processes one level down
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/crio-{A}.scope/container", ContainerRef("crio", A, UID, "guaranteed")),
    # Kubernetes, cgroupfs driver: the path does not name the runtime
    (f"/kubepods/burstable/pod{UID}/{A}", ContainerRef("kubepods", A, UID, "burstable")),
    (f"/kubepods/besteffort/pod{UID}/{A}", ContainerRef("kubepods", A, UID, "besteffort")),
    (f"/kubepods/pod{UID}/{A}", ContainerRef("kubepods", A, UID, "guaranteed")),
    # podman / libpod
    (f"/machine.slice/libpod-{A}.scope", ContainerRef("podman", A)),
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{A}.scope", ContainerRef("podman", A)),
    (f"/libpod_parent/libpod-{A}", ContainerRef("podman", A)),
    (f"/machine.slice/libpod-{A}.scope/container", ContainerRef("podman", A)),
])
def test_container_paths(path: str, expected: ContainerRef) -> None:
    assert parse_cgroup_path(path) == expected


@pytest.mark.parametrize("path", [
    "/", "", "/init.scope", "/system.slice/docker.service", "/system.slice/containerd.service",
    "/system.slice/ssh.service", "/user.slice/user-0.slice/session-3.scope",
    # monitor processes of CRI-O and podman are not the container
    f"/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{A}.scope",
    f"/machine.slice/libpod-conmon-{A}.scope",
    # pod-level cgroup (the pause sandbox's parent) without a container component
    f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice",
    # garbage: short ids, upper case, ids under unrelated parents, prefixes glued on
    "/docker/abc123", f"/docker/{A.upper()}", f"/{A}", f"/system.slice/{A}", f"/x/mydocker-{A}.scope",
    f"/system.slice/docker-{A}.scopex", "\x00\x01//../", f"/docker/{A[:-1]}",
    # two levels under a namespace containerd does not have, or a name containerd would refuse
    "/system.slice/cron", "/default/-x", "/default/a b", "/default/ctrtest/sub",
])
def test_host_and_garbage_paths_are_not_containers(path: str) -> None:
    assert parse_cgroup_path(path) is None


def test_containerd_namespaces_from_the_api_are_recognised() -> None:
    assert parse_cgroup_path("/buildkit-ci/job7") is None
    assert parse_cgroup_path("/buildkit-ci/job7", frozenset({"default", "buildkit-ci"})) == ContainerRef(
        "containerd", "job7", namespace="buildkit-ci")


def _tree(root: Path, *rels: str) -> dict[str, int]:
    out = {}
    for rel in rels:
        (root / rel).mkdir(parents=True, exist_ok=True)
        out[rel] = os.stat(root / rel).st_ino
    return out


def test_index_maps_inodes_to_relative_paths(tmp_path: Path) -> None:
    ids = _tree(tmp_path, f"docker/{A}", "init.scope", f"system.slice/docker-{B}.scope")
    index = CgroupIndex(tmp_path, rescan_ms=0)
    assert index.path_of(ids[f"docker/{A}"]) == f"/docker/{A}"
    assert index.path_of(ids["init.scope"]) == "/init.scope"
    assert index.path_of(os.stat(tmp_path).st_ino) == "/"
    assert index.id_of(f"/system.slice/docker-{B}.scope") == ids[f"system.slice/docker-{B}.scope"]
    assert index.misses == 0 and index.scans == 1  # one lazy walk served every lookup


def test_misses_are_counted_and_rescans_rate_limited(tmp_path: Path) -> None:
    _tree(tmp_path, "init.scope")
    index = CgroupIndex(tmp_path, rescan_ms=60_000)
    assert index.path_of(1) is None and index.scans == 1
    for _ in range(50):  # a burst of misses of one id inside the interval walks the tree no more
        assert index.path_of(1) is None
    assert index.scans == 1 and index.misses == 51
    # a new container's first event is not rate-limited: it resolves at once, even right after a scan
    new = _tree(tmp_path, f"docker/{A}")[f"docker/{A}"]
    assert index.path_of(new) == f"/docker/{A}" and index.scans == 2


def test_an_id_that_missed_is_found_after_the_interval(tmp_path: Path) -> None:
    _tree(tmp_path, "init.scope")
    index = CgroupIndex(tmp_path, rescan_ms=60_000)
    index.scan()
    cg = tmp_path / "docker" / B
    cg.mkdir(parents=True)
    ino = cg.stat().st_ino
    cg.rmdir()  # the id's first event came while its directory was not there (yet, or any more)
    assert index.path_of(ino) is None and index.scans == 2
    assert index.path_of(ino) is None and index.scans == 2  # its second miss is rate-limited
    index.rescan_ns = 0
    assert index.path_of(ino) is None and index.scans == 3


def test_removed_cgroups_survive_one_rescan(tmp_path: Path) -> None:
    ids = _tree(tmp_path, f"docker/{A}", f"docker/{B}")
    index = CgroupIndex(tmp_path, rescan_ms=0)
    index.scan()
    (tmp_path / "docker" / A).rmdir()
    index.scan()
    assert index.path_of(ids[f"docker/{A}"]) == f"/docker/{A}"  # late events still resolve
    index.scan()
    assert ids[f"docker/{A}"] not in index._paths and index._gone == {}


def test_find_container_by_prefix_prefers_the_container_cgroup(tmp_path: Path) -> None:
    ids = _tree(tmp_path, f"machine.slice/libpod-{A}.scope/container", f"docker/{B}")
    index = CgroupIndex(tmp_path)
    assert index.find_container(A[:12]) == (os.stat(tmp_path / f"machine.slice/libpod-{A}.scope").st_ino,
                                            f"/machine.slice/libpod-{A}.scope")
    assert index.find_container(B) == (ids[f"docker/{B}"], f"/docker/{B}")
    assert index.find_container("ffff") is None and index.find_container("") is None


def test_missing_root_is_all_misses(tmp_path: Path) -> None:
    index = CgroupIndex(tmp_path / "absent", rescan_ms=0)
    assert index.path_of(42) is None and len(index) == 0 and index.misses == 1


@pytest.mark.parametrize(("mounts", "expected"), [
    ("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n", "/sys/fs/cgroup"),
    ("tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
     "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n", "/sys/fs/cgroup/unified"),
    ("cgroup2 /run/other cgroup2 rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n",
     "/sys/fs/cgroup/unified"),
    ("cgroup2 /mnt/cg cgroup2 rw 0 0\n", "/mnt/cg"),
    ("", "/sys/fs/cgroup/unified"),
])
def test_v2_mount_detection(tmp_path: Path, mounts: str, expected: str) -> None:
    f = tmp_path / "mounts"
    f.write_text(mounts)
    assert find_cgroup2_root(f) == Path(expected)
