"""``cgsentry-sensor doctor``: can the sensor run here, and if not, what to do about it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sensor import bpf_loader
from sensor.errors import EX_NOPERM, EX_UNAVAILABLE, CgsentryError
from sensor.runtimes import FIXES, Socket, candidate_sockets


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _privileges() -> Check:
    ok = os.geteuid() == 0
    return Check("privileges", ok, "root" if ok else f"euid {os.geteuid()}",
                 "run as root (or grant CAP_BPF+CAP_PERFMON+CAP_SYS_RESOURCE)")


def _tracefs() -> Check:
    root = bpf_loader.tracefs_root()
    if root is not None:
        return Check("tracefs", True, str(root), "")
    unreadable = next((r for r in bpf_loader.TRACEFS_ROOTS if _exists_unreadable(r / "events")), None)
    if unreadable is not None:
        return Check("tracefs", False, f"{unreadable} is mounted but not readable as euid {os.geteuid()}",
                     "run as root (tracefs is root-only)")
    return Check("tracefs", False, "not mounted", "mount -t tracefs nodev /sys/kernel/tracing")


def _exists_unreadable(path: Path) -> bool:
    try:
        path.stat()
        return False
    except PermissionError:
        return True
    except OSError:
        return False


def _headers() -> Check:
    build = Path("/lib/modules") / os.uname().release / "build"
    ok = (build / "include").exists()
    return Check("kernel headers", ok, str(build) if ok else f"{build} missing",
                 "apt-get install linux-headers-amd64 and link /lib/modules/$(uname -r)/{build,source}"
                 " (scripts/host-setup does it)")


def _bcc() -> Check:
    try:
        bcc = bpf_loader.import_bcc()
    except CgsentryError as err:
        return Check("bcc", False, "python module missing", str(err))
    return Check("bcc", True, f"bcc {getattr(bcc, '__version__', '?')}")


def _features() -> list[Check]:
    if os.geteuid() != 0:
        return [Check("bpf features", False, "not checked (needs root)", "run doctor as root")]
    try:
        feats = bpf_loader.detect_features()
    except CgsentryError as err:
        return [Check("bpf features", False, str(err), "install BCC")]
    fixes = {"ring_buffer": "kernel >= 5.8 needed", "send_signal": "kernel >= 5.3 needed "
             "(in-kernel kill at exec is disabled; container pause/kill still works)",
             "cgroup_id": "kernel >= 4.18 with cgroup v2 needed"}
    return [Check(name, ok, "supported" if ok else "unsupported", fixes[name],
                  required=name != "send_signal") for name, ok in feats.items()]


def _docker() -> Check:
    try:
        import docker

        client = docker.from_env(timeout=3)
        version = client.version().get("Version", "?")
        return Check("docker", True, f"engine {version}", required=False)
    except Exception as err:  # noqa: BLE001 - any failure: report it
        detail, fix = docker_cause(err)
        return Check("docker", False, detail, fix + "; without it containers are named by cgroup only and "
                     "pause/kill use the cgroup freezer", required=False)


def docker_cause(err: BaseException) -> tuple[str, str]:
    """Why Docker's API did not answer, from the error and its causes: (detail, fix). Permission
    on the socket and a daemon that is not running have different fixes."""
    chain: list[BaseException] = []
    seen: BaseException | None = err
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(f"{type(e).__name__} {e}" for e in chain)
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if any(isinstance(e, PermissionError) for e in chain) or "Permission denied" in text:
        return (f"permission denied on {host}",
                f"run as root or as a member of the docker group (euid {os.geteuid()} may not open the socket)")
    if any(isinstance(e, (FileNotFoundError, ConnectionRefusedError)) for e in chain) or \
            "No such file" in text or "Connection refused" in text:
        return (f"daemon not running (nothing answers at {host})",
                "start dockerd (systemctl start docker), or set DOCKER_HOST to where it listens")
    return f"unreachable ({type(err).__name__})", "start dockerd, or set DOCKER_HOST"


def _profiles() -> list[Check]:
    """What each probe profile sees (--profile), and whether lean's socket hooks can attach here."""
    import re

    from sensor.containers import find_cgroup2_root

    out = []
    for name, what in bpf_loader.DETECTIONS.items():
        sees = "; ".join(k for k, v in what.items() if v)
        lacks = "; ".join(k for k, v in what.items() if not v)
        out.append(Check(f"profile {name}", True, f"sees {sees}" + (f" | not: {lacks}" if lacks else ""),
                         required=False))
    root = find_cgroup2_root()
    major, minor = (int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    ok = (root / "cgroup.procs").exists() and (major, minor) >= (5, 7)
    out.append(Check("lean hooks", ok, f"cgroup socket hooks attach at {root}" if ok else
                     f"cgroup2 root {root} or bpf_link (Linux 5.7+) missing", "use --profile full", required=False))
    return out


def _runtime_sockets(cri: list[Socket] | None = None) -> list[Check]:
    """Each runtime socket found (CRI ones asked for their version), and a fix for those missing:
    the operator's ``--cri-socket`` paths each, else one line for CRI and one for podman."""
    out: list[Check] = []
    sockets = [s for s in candidate_sockets(cri) if s.kind != "docker"]  # Docker has its own check
    for sock in sockets:
        if not sock.exists():
            continue
        out.append(_probe_cri(sock) if sock.kind == "cri" else _probe_podman(sock))
    for sock in sockets:
        missing = not sock.exists()
        if missing and (cri or sock.kind == "podman"):
            out.append(Check(f"{sock.name} socket", False, f"{sock.path} missing", FIXES[sock.name],
                             required=False))
    if not cri and not any(s.exists() for s in sockets if s.kind == "cri"):
        paths = ", ".join(dict.fromkeys(s.path for s in sockets if s.kind == "cri"))
        out.append(Check("cri socket", False, f"none of {paths}", FIXES["containerd"] + "; Kubernetes "
                         "pods are then named by their cgroup path only", required=False))
    return out


def _probe_cri(sock: Socket) -> Check:
    from sensor.cri import CriRuntime

    client = CriRuntime(sock.path, name=sock.name, timeout_s=2.0, follow=False)
    try:
        version = client.probe()
    except OSError as err:
        return Check(f"{sock.name} cri", False, f"{sock.path}: {err}",
                     f"{FIXES[sock.name]} (is its CRI plugin disabled?)", required=False)
    finally:
        client.close()
    return Check(f"{sock.name} cri", True, f"{sock.path}: {version}", required=False)


def _probe_podman(sock: Socket) -> Check:
    from sensor.podman import PodmanRuntime

    try:
        version = PodmanRuntime(sock.path, timeout_s=2.0).probe()
    except OSError as err:
        return Check("podman api", False, f"{sock.path}: {err}", FIXES["podman"], required=False)
    return Check("podman api", True, f"{sock.path}: {version}", required=False)


CHECKS: tuple[Callable[[], Check | list[Check]], ...] = (
    _privileges, _tracefs, _headers, _bcc, _features, _docker, _profiles)


def run_checks(cri_sockets: list[Socket] | None = None) -> list[Check]:
    out: list[Check] = []
    for fn in CHECKS:
        res = fn()
        out.extend(res if isinstance(res, list) else [res])
    out.extend(_runtime_sockets(cri_sockets))
    return out


def can_run(checks: list[Check]) -> bool:
    return all(c.ok for c in checks if c.required)


ROOT_ONLY = frozenset({"privileges", "tracefs", "bpf features"})  # checks a missing privilege fails


def exit_code(checks: list[Check]) -> int:
    """doctor's exit code (README): 0 the sensor can run; 77 only privileges are missing (run it as
    root); 69 something it needs is missing or unsupported (each FAIL line says what)."""
    failed = [c for c in checks if c.required and not c.ok]
    if not failed:
        return 0
    return EX_NOPERM if all(c.name in ROOT_ONLY for c in failed) and os.geteuid() != 0 else EX_UNAVAILABLE
