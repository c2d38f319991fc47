"""Runtime attribution: what a container the sensor has never seen costs it, and its CPU with 100 containers.

(a) **Attribution latency.** A live sensor pipeline (the probe, the enricher with Docker, the CRI
    containerd of scripts/host-setup and podman's API, and a rule that finds every exec in a
    container) runs in a thread. Each run starts a fresh container (a CRI pod sandbox and its
    container, ``docker run``, ``podman run``) whose init loops on ``sleep``, and at once execs
    ``echo`` in it (CRI ``ExecSync``, ``docker exec``, ``podman exec``). Measured, from the kernel's
    time of the exec to the wall time the pipeline made a finding that names the container (and,
    for CRI, its pod and namespace): ``first_ms`` for the container's first exec (its init: the
    cgroup has never been seen, the runtime is asked on demand) and ``exec_ms`` for the exec
    session right after the start. p50/p99 over the runs, per runtime.
(b) **CPU with 100 containers.** The real sensor daemon (``cgsentry-sensor run``, auto profile,
    all three runtimes) is measured for a while with no containers, then with 40 Docker, 40 CRI
    (20 pods of two) and 20 podman containers that each exec ``sleep 1`` in a loop (about 100 execs
    a second in all): process CPU seconds per wall second and resident memory. Containers run with
    ``--network none`` (Docker, podman) or the host's network without traffic (CRI pods: no CNI).

    .venv/bin/python -m bench.runtime_attribution [--smoke]     # JSON on stdout (root, Docker, CRI)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import psutil

CRI_SOCKET = "/run/cgsentry-containerd/containerd.sock"  # scripts/host-setup's containerd with CRI
DOCKER_IMAGE = "cgsentry/busybox:latest"
CRI_IMAGE = "docker.io/cgsentry/busybox:latest"
PODMAN_IMAGE = "localhost/cgsentry/busybox:latest"
# crun refuses this host's hybrid cgroups and podman's default ulimits exceed its hard limits
PODMAN_RUN = ("run", "-d", "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
              "--network", "none")
PREFIX = "cgsentry-rtbench-"
RUNS, SMOKE_RUNS = 25, 3
FLEET = {"docker": 40, "cri": 40, "podman": 20}
SMOKE_FLEET = {"docker": 4, "cri": 4, "podman": 2}
MEASURE_S, SMOKE_MEASURE_S = 60.0, 10.0
SETTLE_S = 15.0  # after the containers start: their first execs are learned and attributed
# a finding: (container id, exec's kernel time ns, wall ns when made, container name, pod, namespace, argv)
Hit = tuple[str, int, int, str, str, str, tuple[str, ...]]
EXEC_RULE = ("- rule: Bench Exec\n  desc: every exec in a container\n  condition: evt.type = execve and "
             "container.id != host\n  output: exec in %container.name pod %k8s.pod.name\n  priority: NOTICE\n")


def loop(seconds: float) -> list[str]:
    return ["/bin/sh", "-c", f"while :; do sleep {seconds}; done"]


class CriPod:
    """A pod sandbox (host network, kubelet-style cgroup parent) with containers, through CRI v1."""

    def __init__(self, namespace: str, name: str, labels: dict[str, str], commands: dict[str, list[str]],
                 socket: str = CRI_SOCKET) -> None:
        import grpc

        from sensor.cri_proto.v1 import cri_pb2 as pb
        from sensor.cri_proto.v1 import cri_pb2_grpc

        self.pb, self.name, self.namespace = pb, name, namespace
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.rt = cri_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = cri_pb2_grpc.ImageServiceStub(self.channel)
        self.uid = str(uuid.uuid4())
        self.cgroup_parent = f"/kubepods/besteffort/pod{self.uid}"
        self.config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=self.uid, namespace=namespace), labels=labels,
            log_directory=f"/tmp/cgsentry-cri-logs/{self.uid}",  # noqa: S108 - containerd writes it, as kubelet's
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=self.cgroup_parent, security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.NODE))))  # host network: no CNI
        self.sandbox_id = self.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=self.config), timeout=60).pod_sandbox_id
        self.ids: dict[str, str] = {}
        try:
            for cname, command in commands.items():
                self.ids[cname] = self.start(cname, command)
        except Exception:
            self.close()
            raise

    def start(self, cname: str, command: list[str]) -> str:
        pb = self.pb
        cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=cname), image=pb.ImageSpec(image=CRI_IMAGE),
                                 command=command, log_path=f"{cname}.log", linux=pb.LinuxContainerConfig())
        cid = str(self.rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=self.sandbox_id, config=cfg, sandbox_config=self.config), timeout=60).container_id)
        self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)
        return cid

    def cgroup(self, cname: str) -> str:
        return f"{self.cgroup_parent}/{self.ids[cname]}"

    def image_id(self) -> str:
        reply = self.images.ImageStatus(self.pb.ImageStatusRequest(image=self.pb.ImageSpec(image=CRI_IMAGE)),
                                        timeout=10)
        return str(reply.image.id)

    def exec(self, cname: str, *argv: str, timeout_s: int = 20) -> Any:
        """ExecSync, as the kubelet runs an exec probe: its reply (exit code, stdout, stderr)."""
        return self.rt.ExecSync(self.pb.ExecSyncRequest(container_id=self.ids[cname], cmd=list(argv),
                                                        timeout=timeout_s), timeout=timeout_s + 10)

    def close(self) -> None:
        pb = self.pb
        try:
            self.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=self.sandbox_id), timeout=60)
            self.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=self.sandbox_id), timeout=60)
        finally:
            self.channel.close()


def cgroup_init_pid(cgroup: str) -> int:
    """The container's init: the member of its v2 cgroup whose parent is outside it (a CRI pod's
    containers share the sandbox's pid namespace by default, so it need not be pid 1 there)."""
    from sensor.containers import find_cgroup2_root
    from sensor.sessions import cgroup_members, parent_of

    members = cgroup_members(find_cgroup2_root() / cgroup.lstrip("/")) or []
    for pid in members:
        if parent_of(Path("/proc"), pid) not in members:
            return pid
    raise RuntimeError(f"no init in cgroup {cgroup}")


