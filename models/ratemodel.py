"""Rate model: a seeded IsolationForest per image over learning-period windows.

Persisted as its training windows only (no pickle): :meth:`RateModel.fit` is deterministic for
the same windows and seed, so loading a model refits it to identical scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest

from models.features import FEATURES

MIN_WINDOWS = 6


Z_LIMIT = 6.0  # a feature this many (floored) deviations from its learned mean is anomalous


@dataclass
class RateScore:
    """IsolationForest score vs. its calibrated threshold, plus the per-feature z-scores.

    Few learning windows make the forest's scores saturate for a single extreme feature (a
    burst of connects and nothing else), so a z-score guard on each feature backs it up.
    """

    score: float
    threshold: float
    top: list[tuple[str, float, float, float]]  # (feature, value, train mean, z)

    @property
    def anomalous(self) -> bool:
        return self.score > self.threshold or (bool(self.top) and abs(self.top[0][3]) > Z_LIMIT)


class RateModel:
    def __init__(self, seed: int = 7, contamination_quantile: float = 0.99, margin: float = 0.1) -> None:
        self.seed = seed
        self.quantile = contamination_quantile
        self.margin = margin
        self.windows = np.zeros((0, len(FEATURES)), dtype=np.float64)
        self._forest: IsolationForest | None = None
        self.threshold = float("inf")
        self._mean = np.zeros(len(FEATURES))
        self._std = np.ones(len(FEATURES))

    def add_window(self, vec: np.ndarray) -> None:
        self.windows = np.vstack([self.windows, vec[None, :]])

    @property
    def fitted(self) -> bool:
        return self._forest is not None

    def fit(self) -> bool:
        """Fit on the stored windows; False (model off) with fewer than MIN_WINDOWS."""
        if len(self.windows) < MIN_WINDOWS:
            self._forest = None
            return False
        x = self._canonical(self.windows)
        forest = IsolationForest(n_estimators=100, random_state=self.seed, contamination="auto")
        forest.fit(x)
        train = -forest.score_samples(x)
        self.threshold = float(np.quantile(train, self.quantile) + self.margin)
        self._mean, self._std = x.mean(axis=0), x.std(axis=0)
        self._forest = forest
        return True

    @staticmethod
    def _canonical(x: np.ndarray) -> np.ndarray:
        """Rows in a fixed order so merged window sets fit identically whatever the merge order."""
        return x[np.lexsort(x.T[::-1])] if len(x) else x

    def score(self, vec: np.ndarray) -> RateScore | None:
        if self._forest is None:
            return None
        s = float(-self._forest.score_samples(vec[None, :])[0])
        # floor the spread: half the mean or 0.1/s, so a stable feature does not turn any
        # small change into a huge z
        z = (vec - self._mean) / np.maximum(self._std, np.maximum(0.5 * self._mean, 0.1))
        order = np.argsort(-np.abs(z))[:3]
        top = [(FEATURES[i], float(vec[i]), float(self._mean[i]), float(z[i])) for i in order]
        return RateScore(s, self.threshold, top)

    def to_dict(self) -> dict[str, Any]:
        x = self._canonical(self.windows)
        return {"seed": self.seed, "quantile": self.quantile, "margin": self.margin,
                "features": list(FEATURES), "shape": list(x.shape), "dtype": "float64",
                "windows": x.astype(np.float64).tobytes()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RateModel:
        model = cls(int(data["seed"]), float(data["quantile"]), float(data["margin"]))
        if list(data.get("features", [])) != list(FEATURES):
            raise ValueError("rate model features differ from this version's feature set")
        rows, cols = data["shape"]
        model.windows = np.frombuffer(data["windows"], dtype=np.float64).reshape(rows, cols).copy()
        return model

    def merged(self, other: RateModel) -> RateModel:
        out = RateModel(self.seed, self.quantile, self.margin)
        out.windows = self._canonical(np.vstack([self.windows, other.windows]))
        return out
