"""Container runtime metadata: name, image, image id, labels, pod — through the runtime's API.

:class:`DockerRuntime` asks the Docker Engine (docker SDK) and follows its event stream, so a
container that lives for one second is inspected at its ``create``/``start`` event and still gets
its image. A missing or dead socket degrades to cgroup-only attribution, counted in :meth:`stats`,
never an exception or a hang (every request has a timeout; the event stream runs in a daemon
thread).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Mapping, Protocol

log = logging.getLogger(__name__)

POD_LABEL: Final = "io.kubernetes.pod.name"
NAMESPACE_LABEL: Final = "io.kubernetes.pod.namespace"


@dataclass(frozen=True, slots=True)
class ContainerMeta:
    """What the runtime says about one container. ``started_ns`` is wall-clock ns (0 = unknown)."""

    id: str
    name: str = ""
    image: str = ""  # repo:tag
    image_id: str = ""  # sha256:...
    runtime: str = "docker"
    labels: Mapping[str, str] = field(default_factory=dict)
    pod: str = ""
    namespace: str = ""
    pid: int = 0
    started_ns: int = 0
    pod_uid: str = ""  # Kubernetes pod uid (CRI runtimes)
    annotations: Mapping[str, str] = field(default_factory=dict)  # pod and container annotations (CRI)
    image_digest: str = ""  # repository digest, repo@sha256:... (when the runtime knows one)


class Runtime(Protocol):
    """A container runtime's metadata API (or none). Implementations never raise on lookups."""

    def inspect(self, container_id: str) -> ContainerMeta | None:
        """Metadata of a container by full id; None if the runtime does not know it (any more)."""
        ...

    def find(self, id_or_name: str) -> ContainerMeta | None:
        """Metadata of a container by id prefix or name; None if unknown."""
        ...

    def stats(self) -> dict[str, int]: ...


class NullRuntime:
    """No runtime API: attribution comes from the cgroup path alone."""

    def inspect(self, container_id: str) -> ContainerMeta | None:
        return None

    def find(self, id_or_name: str) -> ContainerMeta | None:
        return None

    def stats(self) -> dict[str, int]:
        return {"runtime_available": 0}


def normalize_image(ref: str) -> str:
    """``busybox`` -> ``busybox:latest``; digests and explicit tags are kept as given."""
    if not ref or "@" in ref or ref.startswith("sha256:"):
        return ref
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last else f"{ref}:latest"


def parse_docker_time(text: str) -> int:
    """Docker's RFC 3339 timestamps (nanosecond fraction) -> wall-clock ns; 0 if unset/unparsable."""
    if not text or text.startswith("0001-"):
        return 0
    head, _, frac = text.rstrip("Z").partition(".")
    offset = ""
    for sign in ("+", "-"):
        if sign in frac:
            frac, offset = frac.split(sign, 1)[0], sign + frac.split(sign, 1)[1]
    try:
        base = datetime.fromisoformat(head + (offset or "+00:00"))
    except ValueError:
        return 0
    digits = (frac + "000000000")[:9] if frac.isdigit() else "0"
    return int(base.timestamp()) * 1_000_000_000 + int(digits)


def meta_from_attrs(attrs: Mapping[str, Any]) -> ContainerMeta:
    """Build metadata from a Docker inspect document (``docker inspect`` JSON)."""
    config = attrs.get("Config") or {}
    state = attrs.get("State") or {}
    labels = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
    return ContainerMeta(
        id=str(attrs.get("Id", "")),
        name=str(attrs.get("Name", "")).lstrip("/"),
        image=normalize_image(str(config.get("Image", "") or "")),
        image_id=str(attrs.get("Image", "") or ""),
        labels=labels,
        pod=labels.get(POD_LABEL, ""),
        namespace=labels.get(NAMESPACE_LABEL, ""),
        pid=int(state.get("Pid", 0) or 0),
        started_ns=parse_docker_time(str(state.get("StartedAt", "") or "")),
    )