def _cli(*argv: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s)


def podman_missing() -> str | None:
    """Why rootful podman cannot run containers here, or None."""
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman; scripts/host-setup does)"
    probe = _cli("podman", *PODMAN_RUN, "--rm", "--name", f"{PREFIX}probe", PODMAN_IMAGE, "/bin/true", timeout_s=120)
    return None if probe.returncode == 0 else f"podman cannot run a container here: {probe.stderr.strip()[:200]}"


def cleanup() -> None:
    """Containers and pods an earlier, interrupted run left behind."""
    for tool in ("docker", "podman"):
        if shutil.which(tool):
            names = _cli(tool, "ps", "-aq", "--filter", f"name={PREFIX}").stdout.split()
            if names:
                _cli(tool, "rm", "-f", *names, timeout_s=300)


# -- (a) attribution latency ----------------------------------------------------------------------
class Pipeline:
    """The sensor's live pipeline in a thread: every exec finding with the wall time it was made."""

    def __init__(self) -> None:
        from rules.engine import RuleEngine
        from rules.loader import load_sources
        from sensor.runtimes import Socket
        from sensor.tracer import Tracer

        self.tracer = Tracer(cri_sockets=[Socket("cri", "containerd", CRI_SOCKET)], docker=True)
        self.rules = RuleEngine(load_sources([("bench.yaml", EXEC_RULE)]))
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            batch = list(self.tracer.poll())
            for ev in batch:
                for f in self.rules.handle(ev):
                    e = f.event
                    hit = (e.container_id, e.time_ns, time.time_ns(), e.container_name, e.pod, e.namespace, e.args)
                    with self.lock:
                        self.hits.append(hit)
            if not batch:
                time.sleep(0.002)

    def of(self, container_id: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h[0] == container_id]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.tracer.close()


