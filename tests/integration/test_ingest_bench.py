"""The collector ingest benchmark's own check: what N concurrent sensor links send, the store
holds exactly once (repeats aggregated into counts, nothing lost, nothing doubled)."""

from __future__ import annotations

from pathlib import Path

from bench.ingest import findings, measure


def test_concurrent_streams_are_stored_exactly_once(tmp_path: Path) -> None:
    r = measure(f"sqlite:///{tmp_path}/c.db", streams=3, per_stream=120, tmp=tmp_path)
    assert (r["findings_sent"], r["findings_stored"], r["lossless"]) == (360, 360, True)
    assert r["findings_per_s"] > 0


def test_one_in_five_findings_repeats_an_earlier_alert() -> None:
    outputs = [f.output for f in findings(0, 50)]
    assert len(set(outputs)) == 41  # findings 5, 10, ..., 45 repeat the one before
