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

from models.sequence import BagOfSyscalls, NgramLanguageModel, NgramNovelty, Stide, _NgramTables, _SyscallSets, ngrams

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


def _auc(normal: list[float], attack: list[float]) -> float:
    return round(float(roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(attack))], np.r_[normal, attack])), 4)


def _window_max(width: int) -> Any:
    def agg(s: np.ndarray) -> float:
        if len(s) <= width:
            return float(s.mean())
        c = np.cumsum(np.r_[0.0, s])
        return float(((c[width:] - c[:-width]) / width).max())
    return agg


def _neural_lm(data: dict[str, list[list[int]]], context: int = 10, hidden: int = 128) -> float:
    """A feed-forward neural language model (one-hot context -> softmax), mean surprisal per trace."""
    from scipy import sparse
    from sklearn.neural_network import MLPClassifier

    ids = {s: i + 1 for i, s in enumerate(sorted({s for t in data["train"] for s in t}))}  # 0: pad/unseen
    width = len(ids) + 1

    def windows(t: list[int]) -> tuple[Any, np.ndarray]:
        seq = np.array([0] * context + [ids.get(s, 0) for s in t])
        ctx = np.stack([seq[j:j + len(t)] for j in range(context)], 1) + np.arange(context) * width
        onehot = sparse.csr_matrix((np.ones(ctx.size, np.float32), ctx.ravel(), np.arange(0, ctx.size + 1, context)),
                                   shape=(len(t), context * width))
        return onehot, seq[context:]

    x, y = zip(*(windows(t) for t in data["train"]), strict=True)
    net = MLPClassifier(hidden_layer_sizes=(hidden,), batch_size=256, max_iter=8, random_state=0,
                        learning_rate_init=2e-3).fit(sparse.vstack(x), np.concatenate(y))
    col = {c: i for i, c in enumerate(net.classes_)}

    def score(t: list[int]) -> float:
        if not t:
            return 0.0
        onehot, nxt = windows(t)
        p = net.predict_proba(onehot)
        idx = np.array([col.get(v, -1) for v in nxt])
        prob = np.where(idx >= 0, p[np.arange(len(nxt)), np.maximum(idx, 0)], 1e-6)
        return float(-np.log(np.maximum(prob, 1e-6)).mean())
    return _auc([score(t) for t in data["validation"]], [score(t) for t in data["attack"]])


def _set_distance(train: list[list[int]], n: int) -> Any:
    """1 - best cosine between a trace's set of distinct n-grams and a Training trace's set."""
    from scipy import sparse

    index: dict[tuple[int, ...], int] = {}
    for t in train:
        for g in set(ngrams(t, n)):
            index.setdefault(g, len(index))

    def rows(traces: list[list[int]]) -> Any:
        cols = [sorted({index.get(g, len(index)) for g in ngrams(t, n)}) for t in traces]
        m = sparse.csr_matrix((np.ones(sum(map(len, cols))), np.concatenate([c for c in cols if c] or [[]]).astype(int),
                               np.r_[0, np.cumsum([len(c) for c in cols])]), shape=(len(traces), len(index) + 1))
        return m, np.maximum(np.asarray(m.sum(1)).ravel(), 1.0)

    ref, ref_n = rows(train)

    def score(traces: list[list[int]]) -> np.ndarray:
        q, q_n = rows(traces)
        out: np.ndarray = 1.0 - ((q @ ref.T).toarray() / np.sqrt(np.outer(q_n, ref_n))).max(1)
        return out
    return score


def ceiling(data: dict[str, list[list[int]]]) -> dict[str, Any]:
    """How far any linear combination of cheap trace features gets, picked by looking at Attack.

    Each feature is scored alone, then every sum of 2 or 3 of them (each z-scored on Validation)
    is tried and the best kept. That choice is made on the test data, so the result is an upper
    bound for combining these features, not a detector.
    """
    import itertools

    tables = _NgramTables(6, 0.5, 512).fit(data["train"])
    sets, stide, bag = _SyscallSets(512).fit(data["train"]), Stide(6).fit(data["train"]), \
        BagOfSyscalls().fit(data["train"])
    pairs, triples = _set_distance(data["train"], 2), _set_distance(data["train"], 3)
    feats: dict[str, dict[str, np.ndarray]] = {}
    for part in ("validation", "attack"):
        traces = data[part]
        sur = [tables.surprisal(t) for t in traces]
        feats[part] = {
            "lm_mean_surprisal": np.array([s.mean() if len(s) else 0.0 for s in sur]),
            "lm_median_surprisal": np.array([np.median(s) if len(s) else 0.0 for s in sur]),
            "lm_share_over_3_nats": np.array([(s > 3).mean() if len(s) else 0.0 for s in sur]),
            "syscall_set_distance": np.array([sets.distance(t) for t in traces]),
            "bigram_set_distance": pairs(traces), "trigram_set_distance": triples(traces),
            "stide_6": np.array([stide.score(t) for t in traces]),
            "bag_of_syscalls_nn": np.array([bag.score(t) for t in traces]),
            "few_distinct_syscalls": -np.array([len(set(t)) for t in traces], float),
            "short_trace": -np.log1p([len(t) for t in traces]),
        }
    normal, attack = feats["validation"], feats["attack"]
    alone = {k: _auc(list(normal[k]), list(attack[k])) for k in normal}
    z = {k: (np.r_[normal[k], attack[k]] - normal[k].mean()) / (normal[k].std() or 1.0) for k in normal}
    cut = len(data["validation"])
    best = max((_auc(list(s[:cut]), list(s[cut:])), combo) for r in (2, 3)
               for combo in itertools.combinations(sorted(z), r) for s in [sum(z[k] for k in combo)])
    return {"alone": alone, "best_sum_of_2_or_3": {"auc": best[0], "features": list(best[1])}}


def ablation() -> dict[str, Any]:
    """What else was tried for the 0.90 target, each scored the same way (AUC, Validation vs Attack)."""
    import warnings

    data = load()
    out: dict[str, Any] = {}
    for order in (6, 10):
        tables = _NgramTables(order, 0.5, 512).fit(data["train"])
        normal = [tables.surprisal(t) for t in data["validation"]]
        attack = [tables.surprisal(t) for t in data["attack"]]
        aggs = {"mean": lambda s: float(s.mean()), "max": lambda s: float(s.max()),
                "window_max_20": _window_max(20), "window_max_80": _window_max(80),
                "top50_mean": lambda s: float(np.sort(s)[-50:].mean())}
        out[f"ngram_lm_order{order}"] = {name: _auc([f(s) if len(s) else 0.0 for s in normal],
                                                    [f(s) if len(s) else 0.0 for s in attack])
                                         for name, f in aggs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn: max_iter reached; 8 epochs is the budget
        out["neural_lm_context10_mean"] = _neural_lm(data)
    out["feature_ceiling_selected_on_attack"] = ceiling(data)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--ablation", action="store_true", help="the variants tried for the 0.90 target")
    a = ap.parse_args()
    print(json.dumps(ablation() if a.ablation else run(a.smoke), indent=2))
    sys.exit(0)
