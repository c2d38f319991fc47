"""The alert store suite, run against SQLite and a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from bench.workloads import deviation
from collector.errors import NotFound
from collector.store import MIGRATIONS, SqlStore
from sensor.events import Finding


def finding(i: int = 0, container: int = 0, rule: str = "New Process", priority: str = "WARNING") -> Finding:
    ev = deviation("new_binary", 1_700_000_000_000_000_000 + i * 1000, i=container).pop()
    return Finding("new_process", rule, priority, f"out {i}", ev, time_ns=ev.time_ns)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: Any, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        s = SqlStore.open(str(tmp_path / "a.db"))
    else:
        url = request.getfixturevalue("postgres_url")
        s = SqlStore.open(url)
        for table in ("alerts", "batches", "sensors", "images", "audit", "snapshots"):
            s._exec(f"DELETE FROM {table}")  # noqa: SLF001 - clean slate per test
        s.conn.commit()
    yield s
    s.close()


def test_idempotent_ingest_and_aggregation(store: SqlStore) -> None:
    f = finding(1)
    assert store.ingest("s1", "n1", 1, [f, f]) is True
    assert store.ingest("s1", "n1", 1, [f]) is False  # replayed batch: nothing stored
    assert store.ingest("s1", "n1", 2, [finding(5)]) is True  # same rule/exe/args, later: aggregated
    [row] = store.list_alerts()
    assert row.count == 3 and row.first_seen_ns == f.time_ns and row.last_seen_ns == finding(5).time_ns
    assert store.ingest("s2", "n2", 1, [f]) is True  # another sensor: its own alert
    assert len(store.list_alerts()) == 2


def test_total_findings_counts_repeats_per_sensor_prefix(store: SqlStore) -> None:
    store.ingest("bench-1-0", "n", 1, [finding(1), finding(1), finding(2, container=1)])
    store.ingest("bench-1_x", "n", 1, [finding(3)])  # "_" is literal, not a LIKE wildcard
    store.ingest("other", "n", 1, [finding(4)])
    assert store.total_findings("bench-1-") == 3
    assert store.total_findings("bench-1_") == 1
    assert store.total_findings() == 5


def test_filters_status_and_get(store: SqlStore) -> None:
    store.ingest("s1", "n", 1, [finding(1, 0, "A", "NOTICE"), finding(2, 1, "B", "CRITICAL")])
    crit = store.list_alerts(min_priority="WARNING")
    assert [r.finding.rule for r in crit] == ["B"]
    row = store.update_alert(crit[0].id, "acknowledged", "on it")
    assert (row.status, row.comment) == ("acknowledged", "on it")
    assert [r.finding.rule for r in store.list_alerts(status="open")] == ["A"]
    assert store.list_alerts(since_ns=finding(2).time_ns)[0].finding.rule == "B"
    assert store.get_alert(row.id).finding.event.exe == "/tmp/xmrig"
    with pytest.raises(NotFound):
        store.get_alert(99999)


def test_sensors_images_audit_snapshots(store: SqlStore) -> None:
    store.upsert_sensor("s1", "node-a", "0.1", {"drops": 3}, True)
    assert store.sensors()[0]["counters"] == {"drops": 3}
    seen = store.sensors()[0]["last_seen_ns"]
    store.sensor_disconnected("s1")
    down = store.sensors()[0]
    kept = (down["connected"], down["node"], down["version"], down["counters"])
    assert kept == (False, "node-a", "0.1", {"drops": 3})
    assert down["last_seen_ns"] >= seen
    store.set_image("busybox:latest", "enforce", {"default_action": "pause-container"})
    assert store.images()[0]["mode"] == "enforce"
    store.audit("alice", "pause", "abc", "why", "ok", 12.5)
    assert store.audit_entries()[0]["latency_ms"] == 12.5
    store.put_snapshot("img", "s1", b"\x01\x02")
    store.put_snapshot("img", "s1", b"\x03")
    assert store.snapshots("img") == [("s1", b"\x03")]
    store.set_ruleset("team-b", "- list: x\n  items: [1]\n", "alice")
    store.set_ruleset("team-a", "- list: y\n  items: [2]\n", "bob")
    store.set_ruleset("team-b", "- list: x\n  items: [3]\n", "carol")
    sets = store.rulesets()
    assert [(r["name"], r["actor"]) for r in sets] == [("team-a", "bob"), ("team-b", "carol")]
    assert "[3]" in sets[1]["yaml"]
    store.set_ruleset("team-a", "  \n", "bob")  # empty: removed
    assert [r["name"] for r in store.rulesets()] == ["team-b"]
    assert store.schema_version() == len(MIGRATIONS)


def test_reopen_keeps_data_and_schema(tmp_path: Path) -> None:
    s = SqlStore.open(str(tmp_path / "x.db"))
    s.ingest("s", "n", 1, [finding()])
    s.close()
    again = SqlStore.open(str(tmp_path / "x.db"))
    assert again.count_alerts() == 1 and again.schema_version() == len(MIGRATIONS)


def test_a_version_1_database_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    from collector.store import MIGRATIONS

    db = tmp_path / "v1.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for stmt in MIGRATIONS[0]:
        con.execute(stmt.format(autoid="INTEGER PRIMARY KEY AUTOINCREMENT", blob="BLOB"))
    con.execute("INSERT INTO schema_version (version) VALUES (1)")
    con.commit()
    con.close()
    store = SqlStore.open(str(db))
    assert store.schema_version() == len(MIGRATIONS) and store.rulesets() == []
    store.set_ruleset("a", "- list: x\n  items: []\n", "ops")
    assert store.rulesets()[0]["name"] == "a"


def test_close_while_another_thread_queries_is_safe(tmp_path: Path) -> None:
    """The server's handler threads may still query while the collector shuts the store down;
    sqlite3 crashed the process when a connection was closed mid-query."""
    import threading

    from collector.errors import Unavailable

    s = SqlStore.open(str(tmp_path / "race.db"))
    s.ingest("s", "n", 1, [finding(i) for i in range(50)])
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while True:
                s.list_alerts(limit=50)
        except Unavailable:
            return
        except BaseException as err:  # noqa: BLE001 - anything else is the bug
            errors.append(err)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    s.close()
    for t in threads:
        t.join(timeout=10)
    assert errors == [] and not any(t.is_alive() for t in threads)
    with pytest.raises(Unavailable):
        s.list_alerts()


def _again(f: Finding, later_ns: int, pid: int) -> Finding:
    """The same alert (same fingerprint) ``later_ns`` after ``f``, from another process."""
    ev = f.event.replace(pid=pid, time_ns=f.event.time_ns + later_ns)
    return Finding(f.kind, f.rule, f.priority, f"out pid {pid}", ev, time_ns=f.time_ns + later_ns,
                   explanation={"seen_after": later_ns}, action="kill-process")


@pytest.mark.parametrize("status", ["resolved", "acknowledged"])
def test_a_recurrence_reopens_the_alert_and_shows_the_latest_occurrence(store: SqlStore, status: str) -> None:
    f = finding(1)
    store.ingest("s1", "n1", 1, [f])
    [row] = store.list_alerts()
    store.update_alert(row.id, status, "fixed")
    store.ingest("s1", "n2", 2, [_again(f, 5000, pid=4242)])
    again = store.get_alert(row.id)
    assert (again.status, again.count, again.node) == ("open", 2, "n2")
    assert (again.first_seen_ns, again.last_seen_ns) == (f.time_ns, f.time_ns + 5000)
    latest = again.finding
    assert (latest.event.pid, latest.output, latest.action) == (4242, "out pid 4242", "kill-process")
    assert latest.explanation == {"seen_after": 5000}
    assert [r.id for r in store.list_alerts(status="open")] == [row.id]
    audit = store.audit_entries()[0]
    assert (audit["actor"], audit["action"], audit["target"]) == ("sensor:s1", "alert reopened", str(row.id))
    assert audit["reason"] == f"recurred after it was {status}"


def test_a_suppressed_alert_stays_suppressed_and_an_old_replay_reopens_nothing(store: SqlStore) -> None:
    f = finding(1)
    store.ingest("s1", "n1", 1, [_again(f, 5000, pid=7)])
    [row] = store.list_alerts()
    store.update_alert(row.id, "suppressed", "known")
    store.ingest("s1", "n1", 2, [_again(f, 9000, pid=8)])
    assert store.get_alert(row.id).status == "suppressed" and store.get_alert(row.id).count == 2
    store.update_alert(row.id, "resolved", "")
    store.ingest("s1", "n1", 3, [f])  # older than the latest occurrence (a spooled finding arriving late)
    late = store.get_alert(row.id)
    assert (late.status, late.count, late.finding.event.pid) == ("resolved", 3, 8)
    assert late.first_seen_ns == f.time_ns
    assert not [e for e in store.audit_entries() if e["action"] == "alert reopened"]


def test_an_unknown_priority_names_the_valid_ones(store: SqlStore) -> None:
    from collector.errors import InvalidArgument

    with pytest.raises(InvalidArgument) as info:
        store.list_alerts(min_priority="BOGUS")
    assert str(info.value) == ("unknown priority 'BOGUS': use one of EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, "
                               "NOTICE, INFORMATIONAL, DEBUG")
    assert store.list_alerts(min_priority="warning") == []  # any case


def test_container_names_and_image_setters(store: SqlStore) -> None:
    old, new = finding(1, container=0), finding(2, container=1)
    store.ingest("s1", "n", 1, [old, new])
    assert old.event.container_id != new.event.container_id
    store.ingest("s1", "n", 2, [Finding("rule", "R", "WARNING", "o", new.event.replace(container_name="web-0"),
                                        time_ns=new.time_ns)])
    assert store.container_ids_named("web-0") == [new.event.container_id, old.event.container_id]
    assert store.container_ids_named("nope") == []
    store.set_image("busybox:latest", "alert", {}, "alice")
    assert [(i["image"], i["set_by"]) for i in store.images()][0] == ("busybox:latest", "alice")


def test_rate_anomalies_of_a_container_aggregate_whatever_process_ran_last(store: SqlStore) -> None:
    """The event on a rate finding is the window's last one; it must not decide the alert."""
    base = finding(1)
    burst = [Finding("rate_anomaly", "Rate Anomaly", "WARNING", f"burst {i}",
                     base.event.replace(exe=exe, args=(exe.rsplit("/", 1)[-1], str(i)), pid=100 + i),
                     time_ns=base.time_ns + i) for i, exe in enumerate(["/bin/sleep", "/bin/sh", "/bin/wget"])]
    store.ingest("s1", "n1", 1, burst)
    rates = [r for r in store.list_alerts() if r.finding.kind == "rate_anomaly"]
    assert len(rates) == 1 and rates[0].count == 3
    store.ingest("s1", "n1", 2, [finding(2), Finding("new_process", "New Process", "WARNING", "x",
                                                     base.event.replace(exe="/bin/nc"), time_ns=base.time_ns)])
    assert len(store.list_alerts()) == 3  # model findings stay one alert per thing they are about


