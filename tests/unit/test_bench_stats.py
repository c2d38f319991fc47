"""The overhead benchmark's interval: pairs cancel drift between repetitions."""

from __future__ import annotations

import math

from bench.overhead import paired_ci


def test_paired_interval_cancels_drift_between_repetitions() -> None:
    # the machine got 4x slower across repetitions; the sensor costs 5 % in every one of them
    base = [100.0, 200.0, 300.0, 400.0]
    lo, hi = paired_ci([b * 1.05 for b in base], base)
    assert (lo, hi) == (5.0, 5.0)


def test_paired_interval_brackets_the_median_and_widens_with_spread() -> None:
    base = [100.0] * 9
    tight = paired_ci([101.0, 102.0, 103.0, 102.0, 101.0, 103.0, 102.0, 102.0, 101.0], base)
    loose = paired_ci([95.0, 110.0, 102.0, 90.0, 115.0, 102.0, 99.0, 108.0, 101.0], base)
    assert tight[0] <= 2.0 <= tight[1] and loose[0] <= 2.0 <= loose[1]
    assert loose[1] - loose[0] > tight[1] - tight[0]


def test_one_repetition_has_no_interval() -> None:
    assert all(math.isnan(x) for x in paired_ci([1.0], [1.0]))


def test_readme_tables_are_the_committed_benchmark_results() -> None:
    """The README's numbers are bench/results/summary.md, spliced in by bench/run.py: no
    hand-edited figure can drift from the results it claims to show."""
    from bench.run import README, RESULTS, splice

    readme = README.read_text()
    assert splice(readme, (RESULTS / "summary.md").read_text()) == readme


def test_a_failed_run_drops_its_pair_instead_of_poisoning_the_interval() -> None:
    from bench.overhead import paired_median

    base = [100.0, 100.0, float("nan"), 100.0]
    runs = [105.0, 105.0, 105.0, float("nan")]
    assert paired_ci(runs, base) == (5.0, 5.0) and paired_median(runs, base) == 5.0
