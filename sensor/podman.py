"""Rootful podman: metadata through the libpod REST API on podman's service socket.

podman has no daemon; its API exists only while ``podman system service`` runs (a systemd socket
unit on most hosts, ``/run/podman/podman.sock``). Without it, podman's containers keep what their
``libpod-<id>`` cgroup path says. One inspect per container (``GET /libpod/containers/{id}/json``),
cached; the failure policy is the CRI runtimes' (:class:`sensor.cri.Circuit`, the same cache and
grace): a deadline per request, and any failure but 404 opens a circuit for ``BACKOFF_S`` during
which lookups answer None without touching the socket.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from typing import Any, Final
from urllib.parse import quote

from sensor.cri import Circuit, inspect_cached
from sensor.runtime import ContainerMeta, normalize_image

log = logging.getLogger(__name__)
API: Final = "/v4.0.0/libpod"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class PodmanRuntime:
    """Lookups never raise; ``available`` until a request fails."""

    BACKOFF_S: Final = Circuit.BACKOFF_S
    GRACE_S: Final = 60.0
    MAX_BYTES: Final = 4 << 20  # an inspect document larger than this is garbage, not parsed

    def __init__(self, socket_path: str, timeout_s: float = 1.0) -> None:
        self.socket, self.timeout_s = socket_path, timeout_s
        self._cache: dict[str, ContainerMeta] = {}
        self._unknown: dict[str, float] = {}
        self._circuit = Circuit(f"podman API at {socket_path}", timeout_s)
        self.lookups = 0

    @property
    def available(self) -> bool:
        return self._circuit.available

    @property
    def errors(self) -> int:
        return self._circuit.errors

    def _get(self, path: str) -> tuple[int, Any]:
        """(HTTP status, parsed JSON or None); raises OSError/ValueError on transport or garbage."""
        conn = _UnixHTTPConnection(self.socket, self.timeout_s)
        try:
            conn.request("GET", API + path)
            reply = conn.getresponse()
            body = reply.read(self.MAX_BYTES + 1)
        except http.client.HTTPException as err:
            raise ValueError(f"{type(err).__name__}: {err}") from None
        finally:
            conn.close()
        if len(body) > self.MAX_BYTES:
            raise ValueError("reply too large")
        return reply.status, json.loads(body) if reply.status == 200 else None

    def inspect(self, container_id: str) -> ContainerMeta | None:
        return inspect_cached(container_id, self._cache, self._unknown, self._circuit, self._inspect, self.GRACE_S)

    def _inspect(self, container_id: str) -> ContainerMeta | None:
        self.lookups += 1
        meta = self._circuit.run(lambda: self._container(container_id))
        if meta is not None:
            self._cache[meta.id] = meta
        return meta

    def _container(self, container_id: str) -> ContainerMeta | None:
        """One inspect; None on 404 (remembered as unknown), raises on any other failure."""
        status, doc = self._get(f"/containers/{quote(container_id, safe='')}/json")
        if status == 404:
            self._unknown[container_id] = time.monotonic()
            return None
        if status != 200 or not isinstance(doc, dict):
            raise ValueError(f"HTTP {status}")
        return meta_from_libpod(doc)

    def find(self, id_or_name: str) -> ContainerMeta | None:
        for meta in list(self._cache.values()):
            if meta.name == id_or_name or (len(id_or_name) >= 4 and meta.id.startswith(id_or_name)):
                return meta
        return None

    def probe(self) -> str:
        """podman's version, or raise OSError with why not (for ``doctor``)."""
        try:
            status, doc = self._get("/version")
        except ValueError as err:
            raise OSError(str(err)) from None
        if status != 200 or not isinstance(doc, dict):
            raise OSError(f"HTTP {status}")
        return f"podman {doc.get('Version', '?')} (libpod API)"

    def stats(self) -> dict[str, int]:
        return {"podman_available": int(self.available), "podman_errors": self.errors,
                "podman_cached": len(self._cache), "runtime_errors": self.errors, "runtime_lookups": self.lookups}


def meta_from_libpod(doc: dict[str, Any]) -> ContainerMeta:
    """Metadata from a libpod inspect document (``podman inspect`` JSON of one container)."""
    config = doc.get("Config") or {}
    labels = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
    image = str(doc.get("ImageName", "") or "")
    digest = str(doc.get("ImageDigest", "") or "")
    return ContainerMeta(
        id=str(doc["Id"]), name=str(doc.get("Name", "")), image=normalize_image(image),
        image_id=_sha(str(doc.get("Image", "") or "")), runtime="podman", labels=labels,
        pid=int((doc.get("State") or {}).get("Pid", 0) or 0),
        image_digest=f"{image.rsplit(':', 1)[0]}@{digest}" if image and digest else "")


def _sha(image_id: str) -> str:
    """libpod gives image ids as bare hex; Docker and CRI as sha256:hex."""
    return image_id if not image_id or image_id.startswith("sha256:") else f"sha256:{image_id}"
