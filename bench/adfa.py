"""ADFA-LD (public HIDS data set): learn on Training, false alarms on Validation, detection on
Attack. ``python -m bench.adfa [--smoke]`` prints JSON. Read straight from the zip in ../shared."""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from models.sequence import BagOfSyscalls, NgramLanguageModel, NgramNovelty, Stide

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "adfa-ld" / "ADFA-LD.zip"


def load(path: Path = DATA) -> dict[str, list[list[int]]]:
    out: dict[str, list[list[int]]] = {"train": [], "validation": [], "attack": []}
    keys = {"Training_Data_Master": "train", "Validation_Data_Master": "validation",
            "Attack_Data_Master": "attack"}
    with zipfile.ZipFile(path) as z:
        for name in sorted(z.namelist()):
            if not name.endswith(".txt"):
                continue
            part = next((v for k, v in keys.items() if f"/{k}/" in name), None)
            if part:
                out[part].append([int(x) for x in z.read(name).split()])
    return out


def evaluate(model: Any, data: dict[str, list[list[int]]]) -> dict[str, float]:
    t0 = time.perf_counter()
    model.fit(data["train"])
    normal = [model.score(t) for t in data["validation"]]
    attack = [model.score(t) for t in data["attack"]]
    y = np.r_[np.zeros(len(normal)), np.ones(len(attack))]
    s = np.r_[normal, attack]
    fpr, tpr, _ = roc_curve(y, s)
    det_at_1pct = float(np.max(tpr[fpr <= 0.01])) if np.any(fpr <= 0.01) else 0.0
    return {"auc": round(float(roc_auc_score(y, s)), 4), "detection_at_1pct_fa": round(det_at_1pct, 4),
            "seconds": round(time.perf_counter() - t0, 1)}


def run(smoke: bool = False) -> dict[str, Any]:
    if not DATA.exists():
        return {"skipped": f"{DATA} not found"}
    data = load()
    if smoke:  # a deterministic subset, seconds not minutes
        data = {"train": data["train"][:200], "validation": data["validation"][::10],
                "attack": data["attack"][::4]}
    models = {"bag_of_syscalls_nn": BagOfSyscalls(), "stide_6": Stide(6), "cgsentry_ngram_novelty": NgramNovelty(),
              "cgsentry_ngram_lm": NgramLanguageModel()}
    results = {name: evaluate(m, data) for name, m in models.items()}
    return {"dataset": "ADFA-LD", "smoke": smoke, "traces": {k: len(v) for k, v in data.items()},
            "published": {"stide_6": 0.83, "bag_of_syscalls": 0.75}, "results": results}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    print(json.dumps(run(ap.parse_args().smoke), indent=2))
    sys.exit(0)
