"""Journal record/replay: lossless round trip, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from sensor.errors import DataError, SensorError
from sensor.events import Event
from sensor.journal import FIELDS, JournalWriter, ReplaySource, read_journal

EVENTS = [
    Event("exec", 1, pid=5, ppid=1, comm="nc", exe="/usr/bin/nc", args=("nc", "-l"), uid=0,
          cgroup_id=9, container_id="c" * 64, container_name="web", image="busybox:latest",
          image_id="sha256:ab", runtime="docker", pexe="/bin/sh", ancestry=("/bin/sh", "/init"),
          killed=True, truncated=True, ancestor_pid=3),
    Event("connect", 2, pid=5, proto="tcp", family="ipv6", daddr="::1", dport=443, ret=-111),
    Event("listen", 3, pid=5, proto="udp", family="ipv4", saddr="0.0.0.0", sport=53),
    Event("exit", 4, pid=5, exit_code=-1),
    Event("fork", 5, pid=5, child_pid=6),
    Event("syscall", 6, syscall="openat", syscall_nr=257, count=1),
    Event("open", 7, path="/etc/shadow", flags=0o2, ret=3),
    Event("sys", 8, syscall="ptrace", syscall_nr=101, sc_args=(16, 99, 0, 0), ret=0),
    Event("accept", 9, family="unix", path="/run/x.sock"),
]


def write(path: Path, events: list[Event]) -> None:
    with JournalWriter(path) as w:
        for ev in events:
            w.write(ev)


def test_round_trip_is_lossless(tmp_path: Path) -> None:
    path = tmp_path / "j.msgpack"
    write(path, EVENTS)
    assert list(read_journal(path)) == EVENTS
    src = ReplaySource(path)
    assert list(src.events()) == EVENTS and src.stats()["delivered"] == len(EVENTS)


def test_truncated_file_yields_good_records_then_names_the_record(tmp_path: Path) -> None:
    path = tmp_path / "j.msgpack"
    write(path, EVENTS)
    path.write_bytes(path.read_bytes()[:-5])
    got: list[Event] = []
    with pytest.raises(DataError, match=r"record 9: truncated"):
        for ev in read_journal(path):
            got.append(ev)
    assert got == EVENTS[:-1]


def test_garbage_and_missing_and_newer(tmp_path: Path) -> None:
    garbage = tmp_path / "g"
    garbage.write_bytes(b"\xc1\xc1 not msgpack")
    with pytest.raises(DataError, match="not a cgsentry journal"):
        list(read_journal(garbage))
    with pytest.raises(SensorError, match="no such file") as info:
        list(read_journal(tmp_path / "missing"))
    assert info.value.exit_code == 66
    newer = tmp_path / "n"
    newer.write_bytes(msgpack.packb({"format": "cgsentry-journal", "version": 99}))
    with pytest.raises(DataError, match="version 99 is newer"):
        list(read_journal(newer))


def test_record_that_is_not_an_event(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_bytes(msgpack.packb({"format": "cgsentry-journal", "version": 1})
                     + msgpack.packb({"kind": "exec", "time_ns": 1}) + msgpack.packb([1, 2]))
    with pytest.raises(DataError, match="record 2: corrupt"):
        list(read_journal(path))
    head = msgpack.packb({"format": "cgsentry-journal", "version": 2, "fields": FIELDS})
    for bad in ([1, 2], ["exec"], {"kind": "exec", "time_ns": 1}, ["exec", 1] + [0] * len(FIELDS)):
        path.write_bytes(head + msgpack.packb(["exit", 1]) + msgpack.packb(bad))
        with pytest.raises(DataError, match="record 2: corrupt"):
            list(read_journal(path))


@pytest.mark.parametrize("field, value", [("args", 5), ("args", ("nc", 7)), ("args", None), ("comm", b"sh"),
                                          ("comm", 3), ("container_name", 9), ("pid", "x"), ("ancestry", (None,)),
                                          ("sc_args", ("a",)), ("killed", "yes")])
def test_a_field_of_the_wrong_type_is_a_corrupt_record_not_a_traceback_downstream(
        tmp_path: Path, field: str, value: object) -> None:
    """replay and `rules test` once raised TypeError/AttributeError wherever such a value was used."""
    path = tmp_path / "j"
    ev = Event("exec", 1, pid=5, comm="sh", exe="/bin/sh", args=("sh",))
    rec = [getattr(ev, name) for name in FIELDS]
    rec[FIELDS.index(field)] = value
    head = msgpack.packb({"format": "cgsentry-journal", "version": 2, "fields": FIELDS})
    path.write_bytes(head + msgpack.packb(["exit", 1]) + msgpack.packb(rec))
    with pytest.raises(DataError, match=f"record 2: corrupt .*{field}"):
        list(read_journal(path))
    v1 = dict(zip(FIELDS, rec, strict=True))
    path.write_bytes(msgpack.packb({"format": "cgsentry-journal", "version": 1}) + msgpack.packb(v1))
    with pytest.raises(DataError, match="record 1: corrupt"):
        list(read_journal(path))


def test_version_1_journals_still_read(tmp_path: Path) -> None:
    path = tmp_path / "v1"
    path.write_bytes(msgpack.packb({"format": "cgsentry-journal", "version": 1})
                     + b"".join(msgpack.packb(ev.to_dict()) for ev in EVENTS))
    assert list(read_journal(path)) == EVENTS


def test_records_are_cut_after_their_kinds_last_field(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write(path, EVENTS)
    records = list(msgpack.Unpacker(open(path, "rb"), raw=False))[1:]  # noqa: SIM115 - read once
    assert len(records[0]) == len(FIELDS)  # killed/truncated set: nothing to cut
    assert len(records[1]) == FIELDS.index("ret") + 1  # connect
    assert len(records[8]) == len(FIELDS)  # accept of a unix socket carries a path: kept whole
    assert len(records[3]) == FIELDS.index("exit_code") + 1


def test_field_lists_of_other_versions(tmp_path: Path) -> None:
    """A journal from an older sensor (fewer fields) or a newer one (a field this one does not
    know, in the middle) still reads; values go to the fields they were written for."""
    path = tmp_path / "j"
    older = FIELDS[:-2]
    path.write_bytes(msgpack.packb({"format": "cgsentry-journal", "version": 2, "fields": older})
                     + msgpack.packb(["exec", 1, 5]))
    assert list(read_journal(path)) == [Event("exec", 1, pid=5)]
    newer = ("kind", "time_ns", "quantum_state", "pid")
    path.write_bytes(msgpack.packb({"format": "cgsentry-journal", "version": 2, "fields": newer})
                     + msgpack.packb(["exec", 1, "up", 5]) + msgpack.packb(["exit", 2]))
    assert list(read_journal(path)) == [Event("exec", 1, pid=5), Event("exit", 2)]
    for fields in (None, [1, 2], ["kind"]):
        path.write_bytes(msgpack.packb({"format": "cgsentry-journal", "version": 2, "fields": fields}))
        with pytest.raises(DataError, match="bad field list"):
            list(read_journal(path))


def full_event(kind: str, i: int) -> Event:
    """Every field set to a non-default value (unicode, negatives, 64-bit ids included)."""
    return Event(
        kind, 1_700_000_000_000_000_000 + i, pid=100 + i, tid=200 + i, ppid=1, uid=1000, gid=1001,
        comm="ünïcode", exe="/usr/bin/x", args=("x", "--flag", "ä b"), cgroup_id=2**63 + i,
        container_id="c" * 64, container_name="web-1", image="reg:5000/app:1.2", image_id="sha256:" + "d" * 64,
        runtime="docker", pexe="/bin/sh", ancestry=("/bin/sh", "/sbin/init"), proto="tcp", family="ipv6",
        saddr="::1", sport=8080, daddr="fe80::1", dport=443, ret=-111, exit_code=-9, child_pid=300 + i,
        syscall="ptrace", syscall_nr=101, count=7, sc_args=(16, 2**64 - 1, 0, 3), path="/etc/shadow",
        flags=0o101, killed=True, truncated=True, ancestor_pid=9, pod="web-7d9f", namespace="payments",
        labels=(("app", "web"), ("tier", "front")), image_digest="cgsentry/web@sha256:" + "e" * 64)


def test_every_kind_with_every_field_round_trips(tmp_path: Path) -> None:
    from sensor.events import KINDS

    events = [full_event(kind, i) for i, kind in enumerate(KINDS)]
    defaults = Event("x", 0)
    for name in Event.__dataclass_fields__:
        if name not in ("kind", "time_ns"):
            assert getattr(events[0], name) != getattr(defaults, name), name
    path = tmp_path / "all.msgpack"
    write(path, events)
    assert list(read_journal(path)) == events


def test_header_and_record_numbers_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.msgpack"
    events = [Event("exec", i, pid=i) for i in range(1, 813)]
    write(path, events)
    header = next(msgpack.Unpacker(open(path, "rb"), raw=False))  # noqa: SIM115 - read once
    assert header["format"] == "cgsentry-journal" and header["version"] == 2
    assert header["fields"][:3] == ["kind", "time_ns", "pid"]
    assert isinstance(header["created_ns"], int) and header["host"]
    path.write_bytes(path.read_bytes()[:-2])
    got = []
    with pytest.raises(DataError) as info:
        for ev in read_journal(path):
            got.append(ev)
    assert str(info.value) == f"journal {path}: record 812: truncated (file cut short?)"
    assert got == events[:811] and info.value.exit_code == 65


def test_wrong_format_header(tmp_path: Path) -> None:
    path = tmp_path / "other.msgpack"
    path.write_bytes(msgpack.packb({"format": "falco", "version": 1}) + msgpack.packb({"kind": "exec"}))
    with pytest.raises(DataError, match=r"other.msgpack: not a cgsentry journal"):
        list(read_journal(path))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        list(read_journal(empty))


def test_replay_stop_ends_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "j.msgpack"
    write(path, EVENTS)
    src = ReplaySource(path, speed=0)
    got = []
    for ev in src.events():
        got.append(ev)
        if len(got) == 3:
            src.stop()
    assert got == EVENTS[:3] and src.stats()["delivered"] == 3


def test_paced_replay_keeps_order(tmp_path: Path) -> None:
    path = tmp_path / "j.msgpack"
    write(path, EVENTS)  # 1..9 ns apart: pacing at speed 1 is effectively immediate
    assert list(ReplaySource(path, speed=1.0).events()) == EVENTS
