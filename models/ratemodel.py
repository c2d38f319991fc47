"""Rate model: a seeded IsolationForest per image over learning-period windows.

Windows keep every feature (:data:`~models.features.FEATURES`); the forest and the z-scores use
only the model's ``features`` (by default :data:`~models.features.SCORED_FEATURES`, those available
in alert and enforce mode), so a feature whose source is off when scoring is never compared.

Persisted as its training windows only (no pickle): :meth:`RateModel.fit` is deterministic for
the same windows and seed, so loading a model refits it to identical scores.

Scoring does not go through ``IsolationForest.score_samples``: for one window that call costs
~11 ms (a joblib task per tree), which made the model engine 7k events/s on a learned image.
:class:`FlatForest` holds the fitted trees as arrays and walks all of them at once (tests check
its scores against scikit-learn's).

Fitting does not go through scikit-learn either: :func:`isolation_forest` grows the same kind of
trees (Liu et al.'s isolation forest, as scikit-learn builds it: 256-window subsamples without
replacement, a random non-constant feature and a uniform threshold per node, depth limited to
log2 of the subsample) with numpy alone. Importing scikit-learn and scipy cost the sensor ~100 MB
of its resident memory for one estimator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.features import FEATURES, SCORED_FEATURES

MIN_WINDOWS = 6


Z_LIMIT = 6.0  # a feature this many (floored) deviations from its learned mean is anomalous


@dataclass
class RateScore:
    """IsolationForest score vs. its calibrated threshold, plus the per-feature z-scores.

    Few learning windows make the forest's scores saturate for a single extreme feature (a
    burst of connects and nothing else), so a z-score guard on each feature backs it up.
    """

    score: float  # higher = more anomalous
    threshold: float  # alert above
    top: list[tuple[str, float, float, float]]  # (feature, value, train mean, z)

    @property
    def forest_anomalous(self) -> bool:
        return self.score > self.threshold

    @property
    def z_anomalous(self) -> bool:
        return bool(self.top) and abs(self.top[0][3]) > Z_LIMIT

    @property
    def anomalous(self) -> bool:
        return self.forest_anomalous or self.z_anomalous


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): the mean depth of an unsuccessful search in a binary search tree of n keys, i.e. the
    expected remaining path below an isolation-tree leaf that still holds n training windows."""
    n = np.asarray(n, dtype=np.float64)
    out = np.where(n == 2, 1.0, 0.0)
    big = n > 2
    m = n[big]
    out[big] = 2.0 * (np.log(m - 1.0) + np.euler_gamma) - 2.0 * (m - 1.0) / m
    return out


@dataclass
class Tree:
    """One isolation tree in scikit-learn's array form: children (-1 at leaves), the feature
    and threshold of each split, and the training windows that reached each node."""

    children_left: np.ndarray
    children_right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    n_node_samples: np.ndarray

    @property
    def node_count(self) -> int:
        return len(self.children_left)

    @property
    def max_depth(self) -> int:
        depth = np.zeros(self.node_count, np.intp)
        for node in range(self.node_count):
            if self.children_left[node] >= 0:
                depth[self.children_left[node]] = depth[self.children_right[node]] = depth[node] + 1
        return int(depth.max())


