"""The finding spool: sequence numbers survive restarts, ack semantics, the size bound drops the
oldest batches (counted), and a torn tail is cut without losing earlier records."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from sensor.events import Event, Finding
from sensor.spool import Spool


def finding(i: int, pad: int = 0) -> Finding:
    ev = Event("exec", 1_700_000_000_000_000_000 + i, pid=100 + i, exe=f"/bin/x{i}", container_id="c1")
    return Finding("new_process", "New Process", "WARNING", f"finding {i}" + "x" * pad, ev, time_ns=ev.time_ns)


def seqs(spool: Spool, after: int | None = None) -> list[int]:
    return [s for s, _ in spool.pending(after)]


def test_append_roundtrips_findings_and_seq_is_monotonic(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert [spool.append([finding(i), finding(i + 100)]) for i in range(3)] == [1, 2, 3]
    batches = list(spool.pending())
    assert [s for s, _ in batches] == [1, 2, 3]
    assert batches[1][1] == [finding(1), finding(101)]
    assert spool.count() == 3
    assert seqs(spool, after=2) == [3]


def test_seq_and_acks_persist_across_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(4):
        spool.append([finding(i)])
    spool.ack(2)
    reopened = Spool(tmp_path)
    assert seqs(reopened) == [3, 4]
    assert reopened.append([finding(9)]) == 5


def test_seq_survives_lost_state_file(tmp_path: Path) -> None:
    # A crash between the segment fsync and the state write must not reuse a seq (the
    # collector would then drop the new batch as a duplicate).
    spool = Spool(tmp_path)
    for i in range(3):
        spool.append([finding(i)])
    (tmp_path / "state.json").unlink()
    assert Spool(tmp_path).append([finding(3)]) == 4


def test_ack_is_cumulative_and_never_goes_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append([finding(i)])
    assert spool.unacked() == 5
    spool.ack(3)
    spool.ack(1)  # a late, smaller ack must not resurrect batches
    assert seqs(spool) == [4, 5] and spool.unacked() == 2
    spool.ack(5)
    assert spool.count() == 0 and spool.unacked() == 0
    assert spool.bytes() > 0  # the acked batches' segment stays until the next one starts
    assert spool.stats()["spool_acked"] == 5


def test_fully_acked_segments_are_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 30)
    big = [finding(0, pad=300_000)]
    for _ in range(8):  # several 1 MiB segments
        spool.append(big)
    n_segments = len(list(tmp_path.glob("seg-*.msgpack")))
    assert n_segments > 1
    before = spool.bytes()
    spool.ack(8)
    assert len(list(tmp_path.glob("seg-*.msgpack"))) < n_segments
    assert spool.bytes() < before
    assert spool.count() == 0


def test_bound_drops_oldest_batches_and_counts_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=3 << 20)
    for i in range(40):
        spool.append([finding(i, pad=200_000)])
    assert spool.bytes() <= 3 << 20
    left = seqs(spool)
    assert left == list(range(left[0], 41))  # newest kept, oldest gone, order intact
    assert spool.stats()["spool_dropped_batches"] == 40 - len(left) > 0
    assert spool.unacked() == len(left)  # what is left to deliver, not what was dropped


def test_small_bound_is_honoured(tmp_path: Path) -> None:
    # A bound below the segment size must still bound the spool.
    spool = Spool(tmp_path, max_bytes=20_000)
    for i in range(200):
        spool.append([finding(i, pad=500)])
    assert spool.bytes() <= 20_000 + 2_000
    assert seqs(spool)[-1] == 200
    assert spool.stats()["spool_dropped_batches"] > 0


def test_torn_tail_is_cut_and_earlier_records_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(3):
        spool.append([finding(i)])
    seg = sorted(tmp_path.glob("seg-*.msgpack"))[-1]
    good_size = seg.stat().st_size
    with open(seg, "ab") as f:  # half a record, as a crash mid-write leaves it
        f.write(b"\x82\xa3seq\x04\xa8findings\x91\x8a")
    reopened = Spool(tmp_path)
    assert reopened.stats()["spool_torn_tails"] == 1
    assert seg.stat().st_size == good_size
    assert seqs(reopened) == [1, 2, 3]
    assert reopened.append([finding(3)]) == 4
    assert seqs(Spool(tmp_path)) == [1, 2, 3, 4]


def test_garbage_tail_is_cut(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([finding(0)])
    seg = sorted(tmp_path.glob("seg-*.msgpack"))[-1]
    with open(seg, "ab") as f:
        f.write(b"\xc1\xc1\xc1garbage")  # 0xc1 is never valid msgpack
    reopened = Spool(tmp_path)
    assert reopened.stats()["spool_torn_tails"] == 1
    assert seqs(reopened) == [1]


def test_a_damaged_record_inside_a_segment_costs_only_itself(tmp_path: Path) -> None:
    """A flipped byte in record 2 of 5 once cut the segment there ("torn tail"): batches 2-5 were
    lost for good. Now only batch 2 is, the rest is delivered, and the original is kept."""
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append([finding(i)])
    seg = sorted(tmp_path.glob("seg-*.msgpack"))[0]
    raw = bytearray(seg.read_bytes())
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(bytes(raw))
    unpacker.unpack()
    second = unpacker.tell()  # where record 2 starts
    raw[second + 1] = 0xC1  # never valid msgpack
    seg.write_bytes(bytes(raw))
    reopened = Spool(tmp_path)
    assert seqs(reopened) == [1, 3, 4, 5]
    assert reopened.stats()["spool_corrupt_records"] == 1 and reopened.stats()["spool_torn_tails"] == 0
    assert [p.name.split(".corrupt-")[0] for p in tmp_path.glob("*.corrupt-*")] == [seg.name]
    assert reopened.append([finding(5)]) == 6 and seqs(Spool(tmp_path)) == [1, 3, 4, 5, 6]


@pytest.mark.parametrize("state", ["[1, 2]", '{"next_seq": "x"}', '{"next_seq": null, "acked": -3}', "{",
                                   '{"refused": ["x", -1, true, null]}', '{"refused": 7}'])
def test_a_damaged_state_file_does_not_stop_the_spool(tmp_path: Path, state: str) -> None:
    spool = Spool(tmp_path)
    for i in range(3):
        spool.append([finding(i)])
    (tmp_path / "state.json").write_text(state)
    reopened = Spool(tmp_path)
    assert seqs(reopened) == [1, 2, 3] and reopened.append([finding(3)]) == 4


def test_a_refused_batch_is_quarantined_with_its_reason_and_never_pending_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(4):
        spool.append([finding(i)])
    spool.ack(1)
    path = spool.quarantine(3, "batch 3 refused: findings[0] is 2,000,000 bytes stored")
    assert path is not None and path.parent == tmp_path / "quarantine"
    record = Spool.read_quarantined(path)
    assert record["seq"] == 3 and record["reason"] == "batch 3 refused: findings[0] is 2,000,000 bytes stored"
    assert [Finding.from_dict(d) for d in record["findings"]] == [finding(2)]
    assert seqs(spool) == [2, 4] and spool.unacked() == 2
    assert spool.stats()["spool_quarantined_batches"] == 1
    assert spool.quarantine(3, "again") is None and spool.quarantine(1, "acked") is None  # said twice, too late
    assert spool.quarantine(99, "never sent") is None and spool.quarantined == 1
    reopened = Spool(tmp_path)  # a restart does not resend it
    assert seqs(reopened) == [2, 4] and reopened.quarantined == 1
    reopened.ack(4)  # a later ack covers it: nothing left to remember
    assert reopened.refused == set() and seqs(Spool(tmp_path)) == []


def test_a_refused_batch_the_spool_dropped_is_still_recorded(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=4096)
    for i in range(40):
        spool.append([finding(i, pad=200)])
    assert spool.dropped_batches > 0 and 1 not in seqs(spool)
    path = spool.quarantine(1, "refused")
    assert path is not None and Spool.read_quarantined(path)["findings"] == []


def test_the_quarantine_keeps_the_newest_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sensor.spool.QUARANTINE_FILES", 2)
    spool = Spool(tmp_path)
    for i in range(4):
        spool.append([finding(i)])
    for seq in (1, 2, 3):
        spool.quarantine(seq, f"bad {seq}")
    assert [Spool.read_quarantined(p)["seq"] for p in spool.quarantine_files()] == [2, 3]
    assert seqs(spool) == [4]
