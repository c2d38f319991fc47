"""Container attribution against the real Docker engine (no BPF): cgroup inode -> container -> image."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from sensor.containers import find_cgroup2_root
from sensor.enrich import Enricher
from sensor.events import Event
from sensor.runtime import DockerRuntime
from sensor.runtimes import MultiRuntime

pytestmark = pytest.mark.docker
IMAGE = "cgsentry/busybox:latest"


def cgroup_of(container: Any) -> int:
    """Inode of the container's v2 cgroup directory (cgroupfs or systemd driver)."""
    root = find_cgroup2_root()
    for rel in (f"docker/{container.id}", f"system.slice/docker-{container.id}.scope"):
        if (root / rel).is_dir():
            return os.stat(root / rel).st_ino
    raise AssertionError(f"no v2 cgroup for {container.id} under {root}")


@pytest.fixture
def enricher() -> Any:
    enr = Enricher.create(docker=True)
    yield enr
    enr.close()


def test_running_container_resolves_to_id_name_and_image(enricher: Enricher, busybox: Any) -> None:
    c = busybox("sleep 60")
    cg = cgroup_of(c)
    pid = int(c.attrs["State"]["Pid"])
    ev = enricher.enrich(Event("exec", time.time_ns(), pid=pid, cgroup_id=cg, exe="/bin/sleep"))
    assert (ev.container_id, ev.container_name, ev.runtime) == (c.id, c.name, "docker")
    assert ev.image == IMAGE and ev.image_id == c.image.id and ev.image_id.startswith("sha256:")
    assert enricher.container_cgroup_id(c.name) == cg
    assert enricher.container_cgroup_id(c.id[:12]) == cg
    # Without BPF no fork events arrive: a re-seed from /proc learns the container's shim parent.
    enricher.procs.seed()
    ev = enricher.enrich(Event("connect", time.time_ns(), pid=pid, cgroup_id=cg))
    # ... and names the process as its exec did (/bin/sleep), not by the busybox it links to
    assert ev.exe == "/bin/sleep" and ev.ancestry and "containerd-shim" in ev.ancestry[0]


def test_short_lived_container_keeps_its_image_via_the_event_stream(enricher: Enricher, busybox: Any) -> None:
    runtime = enricher.runtime.docker if isinstance(enricher.runtime, MultiRuntime) else enricher.runtime
    assert isinstance(runtime, DockerRuntime)
    c = busybox("true")
    c.wait(timeout=30)
    cid, image_id = c.id, c.image.id
    c.remove(force=True)  # the daemon no longer knows it: only the event-stream cache can answer
    deadline = time.monotonic() + 15
    meta = runtime.inspect(cid)
    while meta is None and time.monotonic() < deadline:
        time.sleep(0.1)
        meta = runtime.inspect(cid)
    assert meta is not None and (meta.image, meta.image_id) == (IMAGE, image_id)
    # An event whose cgroup the index saw while the container lived gets the image too.
    enricher.index._paths[2**62 + 1] = f"/docker/{cid}"
    ev = enricher.enrich(Event("exit", time.time_ns(), pid=424242, cgroup_id=2**62 + 1))
    assert (ev.container_id, ev.image, ev.image_id) == (cid, IMAGE, image_id)


def test_host_process_is_host(enricher: Enricher) -> None:
    rel = next(line.split(":", 2)[2].strip() for line in Path("/proc/self/cgroup").read_text().splitlines()
               if line.startswith("0::"))
    cg = enricher.index.id_of(rel)
    ev = enricher.enrich(Event("connect", time.time_ns(), pid=os.getpid(), cgroup_id=cg))
    assert (ev.container_id, ev.container_name, ev.image, ev.runtime) == ("host", "host", "host", "host")
    assert ev.ppid == os.getppid() and ev.exe == os.path.realpath("/proc/self/exe")


def test_missing_docker_socket_degrades_to_cgroup_only(busybox: Any, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    c = busybox("sleep 60")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    enr = Enricher.create(docker=True)
    ev = enr.enrich(Event("exec", time.time_ns(), pid=1, cgroup_id=cgroup_of(c)))
    assert (ev.container_id, ev.container_name, ev.runtime, ev.image) == (c.id, c.id[:12], "docker", "")
    stats = enr.stats()
    assert stats["runtime_available"] == 0 and stats["runtime_errors"] >= 1
    assert enr.container_cgroup_id(c.id[:12]) == cgroup_of(c)