def grow_tree(x: np.ndarray, rng: np.random.Generator, max_depth: int) -> Tree:
    """An isolation tree over the rows of ``x``: each node splits a random feature that is not
    constant among its rows at a uniform threshold between their min and max (in float32, as
    the scoring compares), until one row is left, all rows are equal, or ``max_depth``."""
    left: list[int] = []
    right: list[int] = []
    feature: list[int] = []
    threshold: list[float] = []
    counts: list[int] = []
    stack: list[tuple[np.ndarray, int, int, bool]] = [(np.arange(len(x)), 0, -1, False)]
    while stack:
        rows, depth, parent, is_right = stack.pop()
        node = len(left)
        left.append(-1)
        right.append(-1)
        feature.append(-2)
        threshold.append(-2.0)
        counts.append(len(rows))
        if parent >= 0:
            (right if is_right else left)[parent] = node
        if depth >= max_depth or len(rows) <= 1:
            continue
        sub = x[rows]
        lo, hi = sub.min(axis=0), sub.max(axis=0)
        varying = np.flatnonzero(hi > lo)
        if not len(varying):
            continue
        f = int(rng.choice(varying))
        t = float(np.float32(rng.uniform(lo[f], hi[f])))
        if not lo[f] <= t < hi[f]:  # float32 rounding landed outside: split at the lower value
            t = float(lo[f])
        goes_left = sub[:, f] <= t
        feature[node], threshold[node] = f, t
        stack.append((rows[~goes_left], depth + 1, node, True))
        stack.append((rows[goes_left], depth + 1, node, False))
    return Tree(np.array(left, np.intp), np.array(right, np.intp), np.array(feature, np.intp),
                np.array(threshold), np.array(counts, np.intp))


def isolation_forest(x: np.ndarray, n_trees: int = 100, seed: int = 7, max_samples: int = 256) -> FlatForest:
    """Fit an isolation forest on the rows of ``x`` (deterministic for the same rows and seed)."""
    x = np.asarray(x, np.float64).astype(np.float32).astype(np.float64)
    rng = np.random.default_rng(seed)
    samples = min(max_samples, len(x))
    depth = int(np.ceil(np.log2(max(samples, 2))))
    trees = [grow_tree(x[rng.choice(len(x), samples, replace=False)], rng, depth) for _ in range(n_trees)]
    return FlatForest(trees, samples)


class FlatForest:
    """A fitted isolation forest as arrays (trees x nodes), scored without per-tree calls.

    A row descends every tree at once, one level per step, comparing in float32 as scikit-learn's
    trees do; its path length in a tree is the leaf's depth plus c(training windows left in that
    leaf). Built from :func:`isolation_forest`'s trees, or from a fitted scikit-learn forest
    (:meth:`from_sklearn`: then ``score(x)`` equals ``-forest.score_samples(x)``).
    """

    @classmethod
    def from_sklearn(cls, forest: Any) -> FlatForest:
        return cls([est.tree_ for est in forest.estimators_], int(forest.max_samples_))

    def __init__(self, trees: list[Any], max_samples: int) -> None:
        width = max(t.node_count for t in trees)
        shape = (len(trees), width)
        self.left = np.zeros(shape, np.intp)
        self.right = np.zeros(shape, np.intp)
        self.feature = np.full(shape, -1, np.intp)
        self.threshold = np.zeros(shape)
        self.path = np.zeros(shape)  # at leaves: depth + c(n_node_samples)
        for i, t in enumerate(trees):
            n = t.node_count
            left, right = t.children_left, t.children_right
            depth = np.zeros(n)
            for node in range(n):  # children follow their parent in scikit-learn's node order
                if left[node] >= 0:
                    depth[left[node]] = depth[right[node]] = depth[node] + 1
            leaf = left < 0
            self.left[i, :n] = np.where(leaf, np.arange(n), left)
            self.right[i, :n] = np.where(leaf, np.arange(n), right)
            self.feature[i, :n] = np.where(leaf, 0, t.feature)
            self.threshold[i, :n] = np.where(leaf, np.inf, t.threshold)
            self.path[i, :n] = depth + average_path_length(t.n_node_samples)
        self.levels = max(int(t.max_depth) for t in trees)
        self.denominator = len(trees) * float(average_path_length(np.array([max_samples]))[0])

    def score(self, x: np.ndarray) -> np.ndarray:
        """Anomaly score per row of ``x`` (higher = more anomalous), as -score_samples."""
        x = np.atleast_2d(x).astype(np.float32).astype(np.float64)
        rows = np.arange(len(x))[:, None]
        trees = np.arange(self.left.shape[0])[None, :]
        node = np.zeros((len(x), self.left.shape[0]), np.intp)
        for _ in range(self.levels):  # a leaf points at itself, so extra steps stay put
            go_left = x[rows, self.feature[trees, node]] <= self.threshold[trees, node]
            node = np.where(go_left, self.left[trees, node], self.right[trees, node])
        depths = self.path[trees, node].sum(axis=1)
        if self.denominator == 0:
            return np.ones(len(x))
        out: np.ndarray = 2.0 ** (-depths / self.denominator)
        return out


