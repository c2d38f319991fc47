"""Container truth from the cgroup: cgroup id -> cgroup path -> (runtime, container id, pod).

``bpf_get_current_cgroup_id()`` is the inode number of the task's cgroup directory on the v2
hierarchy, so :class:`CgroupIndex` maps ids to paths by walking that hierarchy (lazily, cached,
rescanning at most every ``rescan_ms`` on a miss). :func:`parse_cgroup_path` recognises the path
shapes of Docker, containerd/CRI, CRI-O, podman/libpod and Kubernetes pods (systemd and cgroupfs
drivers); anything else — the root, ``init.scope``, systemd services and user sessions — is the host.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_HEX64: Final = r"[0-9a-f]{64}"
# One path component that names a container, systemd-driver form. ``conmon`` scopes (the monitor
# process of CRI-O/podman) are excluded by construction: "conmon" is not 64 hex digits.
_SCOPE: Final = re.compile(
    rf"^(?P<prefix>docker|cri-containerd|crio|libpod|nerdctl)-(?P<id>{_HEX64})(?:\.scope)?$")
# containerd/CRI-O running with a systemd-style cgroup spec but not through systemd (kind,
# containerd-in-docker) leave the literal "slice:prefix:id" as a directory name.
_COLON: Final = re.compile(rf"^[^:]*:(?P<prefix>cri-containerd|crio|docker):(?P<id>{_HEX64})$")
_BARE: Final = re.compile(rf"^{_HEX64}$")
_POD: Final = re.compile(r"pod(?P<uid>[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
                         r"(?:\.slice)?$")
_QOS: Final = re.compile(r"^(?:kubepods-)?(?P<qos>besteffort|burstable)(?:\.slice|-pod.*)?$")
# containerd namespaces whose cgroups are "/<namespace>/<container id>" (``ctr run``: the id is the
# name the user chose, not 64 hex digits). "default" is ctr's; others come from containerd's API.
CONTAINERD_NAMESPACES: Final = frozenset({"default"})
_CTR_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,75}$")  # containerd's identifier rule
_RUNTIMES: Final = {"docker": "docker", "cri-containerd": "containerd", "crio": "crio",
                    "libpod": "podman", "nerdctl": "containerd"}


@dataclass(frozen=True, slots=True)
class ContainerRef:
    """What the cgroup path alone says about a container.

    ``runtime`` is docker | containerd | crio | podman | kubepods (a Kubernetes container under the
    cgroupfs driver, whose path does not name the runtime). ``pod_uid`` uses dashes; ``qos`` is
    besteffort | burstable | guaranteed for pod containers, "" otherwise. ``namespace`` is the
    containerd namespace when the path names one (``/default/<id>``, ``/k8s.io/<id>``).
    """

    runtime: str
    container_id: str
    pod_uid: str = ""
    qos: str = ""
    namespace: str = ""


def parse_cgroup_path(path: str, containerd_namespaces: frozenset[str] = CONTAINERD_NAMESPACES,
                      ) -> ContainerRef | None:
    """Parse a cgroup path (relative to the v2 root); None for host cgroups and garbage.

    The innermost container-looking component wins, so docker-in-docker
    (``/docker/<outer>/docker/<inner>``) names the inner container, and sub-cgroups a runtime
    makes inside a container (``crio-<id>.scope/container``) still name the container.
    ``/<namespace>/<name>`` is a plain containerd container (``ctr run``) only for a namespace in
    ``containerd_namespaces``: the shape alone is any two-level cgroup.
    """
    parts = [p for p in path.strip().strip("/").split("/") if p]
    for i in range(len(parts) - 1, -1, -1):
        found = _component(parts[i], parts[:i])
        if found is not None:
            runtime, cid = found
            # "slice:prefix:id" carries its pod slice inside the component itself
            pod_uid, qos = _pod_of([*parts[:i], parts[i].split(":", 1)[0]])
            ns = parts[i - 1] if runtime == "containerd" and i == 1 and parts[i] == cid else ""
            return ContainerRef(runtime, cid, pod_uid, qos, ns)
    if len(parts) == 2 and parts[0] in containerd_namespaces and _CTR_ID.match(parts[1]):
        return ContainerRef("containerd", parts[1], namespace=parts[0])
    return None


def _component(part: str, parents: list[str]) -> tuple[str, str] | None:
    """(runtime, container id) if this path component names a container."""
    m = _SCOPE.match(part) or _COLON.match(part)
    if m is not None:
        return _RUNTIMES[m["prefix"]], m["id"]
    if _BARE.match(part):
        runtime = _bare_id_runtime(parents)
        if runtime:
            return runtime, part
    return None


def _bare_id_runtime(parents: list[str]) -> str:
    """A bare 64-hex component (cgroupfs driver): its parent directory says whose it is."""
    if not parents:
        return ""
    parent = parents[-1]
    if parent == "docker":
        return "docker"
    if parent.startswith("libpod_parent"):
        return "podman"
    if any(p == "kubepods" or p.startswith("kubepods") for p in parents):
        return "kubepods"
    if "containerd" in parent or parent in ("k8s.io", "moby", "default", "buildkit"):
        return "containerd"
    return ""


def _pod_of(parents: list[str]) -> tuple[str, str]:
    """(pod uid with dashes, QoS class) from the parents of a container component."""
    pod_uid = qos = ""
    for p in parents:
        m = _POD.search(p)
        if m is not None:
            pod_uid = m["uid"].replace("_", "-")
        q = _QOS.match(p)
        if q is not None:
            qos = q["qos"]
    if pod_uid and not qos:
        qos = "guaranteed"  # guaranteed pods sit directly under kubepods, without a QoS level
    return pod_uid, qos


def find_cgroup2_root(mounts_file: Path = Path("/proc/self/mounts")) -> Path:
    """The cgroup v2 mount: /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid ones."""
    try:
        lines = mounts_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    v2 = [f[1] for f in (line.split() for line in lines) if len(f) > 2 and f[2] == "cgroup2"]
    for preferred in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if preferred in v2:
            return Path(preferred)
    return Path(v2[0]) if v2 else Path("/sys/fs/cgroup/unified")


class CgroupIndex:
    """cgroup id (inode on the v2 hierarchy) -> path relative to the root, e.g. ``/docker/<id>``.

    Lazy: the tree is walked on the first miss of each id, and on later misses of an id at most
    once per ``rescan_ms`` (a flood of events from a cgroup that is already gone must not turn into
    a flood of tree walks). The first miss of an id is never rate-limited: a container's first
    events come within milliseconds of another container's, and an event left unattributed may
    not come again (the kernel reports a connect endpoint once per cgroup). Entries of removed
    cgroups survive one rescan so late events still resolve; kernfs never reuses an id while the
    system is up, so a stale entry cannot misattribute.
    """

    def __init__(self, cgroupfs_root: Path | None = None, rescan_ms: int = 200) -> None:
        self.root = cgroupfs_root if cgroupfs_root is not None else find_cgroup2_root()
        self.rescan_ns = rescan_ms * 1_000_000
        self._paths: dict[int, str] = {}
        self._gone: dict[int, str] = {}  # removed at the last scan, kept one generation
        self._last_scan_ns: int | None = None
        self._missed: set[int] = set()  # ids that already had their immediate scan
        self.misses = 0
        self.scans = 0

    def path_of(self, cgroup_id: int) -> str | None:
        """Path of the cgroup with that id ("/" for the root); None (and a counted miss) if unknown."""
        path = self._paths.get(cgroup_id) or self._gone.get(cgroup_id)
        if path is not None:
            return path
        now = time.monotonic_ns()
        if (cgroup_id not in self._missed or self._last_scan_ns is None
                or now - self._last_scan_ns >= self.rescan_ns):
            self.scan()
            path = self._paths.get(cgroup_id)
        if path is None:
            self.misses += 1
            if len(self._missed) >= 65536:
                self._missed.clear()
            self._missed.add(cgroup_id)
        return path

    def scan(self) -> int:
        """Walk the hierarchy now; returns how many cgroups it holds."""
        self.scans += 1
        self._last_scan_ns = time.monotonic_ns()
        fresh: dict[int, str] = {}
        try:
            fresh[os.stat(self.root).st_ino] = "/"
        except OSError:
            return 0  # no v2 hierarchy: every id stays unknown, counted by the caller
        stack = [(str(self.root), "")]
        while stack:
            abs_dir, rel = stack.pop()
            try:
                with os.scandir(abs_dir) as it:
                    entries = [e for e in it if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue  # removed while walking
            for entry in entries:
                child = f"{rel}/{entry.name}"
                fresh[entry.inode()] = child
                stack.append((entry.path, child))
        self._gone = {k: v for k, v in self._paths.items() if k not in fresh}
        self._paths = fresh
        return len(fresh)

    def __len__(self) -> int:
        return len(self._paths)

    def id_of(self, rel_path: str) -> int:
        """Inode (cgroup id) of a path relative to the root; OSError if it does not exist."""
        return os.stat(self.root / rel_path.lstrip("/")).st_ino

    def find_container(self, container_id: str) -> tuple[int, str] | None:
        """(cgroup id, path) of a live container cgroup whose id starts with ``container_id``.

        The container's own cgroup is preferred over sub-cgroups a runtime makes inside it.
        """
        if not container_id:
            return None
        self.scan()
        best: tuple[int, str] | None = None
        for cg, path in self._paths.items():
            ref = parse_cgroup_path(path)
            matches = ref is not None and ref.container_id.startswith(container_id)
            if matches and (best is None or len(path) < len(best[1])):
                best = (cg, path)
        return best
