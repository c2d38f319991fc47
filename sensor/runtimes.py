"""Every runtime on the node at once: sockets found (or given), and each cgroup routed to its runtime.

The cgroup path names the runtime (:func:`sensor.containers.parse_cgroup_path`); this module sends
the lookup to that runtime's API: Docker to the Docker Engine, ``containerd``/``crio`` and Kubernetes
pods under the cgroupfs driver (``kubepods``, whose path does not name the runtime) to the CRI
sockets, plain containerd namespaces (``ctr run``) to containerd's own API on the first containerd
socket, podman's to its libpod REST API when ``podman system service`` runs. A runtime without a
socket costs nothing: its containers keep what the path says.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any, Final

from sensor.containers import CONTAINERD_NAMESPACES, ContainerRef
from sensor.runtime import ContainerMeta, DockerRuntime, Runtime

# (kind, name, socket path), in the order a kubelet would look for them.
CRI_SOCKETS: Final = (
    ("cri", "containerd", "/run/containerd/containerd.sock"),
    ("cri", "crio", "/run/crio/crio.sock"),
    ("cri", "containerd", "/run/cgsentry-containerd/containerd.sock"),  # the kernel tests' own
    ("cri", "containerd", "/run/k3s/containerd/containerd.sock"),
)
DOCKER_SOCKET: Final = "/var/run/docker.sock"
PODMAN_SOCKET: Final = "/run/podman/podman.sock"
FIXES: Final = {
    "docker": "start dockerd, or set DOCKER_HOST",
    "containerd": "start containerd with its CRI plugin enabled, or give --cri-socket PATH",
    "crio": "start crio, or give --cri-socket crio=PATH",
    "podman": "run `podman system service --time=0 unix:///run/podman/podman.sock` (or enable podman.socket); "
              "without it podman containers are attributed from their cgroup path only",
}


@dataclass(frozen=True)
class Socket:
    """A runtime socket: ``kind`` docker | cri | podman, ``name`` the runtime (containerd, crio...)."""

    kind: str
    name: str
    path: str

    def exists(self) -> bool:
        try:
            return stat.S_ISSOCK(os.stat(self.path).st_mode)
        except OSError:
            return False


def parse_socket(text: str) -> Socket:
    """``PATH`` or ``NAME=PATH`` (NAME: containerd, crio) from ``--cri-socket``; ValueError if empty."""
    name, sep, path = text.partition("=")
    if not sep:
        name, path = "", text
    path = path.strip().removeprefix("unix://")
    if not path:
        raise ValueError(f"--cri-socket {text!r}: give a socket path, e.g. /run/containerd/containerd.sock")
    if not name:
        name = "crio" if "crio" in path else "containerd"
    if name not in ("containerd", "crio"):
        raise ValueError(f"--cri-socket {text!r}: runtime {name!r} is not containerd or crio")
    return Socket("cri", name, path)


def _socket_arg(text: str) -> Socket:
    import argparse

    try:
        return parse_socket(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_cri_socket_option(parser: Any) -> None:
    """``--cri-socket [NAME=]PATH`` (repeatable) on a subcommand's parser."""
    parser.add_argument("--cri-socket", type=_socket_arg, action="append", metavar="[NAME=]PATH",
                        help="a CRI runtime socket (containerd or crio; repeatable). Default: the "
                             "well-known sockets that exist")


def candidate_sockets(cri: list[Socket] | None = None) -> list[Socket]:
    """The sockets to look at: the operator's CRI sockets, else the well-known paths."""
    found = list(cri) if cri else [Socket(*s) for s in CRI_SOCKETS]
    docker_host = os.environ.get("DOCKER_HOST", "")
    docker = docker_host.removeprefix("unix://") if docker_host.startswith("unix://") else DOCKER_SOCKET
    return [Socket("docker", "docker", docker), *found, Socket("podman", "podman", PODMAN_SOCKET)]