class DockerRuntime:
    """Docker Engine metadata with a cache fed by inspect calls and the event stream.

    Failure policy: a container the daemon does not know (removed mid-lookup) is remembered as
    unknown for ``GRACE_S`` so the caller keeps what the cgroup path says; any other API failure
    (socket gone, daemon hung) opens a circuit for ``BACKOFF_S`` during which lookups return None at
    once, so the event loop never waits on a dead daemon more than one ``timeout_s``.
    """

    GRACE_S: Final = 60.0  # keep destroyed containers this long: late events still resolve
    BACKOFF_S: Final = 5.0

    def __init__(self, client: Any = None, timeout_s: float = 3.0, follow_events: bool = True) -> None:
        self._cache: dict[str, ContainerMeta] = {}
        self._unknown: dict[str, float] = {}  # id -> monotonic time the daemon said "no such container"
        self._gone: dict[str, float] = {}  # id -> monotonic time of its destroy event
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stream: Any = None
        self._down_until = 0.0
        self.errors = 0
        self.lookups = 0
        self.event_count = 0
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
            self._degrade(err)
            return None

    def _degrade(self, err: BaseException) -> None:
        self.errors += 1
        if self.available:
            log.warning("Docker API unavailable (%s): attributing containers by cgroup only "
                        "(start dockerd or set DOCKER_HOST)", str(err)[:200])
        self.available = False
        self._down_until = time.monotonic() + self.BACKOFF_S

    def inspect(self, container_id: str) -> ContainerMeta | None:
        meta = self._cache.get(container_id)
        if meta is not None or self._client is None:
            return meta
        now = time.monotonic()
        if now < self._down_until or now - self._unknown.get(container_id, -1e9) < self.GRACE_S:
            return None
        return self._inspect_api(container_id)

    def _inspect_api(self, id_or_name: str) -> ContainerMeta | None:
        self.lookups += 1
        try:
            attrs = self._client.api.inspect_container(id_or_name)
        except Exception as err:  # noqa: BLE001 - classified below
            if type(err).__name__ == "NotFound":
                self._unknown[id_or_name] = time.monotonic()
            else:
                self._degrade(err)
            return None
        self.available = True
        return self._remember(meta_from_attrs(attrs))

    def _remember(self, meta: ContainerMeta) -> ContainerMeta:
        with self._lock:
            self._cache[meta.id] = meta
        self._unknown.pop(meta.id, None)
        return meta

    def find(self, id_or_name: str) -> ContainerMeta | None:
        """Look a container up by id prefix or name (cache first, then the API)."""
        for meta in list(self._cache.values()):
            if meta.name == id_or_name or (len(id_or_name) >= 4 and meta.id.startswith(id_or_name)):
                return meta
        if self._client is None or time.monotonic() < self._down_until:
            return None
        return self._inspect_api(id_or_name)

    def _follow(self) -> None:
        """Inspect containers as they are created/started; resubscribe (without a gap) on errors."""
        # Start from "now" as Docker sees it: a container started between our subscribe call and
        # the daemon accepting it is replayed instead of missed.
        since: int | None = int(time.time()) - 1
        while not self._stop.is_set():
            try:
                self._stream = self._client.events(decode=True, filters={"type": "container"},
                                                   since=since)
                for ev in self._stream:
                    since = int(ev.get("time", 0) or 0) or since
                    self._on_event(ev)
            except Exception as err:  # noqa: BLE001 - stream broke: back off and resubscribe
                if self._stop.is_set():
                    return
                self._degrade(err)
            self._stop.wait(1.0)

    def _on_event(self, ev: Mapping[str, Any]) -> None:
        self.event_count += 1
        action, cid = str(ev.get("Action", "")), str(ev.get("id", ""))
        if not cid:
            return
        if action in ("create", "start") and cid not in self._cache:
            self._unknown.pop(cid, None)
            if self._inspect_api(cid) is None:
                self._remember_from_event(cid, ev)
        elif action == "destroy":
            self._gone[cid] = time.monotonic()
        self._expire()

    def _remember_from_event(self, cid: str, ev: Mapping[str, Any]) -> None:
        """The container is already gone (``--rm``): keep what the event itself says."""
        attrs = (ev.get("Actor") or {}).get("Attributes") or {}
        image = str(attrs.get("image", ""))
        image_id = image if image.startswith("sha256:") else ""
        if image and not image_id:
            try:
                image_id = str(self._client.api.inspect_image(image).get("Id", ""))
            except Exception:  # noqa: BLE001 - image removed too: keep the name only
                self.errors += 1
        labels = {str(k): str(v) for k, v in attrs.items() if k not in ("image", "name")}
        self._remember(ContainerMeta(cid, str(attrs.get("name", "")), normalize_image(image), image_id,
                                     labels=labels, pod=labels.get(POD_LABEL, ""),
                                     namespace=labels.get(NAMESPACE_LABEL, "")))

    def _expire(self) -> None:
        now = time.monotonic()
        for cid, at in list(self._gone.items()):
            if now - at > self.GRACE_S:
                with self._lock:
                    self._cache.pop(cid, None)
                del self._gone[cid]
        for cid, at in list(self._unknown.items()):
            if now - at > self.GRACE_S:
                self._unknown.pop(cid, None)

    def close(self) -> None:
        """Stop following the event stream."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001, S110 - closing a broken stream: nothing to report
                pass

    def stats(self) -> dict[str, int]:
        return {"runtime_errors": self.errors, "runtime_lookups": self.lookups,
                "runtime_available": int(self.available), "runtime_cached": len(self._cache),
                "runtime_events": self.event_count}
