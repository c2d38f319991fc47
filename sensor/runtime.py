"""Container runtime metadata: name, image, image id, labels, pod — through the runtime's API.

:class:`DockerRuntime` asks the Docker Engine (docker SDK) and follows its event stream, so a
container that lives for one second is inspected at its ``start`` event and still gets its image.
A missing or dead socket degrades to cgroup-only attribution, counted in :meth:`stats`, never an
exception or a hang (every call has a timeout).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ContainerMeta:
    id: str
    name: str = ""
    image: str = ""  # repo:tag
    image_id: str = ""  # sha256:...
    runtime: str = "docker"
    labels: Mapping[str, str] = field(default_factory=dict)
    pod: str = ""
    namespace: str = ""
    pid: int = 0


class Runtime(Protocol):
    def inspect(self, container_id: str) -> ContainerMeta | None: ...

    def stats(self) -> dict[str, int]: ...


class NullRuntime:
    """No runtime API: attribution comes from the cgroup path alone."""

    def inspect(self, container_id: str) -> ContainerMeta | None:
        return None

    def stats(self) -> dict[str, int]:
        return {}


def normalize_image(ref: str) -> str:
    """``busybox`` -> ``busybox:latest``; digests and explicit tags are kept as given."""
    if not ref or "@" in ref or ref.startswith("sha256:"):
        return ref
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last else f"{ref}:latest"


def meta_from_attrs(attrs: Mapping[str, Any]) -> ContainerMeta:
    """Build metadata from a Docker inspect document."""
    config = attrs.get("Config") or {}
    labels = dict(config.get("Labels") or {})
    return ContainerMeta(
        id=attrs.get("Id", ""),
        name=str(attrs.get("Name", "")).lstrip("/"),
        image=normalize_image(config.get("Image", "") or ""),
        image_id=attrs.get("Image", "") or "",
        labels=labels,
        pod=labels.get("io.kubernetes.pod.name", ""),
        namespace=labels.get("io.kubernetes.pod.namespace", ""),
        pid=int((attrs.get("State") or {}).get("Pid", 0) or 0),
    )


class DockerRuntime:
    """Docker Engine metadata with a cache fed by inspect calls and the event stream."""

    GRACE_S = 60.0  # keep destroyed containers this long: late events still resolve

    def __init__(self, client: Any = None, timeout_s: float = 3.0, follow_events: bool = True) -> None:
        self._cache: dict[str, ContainerMeta] = {}
        self._gone: dict[str, float] = {}
        self._lock = threading.Lock()
        self.errors = 0
        self.lookups = 0
        self.available = True
        self._client = client if client is not None else self._connect(timeout_s)
        if self._client is not None and follow_events:
            threading.Thread(target=self._follow, name="cgsentry-docker-events", daemon=True).start()

    def _connect(self, timeout_s: float) -> Any:
        try:
            import docker

            client = docker.from_env(timeout=timeout_s)
            client.ping()
            return client
        except Exception as err:  # noqa: BLE001 - any failure: degrade, counted
            self.available = False
            self.errors += 1
            log.warning("Docker API unavailable (%s): cgroup-only attribution", err)
            return None

    def inspect(self, container_id: str) -> ContainerMeta | None:
        with self._lock:
            meta = self._cache.get(container_id)
        if meta is not None or self._client is None:
            return meta
        self.lookups += 1
        try:
            attrs = self._client.api.inspect_container(container_id)
        except Exception:  # noqa: BLE001 - gone mid-lookup, or daemon trouble
            self.errors += 1
            return None
        return self._remember(meta_from_attrs(attrs))

    def _remember(self, meta: ContainerMeta) -> ContainerMeta:
        with self._lock:
            self._cache[meta.id] = meta
        return meta

    def _follow(self) -> None:
        """Inspect containers as they start; expire destroyed ones after a grace period."""
        while True:
            try:
                for ev in self._client.events(decode=True, filters={"type": "container"}):
                    self._on_event(ev)
            except Exception:  # noqa: BLE001 - stream broke: back off and resubscribe
                self.errors += 1
                time.sleep(1.0)

    def _on_event(self, ev: Mapping[str, Any]) -> None:
        action, cid = ev.get("Action", ""), ev.get("id", "")
        if action in ("create", "start") and cid and cid not in self._cache:
            self.inspect(cid)
        elif action == "destroy" and cid:
            self._gone[cid] = time.monotonic()
        now = time.monotonic()
        for gone, at in list(self._gone.items()):
            if now - at > self.GRACE_S:
                with self._lock:
                    self._cache.pop(gone, None)
                del self._gone[gone]

    def find(self, id_or_name: str) -> ContainerMeta | None:
        """Look a container up by id prefix or name (API call)."""
        if self._client is None:
            return None
        try:
            return self._remember(meta_from_attrs(self._client.api.inspect_container(id_or_name)))
        except Exception:  # noqa: BLE001
            return None

    def stats(self) -> dict[str, int]:
        return {"runtime_errors": self.errors, "runtime_lookups": self.lookups,
                "runtime_available": int(self.available), "runtime_cached": len(self._cache)}
