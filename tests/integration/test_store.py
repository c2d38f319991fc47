"""The alert store suite, run against SQLite and a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from bench.workloads import deviation
from collector.errors import NotFound
from collector.store import SqlStore
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
    assert store.schema_version() == 3


def test_reopen_keeps_data_and_schema(tmp_path: Path) -> None:
    s = SqlStore.open(str(tmp_path / "x.db"))
    s.ingest("s", "n", 1, [finding()])
    s.close()
    again = SqlStore.open(str(tmp_path / "x.db"))
    assert again.count_alerts() == 1 and again.schema_version() == 3


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
    assert store.schema_version() == 3 and store.rulesets() == []
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