def test_an_alert_keeps_the_strongest_action_any_occurrence_took(store: SqlStore) -> None:
    """Latest-occurrence details once included the action, so an alert whose container was paused
    read 'alert' after a later, merely alerted, occurrence; the audit alone remembered the pause."""
    f = finding(1)
    steps = [("pause-container", "pause-container"), ("alert", "pause-container"),
             ("kill-container", "kill-container"), ("kill-process", "kill-container")]
    for i, (taken, shown) in enumerate(steps, start=1):
        store.ingest("s1", "n1", i, [_again(f, i * 1000, pid=100 + i).replace(action=taken)])
        [row] = store.list_alerts()
        assert (row.finding.action, row.finding.event.pid, row.count) == (shown, 100 + i, i)


# -- values the store cannot hold, sizes, statuses (issue 16 items 4, 5, 11) ----------------------

_INT64 = 1 << 63


def _bad(field: str) -> tuple[int, Finding]:
    """(seq, finding) with one value the store cannot hold, in ``field``."""
    f = finding(7, container=3)
    bad = {"seq": (_INT64, f),
           "event.pid": (2, f.replace(event=f.event.replace(pid=1 << 64))),
           "event.cgroup_id": (2, f.replace(event=f.event.replace(cgroup_id=1 << 64))),
           "event.sc_args[1]": (2, f.replace(event=f.event.replace(sc_args=(1, -1)))),
           "event.args[1]": (2, f.replace(event=f.event.replace(args=("sh", "a\x00b")))),
           "time_ns": (2, f.replace(time_ns=-62_135_596_800 * 10**9)),  # year 1
           "event.time_ns": (2, f.replace(event=f.event.replace(time_ns=253_402_300_800 * 10**9))),  # year 10000
           "explanation": (2, f.replace(explanation=[1, 2, 3])),  # type: ignore[arg-type]
           "explanation.score": (2, f.replace(explanation={"score": float("nan")})),
           "explanation.big[0]": (2, f.replace(explanation={"big": [10**40]})),
           "output": (2, f.replace(output="\ud800 lone surrogate"))}
    return bad[field]


