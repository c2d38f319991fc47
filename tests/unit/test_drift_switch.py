"""The drift check's off switch, CGSENTRY_DRIFT_CHECK=0, exists for bench/depth.py's A/B of its cost
per exec: unset, a program written after the container started is flagged; off, it is not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sensor.events import EXE_UPPER_LAYER, Event
from sensor.procfacts import ProcFacts

MOUNTINFO = "120 69 0:50 / / rw,relatime - overlay overlay rw,lowerdir=/l/A,upperdir={upper},workdir=/w\n"


def test_the_drift_check_is_on_unless_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, upper, procfs = tmp_path / "root", tmp_path / "upper", tmp_path / "proc"
    (root / "srv").mkdir(parents=True)
    (upper / "srv").mkdir(parents=True)
    (upper / "srv" / "tool").write_bytes(b"\x7fELF dropped")
    (procfs / "10").mkdir(parents=True)
    (procfs / "10" / "mountinfo").write_text(MOUNTINFO.format(upper=upper))
    os.symlink(root, procfs / "10" / "root")
    ev = Event("exec", 1, pid=10, comm="tool", exe="/srv/tool", args=("/srv/tool",), cgroup_id=77,
               container_id="d" * 64, runtime="docker", image="web:1", image_id="sha256:web")
    assert ProcFacts(procfs).exec_event(ev, "sha256:web", True).flags & EXE_UPPER_LAYER
    monkeypatch.setenv("CGSENTRY_DRIFT_CHECK", "0")
    off = ProcFacts(procfs)
    assert not off.exec_event(ev, "sha256:web", True).flags & EXE_UPPER_LAYER
    assert off.stats()["exec_drift"] == 0
