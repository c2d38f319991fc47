"""Kernel tier: a seccomp profile exported from a baseline learned through the real sensor starts
the image under Docker, runs what was learned, and denies what was not."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from models.baseline import ModelConfig
from models.engine import ModelEngine
from models.export import seccomp_profile
from sensor.bpf_loader import ProbeOptions
from sensor.tracer import Tracer
from tests.conftest import BUSYBOX_IMAGE
from tests.kernel.helpers import learn

pytestmark = [pytest.mark.kernel, pytest.mark.docker]

# a fresh shell each round, so its start-up is learned once profiling is on for the cgroup
WORK = "echo hello >/tmp/x; cat /tmp/x; ls / >/dev/null; date >/dev/null"


@pytest.fixture(scope="module")
def tracer() -> Iterator[Tracer]:
    t = Tracer(ProbeOptions())
    t.watcher.mode = lambda _ev: "learn"  # profile every container's syscalls
    yield t
    t.close()


def docker_run(profile: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "run", "--rm", "--network", "none", "--security-opt", f"seccomp={profile}",
                           BUSYBOX_IMAGE, "/bin/sh", "-c", script], capture_output=True, text=True, timeout=60)


def test_exported_seccomp_profile_runs_learned_work_and_denies_the_rest(tracer: Tracer, busybox,  # type: ignore[no-untyped-def]
                                                                       tmp_path: Path) -> None:
    eng = ModelEngine(ModelConfig(window_s=2, min_learn_s=4, stable_s=2))
    c = busybox(f"sleep 0.5; while true; do /bin/sh -c '{WORK}'; sleep 0.2; done")
    learn(tracer, eng, c.id, 8)
    b = eng.images[c.image.id]
    learned = {int(k[0]) for k in b.profile.items["syscall"]}
    assert len(learned) >= 10, f"too few syscalls learned to mean anything: {sorted(learned)}"
    profile = tmp_path / "seccomp.json"
    profile.write_text(json.dumps(seccomp_profile(b)))
    names = set(seccomp_profile(b)["syscalls"][0]["names"])
    assert not {"socket", "bind", "listen"} & names, "the workload never used the network"

    ok = docker_run(profile, f"{WORK}; echo done")
    assert ok.returncode == 0 and ok.stdout.split() == ["hello", "done"], (ok.returncode, ok.stdout, ok.stderr)

    denied = docker_run(profile, "nc -l -p 17999 127.0.0.1")  # socket() was never learned
    assert denied.returncode != 0 and "not permitted" in denied.stderr, (denied.returncode, denied.stderr)
    unconfined = subprocess.run(["docker", "run", "--rm", "--network", "none", BUSYBOX_IMAGE, "/bin/sh", "-c",
                                 "nc -l -p 17999 127.0.0.1 & sleep 0.3; kill $!"],
                                capture_output=True, text=True, timeout=60)
    assert "not permitted" not in unconfined.stderr, unconfined.stderr  # the denial is the profile's
