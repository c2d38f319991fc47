"""bench/results/summary.md is what bench/run.py builds from the JSON results beside it, so a
figure in it (and so in the README) cannot drift from its file; the results say when they were
measured, and a BCC peer row carries proof that the tools ran."""

from __future__ import annotations

from bench.run import RESULTS, stored, summary


def test_summary_md_is_built_from_the_committed_json_results() -> None:
    assert (RESULTS / "summary.md").read_text() == summary(stored())


def test_every_full_result_says_when_and_where_it_was_measured() -> None:
    undated = [name for name, r in stored().items() if "date" not in r]
    assert undated == []
    assert [name for name, r in stored().items() if "benchmark" in r and "machine" not in r] == []


def test_a_bcc_row_has_traced_the_workload_in_every_repetition() -> None:
    """The row once timed tools that had died at attach (RSS 0 MB): a BCC row must prove it ran."""
    overhead = stored()["overhead"]
    for cfg, row in overhead["results"].items():
        if not cfg.startswith("bcc"):
            continue
        reps = row["process"]["per_rep"]
        assert len(reps) == overhead["reps"] and row["process"]["rss_mb_peak"] > 0, cfg
        for rep in reps:
            assert rep["ran_throughout"], cfg
            for wl in ("exec", "connect"):
                assert rep[f"traced_{wl}"] >= overhead["sizes"][wl] * 0.9, (cfg, rep)