@pytest.mark.parametrize("field", ["seq", "event.pid", "event.cgroup_id", "event.sc_args[1]", "event.args[1]",
                                   "time_ns", "event.time_ns", "explanation", "explanation.score",
                                   "explanation.big[0]", "output"])
def test_a_batch_the_store_cannot_hold_is_refused_whole_and_the_store_goes_on(store: SqlStore, field: str) -> None:
    from collector.errors import InvalidArgument

    seq, bad = _bad(field)
    with pytest.raises(InvalidArgument) as info:
        store.ingest("s1", "n1", seq, [finding(1), bad])  # the good finding comes first
    message = str(info.value)
    assert message.startswith(f"batch {seq} refused: ") and "\n" not in message
    assert (field in message) if field == "seq" else (f"findings[1].{field}:" in message)
    assert store.count_alerts() == 0 and store.list_alerts() == []  # nothing of the batch
    if seq < _INT64:
        assert store.ingest("s1", "n1", seq, [finding(1)]) is True  # the refused seq was not recorded
    assert store.ingest("s1", "n1", 3, [finding(2, container=1)]) is True
    assert store.count_alerts() == (2 if seq < _INT64 else 1)


@pytest.mark.parametrize("time_ns", [-1, -_INT64, _INT64 - 1, 0])
def test_an_extreme_time_that_fits_is_stored_and_listed(store: SqlStore, time_ns: int) -> None:
    """Times before 1970 or near 2262 fit the store's 64-bit nanoseconds: listed, not hidden."""
    from collector.export import alert_json

    f = finding(1)
    odd = f.replace(time_ns=time_ns, event=f.event.replace(time_ns=time_ns, exe="/odd"))
    assert store.ingest("s1", "n1", 1, [odd, f]) is True
    rows = store.list_alerts()
    assert sorted(r.last_seen_ns for r in rows) == sorted([time_ns, f.time_ns])
    row = next(r for r in rows if r.finding.event.exe == "/odd")
    assert store.get_alert(row.id).finding.time_ns == time_ns
    year = {-1: "1969-", -_INT64: "1677-", _INT64 - 1: "2262-", 0: "1970-"}[time_ns]
    assert alert_json(row)["time"].startswith(year)
    later = {r.id for r in store.list_alerts(since_ns=f.time_ns)}
    assert later == {r.id for r in rows if r.last_seen_ns >= f.time_ns} and (row.id in later) == (time_ns > 0)


