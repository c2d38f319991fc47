"""The exec storm alone, none vs. the default sensor, many times over: the all-workload overhead
run has 5 repetitions, and on this VM the no-sensor exec samples alone spread about +-9 %, so
its median cannot tell +1 % from +6 %. Here 32 pairs (in alternating order) give a paired ratio
and its bootstrap interval (bench/overhead.py: paired_ci)."""

from __future__ import annotations

from typing import Any

from bench import overhead

ALERT = "cgsentry (alert, full rule library)"


def run(smoke: bool = False, reps: int = 32) -> dict[str, Any]:
    out = overhead.run(smoke, reps, workloads=("exec",), only=(ALERT,))
    out["benchmark"] = "exec_ab"
    return out
