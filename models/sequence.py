"""Syscall-sequence novelty: how unlike an image's learned syscall traces a new trace is.

Three scorers, evaluated on ADFA-LD by bench/adfa.py:

- ``BagOfSyscalls``: nearest-neighbour cosine distance between syscall histograms (the
  published ~0.75 AUC reference);
- ``Stide``: the fraction of a trace's n-grams never seen in training (STIDE, ~0.83 AUC at n=6);
- ``NgramNovelty`` (ours): n-grams of several lengths weighted by how rare they were in training
  (never seen counts most, seen-once counts some), combined with the nearest-neighbour distance in
  a TF-IDF n-gram space. The n-gram tables are what a kernel map of first-seen n-gram hashes per
  image would hold, so the same model can run from kernel-maintained state.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Sequence

import numpy as np


def ngrams(trace: Sequence[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(trace[i:i + n]) for i in range(max(0, len(trace) - n + 1))]


class BagOfSyscalls:
    def __init__(self, vocab: int = 512) -> None:
        self.vocab = vocab
        self.train = np.zeros((0, vocab))

    def _vec(self, trace: Sequence[int]) -> np.ndarray:
        v = np.bincount(np.clip(np.asarray(trace, dtype=np.int64), 0, self.vocab - 1), minlength=self.vocab)
        v = v.astype(np.float64)
        return v / (np.linalg.norm(v) or 1.0)

    def fit(self, traces: Iterable[Sequence[int]]) -> BagOfSyscalls:
        self.train = np.stack([self._vec(t) for t in traces])
        return self

    def score(self, trace: Sequence[int]) -> float:
        return float(1.0 - np.max(self.train @ self._vec(trace)))


class Stide:
    def __init__(self, n: int = 6) -> None:
        self.n = n
        self.seen: set[tuple[int, ...]] = set()

    def fit(self, traces: Iterable[Sequence[int]]) -> Stide:
        for t in traces:
            self.seen.update(ngrams(t, self.n))
        return self

    def score(self, trace: Sequence[int]) -> float:
        grams = ngrams(trace, self.n)
        return sum(g not in self.seen for g in grams) / len(grams) if grams else 0.0


class NgramNovelty:
    """Rarity-weighted n-gram novelty (n = 2..6) plus TF-IDF nearest-neighbour distance."""

    def __init__(self, sizes: tuple[int, ...] = (2, 3, 4, 5, 6), knn_n: int = 3) -> None:
        self.sizes = sizes
        self.knn_n = knn_n
        self.counts: dict[int, Counter[tuple[int, ...]]] = {n: Counter() for n in sizes}
        self.doc_freq: Counter[tuple[int, ...]] = Counter()
        self.train_vecs: list[dict[tuple[int, ...], float]] = []
        self.n_docs = 0

    def fit(self, traces: Iterable[Sequence[int]]) -> NgramNovelty:
        docs = [list(t) for t in traces]
        for t in docs:
            for n in self.sizes:
                self.counts[n].update(ngrams(t, n))
            self.doc_freq.update(set(ngrams(t, self.knn_n)))
        self.n_docs = len(docs)
        self.train_vecs = [self._tfidf(t) for t in docs]
        return self

    def _tfidf(self, trace: Sequence[int]) -> dict[tuple[int, ...], float]:
        tf = Counter(ngrams(trace, self.knn_n))
        vec = {g: c * math.log((1 + self.n_docs) / (1 + self.doc_freq.get(g, 0))) for g, c in tf.items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {g: v / norm for g, v in vec.items()}

    def rarity(self, trace: Sequence[int]) -> float:
        total = 0.0
        for n in self.sizes:
            grams = ngrams(trace, n)
            if not grams:
                continue
            table = self.counts[n]
            total += sum(1.0 / (1.0 + table.get(g, 0)) for g in grams) / len(grams)
        return total / len(self.sizes)

    def distance(self, trace: Sequence[int]) -> float:
        vec = self._tfidf(trace)
        best = max((sum(v * other.get(g, 0.0) for g, v in vec.items()) for other in self.train_vecs), default=0.0)
        return 1.0 - best

    def score(self, trace: Sequence[int]) -> float:
        return self.rarity(trace) + self.distance(trace)
