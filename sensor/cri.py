"""CRI runtimes (containerd's CRI plugin, CRI-O): metadata and stop through the CRI v1 gRPC API.

The kubelet's own API, on the runtime's unix socket: ``ListContainers`` and ``ListPodSandbox``
fill the cache (a poller thread, every ``poll_s``: containerd 1.6 has no ``GetContainerEvents``),
and a container seen in an event before the poller saw it is resolved on demand with
``ContainerStatus`` and ``PodSandboxStatus`` — so a short-lived or init container still gets its
pod, labels and image digest. Every call has a deadline of ``timeout_s``; any failure other than
"not found" (socket gone, runtime hung, garbage on the wire) opens a circuit for ``BACKOFF_S``,
during which lookups answer None at once: the event path waits at most one ``timeout_s`` per
``BACKOFF_S`` on a broken socket, and the event keeps what its cgroup path says.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Final, Mapping, TypeVar

from sensor.runtime import NAMESPACE_LABEL, POD_LABEL, ContainerMeta, normalize_image

if TYPE_CHECKING:
    from sensor.cri_proto.v1 import cri_pb2 as pb

log = logging.getLogger(__name__)

POD_UID_LABEL: Final = "io.kubernetes.pod.uid"
CONTAINER_LABEL: Final = "io.kubernetes.container.name"
T = TypeVar("T")


class Circuit:
    """Calls to a runtime's API with a deadline. "Not found" answers None; any other failure
    (socket gone, runtime hung, garbage on the wire) answers None too and opens the circuit for
    ``BACKOFF_S``, during which calls answer None without reaching the socket. ``available`` until a
    call fails. gRPC calls go through :meth:`call`; any other transport (podman's REST API) through
    :meth:`run`."""

    BACKOFF_S: Final = 5.0

    def __init__(self, what: str, timeout_s: float) -> None:
        self.what, self.timeout_s = what, timeout_s
        self.available = True
        self.errors = 0
        self.down_until = 0.0

    def call(self, fn: Any, request: Any, method: str, metadata: tuple[tuple[str, str], ...] = ()) -> Any:
        import grpc

        if time.monotonic() < self.down_until:
            return None
        try:
            reply = fn(request, timeout=self.timeout_s, metadata=metadata or None)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            self._degrade(f"{method}: {err.code().name} {err.details() or ''}".strip())
            return None
        except Exception as err:  # noqa: BLE001 - garbage on the wire: degrade, counted
            self._degrade(f"{method}: {type(err).__name__}: {err}")
            return None
        self.available = True
        return reply

    def run(self, thunk: Callable[[], T | None]) -> T | None:
        """``thunk()``, which keeps its own deadline and answers None for "not found"; None at once
        while the circuit is open, and None (opening it) if the thunk raises."""
        if time.monotonic() < self.down_until:
            return None
        try:
            result = thunk()
        except Exception as err:  # noqa: BLE001 - any transport or parse failure: degrade, counted
            self._degrade(f"{type(err).__name__}: {err}")
            return None
        if result is not None:  # "not found" says the runtime answers, but not that it recovered
            self.available = True
        return result

    def _degrade(self, why: str) -> None:
        self.errors += 1
        if self.available:
            log.warning("%s unavailable (%s): attributing its containers by cgroup only", self.what, why[:200])
        self.available = False
        self.down_until = time.monotonic() + self.BACKOFF_S


def inspect_cached(container_id: str, cache: Mapping[str, ContainerMeta], unknown: Mapping[str, float],
                   circuit: Circuit, lookup: Callable[[str], ContainerMeta | None],
                   grace_s: float) -> ContainerMeta | None:
    """A runtime's metadata for one container, asked on demand: the cached answer if there is one;
    None at once while ``circuit`` is open or for ``grace_s`` after the runtime said it does not
    know the id (``lookup`` records that in ``unknown``); else ``lookup``'s answer."""
    meta = cache.get(container_id)
    if meta is not None:
        return meta
    now = time.monotonic()
    if now < circuit.down_until or now - unknown.get(container_id, -1e9) < grace_s:
        return None
    return lookup(container_id)


class CriRuntime:
    """One CRI runtime socket. Lookups never raise; :meth:`stop_container` returns an error text or ""."""

    GRACE_S: Final = 60.0  # a container the runtime denied is not asked again this long

    def __init__(self, socket: str, *, name: str = "containerd", timeout_s: float = 1.0,
                 poll_s: float = 2.0, follow: bool = True) -> None:
        import grpc

        from sensor.cri_proto.v1 import cri_pb2, cri_pb2_grpc

        self.socket, self.name, self.timeout_s, self.poll_s = socket, name, timeout_s, poll_s
        self._pb = cri_pb2
        self._grpc = grpc
        target = socket if "://" in socket or socket.startswith("unix:") else f"unix://{socket}"
        self._channel = grpc.insecure_channel(target)
        self._stub = cri_pb2_grpc.RuntimeServiceStub(self._channel)
        self._cache: dict[str, ContainerMeta] = {}
        self._pods: dict[str, Any] = {}  # sandbox id -> PodSandboxStatus or PodSandbox
        self._unknown: dict[str, float] = {}
        self._seen_gone: dict[str, float] = {}  # id -> when the poller first missed it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._circuit = Circuit(f"CRI runtime {name} at {socket}", timeout_s)
        self.lookups = self.polls = 0
        self.version = ""
        if follow:
            threading.Thread(target=self._poll_loop, name=f"cgsentry-cri-{name}", daemon=True).start()

    # -- the Runtime protocol --------------------------------------------------------------------
    def inspect(self, container_id: str) -> ContainerMeta | None:
        return inspect_cached(container_id, self._cache, self._unknown, self._circuit, self._status, self.GRACE_S)

    def find(self, id_or_name: str) -> ContainerMeta | None:
        """By id prefix, container name, or ``namespace/pod/container``."""
        for meta in list(self._cache.values()):
            if id_or_name in (meta.name, f"{meta.namespace}/{meta.pod}/{meta.name}") or (
                    len(id_or_name) >= 4 and meta.id.startswith(id_or_name)):
                return meta
        return None

    def stats(self) -> dict[str, int]:
        return {f"cri_{self.name}_available": int(self.available), f"cri_{self.name}_errors": self.errors,
                f"cri_{self.name}_lookups": self.lookups, f"cri_{self.name}_cached": len(self._cache),
                "runtime_errors": self.errors, "runtime_lookups": self.lookups}

    def close(self) -> None:
        self._stop.set()
        self._channel.close()

    # -- calls -----------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self._circuit.available

    @property
    def errors(self) -> int:
        return self._circuit.errors

    @property
    def _down_until(self) -> float:
        return self._circuit.down_until

    def _call(self, method: str, request: Any) -> Any:
        return self._circuit.call(getattr(self._stub, method), request, method)

    def probe(self) -> str:
        """The runtime's name and version, or raise OSError with why not (for ``doctor``)."""
        try:
            reply = self._stub.Version(self._pb.VersionRequest(version="v1"), timeout=self.timeout_s)
        except Exception as err:  # noqa: BLE001 - reported to the operator
            detail = err.details() if isinstance(err, self._grpc.RpcError) else str(err)
            raise OSError(str(detail or type(err).__name__).splitlines()[0][:200]) from None
        self.version = f"{reply.runtime_name} {reply.runtime_version} (CRI {reply.runtime_api_version})"
        return self.version

    def _status(self, container_id: str) -> ContainerMeta | None:
        """On demand: ContainerStatus (verbose, for the sandbox id) and the pod's status."""
        self.lookups += 1
        pb = self._pb
        reply = self._call("ContainerStatus", pb.ContainerStatusRequest(container_id=container_id, verbose=True))
        if reply is None or not reply.status.id:
            if time.monotonic() >= self._down_until:
                self._unknown[container_id] = time.monotonic()
            return None
        sandbox_id = _sandbox_of(reply.info.get("info", ""))
        pod = self._pod(sandbox_id)
        st = reply.status
        return self._remember(_meta(st.id, st.metadata.name, st.image.image, st.image_ref,
                                    st.image_id, st.labels, st.annotations, pod, self.name,
                                    started_ns=st.started_at))

    def _pod(self, sandbox_id: str) -> Any:
        if not sandbox_id:
            return None
        pod = self._pods.get(sandbox_id)
        if pod is None:
            reply = self._call("PodSandboxStatus", self._pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id))
            pod = reply.status if reply is not None else None
            if pod is not None:
                self._pods[sandbox_id] = pod
        return pod

    def _remember(self, meta: ContainerMeta) -> ContainerMeta:
        with self._lock:
            self._cache[meta.id] = meta
        self._unknown.pop(meta.id, None)
        return meta

    # -- the poller ------------------------------------------------------------------------------
    def poll_once(self) -> int:
        """List every sandbox and container once; returns how many containers are cached."""
        self.polls += 1
        pods = self._call("ListPodSandbox", self._pb.ListPodSandboxRequest())
        if pods is None:
            return len(self._cache)
        self._pods.update({p.id: p for p in pods.items})
        listed = self._call("ListContainers", self._pb.ListContainersRequest())
        if listed is None:
            return len(self._cache)
        fresh = {}
        for c in listed.containers:
            fresh[c.id] = _meta(c.id, c.metadata.name, c.image.image, c.image_ref, c.image_id,
                                c.labels, c.annotations, self._pods.get(c.pod_sandbox_id), self.name,
                                started_ns=c.created_at)
        with self._lock:
            self._cache.update(fresh)
            # forget containers gone from the runtime, after a grace (late events still resolve)
            self._expire(set(fresh))
        return len(self._cache)

    def _expire(self, live: set[str]) -> None:
        now = time.monotonic()
        for cid in list(self._cache):
            if cid in live:
                self._seen_gone.pop(cid, None)
            elif now - self._seen_gone.setdefault(cid, now) > self.GRACE_S:
                del self._cache[cid]
                self._seen_gone.pop(cid, None)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.poll_s)

    # -- response --------------------------------------------------------------------------------
    def stop_container(self, container_id: str, timeout_s: int = 0) -> str:
        """CRI StopContainer (``timeout_s`` 0: SIGKILL at once); "" on success, else the error."""
        try:
            self._stub.StopContainer(self._pb.StopContainerRequest(container_id=container_id, timeout=timeout_s),
                                     timeout=max(self.timeout_s, timeout_s + 5.0))
        except self._grpc.RpcError as err:
            return f"{err.code().name}: {(err.details() or '').splitlines()[0][:200] if err.details() else ''}"
        except Exception as err:  # noqa: BLE001 - reported in the action's result
            return f"{type(err).__name__}: {err}"[:200]
        return ""


