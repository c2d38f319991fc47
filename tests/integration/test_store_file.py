"""A SQLite database file deleted or replaced under a running collector (issue 16 item 9): the
store refuses every write with Unavailable and says why, instead of acknowledging batches into
an unlinked file that no one will ever read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.workloads import deviation
from collector.errors import Unavailable
from collector.store import SqlStore
from sensor.events import Finding


def finding(i: int) -> Finding:
    ev = deviation("new_binary", 1_700_000_000_000_000_000 + i, i=i).pop()
    return Finding("new_process", "New Process", "WARNING", f"finding {i}", ev, time_ns=ev.time_ns)


def test_a_deleted_database_file_stops_acknowledging(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    store = SqlStore.open(str(db))
    assert store.ingest("s1", "n", 1, [finding(1)]) is True
    db.unlink()
    with pytest.raises(Unavailable) as info:
        store.ingest("s1", "n", 2, [finding(2)])
    assert str(info.value).startswith(f"database file {db} was deleted while the collector ran: writes are refused")
    with pytest.raises(Unavailable, match="was deleted"):
        store.ingest("s1", "n", 1, [finding(1)])  # not even a replay is acknowledged
    with pytest.raises(Unavailable, match="was deleted"):
        store.audit("alice", "pause", "c", "", "ok")
    assert store.count_alerts() == 1  # the open (unlinked) file kept only what came before
    store.close()


def test_a_replaced_database_file_stops_acknowledging(tmp_path: Path) -> None:
    db, other = tmp_path / "c.db", tmp_path / "other.db"
    store = SqlStore.open(str(db))
    assert store.ingest("s1", "n", 1, [finding(1)]) is True
    SqlStore.open(str(other)).close()
    os.replace(other, db)
    with pytest.raises(Unavailable) as info:
        store.ingest("s1", "n", 2, [finding(2)])
    assert f"database file {db} was replaced by another file while the collector ran" in str(info.value)
    store.close()
    fresh = SqlStore.open(str(db))  # the replacement holds nothing of the refused batch (SQLite may
    # have replayed the old file's write-ahead log into it: the log sits beside the path, not the file)
    assert "finding 2" not in [r.finding.output for r in fresh.list_alerts()]
    assert fresh.ingest("s1", "n", 2, [finding(2)]) is True
    fresh.close()


def test_an_unchanged_file_and_in_memory_stores_write_as_before(tmp_path: Path) -> None:
    relative = SqlStore.open(os.path.relpath(tmp_path / "r.db"))  # checked by absolute path
    memory = SqlStore.open(":memory:")
    for store in (relative, memory):
        assert store.ingest("s1", "n", 1, [finding(1)]) is True
        store.close()
