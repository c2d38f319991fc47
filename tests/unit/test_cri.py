"""The CRI client against an in-process CRI server and against sockets that hang, answer garbage
or are gone: lookups answer None within the deadline and then at once, never raise."""

from __future__ import annotations

import http.server
import json
import socket
import socketserver
import threading
from concurrent import futures
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest

from sensor.containerd import ContainerdRuntime
from sensor.containers import CgroupIndex, ContainerRef
from sensor.cri import CriRuntime
from sensor.cri_proto.containerd import (
    containers_pb2,
    containers_pb2_grpc,
    images_pb2,
    images_pb2_grpc,
    namespaces_pb2,
    namespaces_pb2_grpc,
)
from sensor.cri_proto.v1 import cri_pb2 as pb
from sensor.cri_proto.v1 import cri_pb2_grpc
from sensor.enrich import Enricher
from sensor.events import Event
from sensor.podman import PodmanRuntime
from sensor.proctable import ProcessTable
from sensor.response import Responder
from sensor.runtimes import MultiRuntime, parse_socket

CID = "c" * 64
SID = "5" * 64
UID = "6f0c4e2a-1b2c-4d5e-8f90-123456789abc"


class FakeCri(cri_pb2_grpc.RuntimeServiceServicer):  # type: ignore[misc]
    """One pod with one container; counts the calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.stopped: list[tuple[str, int]] = []

    def _pod(self) -> Any:
        return pb.PodSandboxStatus(id=SID, metadata=pb.PodSandboxMetadata(name="web-1", uid=UID, namespace="payments"),
                                   labels={"app": "web"}, annotations={"a": "1"})

    def ContainerStatus(self, request: Any, context: Any) -> Any:
        self.calls.append("ContainerStatus")
        if request.container_id != CID:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such container")
        st = pb.ContainerStatus(id=CID, metadata=pb.ContainerMetadata(name="app"),
                                image=pb.ImageSpec(image="docker.io/library/nginx:1.27"),
                                image_ref="docker.io/library/nginx@sha256:" + "d" * 64,
                                labels={"io.kubernetes.container.name": "app"})
        return pb.ContainerStatusResponse(status=st, info={"info": json.dumps({"sandboxID": SID, "pid": 7})})

    def PodSandboxStatus(self, request: Any, context: Any) -> Any:
        self.calls.append("PodSandboxStatus")
        return pb.PodSandboxStatusResponse(status=self._pod())

    def ListPodSandbox(self, request: Any, context: Any) -> Any:
        self.calls.append("ListPodSandbox")
        p = self._pod()
        return pb.ListPodSandboxResponse(items=[pb.PodSandbox(id=SID, metadata=p.metadata, labels=p.labels)])

    def ListContainers(self, request: Any, context: Any) -> Any:
        self.calls.append("ListContainers")
        return pb.ListContainersResponse(containers=[pb.Container(
            id=CID, pod_sandbox_id=SID, metadata=pb.ContainerMetadata(name="app"),
            image=pb.ImageSpec(image="docker.io/library/nginx:1.27"), image_ref="sha256:" + "e" * 64)])

    def StopContainer(self, request: Any, context: Any) -> Any:
        self.stopped.append((request.container_id, request.timeout))
        return pb.StopContainerResponse()


@pytest.fixture
def cri(tmp_path: Path) -> Iterator[tuple[FakeCri, str]]:
    fake = FakeCri()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    cri_pb2_grpc.add_RuntimeServiceServicer_to_server(fake, server)
    path = str(tmp_path / "cri.sock")
    server.add_insecure_port(f"unix://{path}")
    server.start()
    yield fake, path
    server.stop(0)


def test_a_container_first_seen_in_an_event_is_resolved_on_demand(cri: tuple[FakeCri, str]) -> None:
    fake, path = cri
    rt = CriRuntime(path, follow=False)
    meta = rt.inspect(CID)
    assert meta is not None
    assert (meta.name, meta.pod, meta.namespace, meta.pod_uid) == ("app", "web-1", "payments", UID)
    assert dict(meta.labels) == {"app": "web"} and dict(meta.annotations)["a"] == "1"
    assert meta.image == "docker.io/library/nginx:1.27" and meta.image_digest.endswith("d" * 64)
    assert rt.inspect(CID) is meta and fake.calls == ["ContainerStatus", "PodSandboxStatus"]  # cached
    assert rt.inspect("f" * 64) is None and rt.inspect("f" * 64) is None  # unknown: asked once
    assert fake.calls.count("ContainerStatus") == 2
    assert rt.find("payments/web-1/app") is meta
    rt.close()


def test_the_poller_lists_pods_and_containers(cri: tuple[FakeCri, str]) -> None:
    fake, path = cri
    rt = CriRuntime(path, follow=False)
    assert rt.poll_once() == 1
    meta = rt.inspect(CID)
    assert meta is not None and meta.pod == "web-1" and meta.image_id == "sha256:" + "e" * 64
    assert "ContainerStatus" not in fake.calls
    rt.close()


def test_stop_container_and_the_responder_says_cri(cri: tuple[FakeCri, str]) -> None:
    fake, path = cri
    runtime = MultiRuntime(None, [CriRuntime(path, follow=False)])
    res = Responder(None, cri_for=runtime.cri_for).kill(CID, "")
    assert res.ok and res.method == "cri.StopContainer" and fake.stopped == [(CID, 0)]
    runtime.close()


def _serve(path: str, reply: bytes | None) -> socket.socket:
    """A unix socket that accepts and then says nothing (reply None) or writes garbage."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)

    def loop() -> None:
        conns = []
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conns.append(conn)
            if reply is not None:
                try:
                    conn.sendall(reply)
                except OSError:
                    pass

    threading.Thread(target=loop, daemon=True).start()
    return srv


