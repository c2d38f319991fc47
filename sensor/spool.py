"""Bounded on-disk spool of finding batches not yet acknowledged by the collector.

Segment files of msgpack records ``{"seq": n, "findings": [...]}``, each append fsync'd; a small
state file holds the next sequence number and the highest acknowledged one, so sequence numbers
survive restarts (the collector stores each (sensor, seq) once). When the spool is over
``max_bytes`` the oldest unacknowledged segments are dropped — counted, never silently — and the
caller is never blocked. A torn tail (crash mid-append) is cut off, earlier records kept; a
damaged record inside a segment costs only itself (see ``Spool._repair``).

A batch the collector refuses for good (it can never store it) is set aside in ``quarantine/``
with the collector's reason (:meth:`Spool.quarantine`) and never resent, across restarts too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import msgpack

from sensor.events import Event, Finding
from sensor.files import atomic_write

log = logging.getLogger(__name__)
SEGMENT_BYTES = 1 << 20
QUARANTINE_FILES = 256  # refused batches kept for inspection; the oldest go first


class Spool:
    def __init__(self, directory: Path, max_bytes: int = 64 << 20) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        # Dropping works a segment at a time, so segments must be well below the bound.
        self.segment_bytes = min(SEGMENT_BYTES, max(4096, max_bytes // 8))
        self._lock = threading.Lock()
        state = self._read_state()
        self.next_seq: int = state.get("next_seq", 1)
        self.acked: int = state.get("acked", 0)
        # batches past ``acked`` the collector refused: quarantined, so never pending again
        self.refused: set[int] = {q for q in state.get("refused", ()) if q > self.acked}
        self.quarantine_dir = self.dir / "quarantine"
        self.dropped_batches = 0
        self.torn_tails = 0
        self.corrupt_records = 0
        self._repair()

    # -- state -------------------------------------------------------------------------------
    def _read_state(self) -> dict[str, Any]:
        """next_seq, acked and refused from state.json; a missing or damaged file counts as empty
        (the segments on disk then set next_seq, an ack from the collector sets acked, and a
        refused batch is refused again)."""
        try:
            state = json.loads((self.dir / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(state, dict):
            log.warning("spool state %s is not a JSON object; ignored", self.dir / "state.json")
            return {}
        out: dict[str, Any] = {k: v for k, v in state.items()
                               if k in ("next_seq", "acked") and _is_count(v)}
        refused = state.get("refused", [])
        out["refused"] = [q for q in refused if _is_count(q)] if isinstance(refused, list) else []
        return out

    def _write_state(self) -> None:
        atomic_write(self.dir / "state.json", json.dumps({"next_seq": self.next_seq, "acked": self.acked,
                                                          "refused": sorted(self.refused)}).encode())

    def _segments(self) -> list[Path]:
        return sorted(self.dir.glob("seg-*.msgpack"))

    def _repair(self) -> None:
        """Keep every intact record of every segment and make next_seq exceed every seq on disk.

        A torn tail (a crash mid-append) is cut. A damaged record inside a segment (a flipped
        bit on disk) costs that record only: the records after it are found again and kept, the
        segment is rewritten with them, and the damaged original is kept beside it as
        ``*.corrupt-<time>`` for inspection."""
        for seg in self._segments():
            data = seg.read_bytes()
            records, skipped_inside, tail_cut = _salvage(data)
            if skipped_inside or tail_cut:
                kept = b"".join(msgpack.packb(r, use_bin_type=True) for r in records)
                if skipped_inside:
                    self.corrupt_records += skipped_inside
                    aside = seg.with_name(f"{seg.name}.corrupt-{int(time.time())}")
                    os.replace(seg, aside)
                    log.warning("spool segment %s: %d damaged record(s) skipped, %d kept; original kept as %s",
                                seg.name, skipped_inside, len(records), aside.name)
                else:
                    self.torn_tails += 1
                    log.warning("spool segment %s: torn tail cut at byte %d", seg.name, len(kept))
                atomic_write(seg, kept)
            for rec in records:
                self.next_seq = max(self.next_seq, rec["seq"] + 1)

    # -- api ---------------------------------------------------------------------------------
    def append(self, findings: list[Finding]) -> int:
        """Persist a batch (fsync'd) and return its sequence number."""
        with self._lock:
            seq = self.next_seq
            self.next_seq += 1
            data = msgpack.packb({"seq": seq, "findings": [f.to_dict() for f in findings]},
                                 use_bin_type=True, default=str)
            segs = self._segments()
            seg = segs[-1] if segs and segs[-1].stat().st_size < self.segment_bytes else \
                self.dir / f"seg-{seq:012d}.msgpack"
            with open(seg, "ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self._write_state()
            self._enforce_bound()
            return seq

    def _enforce_bound(self) -> None:
        segs = self._segments()
        while len(segs) > 1 and sum(s.stat().st_size for s in segs) > self.max_bytes:
            oldest = segs.pop(0)
            self.dropped_batches += sum(1 for _ in self._records(oldest))
            oldest.unlink()
            log.warning("spool over %d bytes: dropped segment %s", self.max_bytes, oldest.name)

    def _records(self, seg: Path) -> Iterator[dict[str, Any]]:
        with open(seg, "rb") as f:
            try:
                yield from msgpack.Unpacker(f, raw=False, strict_map_key=False)
            except Exception:  # noqa: BLE001 - torn tail: stop at it
                return

    def pending(self, after_seq: int | None = None) -> Iterator[tuple[int, list[Finding]]]:
        """Unacknowledged batches in order (seq > acked, and > after_seq if given), less the
        quarantined ones."""
        floor = max(self.acked, after_seq or 0)
        for seg in self._segments():
            for rec in self._records(seg):
                if rec["seq"] > floor and rec["seq"] not in self.refused:
                    try:
                        batch = [_sendable(Finding.from_dict(d)) for d in rec["findings"]]
                    except Exception as err:  # noqa: BLE001 - a record that decodes but is not findings
                        self.corrupt_records += 1
                        log.warning("spool batch %s is not a list of findings (%s); skipped", rec.get("seq"), err)
                        continue
                    yield rec["seq"], batch

    def ack(self, seq: int) -> None:
        """Everything up to ``seq`` is stored by the collector; delete fully-acked segments."""
        with self._lock:
            if seq <= self.acked:
                return
            self.acked = seq
            self.refused = {q for q in self.refused if q > seq}
            self._write_state()
            segs = self._segments()
            for i, seg in enumerate(segs[:-1]):
                nxt = int(segs[i + 1].name[4:16])
                if nxt - 1 <= seq:
                    seg.unlink()

    def quarantine(self, seq: int, reason: str) -> Path | None:
        """Set batch ``seq`` aside for good: the collector refused it for ``reason`` and will never
        store it. Its record goes to ``quarantine/batch-<seq>.msgpack`` with the reason (findings
        empty if the spool no longer holds it), it is never pending again, and one warning says
        so. None if ``seq`` is acknowledged or quarantined already (a refusal said twice)."""
        with self._lock:
            if seq <= self.acked or seq in self.refused or not 0 < seq < self.next_seq:
                return None
            record = next((r for seg in self._segments() for r in self._records(seg) if r["seq"] == seq), None)
            self.quarantine_dir.mkdir(exist_ok=True)
            path = self.quarantine_dir / f"batch-{seq:012d}.msgpack"
            atomic_write(path, msgpack.packb({"seq": seq, "reason": reason, "refused_ns": time.time_ns(),
                                              "findings": record["findings"] if record else []},
                                             use_bin_type=True, default=str))
            self.refused.add(seq)
            self._write_state()
            for old in self.quarantine_files()[:-QUARANTINE_FILES]:
                old.unlink()
        log.warning("collector refused batch %d for good; set aside as %s: %s", seq, path, reason)
        return path

    def quarantine_files(self) -> list[Path]:
        """The quarantined batches' files, oldest first."""
        return sorted(self.quarantine_dir.glob("batch-*.msgpack")) if self.quarantine_dir.is_dir() else []

    @property
    def quarantined(self) -> int:
        """Batches in quarantine now."""
        return len(self.quarantine_files())

    @staticmethod
    def read_quarantined(path: Path) -> dict[str, Any]:
        """A quarantine file: ``{"seq", "reason", "refused_ns", "findings"}`` (findings as dicts)."""
        record: dict[str, Any] = msgpack.unpackb(path.read_bytes(), raw=False, strict_map_key=False)
        return record

    def bytes(self) -> int:
        """Size on disk: whole segments, so acknowledged batches count until their segment goes."""
        return sum(s.stat().st_size for s in self._segments())

    def unacked(self) -> int:
        """Batches on disk that the collector has not acknowledged yet (dropped ones are gone)."""
        segs = self._segments()
        first = int(segs[0].name[4:16]) if segs else self.next_seq
        refused = sum(1 for q in self.refused if q >= first)
        return max(0, self.next_seq - max(self.acked + 1, first) - refused)

    def count(self) -> int:
        return sum(1 for _ in self.pending())

    def stats(self) -> dict[str, int]:
        return {"spool_bytes": self.bytes(), "spool_unacked": self.unacked(), "spool_next_seq": self.next_seq,
                "spool_acked": self.acked,
                "spool_dropped_batches": self.dropped_batches, "spool_torn_tails": self.torn_tails,
                "spool_corrupt_records": self.corrupt_records, "spool_quarantined_batches": self.quarantined}


# What a finding must hold to be sent (collector/proto: int64 fields, uint64 cgroup_id and sc_args):
# a record that decodes but holds another type (a flipped type byte, a hand-edited file) would
# otherwise stop the collector link with a TypeError when it converts the batch (found by fuzzing).
_I64, _U64 = range(-(1 << 63), 1 << 63), range(1 << 64)
_FINDING_TYPES: dict[str, type] = {"kind": str, "rule": str, "priority": str, "output": str, "time_ns": int,
                                   "source": str, "action": str, "mode": str, "during_loss": bool}
_EVENT_TYPES: dict[str, type] = {"kind": str, "time_ns": int, **{
    f.name: type(f.default) for f in dataclasses.fields(Event) if f.default is not dataclasses.MISSING}}


def _sendable(f: Finding) -> Finding:
    """``f``, or ValueError naming the first field of the wrong type or range."""
    for obj, types in ((f, _FINDING_TYPES), (f.event, _EVENT_TYPES)):
        for name, want in types.items():
            value = getattr(obj, name)
            if not isinstance(value, want) or (
                    want is int and value not in (_U64 if name == "cgroup_id" else _I64)):
                raise ValueError(f"{name} is {type(value).__name__} {str(value)[:20]!r}")
    ev = f.event
    if not all(isinstance(t, str) for t in (*f.tags, *ev.args, *ev.ancestry)) \
            or not all(isinstance(a, int) and a in _U64 for a in ev.sc_args):
        raise ValueError("tags, args, ancestry or sc_args hold the wrong type")
    json.dumps(f.explanation, default=str)  # as it is sent: TypeError for a key that is not text
    return f


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_record(obj: Any) -> bool:
    return (isinstance(obj, dict) and isinstance(obj.get("seq"), int) and not isinstance(obj["seq"], bool)
            and obj["seq"] > 0 and isinstance(obj.get("findings"), list)
            and all(isinstance(f, dict) for f in obj["findings"]))


def _salvage(data: bytes) -> tuple[list[dict[str, Any]], int, bool]:
    """The intact records of a segment, how many damaged stretches lay between intact records,
    and whether the segment ended in a damaged (torn) stretch.

    Records are msgpack maps ``{"seq", "findings"}``. After a record that does not decode, the
    scan resumes at the next offset where a whole record decodes: each record starts with the same
    map header, so only those offsets are tried."""
    records: list[dict[str, Any]] = []
    pos, damaged, in_damage = 0, 0, False
    header = b"\x82"  # a map of two entries: how every record starts
    while pos < len(data):
        # one unpacker per intact stretch, not per record: feeding copies the rest of the segment
        start, unpacker = pos, msgpack.Unpacker(raw=False, strict_map_key=False,
                                                max_buffer_size=max(len(data), 1 << 20))
        unpacker.feed(data[pos:])
        while pos < len(data):
            try:
                obj = unpacker.unpack()
                ok = _is_record(obj) and (not records or obj["seq"] > records[-1]["seq"])
            except Exception:  # noqa: BLE001 - any decoding failure, a cut-off record too, is damage
                ok = False
            if not ok:
                break
            if in_damage:
                damaged, in_damage = damaged + 1, False
            records.append(obj)
            pos = start + unpacker.tell()
        if pos >= len(data):
            break
        in_damage = True
        nxt = data.find(header, pos + 1)
        if nxt < 0:
            break
        pos = nxt
    return records, damaged, in_damage
