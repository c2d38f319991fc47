"""Malformed journals: read_journal yields Events or raises SensorError (one line); replay and
``rules test`` on such a file print every record or exit non-zero with one line, no traceback."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensor.errors import SensorError
from sensor.events import Event
from sensor.journal import FIELDS, FORMAT, VERSION, JournalWriter, read_journal
from tests.fuzz.inputs import VALUES, events, fuzz, mutated, one_line, write


def _valid() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "j.msgpack"
        with JournalWriter(path) as w:
            for ev in events():
                w.write(ev)
        return path.read_bytes()


VALID = _valid()
HEADER = msgpack.packb({"format": FORMAT, "version": VERSION, "fields": FIELDS}, use_bin_type=True)
# a good header and records of anything: arrays shaped like events with a wrong value, maps, scalars
RECORD = st.one_of(VALUES, st.lists(VALUES, min_size=2, max_size=len(FIELDS) + 2),
                   st.tuples(st.sampled_from(["exec", "connect", "syscall"]), st.integers(0, 2**64 - 1),
                             *(VALUES for _ in range(10))).map(list))
JOURNALS = st.one_of(st.binary(max_size=200), mutated(VALID),
                     st.lists(RECORD, min_size=1, max_size=3).map(
                         lambda recs: HEADER + b"".join(msgpack.packb(r, use_bin_type=True) for r in recs)),
                     VALUES.map(lambda head: msgpack.packb(head, use_bin_type=True) + VALID[len(HEADER):]))


def read_all(path: Path) -> list[Event]:
    """Every event, each used the ways the pipeline and the CLIs use one."""
    out = []
    try:
        for ev in read_journal(path):
            assert isinstance(ev, Event)
            json.dumps(ev.to_dict())
            " ".join(ev.args), ev.comm[:16], ev.image_key, hash(ev)
            out.append(ev)
    except SensorError as err:
        one_line(err)
    return out


@fuzz(200)
@given(data=JOURNALS)
def test_a_malformed_journal_reads_or_is_one_sensor_error(tmp_path: Path, data: bytes) -> None:
    read_all(write(tmp_path / "j.msgpack", data))


@pytest.mark.parametrize("command", [["replay", "--json"], ["replay"], ["rules", "test", "--events"]])
@fuzz(60)
@given(data=JOURNALS)
def test_the_cli_on_a_malformed_journal_is_one_line_or_success(tmp_path: Path, capsys: Any, command: list[str],
                                                               data: bytes) -> None:
    from sensor.agent.cli import main

    path = write(tmp_path / "j.msgpack", data)
    capsys.readouterr()
    rc = main([*command, str(path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # success prints nothing to stderr, or (rules test) its one '# N events' summary line
    ok = not err or (command[0] == "rules" and err.startswith("# ") and err.count("\n") == 1)
    assert (rc == 0 and ok) or (rc != 0 and err.count("\n") == 1), (rc, err)
