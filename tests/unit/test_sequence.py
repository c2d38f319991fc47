"""NgramLanguageModel: novelty ranking, a proper probability model, determinism, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.errors import ModelError
from models.sequence import NgramLanguageModel, _NgramTables


def grammar_traces(count: int = 30, seed: int = 1) -> list[list[int]]:
    """Normal behaviour: open-read*-close loops (5, 3+, 6) with an occasional stat (4) before open."""
    rng = np.random.default_rng(seed)
    traces = []
    for _ in range(count):
        trace: list[int] = []
        for _ in range(int(rng.integers(3, 8))):
            if rng.random() < 0.3:
                trace.append(4)
            trace += [5] + [3] * int(rng.integers(1, 4)) + [6]
        traces.append(trace)
    return traces


def test_unseen_transition_scores_higher_than_grammar_trace() -> None:
    model = NgramLanguageModel(order=4).fit(grammar_traces())
    normal = [5, 3, 3, 6, 4, 5, 3, 6, 5, 3, 3, 3, 6]
    # same syscall set, so only the sequence (close before read, read after close) can tell
    odd = [5, 3, 3, 6, 4, 5, 6, 3, 5, 3, 3, 3, 6]
    assert model.score(odd) > model.score(normal)
    assert model.tables.surprisal(odd).mean() > model.tables.surprisal(normal).mean()


def test_unseen_syscall_raises_the_set_distance() -> None:
    model = NgramLanguageModel(order=3).fit(grammar_traces())
    normal, shell = [5, 3, 6, 5, 3, 6], [5, 3, 6, 11, 63, 63, 6]  # execve + dup2 never seen
    assert model.components(shell)[1] > model.components(normal)[1]
    assert model.score(shell) > model.score(normal)


def test_conditional_probabilities_sum_to_one() -> None:
    vocab = 16
    tables = _NgramTables(order=3, discount=0.5, vocab=vocab).fit(grammar_traces(10))
    for context in ([5, 3], [3, 6], [9, 9], []):
        total = sum(math.exp(-tables.surprisal(context + [w])[-1]) for w in range(vocab))
        assert total == pytest.approx(1.0, abs=1e-9)


def test_seen_ngram_is_less_surprising_than_unseen() -> None:
    tables = _NgramTables(order=3, discount=0.5, vocab=16).fit(grammar_traces(10))
    seen, unseen = tables.surprisal([5, 3, 6]), tables.surprisal([5, 6, 3])
    assert seen[2] < unseen[2]
    assert len(seen) == 3  # one value per syscall, the padding is not scored


def test_deterministic_for_same_input_and_seed() -> None:
    train = grammar_traces()
    trace = [4, 5, 3, 6, 5, 6, 3, 3]
    first = NgramLanguageModel().fit(train)
    score = first.score(trace)
    assert math.isfinite(score) and first.score([9, 9, 9, 9]) != score
    assert first.score(trace) == score  # scoring another trace in between leaves no state behind
    assert first.score(trace) == NgramLanguageModel().fit(train).score(trace)
    np.testing.assert_array_equal(first.center, NgramLanguageModel().fit(train).center)


def test_calibration_centres_training_scores() -> None:
    train = grammar_traces(40)
    model = NgramLanguageModel(order=3).fit(train)
    # held-out training traces average z = 0; in-sample ones are at most that surprising
    assert np.mean([model.components(t)[0] for t in train]) <= 0.0 + 1e-9


def test_fit_on_empty_input_raises_model_error() -> None:
    with pytest.raises(ModelError, match="no non-empty training traces"):
        NgramLanguageModel().fit([])
    with pytest.raises(ModelError, match="no non-empty training traces"):
        NgramLanguageModel().fit([[], []])


def test_score_before_fit_and_bad_hyperparameters_raise() -> None:
    with pytest.raises(ModelError, match="not fitted"):
        NgramLanguageModel().score([1, 2, 3])
    with pytest.raises(ModelError, match="order"):
        NgramLanguageModel(order=0)
    with pytest.raises(ModelError, match="discount"):
        NgramLanguageModel(discount=1.5)


def test_single_trace_and_empty_trace_are_defined() -> None:
    model = NgramLanguageModel().fit([[1, 2, 3, 1, 2, 3]])  # too few traces to cross-fit: raw scale
    np.testing.assert_array_equal(model.center, np.zeros(2))
    assert model.score([]) == 0.0
    assert model.score([1, 2, 3]) < model.score([3, 2, 1, 7])
    assert model.score([400, 1000]) > model.score([1, 2, 3])  # ids beyond vocab are clipped, not errors
