"""Kernel tier: containers of a real containerd with CRI (scripts/host-setup's own, apart from Docker's),
of a plain containerd namespace (``ctr run``) and of rootful podman, seen by the real sensor.

- a pod sandbox created through CRI with a kubelet-style cgroup_parent and labels, a container
  started in it: an exec there is attributed to its namespace, pod, container, labels and image id;
- the sensor daemon in enforce mode pauses that container (cgroup.freeze: CRI has no pause) and a
  kill through the responder uses CRI StopContainer;
- ``ctr run`` in the default namespace: containerd by its /<namespace>/<name> cgroup, named with its
  image and manifest digest by containerd's own API;
- rootful podman, named through its libpod API, where it is installed and its service runs.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from sensor.containers import find_cgroup2_root
from sensor.response import Responder
from sensor.runtimes import MultiRuntime, Socket
from sensor.tracer import Tracer
from tests.kernel.helpers import collect_until, sentinel
from tests.kernel.sensord import daemon
from tests.prereqs import CRI_SOCKET
from tests.waiting import wait_for

pytestmark = [pytest.mark.kernel, pytest.mark.cri]
IMAGE = "docker.io/cgsentry/busybox:latest"
CTR = ["/usr/bin/ctr", "--address", CRI_SOCKET]


class Pod:
    """One pod sandbox and one container in it, through the CRI API; removed on close."""

    def __init__(self, namespace: str, name: str, labels: dict[str, str], command: list[str]) -> None:
        import grpc

        from sensor.cri_proto.v1 import cri_pb2 as pb
        from sensor.cri_proto.v1 import cri_pb2_grpc

        self.pb = pb
        self.channel = grpc.insecure_channel(f"unix://{CRI_SOCKET}")
        self.rt = cri_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = cri_pb2_grpc.ImageServiceStub(self.channel)
        self.uid = str(uuid.uuid4())
        self.cgroup_parent = f"/kubepods/besteffort/pod{self.uid}"
        self.config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=self.uid, namespace=namespace),
            labels=labels, annotations={"cgsentry.test/why": "kernel tier"},
            log_directory=f"/tmp/cgsentry-cri-logs/{self.uid}",
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=self.cgroup_parent,
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.NODE))))  # host network: no CNI
        self.sandbox_id = self.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=self.config), timeout=60).pod_sandbox_id
        cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="app"), image=pb.ImageSpec(image=IMAGE),
                                 command=command, log_path="app.log", linux=pb.LinuxContainerConfig())
        self.id = self.rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=self.sandbox_id, config=cfg, sandbox_config=self.config), timeout=60).container_id
        self.rt.StartContainer(pb.StartContainerRequest(container_id=self.id), timeout=60)

    @property
    def cgroup(self) -> str:
        return f"{self.cgroup_parent}/{self.id}"

    def image_id(self) -> str:
        reply = self.images.ImageStatus(self.pb.ImageStatusRequest(image=self.pb.ImageSpec(image=IMAGE)), timeout=10)
        return str(reply.image.id)

    def exec(self, *argv: str) -> None:
        self.rt.ExecSync(self.pb.ExecSyncRequest(container_id=self.id, cmd=list(argv), timeout=20), timeout=30)

    def frozen(self) -> bool:
        events = (find_cgroup2_root() / self.cgroup.lstrip("/") / "cgroup.events").read_text()
        return "frozen 1" in events

    def close(self) -> None:
        pb = self.pb
        try:
            (find_cgroup2_root() / self.cgroup.lstrip("/") / "cgroup.freeze").write_text("0")
        except OSError:
            pass
        self.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=self.sandbox_id), timeout=60)
        self.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=self.sandbox_id), timeout=60)
        self.channel.close()


@pytest.fixture
def pod() -> Iterator[Pod]:
    p = Pod("payments", f"web-{uuid.uuid4().hex[:6]}", {"app": "web", "tier": "front"}, ["/bin/sleep", "3600"])
    yield p
    p.close()


def test_an_exec_in_a_cri_pod_names_its_namespace_pod_container_labels_and_image(pod: Pod) -> None:
    tracer = Tracer(cri_sockets=[Socket("cri", "containerd", CRI_SOCKET)], docker=False)
    try:
        tag = f"cri-{uuid.uuid4().hex[:8]}"
        pod.exec("/bin/echo", tag)
        events = collect_until(tracer, sentinel(tag))
        ev = next(e for e in events if e.kind == "exec" and tag in e.args)
        assert (ev.container_id, ev.container_name, ev.runtime) == (pod.id, "app", "kubepods")
        assert ev.image == IMAGE and ev.image_id == pod.image_id() and ev.image_id.startswith("sha256:")
        assert (ev.namespace, ev.pod, dict(ev.labels)) == ("payments", pod.config.metadata.name,
                                                          {"app": "web", "tier": "front"})
        # the library's rules, and one an operator writes by namespace and label, see them
        from rules.engine import RuleEngine
        from rules.loader import load_sources
        scoped = RuleEngine(load_sources([("scoped.yaml", "- rule: Payments Web Exec\n  desc: d\n  condition: "
                                           "evt.type = execve and k8s.ns.name = payments and "
                                           "k8s.pod.label[app] = web\n  output: o %k8s.pod.name\n"
                                           "  priority: NOTICE\n")]))
        assert [f.rule for f in scoped.handle(ev)] == ["Payments Web Exec"]
        attr = tracer.enricher.attribution(ev.cgroup_id)  # what stays off the event: uid, annotations
        assert (attr.namespace, attr.pod, attr.pod_uid) == ("payments", pod.config.metadata.name, pod.uid)
        assert dict(attr.labels) == {"app": "web", "tier": "front"}
        assert dict(attr.annotations)["cgsentry.test/why"] == "kernel tier"
        # by namespace/pod/container, as `cgsentry containers pause` will name it
        assert tracer.enricher.container_cgroup_id(f"payments/{pod.config.metadata.name}/app") == ev.cgroup_id
        assert tracer.resolve(f"payments/{pod.config.metadata.name}/app") == pod.id  # a collector action's target
    finally:
        tracer.close()


def test_cri_kill_uses_stop_container(pod: Pod) -> None:
    runtime = MultiRuntime.create(docker=False, cri_sockets=[Socket("cri", "containerd", CRI_SOCKET)])
    try:
        responder = Responder(None, cri_for=runtime.cri_for)
        res = responder.kill(pod.id, pod.cgroup)
        assert res.ok and res.method == "cri.StopContainer", res
        status = pod.rt.ContainerStatus(pod.pb.ContainerStatusRequest(container_id=pod.id), timeout=10).status
        assert status.state == pod.pb.CONTAINER_EXITED
    finally:
        runtime.close()


def test_enforce_mode_pauses_a_cri_container(tmp_path: Path, pod: Pod) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"images:\n- match: '{IMAGE.rsplit(':', 1)[0]}:*'\n  mode: enforce\n"
                      "  default_action: pause-container\n")
    with daemon(tmp_path / "state", "--no-docker", "--cri-socket", CRI_SOCKET, "--policy", str(policy)) as out:
        time.sleep(1)
        # the pause may freeze the shell before it returns, and ExecSync then waits for ever: the
        # exec runs beside the wait, and its answer (or its time-out) does not matter
        def run_nc() -> None:
            with contextlib.suppress(grpc.RpcError):
                pod.exec("/bin/sh", "-c", "nc 127.0.0.1 9 </dev/null")
        threading.Thread(target=run_nc, daemon=True).start()
        wait_for(pod.frozen, timeout_s=30)
    found = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
    paused = [f for f in found if f["action"] == "pause-container"]
    assert paused and any("nc" in f["output"] for f in paused), found


def test_ctr_run_in_a_plain_namespace_is_containerd(tmp_path: Path) -> None:
    name = f"cgsentry-ctr-{uuid.uuid4().hex[:8]}"
    tracer = Tracer(cri_sockets=[Socket("cri", "containerd", CRI_SOCKET)], docker=False)
    try:
        subprocess.run([*CTR, "-n", "default", "run", "-d", "--net-host", IMAGE, name, "/bin/sleep", "3600"],
                       check=True, capture_output=True, timeout=60)
        tag = f"ctr-{uuid.uuid4().hex[:8]}"
        subprocess.run([*CTR, "-n", "default", "task", "exec", "--exec-id", "probe", name, "/bin/echo", tag],
                       check=True, capture_output=True, timeout=60)
        # ctr's own command line carries the tag too: the sentinel is the echo inside
        ev = collect_until(tracer, lambda e: sentinel(tag)(e) and e.exe.endswith("/echo"))[-1]
        assert (ev.container_id, ev.container_name, ev.runtime, ev.image) == (name, name, "containerd", IMAGE)
        listed = subprocess.run([*CTR, "-n", "default", "images", "ls"], check=True, capture_output=True,
                                text=True).stdout  # REF TYPE DIGEST ...: the manifest digest
        digest = next(line.split()[2] for line in listed.splitlines() if line.startswith(IMAGE + " "))
        attr = tracer.enricher.attribution(ev.cgroup_id)
        assert ev.image_id == digest and attr.image_digest == f"{IMAGE}@{digest}"
        assert attr.cgroup_path == f"/default/{name}"
    finally:
        tracer.close()
        subprocess.run([*CTR, "-n", "default", "task", "kill", "-s", "SIGKILL", name], capture_output=True, timeout=30)
        time.sleep(0.5)
        subprocess.run([*CTR, "-n", "default", "task", "rm", "-f", name], capture_output=True, timeout=30)
        subprocess.run([*CTR, "-n", "default", "containers", "rm", name], capture_output=True, timeout=30)


# This host's limits: podman's default ulimits (nofile/nproc far above the hard limits a container
# host may set) and crun's refusal of hybrid cgroups fail the run; runc and modest limits work anywhere.
PODMAN_RUN = ("run", "-d", "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
              "--network", "none")


def test_rootful_podman_through_its_api() -> None:
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip("podman is not installed on this host (apt-get install podman; scripts/host-setup does); "
                    "its containers are attributed from their libpod-<id> cgroup path (tests/unit/test_containers.py)")
    name = f"cgsentry-podman-{uuid.uuid4().hex[:8]}"
    run = subprocess.run([podman, *PODMAN_RUN, "--name", name, "localhost/cgsentry/busybox:latest", "/bin/sleep",
                          "3600"], capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        pytest.skip(f"rootful podman cannot run a container here: {run.stderr.strip()[:300]}")
    tracer = Tracer(docker=False, cri_sockets=[Socket("cri", "containerd", CRI_SOCKET)])
    try:
        if not isinstance(tracer.enricher.runtime, MultiRuntime) or tracer.enricher.runtime.podman is None:
            pytest.skip("podman's API service is not running (scripts/host-setup starts it): cgroup path only")
        tag = f"podman-{uuid.uuid4().hex[:8]}"
        subprocess.run([podman, "exec", name, "/bin/echo", tag], check=True, capture_output=True, timeout=60)
        ev = collect_until(tracer, lambda e: sentinel(tag)(e) and e.exe.endswith("/echo"))[-1]
        image_id = subprocess.run([podman, "inspect", "-f", "{{.Image}}", name], check=True, capture_output=True,
                                  text=True).stdout.strip()
        assert (ev.container_id, ev.container_name, ev.runtime) == (run.stdout.strip(), name, "podman")
        assert ev.image == "localhost/cgsentry/busybox:latest" and ev.image_id == f"sha256:{image_id}"
    finally:
        tracer.close()
        subprocess.run([podman, "rm", "-f", name], capture_output=True, timeout=60)