@pytest.mark.parametrize("status", ["open", "bogus", "", "Resolved"])
def test_update_alert_accepts_only_the_statuses_it_documents(store: SqlStore, status: str) -> None:
    from collector.errors import InvalidArgument

    store.ingest("s1", "n", 1, [finding(1)])
    [row] = store.list_alerts()
    store.update_alert(row.id, "resolved", "")
    with pytest.raises(InvalidArgument) as info:
        store.update_alert(row.id, status, "x")
    assert str(info.value) == f"alert status {status!r}: use one of acknowledged, resolved, suppressed"
    assert (store.get_alert(row.id).status, store.get_alert(row.id).comment) == ("resolved", "")


def test_a_comment_the_store_cannot_hold_is_refused(store: SqlStore) -> None:
    from collector.errors import InvalidArgument

    store.ingest("s1", "n", 1, [finding(1)])
    [row] = store.list_alerts()
    with pytest.raises(InvalidArgument, match="over the limit of 65,536 bytes"):
        store.update_alert(row.id, "acknowledged", "x" * (64 << 10 + 1))
    with pytest.raises(InvalidArgument, match="NUL"):
        store.update_alert(row.id, "acknowledged", "a\x00b")
    assert store.get_alert(row.id).status == "open"


def _big(i: int, size: int) -> Finding:
    """A distinct alert whose stored finding is about ``size`` bytes (most of it in output)."""
    f = finding(i, container=i)
    return f.replace(output="o" * size, explanation={"i": i})


