"""What the kernel, Docker and PostgreSQL tests need, and what happens when it is missing.

On a laptop a missing prerequisite skips with a clear reason; under CI (``CGSENTRY_REQUIRE_KERNEL=1``)
it is a failure, so those tests can never silently stop running. Every such skip in the suite goes
through :func:`missing`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRE = os.environ.get("CGSENTRY_REQUIRE_KERNEL", "") not in ("", "0")
BUSYBOX_IMAGE = "cgsentry/busybox:latest"


def missing(name: str, reason: str) -> NoReturn:
    """Skip the current test for lack of ``name`` (kernel, docker, postgres), or fail it under CI."""
    if REQUIRE:
        pytest.fail(f"{name} test required by CGSENTRY_REQUIRE_KERNEL=1 but: {reason}")
    pytest.skip(f"{name}: {reason}")


def kernel_missing() -> str | None:
    if os.geteuid() != 0:
        return "not root (BPF needs root or CAP_BPF+CAP_PERFMON)"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "BCC missing (apt-get install python3-bpfcc)"
    if not Path("/sys/kernel/tracing/events/sched").exists() and not Path(
        "/sys/kernel/debug/tracing/events/sched"
    ).exists():
        return "tracefs not mounted (mount -t tracefs nodev /sys/kernel/tracing)"
    return None


def docker_missing() -> str | None:
    try:
        import docker
    except ImportError:
        return "docker SDK missing (pip install docker)"
    try:
        client = docker.from_env(timeout=5)
        client.ping()
        client.images.get(BUSYBOX_IMAGE)
    except Exception as err:  # noqa: BLE001 - any failure means "no usable Docker"
        return f"Docker unusable ({type(err).__name__}: {str(err)[:120]}); run scripts/host-setup"
    return None


def postgres_missing() -> str | None:
    """The same lookup the throwaway server uses (bench/pgserver.py), so the check cannot pass
    while the fixture finds nothing to start."""
    from bench.pgserver import PG_BIN

    if PG_BIN is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) missing (apt-get install postgresql)"
    return None


CRI_SOCKET = "/run/cgsentry-containerd/containerd.sock"  # scripts/host-setup's containerd with CRI


def cri_missing() -> str | None:
    if not Path(CRI_SOCKET).is_socket():
        return f"no containerd with CRI at {CRI_SOCKET} (run scripts/host-setup)"
    return None


CHROMIUM = "/usr/bin/chromium"  # Debian's; nothing downloads a browser (never `playwright install`)


def browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} missing (apt-get install chromium, or run scripts/host-setup)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright missing (pip install -e '.[dev]')"
    return None


CHECKS = {"kernel": kernel_missing, "docker": docker_missing, "postgres": postgres_missing, "cri": cri_missing,
          "browser": browser_missing}