def latencies(hits: list[Hit], named: Callable[[Hit], bool], tag: str) -> tuple[float | None, float | None]:
    """(first_ms, exec_ms): from the container's first exec, and from the tagged exec, to the first
    finding that names it."""
    if not hits:
        return None, None
    first_ns = min(h[1] for h in hits)
    good = [h for h in hits if named(h)]
    first = min((h[2] for h in good), default=None)
    tagged = [h for h in hits if tag in h[6]]
    exec_done = min((h[2] for h in tagged if named(h)), default=None)
    return (None if first is None else (first - first_ns) / 1e6,
            None if exec_done is None or not tagged else (exec_done - min(h[1] for h in tagged)) / 1e6)


def one_docker(pipe: Pipeline, tool: str = "docker") -> tuple[float | None, float | None]:
    name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    tag = f"tag-{uuid.uuid4().hex[:8]}"
    opts = PODMAN_RUN if tool == "podman" else ("run", "-d", "--network", "none")
    image = PODMAN_IMAGE if tool == "podman" else DOCKER_IMAGE
    run = _cli(tool, *opts, "--name", name, image, *loop(0.2), timeout_s=120)
    if run.returncode != 0:
        raise RuntimeError(f"{tool} run: {run.stderr.strip()[:200]}")
    cid = run.stdout.strip()
    try:
        _cli(tool, "exec", name, "/bin/echo", tag)
        return _wait(pipe, cid, lambda h: h[3] == name, tag)
    finally:
        _cli(tool, "rm", "-f", name)


def one_cri(pipe: Pipeline) -> tuple[float | None, float | None]:
    name = f"web-{uuid.uuid4().hex[:6]}"
    tag = f"tag-{uuid.uuid4().hex[:8]}"
    pod = CriPod("bench", name, {"app": "bench"}, {"app": loop(0.2)})
    try:
        pod.exec("app", "/bin/echo", tag)
        return _wait(pipe, pod.ids["app"], lambda h: (h[3], h[4], h[5]) == ("app", name, "bench"), tag)
    finally:
        pod.close()


def _wait(pipe: Pipeline, cid: str, named: Callable[[Hit], bool], tag: str) -> tuple[float | None, float | None]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        first, done = latencies(pipe.of(cid), named, tag)
        if first is not None and done is not None:
            return first, done
        time.sleep(0.05)
    return latencies(pipe.of(cid), named, tag)


def _stats(values: list[float | None]) -> dict[str, Any]:
    got = sorted(v for v in values if v is not None)
    if not got:
        return {"runs": len(values), "attributed": 0}
    p99 = got[min(len(got) - 1, round(0.99 * (len(got) - 1)))]
    return {"runs": len(values), "attributed": len(got), "p50_ms": round(statistics.median(got), 1),
            "p99_ms": round(p99, 1), "max_ms": round(got[-1], 1)}


def attribution(runs: int, podman: bool) -> dict[str, Any]:
    pipe = Pipeline()
    try:
        out: dict[str, Any] = {}
        kinds: dict[str, Callable[[], tuple[float | None, float | None]]] = {
            "cri": lambda: one_cri(pipe), "docker": lambda: one_docker(pipe)}
        if podman:
            kinds["podman"] = lambda: one_docker(pipe, "podman")
        for kind, once in kinds.items():
            got = [once() for _ in range(runs)]
            out[kind] = {"first_exec": _stats([g[0] for g in got]), "exec_session": _stats([g[1] for g in got])}
        return out
    finally:
        pipe.close()


# -- (b) CPU with 100 containers -----------------------------------------------------------------
def sensor_usage(pid: int, seconds: float) -> dict[str, float]:
    """The process's CPU seconds per wall second over ``seconds``, and its resident memory after."""
    proc = psutil.Process(pid)
    t0, c0 = time.monotonic(), sum(proc.cpu_times()[:2])
    time.sleep(seconds)
    t1, c1 = time.monotonic(), sum(proc.cpu_times()[:2])
    return {"cpu_s_per_s": round((c1 - c0) / (t1 - t0), 4), "rss_mb": round(proc.memory_info().rss / 2**20, 1),
            "seconds": round(t1 - t0, 1)}