@pytest.mark.parametrize("reply", [None, b"HTTP/1.1 200 OK\r\n\r\n" + bytes(range(256)) * 4])
def test_a_hanging_or_garbage_socket_costs_one_deadline_then_nothing(tmp_path: Path, reply: bytes | None) -> None:
    """The first lookup ends at its deadline (or at once on garbage); while the circuit is open
    the next 50 reach no socket at all (the lookup count stays at one)."""
    path = str(tmp_path / "bad.sock")
    srv = _serve(path, reply)
    rt = CriRuntime(path, timeout_s=0.3, follow=False)
    assert rt.inspect(CID) is None and rt.errors == 1 and not rt.available
    assert all(rt.inspect(f"{i:064x}") is None for i in range(50))
    assert rt.lookups == 1 and rt.errors == 1
    assert rt.poll_once() == 0
    rt.close()
    srv.close()


def test_a_vanished_socket_leaves_the_event_with_its_cgroup_path(tmp_path: Path) -> None:
    (tmp_path / "cg" / "kubepods" / "besteffort" / f"pod{UID}" / CID).mkdir(parents=True)
    (tmp_path / "proc").mkdir()
    runtime = MultiRuntime(None, [CriRuntime(str(tmp_path / "gone.sock"), timeout_s=0.3, follow=False)])
    enr = Enricher(CgroupIndex(tmp_path / "cg", rescan_ms=0), runtime, ProcessTable(tmp_path / "proc"))
    cg = enr.index.id_of(f"/kubepods/besteffort/pod{UID}/{CID}")
    ev = enr.enrich(Event("exec", 1, pid=1, cgroup_id=cg))
    assert (ev.container_id, ev.runtime, ev.image) == (CID, "kubepods", "")
    attr = enr.attribution(cg)
    assert attr.pod_uid == UID and attr.cgroup_path == f"/kubepods/besteffort/pod{UID}/{CID}"
    runtime.close()


def test_routing_by_the_runtime_the_path_names(cri: tuple[FakeCri, str]) -> None:
    _, path = cri
    runtime = MultiRuntime(None, [CriRuntime(path, follow=False)])
    assert runtime.inspect_ref(ContainerRef("docker", CID)) is None  # no Docker: never asks CRI
    assert runtime.inspect_ref(ContainerRef("kubepods", CID, UID, "besteffort")) is not None
    runtime.close()


@pytest.mark.parametrize(("text", "kind"), [
    ("/run/containerd/containerd.sock", "containerd"), ("unix:///run/crio/crio.sock", "crio"),
    ("crio=/x/y.sock", "crio"),
])
def test_socket_option(text: str, kind: str) -> None:
    assert parse_socket(text).name == kind


@pytest.mark.parametrize("text", ["", "docker=/var/run/docker.sock", "containerd="])
def test_bad_socket_option_says_what_to_give(text: str) -> None:
    with pytest.raises(ValueError, match="--cri-socket"):
        parse_socket(text)


