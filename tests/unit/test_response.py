"""Responder on a fake cgroupfs and a fake Docker client: Docker first, cgroup fallback, the host
never touched, and every failure a one-line value rather than an exception."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from sensor.response import ActionGate, ActionResult, Responder

CID = "a" * 64
CG = f"/docker/{CID}"


class FakeContainer:
    def __init__(self, calls: list[str], fail: bool) -> None:
        self.calls, self.fail = calls, fail

    def __getattr__(self, name: str) -> Any:
        def op(**_: Any) -> None:
            if self.fail:
                raise RuntimeError(f"409 conflict: cannot {name}\nsecond line")
            self.calls.append(name)
        return op


class FakeDocker:
    def __init__(self, fail: bool = False, missing: bool = False) -> None:
        self.calls: list[str] = []
        self.fail, self.missing = fail, missing
        self.containers = self

    def get(self, cid: str) -> FakeContainer:
        if self.missing:
            raise LookupError(f"No such container: {cid}")
        return FakeContainer(self.calls, self.fail)


def cgroup_tree(tmp_path: Path, v2_files: tuple[str, ...] = ("cgroup.freeze", "cgroup.kill")) -> tuple[Path, Path]:
    v2, v1 = tmp_path / "unified", tmp_path / "freezer"
    (v2 / CG[1:]).mkdir(parents=True)
    (v1 / CG[1:]).mkdir(parents=True)
    for name in v2_files:
        (v2 / CG[1:] / name).write_text("0\n")
    (v1 / CG[1:] / "freezer.state").write_text("THAWED\n")
    return v2, v1


def test_docker_path_is_preferred(tmp_path: Path) -> None:
    v2, v1 = cgroup_tree(tmp_path)
    docker = FakeDocker()
    r = Responder(docker, cgroupfs_root=v2, v1_freezer_root=v1)
    res = r.pause(CID, CG)
    assert isinstance(res, ActionResult)
    assert (res.ok, res.method, res.action, res.container_id) == (True, "docker", "pause", CID)
    assert r.unpause(CID, CG).ok and r.kill(CID, CG).ok and r.stop(CID, CG).ok
    assert docker.calls == ["pause", "unpause", "kill", "stop"]
    assert (v2 / CG[1:] / "cgroup.freeze").read_text() == "0\n"  # cgroup left alone


def test_docker_failure_falls_back_to_cgroup_v2(tmp_path: Path) -> None:
    v2, v1 = cgroup_tree(tmp_path)
    r = Responder(FakeDocker(missing=True), cgroupfs_root=v2, v1_freezer_root=v1)
    res = r.pause(CID, CG)
    assert (res.ok, res.method) == (True, "cgroup.freeze")
    assert (v2 / CG[1:] / "cgroup.freeze").read_text() == "1"
    assert r.unpause(CID, CG).ok
    assert (v2 / CG[1:] / "cgroup.freeze").read_text() == "0"
    res = r.kill(CID, CG)
    assert (res.ok, res.method) == (True, "cgroup.kill")
    assert (v2 / CG[1:] / "cgroup.kill").read_text() == "1"


def test_v1_freezer_when_no_v2_freeze(tmp_path: Path) -> None:
    v2, v1 = cgroup_tree(tmp_path, v2_files=())
    r = Responder(None, cgroupfs_root=v2, v1_freezer_root=v1)
    res = r.pause(CID, CG)
    assert (res.ok, res.method) == (True, "freezer-v1")
    assert (v1 / CG[1:] / "freezer.state").read_text() == "FROZEN"
    assert r.unpause(CID, CG).ok
    assert (v1 / CG[1:] / "freezer.state").read_text() == "THAWED"


def test_kill_without_cgroup_kill_signals_members(tmp_path: Path) -> None:
    v2, v1 = cgroup_tree(tmp_path, v2_files=())
    victim = subprocess.Popen(["sleep", "60"])
    try:
        (v2 / CG[1:] / "cgroup.procs").write_text(f"{victim.pid}\n999999999\n")
        res = Responder(None, cgroupfs_root=v2, v1_freezer_root=v1).kill(CID, CG)
        assert (res.ok, res.method) == (True, "signal")
        assert victim.wait(timeout=10) == -9
    finally:
        victim.kill()
        victim.wait()


def test_host_is_refused(tmp_path: Path) -> None:
    v2, v1 = cgroup_tree(tmp_path)
    docker = FakeDocker()
    r = Responder(docker, cgroupfs_root=v2, v1_freezer_root=v1)
    for res in (r.pause("host", CG), r.kill("", CG), r.pause(CID, "/")):
        assert not res.ok and "host" in res.error
    assert docker.calls == []


def test_errors_are_one_line_values(tmp_path: Path) -> None:
    v2, v1 = cgroup_tree(tmp_path)
    r = Responder(FakeDocker(fail=True), cgroupfs_root=v2, v1_freezer_root=v1)
    res = r.pause(CID, "/docker/gone")
    assert not res.ok and res.method == ""
    assert "\n" not in res.error
    assert "docker: 409 conflict" in res.error and "/docker/gone" in res.error
    res = Responder(None, cgroupfs_root=v2, v1_freezer_root=v1).pause(CID)
    assert not res.ok and "no cgroup path" in res.error


def test_kill_process_and_dispatch(tmp_path: Path) -> None:
    v2, v1 = cgroup_tree(tmp_path)
    procfs = tmp_path / "proc"
    r = Responder(None, cgroupfs_root=v2, v1_freezer_root=v1, procfs_root=procfs)
    victim = subprocess.Popen(["sleep", "60"])
    try:
        (procfs / str(victim.pid)).mkdir(parents=True)
        (procfs / str(victim.pid) / "cgroup").write_text(f"0::/system.slice/docker-{'b' * 64}.scope\n")
        other = r.act("kill-process", CID, pid=victim.pid)  # the pid now belongs to another container
        assert not other.ok and "no longer a process of container" in other.error and victim.poll() is None
        assert not r.kill_process(victim.pid, "host").ok and victim.poll() is None
        (procfs / str(victim.pid) / "cgroup").write_text(f"0::/docker/{CID}\n")
        res = r.act("kill-process", CID, pid=victim.pid)
        assert (res.ok, res.method, res.action) == (True, "signal", "kill-process")
        assert victim.wait(timeout=10) == -9
    finally:
        victim.kill()
        victim.wait()
    gone = r.kill_process(victim.pid, CID)  # reaped: no such process
    assert not gone.ok and str(victim.pid) in gone.error
    assert r.act("pause-container", CID, CG).method == "cgroup.freeze"
    bad = r.act("explode", CID, CG)
    assert not bad.ok and "explode" in bad.error


def test_action_gate_acts_once_per_burst_and_again_after_quiet() -> None:
    """A burst of findings pauses once; the same container misbehaving after it was unpaused is
    paused again (the daemon once kept every (container, action) forever, so it never was)."""
    now = [100.0]
    gate = ActionGate(quiet_s=5.0, clock=lambda: now[0])
    assert gate.admit(CID, "pause-container")
    now[0] += 1.0
    assert not gate.admit(CID, "pause-container", pid=7)  # same burst
    assert gate.admit("b" * 64, "pause-container")  # another container is its own target
    assert gate.admit(CID, "kill-container")  # another action too
    now[0] += 30.0  # unpaused by an operator, then misbehaves again
    assert gate.admit(CID, "pause-container")
    gate.forget(CID)  # released at once
    assert gate.admit(CID, "pause-container") and not gate.admit(CID, "pause-container")


def test_action_gate_kills_each_process() -> None:
    gate = ActionGate(quiet_s=5.0, clock=lambda: 0.0)
    assert gate.admit(CID, "kill-process", pid=10)
    assert gate.admit(CID, "kill-process", pid=11)
    assert not gate.admit(CID, "kill-process", pid=10)


def test_docker_errors_keep_their_explanation_not_the_url() -> None:
    """A 409 from Docker once reached the operator as "Cannot kill cont": the request URL had used
    up the 160 characters kept. The collector reads the status and explanation from this line."""
    import docker.errors
    import requests

    from collector.errors import action_failure
    from sensor.response import _docker_error

    resp = requests.Response()
    resp.status_code, resp.reason = 409, "Conflict"
    resp.url = "http+docker://localhost/v1.41/containers/" + CID + "/kill"
    err = docker.errors.APIError("409 Client Error", response=resp,
                                 explanation=f"Cannot kill container: {CID}: Container {CID} is not running")
    line = _docker_error(err)
    assert "http" not in line and line.startswith("409 Client Error: Conflict") and line.endswith('is not running")')
    assert str(action_failure("web-1", "kill", f"docker: {line}")) == "container web-1 is not running"


def test_action_gate_follows_the_containers_state_not_a_timer() -> None:
    """Issue 21 item 5: with ``holds``, a repeat is coalesced only while the last action holds."""
    frozen = {CID: True}
    gate = ActionGate(quiet_s=3600.0, clock=lambda: 0.0, holds=lambda cid, action, pid: frozen.get(cid, True))
    assert gate.admit(CID, "pause-container")
    assert not gate.admit(CID, "pause-container")  # still frozen: one burst
    frozen[CID] = False  # someone ran docker unpause
    assert gate.admit(CID, "pause-container")  # acted on again at once, the timer notwithstanding
    frozen[CID] = True
    assert not gate.admit(CID, "pause-container") and gate.coalesced == 2


def test_responder_knows_whether_an_action_still_holds(tmp_path: Path) -> None:
    v2, v1, procfs = tmp_path / "v2", tmp_path / "v1", tmp_path / "proc"
    (v2 / CG.lstrip("/")).mkdir(parents=True)
    (v1 / CG.lstrip("/")).mkdir(parents=True)
    (procfs / "40").mkdir(parents=True)
    r = Responder(cgroupfs_root=v2, v1_freezer_root=v1, procfs_root=procfs)
    (v2 / CG.lstrip("/") / "cgroup.freeze").write_text("0\n")
    (v1 / CG.lstrip("/") / "freezer.state").write_text("THAWED\n")
    assert not r.holds("pause-container", CID, CG)
    (v1 / CG.lstrip("/") / "freezer.state").write_text("FROZEN\n")  # Docker on v1's freezer
    assert r.holds("pause-container", CID, CG)
    (v1 / CG.lstrip("/") / "freezer.state").write_text("THAWED\n")
    (v2 / CG.lstrip("/") / "cgroup.freeze").write_text("1\n")  # or v2's
    assert r.holds("pause-container", CID, CG)
    (v2 / CG.lstrip("/") / "cgroup.procs").write_text("40\n")
    assert not r.holds("kill-container", CID, CG)  # still has processes: kill again
    (v2 / CG.lstrip("/") / "cgroup.procs").write_text("")
    assert r.holds("kill-container", CID, CG) and r.holds("pause-container", CID, "/docker/gone")
    (procfs / "40" / "cgroup").write_text(f"0::{CG}\n")
    assert not r.holds("kill-process", CID, CG, pid=40)  # survived the kill
    assert r.holds("kill-process", CID, CG, pid=41)  # gone
    (procfs / "40" / "cgroup").write_text("0::/system.slice/x.service\n")
    assert r.holds("kill-process", CID, CG, pid=40)  # pid reused by another: ours is gone