def start_fleet(counts: dict[str, int], podman: bool) -> tuple[list[str], list[CriPod], dict[str, int]]:
    """Idle-ish containers of each runtime (each execs ``sleep 1`` in a loop); what started."""
    names: list[str] = []
    pods: list[CriPod] = []
    started = {"docker": 0, "cri": 0, "podman": 0}
    for tool in ("docker", "podman") if podman else ("docker",):
        opts = PODMAN_RUN if tool == "podman" else ("run", "-d", "--network", "none")
        image = PODMAN_IMAGE if tool == "podman" else DOCKER_IMAGE
        for _ in range(counts[tool]):
            name = f"{PREFIX}{tool}-{uuid.uuid4().hex[:8]}"
            if _cli(tool, *opts, "--name", name, image, *loop(1), timeout_s=120).returncode == 0:
                names.append(name)
                started[tool] += 1
    for i in range(counts["cri"] // 2):
        pods.append(CriPod("bench", f"idle-{i}-{uuid.uuid4().hex[:4]}", {"app": "idle"},
                           {"a": loop(1), "b": loop(1)}))
        started["cri"] += 2
    return names, pods, started


def cpu(counts: dict[str, int], seconds: float, podman: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cgsentry-rtbench-") as tmp:
        out = Path(tmp) / "daemon.out"
        with out.open("w") as sink:
            daemon = subprocess.Popen([sys.executable, "-m", "sensor", "run", "--state-dir", str(Path(tmp) / "state"),
                                       "--cri-socket", CRI_SOCKET, "--learn-s", "1e9"],
                                      stdout=sink, stderr=subprocess.STDOUT, text=True)
            names: list[str] = []
            pods: list[CriPod] = []
            try:
                deadline = time.monotonic() + 180
                while "cgsentry sensor running" not in out.read_text():
                    if daemon.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the sensor did not start: {out.read_text()[-500:]}")
                    time.sleep(0.5)
                time.sleep(5)  # its start-up work done
                idle = sensor_usage(daemon.pid, seconds)
                names, pods, started = start_fleet(counts, podman)
                time.sleep(SETTLE_S)
                busy = sensor_usage(daemon.pid, seconds)
            finally:
                for pod in pods:
                    pod.close()
                for tool in ("docker", "podman"):
                    mine = [n for n in names if n.startswith(f"{PREFIX}{tool}-")]
                    if mine:
                        _cli(tool, "rm", "-f", *mine, timeout_s=600)
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=60)
    return {"containers": started, "no_containers": idle, "with_containers": busy,
            "loop_execs_per_s": sum(started.values()),  # each container execs sleep 1 in a loop
            "added_cpu_s_per_s": round(busy["cpu_s_per_s"] - idle["cpu_s_per_s"], 4)}


def run(smoke: bool = False) -> dict[str, Any]:
    if os.geteuid() != 0:
        return {"benchmark": "runtime_attribution", "skipped": "needs root, BCC, Docker and the CRI containerd"}
    cleanup()
    why_not = podman_missing()
    result: dict[str, Any] = {"benchmark": "runtime_attribution", "smoke": smoke,
                              "podman": why_not or "used"}
    result["attribution"] = attribution(SMOKE_RUNS if smoke else RUNS, why_not is None)
    counts = dict(SMOKE_FLEET if smoke else FLEET)
    if why_not is not None:
        counts["podman"] = 0
    result["cpu"] = cpu(counts, SMOKE_MEASURE_S if smoke else MEASURE_S, why_not is None)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="a few runs and 10 containers: seconds, not minutes")
    args = ap.parse_args(argv)
    print(json.dumps(run(args.smoke), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
