"""Syscall-sequence novelty: how unlike an image's learned syscall traces a new trace is.

Four scorers, evaluated on ADFA-LD by bench/adfa.py:

- ``BagOfSyscalls``: nearest-neighbour cosine distance between syscall histograms (the
  published ~0.75 AUC reference);
- ``Stide``: the fraction of a trace's n-grams never seen in training (STIDE, ~0.83 AUC at n=6);
- ``NgramNovelty`` (ours): n-grams of several lengths weighted by how rare they were in training
  (never seen counts most, seen-once counts some), combined with the nearest-neighbour distance in
  a TF-IDF n-gram space. The n-gram tables are what a kernel map of first-seen n-gram hashes per
  image would hold, so the same model can run from kernel-maintained state.
- ``NgramLanguageModel`` (ours, default): an interpolated absolute-discount n-gram language model
  of syscalls (orders 1..6) whose mean per-syscall surprisal is added to the nearest-neighbour
  distance between syscall *sets*; both are z-scored against cross-fitted Training scores.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from models.errors import ModelError


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


_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio: spreads consecutive ids over 64 bits


def _gram_hashes(seq: np.ndarray, order: int) -> list[np.ndarray]:
    """``h[n][p]`` = 64-bit hash of the n syscalls ending at position p (``h[0]`` = empty context).

    A per-task rolling hash of the last k syscalls is what a BPF program can keep cheaply; the
    hash of an n-gram extends the hash of its (n-1)-suffix by the syscall n-1 places back.
    """
    length = len(seq)
    hashes = [np.zeros(length, np.uint64)]
    with np.errstate(over="ignore"):  # wrap-around multiplication is the hash
        for n in range(1, order + 1):
            back = np.zeros(length, np.uint64)
            back[n - 1:] = seq[:length - n + 1] + np.uint64(1)
            hashes.append((hashes[-1] ^ back) * _HASH_MUL + np.uint64(n))
    return hashes


def _context(hashes: list[np.ndarray], n: int) -> np.ndarray:
    """Hash of the n-1 syscalls before each position (the context an n-gram's last syscall follows)."""
    ctx = np.zeros_like(hashes[n - 1])
    ctx[1:] = hashes[n - 1][:-1]
    return ctx


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values[keys == q] for each q, 0 where q is absent (keys sorted)."""
    if len(keys) == 0:
        return np.zeros(len(query), np.int64)
    i = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[i] == query, values[i], 0)


class _NgramTables:
    """Per-order count tables: n-gram hash -> count, context hash -> (total, distinct followers).

    These are plain hash -> integer maps, i.e. exactly what a BPF hash map per image can hold.
    """

    def __init__(self, order: int, discount: float, vocab: int) -> None:
        self.order, self.discount, self.vocab = order, discount, vocab
        self.grams: list[tuple[np.ndarray, np.ndarray]] = []
        self.contexts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def _padded(self, traces: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Concatenate traces, each after order-1 pad ids (the pad id is ``vocab``); mask real syscalls."""
        pad = self.order - 1
        parts: list[np.ndarray] = []
        for t in traces:
            parts += [np.full(pad, self.vocab), np.clip(np.asarray(t, np.int64), 0, self.vocab - 1)]
        seq = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        real = np.concatenate([np.r_[np.zeros(pad, bool), np.ones(len(t), bool)] for t in traces]) \
            if traces else np.zeros(0, bool)
        return seq.astype(np.uint64), real

    def fit(self, traces: Sequence[Sequence[int]]) -> _NgramTables:
        seq, real = self._padded(traces)
        hashes = _gram_hashes(seq, self.order)
        for n in range(1, self.order + 1):
            gram, ctx = hashes[n][real], _context(hashes, n)[real]
            keys, counts = np.unique(gram, return_counts=True)
            pairs = np.unique(np.stack([ctx, gram], 1), axis=0)  # distinct (context, n-gram)
            ctx_keys, totals = np.unique(ctx, return_counts=True)  # same sorted key set as pairs[:, 0]
            distinct = np.unique(pairs[:, 0], return_counts=True)[1]
            self.grams.append((keys, counts))
            self.contexts.append((ctx_keys, totals, distinct))
        return self

    def surprisal(self, trace: Sequence[int]) -> np.ndarray:
        """Negative log-likelihood (nats) of each syscall given up to order-1 previous ones.

        Interpolated absolute discounting: P_n = max(c(hw) - D, 0)/c(h) + D * N1+(h.)/c(h) * P_{n-1},
        falling back to P_{n-1} for a context never seen; P_0 is uniform over ``vocab`` ids.
        """
        seq, real = self._padded([trace])
        hashes = _gram_hashes(seq, self.order)
        prob = np.full(len(seq), 1.0 / self.vocab)
        for n in range(1, self.order + 1):
            (keys, counts), (ctx_keys, totals, distinct) = self.grams[n - 1], self.contexts[n - 1]
            ctx = _context(hashes, n)
            c_hw, c_h = _lookup(keys, counts, hashes[n]), _lookup(ctx_keys, totals, ctx)
            n_h, denom = _lookup(ctx_keys, distinct, ctx), np.maximum(c_h, 1)
            interp = np.maximum(c_hw - self.discount, 0.0) / denom + self.discount * n_h / denom * prob
            prob = np.where(c_h > 0, interp, prob)
        out: np.ndarray = -np.log(prob[real])
        return out


class _SyscallSets:
    """Which syscalls each training trace used; distance = 1 - best cosine to a training trace's set."""

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab
        self.sets = np.zeros((0, vocab))

    def _vec(self, trace: Sequence[int]) -> np.ndarray:
        v = np.zeros(self.vocab)
        v[np.clip(np.asarray(trace, np.int64), 0, self.vocab - 1)] = 1.0
        return v / (np.linalg.norm(v) or 1.0)

    def fit(self, traces: Sequence[Sequence[int]]) -> _SyscallSets:
        self.sets = np.stack([self._vec(t) for t in traces])
        return self

    def distance(self, trace: Sequence[int]) -> float:
        return float(1.0 - np.max(self.sets @ self._vec(trace))) if len(trace) else 0.0


class NgramLanguageModel:
    """Syscall n-gram language model + syscall-set nearest neighbour, z-scored on Training.

    ``score(trace)`` = z(mean surprisal of the trace's syscalls under the n-gram model) +
    z(1 - best cosine between the trace's syscall set and a training trace's set). Each z uses the
    mean/std of that component on Training traces scored by models fitted on the *other* folds
    (seeded k-fold cross-fitting), so the two components are comparable without seeing any test
    data. Higher = more anomalous; an empty trace carries no evidence and scores both components 0.

    State is per-order count tables keyed by 64-bit n-gram hashes (count, and per context its total
    and number of distinct followers) plus one syscall bitmap per training trace: what a kernel
    could maintain per image (per-task last-k syscalls, n-gram hash -> count maps).
    """

    def __init__(self, order: int = 6, discount: float = 0.5, vocab: int = 512, folds: int = 5,
                 seed: int = 0) -> None:
        if order < 1 or not 0.0 < discount < 1.0:
            raise ModelError(f"NgramLanguageModel: order={order}, discount={discount} invalid "
                             "(use order >= 1 and 0 < discount < 1)")
        self.order, self.discount, self.vocab, self.folds, self.seed = order, discount, vocab, folds, seed
        self.tables = _NgramTables(order, discount, vocab)
        self.sets = _SyscallSets(vocab)
        self.center = np.zeros(2)
        self.scale = np.ones(2)

    def fit(self, traces: Iterable[Sequence[int]]) -> NgramLanguageModel:
        """Learn from normal traces; raises ModelError when none of them holds a syscall."""
        docs = [list(t) for t in traces if len(t)]
        if not docs:
            raise ModelError("NgramLanguageModel.fit: no non-empty training traces (record normal "
                             "behaviour of the image first)")
        self.tables = _NgramTables(self.order, self.discount, self.vocab).fit(docs)
        self.sets = _SyscallSets(self.vocab).fit(docs)
        self._calibrate(docs)
        return self

    def _calibrate(self, docs: list[list[int]]) -> None:
        """Mean/std of each component on held-out folds of Training (identity if < 2 traces)."""
        folds = min(self.folds, len(docs))
        if folds < 2:
            self.center, self.scale = np.zeros(2), np.ones(2)
            return
        fold_of = np.random.default_rng(self.seed).permutation(len(docs)) % folds
        held: list[np.ndarray] = []
        for k in range(folds):
            rest = [d for d, f in zip(docs, fold_of, strict=True) if f != k]
            tables = _NgramTables(self.order, self.discount, self.vocab).fit(rest)
            sets = _SyscallSets(self.vocab).fit(rest)
            held += [self._components(d, tables, sets) for d, f in zip(docs, fold_of, strict=True) if f == k]
        stacked = np.stack(held)
        self.center = stacked.mean(0)
        self.scale = np.where(stacked.std(0) > 0, stacked.std(0), 1.0)

    @staticmethod
    def _components(trace: Sequence[int], tables: _NgramTables, sets: _SyscallSets) -> np.ndarray:
        surprisal = tables.surprisal(trace) if len(trace) else np.zeros(0)
        return np.array([surprisal.mean() if len(surprisal) else 0.0, sets.distance(trace)])

    def components(self, trace: Sequence[int]) -> np.ndarray:
        """[mean surprisal (nats/syscall), syscall-set distance], both z-scored on Training."""
        if not len(trace):
            return np.zeros(2)
        return (self._components(trace, self.tables, self.sets) - self.center) / self.scale

    def score(self, trace: Sequence[int]) -> float:
        if not self.sets.sets.shape[0]:
            raise ModelError("NgramLanguageModel.score: model not fitted (call fit on normal traces)")
        return float(self.components(trace).sum())
