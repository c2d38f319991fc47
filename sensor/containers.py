"""Container truth from the cgroup: cgroup id -> cgroup path -> (runtime, container id, pod).

``bpf_get_current_cgroup_id()`` is the inode number of the task's cgroup directory on the v2
hierarchy, so :class:`CgroupIndex` maps ids to paths by walking that hierarchy (lazily, cached,
rescanning at most every ``rescan_ms`` on a miss). :func:`parse_cgroup_path` recognises the path
shapes of Docker, containerd/CRI, CRI-O, podman/libpod and Kubernetes pods (systemd and cgroupfs
drivers); anything else is the host.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_ID: Final = r"([0-9a-f]{64})"
# Ordered: the first pattern that matches the LAST container-looking path component wins.
_PATTERNS: Final = (
    ("docker", re.compile(rf"docker-{_ID}\.scope$")),
    ("containerd", re.compile(rf"cri-containerd-{_ID}\.scope$")),
    ("crio", re.compile(rf"crio-{_ID}\.scope$")),
    ("podman", re.compile(rf"libpod-{_ID}\.scope$")),
    ("docker", re.compile(rf"^{_ID}$")),
)
_POD: Final = re.compile(r"pod([0-9a-f_-]{36})(?:\.slice)?$")
_QOS: Final = re.compile(r"kubepods-(besteffort|burstable)(?:\.slice)?$|^(besteffort|burstable)$")


@dataclass(frozen=True, slots=True)
class ContainerRef:
    """What the cgroup path alone says about a container."""

    runtime: str  # docker | containerd | crio | podman | kubepods
    container_id: str
    pod_uid: str = ""
    qos: str = ""


def parse_cgroup_path(path: str) -> ContainerRef | None:
    """Parse a cgroup path (relative to the hierarchy root); None for host cgroups.

    Conmon/runtime helper scopes (``crio-conmon-…``, ``libpod-conmon-…``) are host. With nested
    runtimes (docker-in-docker) the innermost container wins.
    """
    parts = [p for p in path.strip("/").split("/") if p]
    for i in range(len(parts) - 1, -1, -1):
        ref = _match_part(parts, i)
        if ref is not None:
            return ref
    return None


def _match_part(parts: list[str], i: int) -> ContainerRef | None:
    part = parts[i]
    for runtime, pattern in _PATTERNS:
        m = pattern.search(part)
        if not m:
            continue
        parents = parts[:i]
        pod_uid, qos = _pod_of(parents)
        if runtime == "docker" and pattern.pattern.startswith("^"):
            runtime = _bare_id_runtime(parents)
            if runtime == "":
                continue
        if pod_uid and runtime == "docker" and not any("docker" in p for p in parents):
            runtime = "kubepods"
        return ContainerRef(runtime, m.group(1), pod_uid, qos)
    return None


def _bare_id_runtime(parents: list[str]) -> str:
    """A bare 64-hex component: docker (``/docker/<id>``), kube cgroupfs driver, or containerd."""
    if not parents:
        return ""
    if parents[-1] == "docker":
        return "docker"
    if any(p.startswith("kubepods") for p in parents):
        return "kubepods"
    if any("containerd" in p for p in parents) or parents[-1] in ("k8s.io", "moby"):
        return "containerd"
    return ""


def _pod_of(parents: list[str]) -> tuple[str, str]:
    pod_uid = qos = ""
    for p in parents:
        m = _POD.search(p)
        if m:
            pod_uid = m.group(1).replace("_", "-")
        q = _QOS.search(p)
        if q:
            qos = q.group(1) or q.group(2)
    if pod_uid and not qos and any(p.startswith("kubepods") for p in parents):
        qos = "guaranteed"
    return pod_uid, qos


def find_cgroup2_root() -> Path:
    """The cgroup v2 mount: /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            mounts = [line.split() for line in f]
    except OSError:
        mounts = []
    for fields in mounts:
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    return Path("/sys/fs/cgroup/unified")


class CgroupIndex:
    """cgroup id (inode) -> path relative to the v2 root, cached, with rate-limited rescans."""

    def __init__(self, root: Path | None = None, rescan_ms: int = 200) -> None:
        self.root = root or find_cgroup2_root()
        self.rescan_ns = rescan_ms * 1_000_000
        self._paths: dict[int, str] = {}
        self._last_scan_ns = -self.rescan_ns
        self.misses = 0
        self.scans = 0

    def path_of(self, cgroup_id: int) -> str | None:
        """Path of the cgroup with that id, rescanning the tree at most once per interval."""
        path = self._paths.get(cgroup_id)
        if path is not None:
            return path
        now = time.monotonic_ns()
        if now - self._last_scan_ns >= self.rescan_ns:
            self._last_scan_ns = now
            self.scan()
            path = self._paths.get(cgroup_id)
        if path is None:
            self.misses += 1
        return path

    def scan(self) -> None:
        """Walk the hierarchy, adding every directory's inode (entries of gone cgroups stay)."""
        self.scans += 1
        try:
            self._paths[os.stat(self.root).st_ino] = "/"
        except OSError:
            return
        stack = [(str(self.root), "")]
        while stack:
            abs_dir, rel = stack.pop()
            try:
                entries = list(os.scandir(abs_dir))
            except OSError:
                continue  # removed while walking
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                child = f"{rel}/{entry.name}"
                try:
                    self._paths[entry.inode()] = child
                except OSError:
                    continue
                stack.append((entry.path, child))

    def id_of(self, rel_path: str) -> int:
        """Inode (cgroup id) of a path relative to the root; OSError if it does not exist."""
        return os.stat(self.root / rel_path.lstrip("/")).st_ino

    def find_container(self, container_id: str) -> tuple[int, str] | None:
        """(cgroup id, path) of the cgroup whose parsed container id starts with ``container_id``."""
        self.scan()
        for cg, path in self._paths.items():
            ref = parse_cgroup_path(path)
            if ref is not None and ref.container_id.startswith(container_id):
                return cg, path
        return None
