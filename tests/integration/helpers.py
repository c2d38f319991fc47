"""Shared helpers of the integration tier (imported by its test modules, never one test module
from another); the ``live`` collector fixture is in conftest.py."""

from __future__ import annotations

from typing import Any

from bench.workloads import deviation, fleet
from collector.cli import main
from models.baseline import ModelConfig
from models.engine import ModelEngine
from sensor.events import Finding

FLEET_CFG = ModelConfig(min_learn_s=60, stable_s=30)


def finding(i: int, container: int = 0) -> Finding:
    ev = deviation("new_binary", 1_700_000_000_000_000_000 + i, i=container).pop()
    return Finding("new_process", "New Process", "WARNING", f"finding {i}", ev.replace(exe=f"/tmp/x{i}"),
                   time_ns=ev.time_ns)


def learned(containers: range, seconds: int = 200) -> ModelEngine:
    eng = ModelEngine(FLEET_CFG)
    for ev in fleet(max(containers) + 1, seconds):
        if int(ev.container_id[:2]) in containers:
            eng.handle(ev)
    return eng


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the ``cgsentry`` CLI in-process."""
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err