class MultiRuntime:
    """Routes each lookup to the runtime its cgroup path names; lookups never raise.

    ``docker`` may be None (no Docker); ``cri`` lists CRI clients (:class:`sensor.cri.CriRuntime`)
    tried in order for a cgroup whose path does not say which runtime made it.
    """

    def __init__(self, docker: Runtime | None, cri: list[Any], containerd: Any = None, podman: Any = None) -> None:
        self.docker = docker
        self.cri = cri
        self.containerd = containerd
        self.podman = podman

    @classmethod
    def create(cls, docker: bool = True, cri_sockets: list[Socket] | None = None,
               timeout_s: float = 1.0) -> MultiRuntime:
        """The live wiring: Docker if asked, a CRI client per CRI socket that exists (the given
        ones are used even if missing now: a runtime may start after the sensor)."""
        from sensor.containerd import ContainerdRuntime
        from sensor.cri import CriRuntime
        from sensor.podman import PodmanRuntime

        sockets = cri_sockets if cri_sockets else [s for s in candidate_sockets() if s.kind == "cri" and s.exists()]
        seen: set[str] = set()
        clients = []
        for s in sockets:
            if os.path.realpath(s.path) not in seen:
                seen.add(os.path.realpath(s.path))
                clients.append(CriRuntime(s.path, name=s.name, timeout_s=timeout_s))
        first = next((c.socket for c in clients if c.name == "containerd"), None)
        plain = ContainerdRuntime(first, timeout_s=timeout_s) if first is not None else None
        podman_sock = Socket("podman", "podman", PODMAN_SOCKET)
        podman = PodmanRuntime(podman_sock.path, timeout_s) if podman_sock.exists() else None
        return cls(DockerRuntime() if docker else None, clients, plain, podman)

    def _for(self, ref: ContainerRef) -> list[Any]:
        if ref.runtime == "docker":
            return [self.docker] if self.docker is not None else []
        if ref.runtime in ("containerd", "crio"):
            return [c for c in self.cri if c.name == ref.runtime]
        if ref.runtime == "kubepods":
            return list(self.cri)
        if ref.runtime == "podman":
            return [self.podman] if self.podman is not None else []
        return []

    def inspect_ref(self, ref: ContainerRef) -> ContainerMeta | None:
        """Metadata of the container a cgroup path names, from the runtime that made it: a plain
        containerd namespace from containerd's own API, the rest by runtime."""
        if ref.runtime == "containerd" and ref.namespace not in ("", "k8s.io") and self.containerd is not None:
            meta: ContainerMeta | None = self.containerd.inspect_in(ref.namespace, ref.container_id)
            return meta
        for client in self._for(ref):
            meta = client.inspect(ref.container_id)
            if meta is not None:
                return meta
        return None

    @property
    def containerd_namespaces(self) -> frozenset[str]:
        """containerd's namespaces whose ``/<namespace>/<name>`` cgroups are containers."""
        names: frozenset[str] = self.containerd.namespaces if self.containerd is not None else CONTAINERD_NAMESPACES
        return names

    def _all(self) -> list[Any]:
        return [c for c in (self.docker, *self.cri, self.containerd, self.podman) if c is not None]

    def inspect(self, container_id: str) -> ContainerMeta | None:
        for client in self._all():
            meta: ContainerMeta | None = client.inspect(container_id)
            if meta is not None:
                return meta
        return None

    def find(self, id_or_name: str) -> ContainerMeta | None:
        """By id prefix or name (Docker), or ``namespace/pod/container`` (CRI)."""
        for client in self._all():
            meta: ContainerMeta | None = client.find(id_or_name)
            if meta is not None:
                return meta
        return None

    def cri_for(self, container_id: str) -> Any:
        """The CRI client that knows this container (for StopContainer), or None."""
        for client in self.cri:
            if client.inspect(container_id) is not None:
                return client
        return None

    @property
    def available(self) -> bool:
        return any(bool(getattr(c, "available", False)) for c in self._all())

    def stats(self) -> dict[str, int]:
        """Each client's counters; ``runtime_available`` is 1 only while every runtime answers
        (one down is a degraded sensor), ``runtime_errors``/``runtime_lookups`` are summed."""
        out: dict[str, int] = {"runtime_errors": 0, "runtime_lookups": 0}
        for client in self._all():
            for k, v in client.stats().items():
                out[k] = out.get(k, 0) + v if k in ("runtime_errors", "runtime_lookups") else v
        out["runtime_available"] = int(all(bool(getattr(c, "available", False)) for c in self._all()))
        return out

    def close(self) -> None:
        for client in self._all():
            close = getattr(client, "close", None)
            if close is not None:
                close()


def describe(sockets: list[Socket]) -> list[tuple[Socket, bool]]:
    """Each candidate socket and whether it exists (for ``doctor``)."""
    return [(s, s.exists()) for s in sockets]
