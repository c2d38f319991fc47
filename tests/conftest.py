"""Test tiers: unit (no root), integration (in-process gRPC, replay), kernel (root + BPF + Docker).

Kernel, Docker and PostgreSQL tests skip with a clear reason on a laptop; under CI
(``CGSENTRY_REQUIRE_KERNEL=1``) a missing prerequisite is a failure, so they can never silently
stop running (tests/prereqs.py).
"""

from __future__ import annotations

import os

import pytest

from tests.prereqs import BUSYBOX_IMAGE, CHECKS, missing

_cache: dict[str, str | None] = {}


def pytest_runtest_setup(item: pytest.Item) -> None:
    for name, check in CHECKS.items():
        if item.get_closest_marker(name) is None:
            continue
        if name not in _cache:
            _cache[name] = check()
        reason = _cache[name]
        if reason is not None:
            missing(name, reason)


@pytest.fixture(scope="session")
def docker_client():  # type: ignore[no-untyped-def]
    import docker

    return docker.from_env(timeout=30)


@pytest.fixture
def busybox(docker_client):  # type: ignore[no-untyped-def]
    """Factory: start a busybox container (``--network none`` by default); removed afterwards."""
    started = []

    def start(cmd: str = "sleep 3600", network: str = "none", image: str = BUSYBOX_IMAGE, **kw):  # type: ignore[no-untyped-def]
        c = docker_client.containers.run(
            image, ["/bin/sh", "-c", cmd], detach=True, network_mode=network, **kw
        )
        started.append(c)
        c.reload()
        return c

    yield start
    for c in started:
        try:
            c.remove(force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


# Daemon threads (gRPC servers and streams, the Docker event follower, link and heartbeat threads)
# may still be inside a write when the interpreter finalises, which CPython can turn into a fatal
# "could not acquire lock for <stderr>" abort after every test has passed. Once pytest has
# printed its summary nothing else is owed, so leave without finalising.
_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _exit_status and os.environ.get("CGSENTRY_SOFT_EXIT") != "1":
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[0])