def _sandbox_of(info_json: str) -> str:
    """The sandbox id from ContainerStatus's verbose info (containerd: ``sandboxID``)."""
    import json

    try:
        info = json.loads(info_json) if info_json else {}
    except ValueError:
        return ""
    return str(info.get("sandboxID", "")) if isinstance(info, dict) else ""


def _meta(cid: str, name: str, image: str, image_ref: str, image_id: str, labels: Mapping[str, str],
          annotations: Mapping[str, str], pod: pb.PodSandboxStatus | pb.PodSandbox | None, runtime: str,
          started_ns: int = 0) -> ContainerMeta:
    """One ContainerMeta from what CRI says about a container and (maybe) its pod.

    ``image_id`` is the image's config digest (``sha256:...``, as Docker's image id); ``image_digest``
    the repository digest (``repo@sha256:...``) when the runtime knows one. The labels are the pod's
    (what Kubernetes selectors use); the container's own labels only name it.
    """
    clabels = dict(labels)
    pod_name = pod.metadata.name if pod is not None else clabels.get(POD_LABEL, "")
    namespace = pod.metadata.namespace if pod is not None else clabels.get(NAMESPACE_LABEL, "")
    pod_uid = pod.metadata.uid if pod is not None else clabels.get(POD_UID_LABEL, "")
    digest = image_ref if "@" in image_ref else ""
    if not image_id:
        image_id = image_ref if image_ref.startswith("sha256:") else ""
    image = "" if image.startswith("sha256:") else normalize_image(image)  # an id is not a name
    return ContainerMeta(
        id=cid, name=name or clabels.get(CONTAINER_LABEL, ""), image=image,
        image_id=image_id, runtime=runtime, labels=dict(pod.labels) if pod is not None else {},
        pod=pod_name, namespace=namespace, pod_uid=pod_uid,
        annotations={**(dict(pod.annotations) if pod is not None else {}), **dict(annotations)},
        image_digest=digest, started_ns=started_ns)
