"""Responder against real containers: the Docker path (``docker inspect`` agrees), the cgroup
freezer with Docker bypassed (a counter loop stops advancing), and cgroup.kill."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sensor.response import Responder
from tests.waiting import wait_for

pytestmark = pytest.mark.docker

COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; done"


def counter(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/root/tmp/n").read_text())
    except (OSError, ValueError):
        return -1


def test_docker_pause_and_unpause(docker_client: Any, busybox: Any) -> None:
    c = busybox()
    r = Responder(docker_client)
    res = r.pause(c.id, f"/docker/{c.id}")
    assert (res.ok, res.method) == (True, "docker"), res.error
    assert docker_client.api.inspect_container(c.id)["State"]["Paused"] is True
    assert r.unpause(c.id, f"/docker/{c.id}").ok
    assert docker_client.api.inspect_container(c.id)["State"]["Paused"] is False


def test_cgroup_freeze_stops_processes(busybox: Any) -> None:
    c = busybox(COUNTER)
    pid = c.attrs["State"]["Pid"]
    wait_for(lambda: counter(pid) > 0)
    r = Responder(None)  # Docker bypassed
    res = r.pause(c.id, f"/docker/{c.id}")
    assert res.ok and res.method in ("cgroup.freeze", "freezer-v1"), res.error
    if res.method == "cgroup.freeze":  # v2 freezing is asynchronous: wait until reported done
        events = r.v2_root / "docker" / c.id / "cgroup.events"
        wait_for(lambda: "frozen 1" in events.read_text())
    frozen_at = counter(pid)
    time.sleep(0.5)
    assert counter(pid) == frozen_at
    assert r.unpause(c.id, f"/docker/{c.id}").ok
    wait_for(lambda: counter(pid) > frozen_at)


def test_cgroup_kill_ends_container(docker_client: Any, busybox: Any) -> None:
    c = busybox()
    res = Responder(None).kill(c.id, f"/docker/{c.id}")
    assert res.ok and res.method in ("cgroup.kill", "signal"), res.error
    wait_for(lambda: docker_client.api.inspect_container(c.id)["State"]["Running"] is False)


def test_host_cgroup_is_never_touched(busybox: Any) -> None:
    res = Responder(None).pause("host", "/")
    assert not res.ok and "host" in res.error
