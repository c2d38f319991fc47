"""Plain containerd namespaces (``ctr run``, nerdctl): metadata through containerd's own API.

CRI sees only the ``k8s.io`` namespace; a container started with ``ctr run`` lives in another
(``default`` unless told) and its cgroup is ``/<namespace>/<name>``. containerd's container
service names its image and labels, the image service the image's manifest digest, and the
namespace service which namespaces exist (so ``/<namespace>/<name>`` cgroups of other namespaces
are recognised too). Same socket as containerd's CRI, the namespace in the ``containerd-namespace``
gRPC header; the same deadlines and circuit as :class:`sensor.cri.CriRuntime`.
"""

from __future__ import annotations

import threading
import time
from typing import Final

from sensor.containers import CONTAINERD_NAMESPACES
from sensor.cri import Circuit
from sensor.runtime import ContainerMeta, normalize_image

CRI_NAMESPACE: Final = "k8s.io"  # CRI's own: asked through CRI, not here


class ContainerdRuntime:
    """Lookups by (namespace, id); never raise. ``namespaces`` is refreshed every ``poll_s``."""

    GRACE_S: Final = 60.0

    def __init__(self, socket: str, *, timeout_s: float = 1.0, poll_s: float = 5.0, follow: bool = True) -> None:
        import grpc

        from sensor.cri_proto.containerd import (
            containers_pb2,
            containers_pb2_grpc,
            images_pb2,
            images_pb2_grpc,
            namespaces_pb2,
            namespaces_pb2_grpc,
        )

        self.socket, self.poll_s = socket, poll_s
        self._channel = grpc.insecure_channel(socket if socket.startswith("unix:") else f"unix://{socket}")
        self._containers = containers_pb2_grpc.ContainersStub(self._channel)
        self._images = images_pb2_grpc.ImagesStub(self._channel)
        self._namespaces = namespaces_pb2_grpc.NamespacesStub(self._channel)
        self._pb = (containers_pb2, images_pb2, namespaces_pb2)
        self._circuit = Circuit(f"containerd at {socket}", timeout_s)
        self._cache: dict[tuple[str, str], ContainerMeta] = {}
        self._unknown: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self.namespaces: frozenset[str] = CONTAINERD_NAMESPACES
        self.lookups = 0
        if follow:
            threading.Thread(target=self._poll_loop, name="cgsentry-containerd", daemon=True).start()

    @property
    def available(self) -> bool:
        return self._circuit.available

    def inspect_in(self, namespace: str, container_id: str) -> ContainerMeta | None:
        key = (namespace, container_id)
        meta = self._cache.get(key)
        if meta is not None or namespace == CRI_NAMESPACE:
            return meta
        if time.monotonic() - self._unknown.get(key, -1e9) < self.GRACE_S:
            return None
        self.lookups += 1
        md = (("containerd-namespace", namespace),)
        reply = self._circuit.call(self._containers.Get, self._pb[0].GetContainerRequest(id=container_id), "Get", md)
        if reply is None or not reply.container.id:
            if self._circuit.available:
                self._unknown[key] = time.monotonic()
            return None
        c = reply.container
        digest = ""
        if c.image:
            image = self._circuit.call(self._images.Get, self._pb[1].GetImageRequest(name=c.image), "Get image", md)
            digest = image.image.target.digest if image is not None else ""
        meta = ContainerMeta(c.id, name=c.id, image=normalize_image(c.image), image_id=digest, runtime="containerd",
                             labels=dict(c.labels), image_digest=f"{c.image}@{digest}" if digest else "")
        self._cache[key] = meta
        return meta

    def inspect(self, container_id: str) -> ContainerMeta | None:
        """By id in ctr's namespace (``default``): the path normally says which namespace."""
        return self.inspect_in("default", container_id)

    def find(self, id_or_name: str) -> ContainerMeta | None:
        for (ns, cid), meta in list(self._cache.items()):
            if id_or_name in (cid, f"{ns}/{cid}"):
                return meta
        return None

    def refresh_namespaces(self) -> frozenset[str]:
        """Ask containerd which namespaces exist (CRI's own left out: its ids are 64 hex)."""
        reply = self._circuit.call(self._namespaces.List, self._pb[2].ListNamespacesRequest(), "List namespaces")
        if reply is not None:
            self.namespaces = frozenset(n.name for n in reply.namespaces if n.name != CRI_NAMESPACE) | (
                CONTAINERD_NAMESPACES)
        return self.namespaces

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self.refresh_namespaces()
            self._stop.wait(self.poll_s)

    def stats(self) -> dict[str, int]:
        return {"containerd_available": int(self.available), "containerd_errors": self._circuit.errors,
                "containerd_cached": len(self._cache), "runtime_errors": self._circuit.errors,
                "runtime_lookups": self.lookups}

    def close(self) -> None:
        self._stop.set()
        self._channel.close()
