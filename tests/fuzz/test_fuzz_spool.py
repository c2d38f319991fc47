"""Malformed spool segments (a bad disk, a crash, a hostile file in the state directory): opening the
spool never raises, and every batch it then offers can be sent (converted to protobuf as the
collector link does), acknowledged, and appended after."""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from collector.convert import finding_to_pb, pb
from sensor.errors import SensorError
from sensor.spool import Spool
from tests.fuzz.inputs import VALUES, findings, fuzz, mutated, one_line, replaced, write


def _valid() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        spool = Spool(Path(d))
        for f in findings():
            spool.append([f, f])
        [seg] = sorted(Path(d).glob("seg-*.msgpack"))
        return seg.read_bytes()


VALID = _valid()
RECORD = {"seq": 100, "findings": [f.to_dict() for f in findings()[:2]]}
SEGMENTS = st.one_of(st.binary(max_size=200), mutated(VALID),
                     st.lists(st.one_of(VALUES, replaced(RECORD, ["seq", "findings", "event", "kind", "args"])),
                              min_size=1, max_size=3).map(
                         lambda recs: VALID + b"".join(msgpack.packb(r, use_bin_type=True) for r in recs)))


@fuzz(250)
@given(data=SEGMENTS, state=st.one_of(st.none(), st.binary(max_size=40), st.sampled_from(
    [b'{"next_seq": 1, "acked": 0}', b'{"next_seq": -5, "acked": 1e400}', b"[]", b'{"acked": 99999999999999999999}'])))
def test_a_malformed_segment_never_stops_the_spool(tmp_path: Path, data: bytes, state: bytes | None) -> None:
    d = tmp_path / "spool"
    d.mkdir(exist_ok=True)
    for old in d.iterdir():
        old.unlink()
    write(d / "seg-000000000001.msgpack", data)
    if state is not None:
        write(d / "state.json", state)
    try:
        spool = Spool(d)
        batches = list(spool.pending())
    except SensorError as err:
        one_line(err)
        return
    for seq, batch in batches:
        pb.SensorMessage(batch=pb.FindingBatch(seq=seq, findings=[finding_to_pb(f) for f in batch]))
        spool.ack(seq)
    seq = spool.append(findings()[:1])
    assert seq > max((s for s, _ in batches), default=0)
    spool.stats()
