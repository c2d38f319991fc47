"""Synthetic but realistic event streams of a busybox web container, for model evaluation and
pipeline throughput (the kernel benchmarks use real containers; these isolate the userspace)."""

from __future__ import annotations

import random
from typing import Iterator

from sensor.events import Event

IMAGE = "cgsentry/busybox:latest"
IMAGE_ID = "sha256:" + "b" * 64
SEC = 1_000_000_000


def container_id(i: int) -> str:
    return f"{i:02d}" * 32


def web_container(i: int, start_ns: int, seconds: int, seed: int = 1) -> Iterator[Event]:
    """httpd on 8080 serving loopback wget requests; a shell loop running sleep and date."""
    rng = random.Random(seed * 1000 + i)
    cid, name = container_id(i), f"web-{i}"
    base = dict(container_id=cid, container_name=name, image=IMAGE, image_id=IMAGE_ID,
                runtime="docker", cgroup_id=1000 + i)
    yield Event("exec", start_ns, pid=10, ppid=1, comm="sh", exe="/bin/sh",
                args=("sh", "-c", "httpd -f -p 8080 & while true; do wget -q -O- 127.0.0.1:8080; sleep 1; done"),
                pexe="/usr/sbin/runc", **base)  # the container runtime, as the sensor names it
    yield Event("exec", start_ns + 1000, pid=11, ppid=10, comm="httpd", exe="/usr/sbin/httpd",
                args=("httpd", "-f", "-p", "8080"), pexe="/bin/sh", **base)
    yield Event("listen", start_ns + 2000, pid=11, comm="httpd", exe="/usr/sbin/httpd", proto="tcp",
                family="ipv6", saddr="::", sport=8080, pexe="/bin/sh", **base)
    pid = 100
    for s in range(seconds):
        t = start_ns + (s + 1) * SEC + rng.randrange(0, SEC // 4)
        for comm, exe, args in (("wget", "/usr/bin/wget", ("wget", "-q", "-O-", "127.0.0.1:8080")),
                                ("sleep", "/bin/sleep", ("sleep", "1"))):
            pid += 1
            yield Event("fork", t, pid=10, ppid=1, child_pid=pid, comm="sh", exe="/bin/sh", **base)
            yield Event("exec", t + 100, pid=pid, ppid=10, comm=comm, exe=exe, args=args, pexe="/bin/sh",
                        **base)
            if comm == "wget":
                yield Event("connect", t + 200, pid=pid, comm=comm, exe=exe, proto="tcp", family="ipv4",
                            daddr="127.0.0.1", dport=8080, pexe="/bin/sh", **base)
                yield Event("accept", t + 300, pid=11, comm="httpd", exe="/usr/sbin/httpd", proto="tcp",
                            family="ipv6", sport=8080, pexe="/bin/sh", **base)
            yield Event("exit", t + 400, pid=pid, comm=comm, exe=exe, **base)
            t += rng.randrange(1000, 10_000)


def fleet(n_containers: int, seconds: int, start_ns: int = 1_700_000_000 * SEC,
          seed: int = 1) -> list[Event]:
    evs = [e for i in range(n_containers) for e in web_container(i, start_ns, seconds, seed)]
    evs.sort(key=lambda e: e.time_ns)
    return evs


def deviation(kind: str, t: int, i: int = 0) -> list[Event]:
    """Injected deviations (one container), as the attacks a SOC wants found."""
    base = dict(container_id=container_id(i), container_name=f"web-{i}", image=IMAGE, image_id=IMAGE_ID,
                runtime="docker", cgroup_id=1000 + i, pid=9000, ppid=11)
    if kind == "new_binary":
        return [Event("exec", t, comm="xmrig", exe="/tmp/xmrig", args=("xmrig",), pexe="/bin/sh", **base)]
    if kind == "shell_from_server":
        return [Event("exec", t, comm="sh", exe="/bin/sh", args=("sh", "-i"), pexe="/usr/sbin/httpd", **base)]
    if kind == "new_listen_port":
        return [Event("listen", t, comm="nc", exe="/usr/bin/nc", proto="tcp", family="ipv4", saddr="0.0.0.0",
                      sport=4444, pexe="/bin/sh", **base)]
    if kind == "new_outbound_port":
        return [Event("connect", t, comm="wget", exe="/usr/bin/wget", proto="tcp", family="ipv4",
                      daddr="127.0.0.1", dport=6379, pexe="/bin/sh", **base)]
    if kind == "connect_burst":
        return [Event("connect", t + k * 1_000_000, comm="wget", exe="/usr/bin/wget", proto="tcp",
                      family="ipv4", daddr="127.0.0.1", dport=8080, pexe="/bin/sh", **base) for k in range(400)]
    raise ValueError(kind)


DEVIATIONS = ("new_binary", "shell_from_server", "new_listen_port", "new_outbound_port", "connect_burst")