class RateModel:
    def __init__(self, seed: int = 7, contamination_quantile: float = 0.99, margin: float = 0.1,
                 features: tuple[str, ...] = SCORED_FEATURES) -> None:
        unknown = sorted(set(features) - set(FEATURES))
        if unknown or not features:
            raise ValueError(f"rate model features {unknown or '(none)'} are not in this version's feature set")
        self.seed = seed
        self.quantile = contamination_quantile
        self.margin = margin
        self.features = tuple(f for f in FEATURES if f in features)  # fitted and scored, in FEATURES order
        self._cols = np.array([FEATURES.index(f) for f in self.features], dtype=np.intp)
        self.windows = np.zeros((0, len(FEATURES)), dtype=np.float64)  # every feature, as recorded
        self._forest: FlatForest | None = None
        self.threshold = float("inf")
        self._mean = np.zeros(len(self.features))
        self._std = np.ones(len(self.features))

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
        x = self._canonical(self.windows[:, self._cols])
        flat = isolation_forest(x, n_trees=100, seed=self.seed)
        train = flat.score(x)
        self.threshold = float(np.quantile(train, self.quantile) + self.margin)
        self._mean, self._std = x.mean(axis=0), x.std(axis=0)
        self._forest = flat
        return True

    @staticmethod
    def _canonical(x: np.ndarray) -> np.ndarray:
        """Rows in a fixed order so merged window sets fit identically whatever the merge order."""
        return x[np.lexsort(x.T[::-1])] if len(x) else x

    def score(self, vec: np.ndarray) -> RateScore | None:
        """Score one window (all FEATURES, as :func:`~models.features.vector` gives it) on the
        model's features only; None while the model is off."""
        if self._forest is None:
            return None
        vec = vec[self._cols]
        s = float(self._forest.score(vec)[0])
        # floor the spread: half the mean or 0.1/s, so a stable feature does not turn any
        # small change into a huge z
        z = (vec - self._mean) / np.maximum(self._std, np.maximum(0.5 * self._mean, 0.1))
        order = np.argsort(-np.abs(z))[:3]
        top = [(self.features[i], float(vec[i]), float(self._mean[i]), float(z[i])) for i in order]
        return RateScore(s, self.threshold, top)

    def to_dict(self) -> dict[str, Any]:
        x = self._canonical(self.windows)
        return {"seed": self.seed, "quantile": self.quantile, "margin": self.margin,
                "features": list(FEATURES), "scored": list(self.features), "shape": list(x.shape),
                "dtype": "float64", "windows": x.astype(np.float64).tobytes()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RateModel:
        """``features`` names the stored window columns; ``scored`` the ones fitted (format 1 had
        none: models/store.py migrates it to SCORED_FEATURES)."""
        model = cls(int(data["seed"]), float(data["quantile"]), float(data["margin"]),
                    tuple(data.get("scored", SCORED_FEATURES)))
        if list(data.get("features", [])) != list(FEATURES):
            raise ValueError("rate model features differ from this version's feature set")
        rows, cols = data["shape"]
        model.windows = np.frombuffer(data["windows"], dtype=np.float64).reshape(rows, cols).copy()
        return model

    def merged(self, other: RateModel) -> RateModel:
        common = tuple(f for f in self.features if f in other.features) or SCORED_FEATURES
        out = RateModel(self.seed, self.quantile, self.margin, common)
        out.windows = self._canonical(np.vstack([self.windows, other.windows]))
        return out
