"""Detection on container scenarios: learn a busybox web fleet, replay unchanged behaviour (false
alarms) and each injected deviation (found? with what explanation?)."""

from __future__ import annotations

import json
from typing import Any

from bench.workloads import DEVIATIONS, SEC, deviation, fleet
from models.baseline import ModelConfig
from models.engine import ModelEngine
from rules.engine import RuleEngine


def run(smoke: bool = False) -> dict[str, Any]:
    secs = 120 if smoke else 300
    learn = fleet(3, secs)
    eng = ModelEngine(ModelConfig(min_learn_s=60, stable_s=30))
    rules = RuleEngine.load()
    for ev in learn:
        eng.handle(ev)
    benign = fleet(3, secs, start_ns=learn[-1].time_ns + SEC, seed=11)
    false_model = sum(len(eng.handle(ev)) for ev in benign)
    false_rules = sum(len(rules.handle(ev)) for ev in benign)
    t = benign[-1].time_ns + SEC
    found: dict[str, Any] = {}
    for kind in DEVIATIONS:
        evs = deviation(kind, t)
        fs = [f for ev in evs for f in eng.handle(ev) + rules.handle(ev)] + eng.tick(t + 60 * SEC)
        found[kind] = {"found": bool(fs), "findings": sorted({f"{f.kind}:{f.rule}" for f in fs}),
                       "explanation": fs[0].output if fs else ""}
        t += 120 * SEC
    return {"benchmark": "scenarios", "smoke": smoke, "learned_events": len(learn), "benign_events": len(benign),
            "false_findings_models": false_model, "false_findings_rules": false_rules,
            "mode_after_learning": eng.mode(learn[0].image_key), "deviations": found,
            "found": sum(v["found"] for v in found.values()), "injected": len(DEVIATIONS)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
