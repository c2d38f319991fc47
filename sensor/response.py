"""Local response: pause, unpause, stop or kill a container, or kill one process — at once.

The Docker Engine API is the first choice (``docker inspect`` then tells the truth); a CRI
container (containerd, CRI-O) is stopped or killed with CRI ``StopContainer``, so the kubelet sees
an exited container rather than one that vanished; CRI has no pause, so pause is the cgroup's. For
any other runtime, or when its API is unreachable, the cgroup itself is used: v2 ``cgroup.freeze``
/ ``cgroup.kill`` (5.2+ / 5.14+), else the v1 freezer. Results are values (ok + one-line error),
never exceptions, so every attempt can be audited. The host is never a target.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sensor.containers import find_cgroup2_root
from sensor.events import HOST
from sensor.gate import ActionGate

__all__ = ["ActionGate", "ActionResult", "Responder"]


@dataclass(frozen=True)
class ActionResult:
    action: str  # pause | unpause | kill | stop | kill-process
    container_id: str
    ok: bool
    error: str = ""
    latency_ms: float = 0.0
    method: str = ""  # docker | cri.StopContainer | cgroup.freeze | cgroup.kill | freezer-v1 | signal


class Responder:
    """``cri_for(container_id)`` gives the CRI client (``stop_container(id, timeout_s) -> error``)
    that knows a container, or None; without it CRI containers are stopped through their cgroup."""

    def __init__(self, docker_client: Any = None, cgroupfs_root: Path | None = None,
                 v1_freezer_root: Path = Path("/sys/fs/cgroup/freezer"), procfs_root: Path = Path("/proc"),
                 cri_for: Callable[[str], Any] | None = None) -> None:
        self.docker = docker_client
        self.v2_root = cgroupfs_root or find_cgroup2_root()
        self.v1_root = v1_freezer_root
        self.procfs = procfs_root
        self.cri_for = cri_for

    @classmethod
    def create(cls, use_docker: bool = True, cri_for: Callable[[str], Any] | None = None) -> Responder:
        client = None
        if use_docker:
            try:
                import docker

                client = docker.from_env(timeout=5)
                client.ping()
            except Exception:  # noqa: BLE001 - no Docker: cgroup fallback only
                client = None
        return cls(client, cri_for=cri_for)

    def pause(self, container_id: str, cgroup_path: str = "") -> ActionResult:
        return self._do("pause", container_id, cgroup_path, lambda c: c.pause(),
                        lambda p: self._freeze(p, True))

    def unpause(self, container_id: str, cgroup_path: str = "") -> ActionResult:
        return self._do("unpause", container_id, cgroup_path, lambda c: c.unpause(),
                        lambda p: self._freeze(p, False))

    def kill(self, container_id: str, cgroup_path: str = "") -> ActionResult:
        return self._do("kill", container_id, cgroup_path, lambda c: c.kill(), self._cgroup_kill, cri_wait_s=0)

    def stop(self, container_id: str, cgroup_path: str = "") -> ActionResult:
        return self._do("stop", container_id, cgroup_path, lambda c: c.stop(timeout=5), self._cgroup_kill,
                        cri_wait_s=5)

    def kill_process(self, pid: int, container_id: str) -> ActionResult:
        """SIGKILL to ``pid`` only while it is still that container's process.

        A finding can be handled a while after its event, and by then the pid may have been
        reused, by a host process too. The signal goes through a pidfd, which names the process
        that held the pid when it was opened; that process's cgroup must name the container. If it
        died in between and the pid was reused, the pidfd's signal fails instead of hitting the
        newcomer."""
        start = time.monotonic()

        def failed(error: str) -> ActionResult:
            return ActionResult("kill-process", container_id, False, error, _ms(start), "signal")

        if not container_id or container_id == HOST:
            return failed("refusing to act on the host")
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as err:
            return failed(f"kill {pid}: {err.strerror}")
        try:
            if container_id not in (self.procfs / str(pid) / "cgroup").read_text(encoding="utf-8", errors="replace"):
                return failed(f"kill {pid}: no longer a process of container {container_id[:12]}, not killed")
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            return ActionResult("kill-process", container_id, True, "", _ms(start), "signal")
        except OSError as err:
            return failed(f"kill {pid}: {err.strerror}")
        finally:
            os.close(pidfd)

    def holds(self, action: str, container_id: str, cgroup_path: str, pid: int = 0) -> bool:
        """Whether an earlier ``action`` on this target still holds: a paused container still
        frozen (v2 ``cgroup.freeze`` or the v1 freezer, whichever the runtime used), a killed or
        stopped one gone or empty, a killed process gone (or its pid another container's). A
        container whose cgroup cannot be found is gone."""
        if action == "kill-process":
            try:
                return container_id not in (self.procfs / str(pid) / "cgroup").read_text(
                    encoding="utf-8", errors="replace")
            except OSError:
                return True
        rel = cgroup_path.lstrip("/")
        v2 = self.v2_root / rel
        if not cgroup_path or cgroup_path == "/" or not v2.is_dir():
            return True
        if action.startswith("pause"):
            return _read(v2 / "cgroup.freeze") == "1" or _read(self.v1_root / rel / "freezer.state") in (
                "FROZEN", "FREEZING")
        if action.startswith(("kill", "stop")):
            return not _read(v2 / "cgroup.procs")
        return False

    def act(self, action: str, container_id: str, cgroup_path: str = "", pid: int = 0) -> ActionResult:
        """Dispatch by name: pause | unpause | kill | stop (``-container`` suffix allowed) | kill-process."""
        if action == "kill-process":
            return self.kill_process(pid, container_id)
        fn = {"pause": self.pause, "unpause": self.unpause, "kill": self.kill,
              "stop": self.stop}.get(action.replace("-container", ""))
        if fn is None:
            return ActionResult(action, container_id, False, f"unknown action {action!r}")
        return fn(container_id, cgroup_path)

    def _do(self, action: str, container_id: str, cgroup_path: str, via_docker: Callable[[Any], None],
            via_cgroup: Callable[[str], str], cri_wait_s: int | None = None) -> ActionResult:
        """Docker, then (stop/kill: ``cri_wait_s`` set) CRI StopContainer, then the cgroup."""
        start = time.monotonic()
        if not container_id or container_id == HOST or cgroup_path == "/":
            return ActionResult(action, container_id, False, "refusing to act on the host")
        errors = []
        cri = self.cri_for(container_id) if self.cri_for is not None and cri_wait_s is not None else None
        if self.docker is not None and cri is None:
            try:
                via_docker(self.docker.containers.get(container_id))
                return ActionResult(action, container_id, True, "", _ms(start), "docker")
            except Exception as err:  # noqa: BLE001 - fall back to the cgroup
                errors.append(f"docker: {_docker_error(err)}")
        if cri is not None and cri_wait_s is not None:
            error = cri.stop_container(container_id, cri_wait_s)
            if not error:
                return ActionResult(action, container_id, True, "", _ms(start), "cri.StopContainer")
            errors.append(f"cri {cri.name}: {error}")
        if cgroup_path and cgroup_path != "/":
            try:
                method = via_cgroup(cgroup_path)
                return ActionResult(action, container_id, True, "", _ms(start), method)
            except OSError as err:
                errors.append(f"cgroup {cgroup_path}: {err.strerror or err}")
        elif not errors:
            errors.append("no Docker and no cgroup path known for this container")
        return ActionResult(action, container_id, False, "; ".join(errors), _ms(start), "")

    def _freeze(self, cgroup_path: str, frozen: bool) -> str:
        v2 = self.v2_root / cgroup_path.lstrip("/") / "cgroup.freeze"
        if v2.exists():
            v2.write_text("1" if frozen else "0")
            return "cgroup.freeze"
        v1 = self.v1_root / cgroup_path.lstrip("/") / "freezer.state"
        v1.write_text("FROZEN" if frozen else "THAWED")
        return "freezer-v1"

    def _cgroup_kill(self, cgroup_path: str) -> str:
        target = self.v2_root / cgroup_path.lstrip("/")
        kill_file = target / "cgroup.kill"
        if kill_file.exists():
            kill_file.write_text("1")
            return "cgroup.kill"
        for line in (target / "cgroup.procs").read_text().split():  # pre-5.14: signal each member
            try:
                os.kill(int(line), signal.SIGKILL)
            except ProcessLookupError:
                pass
        return "signal"


def _docker_error(err: Exception) -> str:
    """Docker's error on one line without the request URL, which takes the room its explanation
    needs: ``409 Client Error: Conflict ("Cannot kill container: ...: is not running")``."""
    text = re.sub(r" for (?:http\+docker|https?)://\S*?(?=: |$)", "", (str(err) or type(err).__name__).splitlines()[0])
    return text[:300]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""


def _ms(start: float) -> float:
    return (time.monotonic() - start) * 1000.0