def test_a_finding_over_the_size_limit_is_refused_naming_the_limit(store: SqlStore) -> None:
    from collector.errors import InvalidArgument
    from collector.store import MAX_FINDING_BYTES

    huge_args = finding(2).event.replace(args=tuple("a" * 1000 for _ in range(1100)))
    for bad, largest in ((_big(1, MAX_FINDING_BYTES), "output"),
                         (finding(2).replace(event=huge_args), "event.args")):
        with pytest.raises(InvalidArgument) as info:
            store.ingest("s1", "n", 1, [finding(3), bad])
        assert "over the limit of 1,048,576 bytes (1 MiB) per finding" in str(info.value)
        assert f"largest fields: {largest} " in str(info.value)
    assert store.count_alerts() == 0
    assert store.ingest("s1", "n", 1, [_big(1, MAX_FINDING_BYTES - 4096)]) is True  # just under: stored


def test_a_listing_pages_by_bytes_and_a_cursor_goes_on(store: SqlStore) -> None:
    """Five findings of 0.9 MiB are 4.5 MiB: over gRPC's 4 MiB, so one page cannot hold them."""
    from collector.store import PAGE_BYTES

    for i in range(5):
        store.ingest("s1", "n", i + 1, [_big(i, 900 << 10)])
    page = store.list_page()
    assert len(page.rows) == 3 and page.cursor
    assert sum(len(r.finding.output) for r in page.rows) <= PAGE_BYTES
    rest = store.list_page(cursor=page.cursor)
    assert len(rest.rows) == 2 and rest.cursor == ""
    ids = [r.id for r in page.rows + rest.rows]
    assert len(set(ids)) == 5
    assert [r.finding.explanation["i"] for r in page.rows + rest.rows] == [4, 3, 2, 1, 0]  # newest first
    assert [r.id for r in store.list_alerts()] == ids[:3]  # the old call gets the first page
    by_count = store.list_page(limit=2, max_bytes=10 << 20)
    assert len(by_count.rows) == 2 and by_count.cursor
    small = store.list_page(limit=2, after_id=ids[-1], max_bytes=1)  # at least one row, by id
    assert [r.id for r in small.rows] == [ids[-2]] and small.cursor == f"id:{ids[-2]}"
    assert [r.id for r in store.list_page(after_id=ids[-1], cursor=small.cursor, max_bytes=1).rows] == [ids[-3]]


def test_a_malformed_cursor_is_refused(store: SqlStore) -> None:
    from collector.errors import InvalidArgument

    for cursor, after_id in (("nonsense", 0), ("id:3", 0), ("5:3", 1), ("x:y", 0)):
        with pytest.raises(InvalidArgument, match="malformed listing cursor"):
            store.list_page(cursor=cursor, after_id=after_id)


def test_a_row_over_the_page_budget_is_listed_with_its_bulk_cut_visibly(store: SqlStore) -> None:
    """A row can outgrow a page: a caller's small budget, or one an older collector stored."""
    import json

    store.ingest("s1", "n", 1, [_big(1, 200_000).replace(explanation={"blob": "e" * 100_000})])
    [row] = store.list_alerts(max_bytes=50_000)
    assert row.finding.output.startswith("o" * 100) and "characters cut: the finding is" in row.finding.output
    [note] = row.finding.explanation.values()
    assert note.startswith("explanation cut: the finding is 30") and note.endswith(" over the 50,000-byte page")
    assert row.finding.event.exe == "/tmp/xmrig"  # short fields stay whole
    legacy = json.dumps(_big(1, 6 << 20).to_dict())  # over 4 MiB: stored by a collector without limits
    store._exec("UPDATE alerts SET finding = ? WHERE id = ?", (legacy, row.id))  # noqa: SLF001
    store.conn.commit()
    for got in (store.list_alerts()[0], store.get_alert(row.id)):
        assert len(json.dumps(got.finding.to_dict())) < 1 << 20 and "cut" in got.finding.output
