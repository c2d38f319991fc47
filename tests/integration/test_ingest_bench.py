"""The collector ingest benchmark's own check: what N concurrent sensor links send, the store
holds exactly once (repeats aggregated into counts, nothing lost, nothing doubled)."""

from __future__ import annotations

from pathlib import Path

from bench.ingest import BATCH, findings, measure, run

ROW_KEYS = {"streams", "findings_sent", "findings_stored", "lossless", "alert_rows", "alert_rows_expected",
            "burst_findings", "seconds", "findings_per_s", "batches_acked", "batch_ack_paced_p50_ms",
            "batch_ack_paced_p99_ms", "batch_ack_burst_p50_ms", "batch_ack_burst_p99_ms"}


def test_concurrent_streams_are_stored_exactly_once(tmp_path: Path) -> None:
    r = measure(f"sqlite:///{tmp_path}/c.db", streams=3, per_stream=120, tmp=tmp_path)
    assert (r["findings_sent"], r["findings_stored"], r["lossless"]) == (360, 360, True)
    assert r["alert_rows"] == r["alert_rows_expected"] == 3 * 97  # 23 of each 120 are repeats


def test_smoke_run_on_sqlite_loses_nothing_and_has_its_shape() -> None:
    out = run(smoke=True, backends=("sqlite",))
    assert (out["benchmark"], out["smoke"], out["batch"]) == ("ingest", True, BATCH)
    assert {"cores", "kernel"} <= set(out["machine"])
    assert set(out["backends"]) == {"sqlite"}  # PostgreSQL not asked for, so not run
    runs = out["backends"]["sqlite"]
    assert [r["streams"] for r in runs] == [1, 2]
    for r in runs:
        assert set(r) == ROW_KEYS
        assert r["findings_sent"] == r["streams"] * out["per_stream"] == r["findings_stored"]
        assert r["lossless"] is True
        assert 0 < r["alert_rows"] == r["alert_rows_expected"] < r["findings_sent"]  # both new rows and repeats
        # every batch acknowledged exactly once, and its latency measured
        assert r["batches_acked"] == r["streams"] * -(-out["per_stream"] // BATCH)
        assert 0 < r["burst_findings"] < r["findings_sent"]  # some batches paced, the rest in a burst
        assert r["batch_ack_paced_p50_ms"] <= r["batch_ack_paced_p99_ms"]
        assert r["batch_ack_burst_p50_ms"] <= r["batch_ack_burst_p99_ms"]


def test_one_in_five_findings_repeats_an_earlier_alert() -> None:
    fs = findings(0, 50)
    assert len({f.output for f in fs}) == 41  # findings 5, 10, ..., 45 repeat the one before
    assert len({f.rule for f in fs}) == 3 and len({f.event.image for f in fs}) == 3
    assert len({f.event.container_id for f in fs}) == 4