class FakeContainerd(containers_pb2_grpc.ContainersServicer, images_pb2_grpc.ImagesServicer,  # type: ignore[misc]
                     namespaces_pb2_grpc.NamespacesServicer):
    """A container "job7" in namespace "ci" only: the namespace must come in the header."""

    def Get(self, request: Any, context: Any) -> Any:
        ns = dict(context.invocation_metadata()).get("containerd-namespace")
        if isinstance(request, images_pb2.GetImageRequest):
            return images_pb2.GetImageResponse(image=images_pb2.Image(
                name=request.name, target=images_pb2.Descriptor(digest="sha256:" + "7" * 64)))
        if ns != "ci" or request.id != "job7":
            context.abort(grpc.StatusCode.NOT_FOUND, "container not found")
        return containers_pb2.GetContainerResponse(container=containers_pb2.Container(
            id="job7", image="docker.io/library/alpine:3", labels={"team": "ci"}))

    def List(self, request: Any, context: Any) -> Any:
        return namespaces_pb2.ListNamespacesResponse(namespaces=[namespaces_pb2.Namespace(name=n)
                                                                 for n in ("default", "k8s.io", "ci")])


def test_plain_containerd_namespaces_through_containerds_api(tmp_path: Path) -> None:
    fake = FakeContainerd()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    containers_pb2_grpc.add_ContainersServicer_to_server(fake, server)
    images_pb2_grpc.add_ImagesServicer_to_server(fake, server)
    namespaces_pb2_grpc.add_NamespacesServicer_to_server(fake, server)
    path = str(tmp_path / "containerd.sock")
    server.add_insecure_port(f"unix://{path}")
    server.start()
    plain = ContainerdRuntime(path, follow=False)
    runtime = MultiRuntime(None, [], plain)
    try:
        assert plain.refresh_namespaces() == frozenset({"default", "ci"})  # k8s.io is CRI's
        (tmp_path / "cg" / "ci" / "job7").mkdir(parents=True)
        (tmp_path / "proc").mkdir()
        enr = Enricher(CgroupIndex(tmp_path / "cg", rescan_ms=0), runtime, ProcessTable(tmp_path / "proc"))
        ev = enr.enrich(Event("exec", 1, pid=1, cgroup_id=enr.index.id_of("/ci/job7")))
        assert (ev.container_id, ev.runtime, ev.image, ev.image_id) == (
            "job7", "containerd", "docker.io/library/alpine:3", "sha256:" + "7" * 64)
        assert dict(enr.attribution(ev.cgroup_id).labels) == {}  # not a pod: no pod labels
        assert plain.inspect_in("default", "job7") is None and plain.available  # NOT_FOUND is no failure
    finally:
        runtime.close()
        server.stop(0)


class _Libpod(http.server.BaseHTTPRequestHandler):
    """A libpod service: one container, everything else 404; ``garbage`` answers non-JSON."""

    garbage = False

    def do_GET(self) -> None:
        if self.garbage:
            body, status = b"\x00\xffnot json", 200
        elif self.path == f"/v4.0.0/libpod/containers/{CID}/json":
            body, status = json.dumps({"Id": CID, "Name": "web", "ImageName": "docker.io/library/nginx:1.27",
                                       "Image": "e" * 64, "ImageDigest": "sha256:" + "d" * 64,
                                       "Config": {"Labels": {"app": "web"}}, "State": {"Pid": 9}}).encode(), 200
        else:
            body, status = b'{"cause": "no such container"}', 404
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> Any:
        conn, _ = super().get_request()
        return conn, ("local", 0)


@pytest.mark.parametrize("garbage", [False, True])
def test_podman_through_its_libpod_api(tmp_path: Path, garbage: bool) -> None:
    handler = type("H", (_Libpod,), {"garbage": garbage})
    path = str(tmp_path / "podman.sock")
    server = _UnixHTTPServer(path, handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rt = PodmanRuntime(path, timeout_s=1.0)
    runtime = MultiRuntime(None, [], None, rt)
    try:
        meta = runtime.inspect_ref(ContainerRef("podman", CID))
        if garbage:
            assert meta is None and rt.errors == 1 and not rt.available
            assert runtime.inspect_ref(ContainerRef("podman", "f" * 64)) is None and rt.lookups == 1  # circuit
        else:
            assert meta is not None and (meta.name, meta.image, meta.image_id) == (
                "web", "docker.io/library/nginx:1.27", "sha256:" + "e" * 64)
            assert meta.image_digest == "docker.io/library/nginx@sha256:" + "d" * 64 and dict(meta.labels) == {
                "app": "web"}
            assert runtime.inspect_ref(ContainerRef("podman", "f" * 64)) is None and rt.available  # 404
    finally:
        server.shutdown()
        server.server_close()
