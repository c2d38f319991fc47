"""Incidents over the alert store, in SQLite and a real PostgreSQL: findings of one container's
process tree within the window are one incident that lists every distinct finding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from bench.workloads import deviation
from collector.errors import InvalidArgument, NotFound
from collector.incidents import Incidents
from collector.store import SqlStore
from sensor.events import Finding

T0 = 1_700_000_000_000_000_000


def shell_finding(i: int, container: int = 0, root: str = "/usr/sbin/nginx", priority: str = "WARNING",
                  action: str = "alert", dt_ns: int = 1_000_000, rule: str = "") -> Finding:
    """The i-th finding of a reverse shell under ``root``: a distinct process (exe) each time."""
    ev = deviation("new_binary", T0 + i * dt_ns, i=container).pop()
    ev = ev.replace(exe=f"/tmp/x{i % 997}", args=(f"/tmp/x{i % 997}", f"-p{i}"), ancestry=("/bin/sh", root),
                    pid=100 + i)
    return Finding("new_process", rule or f"Rule {i % 7}", priority, f"out {i}", ev, time_ns=ev.time_ns,
                   tags=(f"T10{i % 5}",), action=action)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: Any, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        s = SqlStore.open(str(tmp_path / "a.db"))
    else:
        s = SqlStore.open(request.getfixturevalue("postgres_url"))
        Incidents(s)  # the tables exist before they are emptied
        for table in ("alerts", "batches", "audit", "incidents", "incident_open", "incident_findings", "finding_hours",
                      "baseline_versions"):
            s.execute(f"DELETE FROM {table}")
        s.conn.commit()
    yield s
    s.close()


def test_a_burst_of_1000_related_findings_is_one_incident_listing_every_one(store: SqlStore) -> None:
    inc = Incidents.attach(store)
    findings = [shell_finding(i, priority="CRITICAL" if i == 500 else "WARNING",
                              action="pause-container" if i == 700 else "alert") for i in range(1000)]
    for seq in range(10):
        assert store.ingest("s1", "n1", seq, findings[seq * 100:(seq + 1) * 100])
    assert store.ingest("s1", "n1", 3, findings[300:400]) is False  # a replay files nothing twice
    page = inc.list_page()
    assert len(page.rows) == 1 and page.cursor == ""
    [one] = page.rows
    assert one.count == 1000 and one.distinct_findings == 1000  # 1,000 distinct (args differ)
    assert one.priority == "CRITICAL" and one.action == "pause-container" and one.status == "open"
    assert one.root_exe == "/usr/sbin/nginx" and sorted(one.rules) == [f"Rule {i}" for i in range(7)]
    listed = inc.findings(one.id, limit=5000)
    assert len(listed) == 1000 and sum(c for _, c, _, _ in listed) == 1000
    alert_ids = {a.id for a in store.list_alerts(limit=5000)}
    assert {a for a, _, _, _ in listed} == alert_ids


def test_repeats_are_counted_not_dropped(store: SqlStore) -> None:
    inc = Incidents.attach(store)
    f = shell_finding(1)
    store.ingest("s1", "n1", 1, [f, f, f])
    store.ingest("s1", "n1", 2, [f.replace(time_ns=f.time_ns + 5)])
    [one] = inc.list_page().rows
    assert one.count == 4 and one.distinct_findings == 1
    assert [c for _, c, _, _ in inc.findings(one.id)] == [4]


def test_other_trees_containers_and_late_findings_are_other_incidents(store: SqlStore) -> None:
    inc = Incidents.attach(store, window_s=60)
    store.ingest("s1", "n1", 1, [shell_finding(1), shell_finding(2, root="/usr/bin/python3"),
                                 shell_finding(3, container=1)])
    store.ingest("s1", "n1", 2, [shell_finding(4, dt_ns=10**9 * 3600)])  # an hour later: past the window
    rows = inc.list_page().rows
    assert len(rows) == 4 and all(r.count == 1 for r in rows)
    assert inc.list_page(image=rows[0].image).rows  # filters reach the store
    assert [r.id for r in inc.list_page(rule="Rule 4").rows] == [rows[0].id]
    assert len(inc.list_page(text="python3").rows) == 1


def test_status_and_a_resolved_incident_takes_no_new_findings(store: SqlStore) -> None:
    inc = Incidents.attach(store)
    store.ingest("s1", "n1", 1, [shell_finding(1)])
    [first] = inc.list_page().rows
    assert inc.set_status(first.id, "acknowledged", "looking").status == "acknowledged"
    store.ingest("s1", "n1", 2, [shell_finding(2)])
    assert inc.get(first.id).count == 2  # acknowledged: still its tree's incident
    inc.set_status(first.id, "resolved", "")
    store.ingest("s1", "n1", 3, [shell_finding(3)])
    rows = inc.list_page().rows
    assert len(rows) == 2 and inc.get(first.id).count == 2
    assert len(inc.list_page(status="open").rows) == 1
    with pytest.raises(InvalidArgument):
        inc.set_status(first.id, "gone", "")
    with pytest.raises(NotFound):
        inc.get(10**9)


def test_paging_by_cursor(store: SqlStore) -> None:
    inc = Incidents.attach(store)
    store.ingest("s1", "n1", 1, [shell_finding(i, container=i) for i in range(7)])
    seen: list[int] = []
    cursor = ""
    while True:
        page = inc.list_page(limit=3, cursor=cursor)
        seen += [r.id for r in page.rows]
        cursor = page.cursor
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 7


def test_findings_per_hour_are_counted_in_the_ingest(store: SqlStore) -> None:
    Incidents.attach(store)
    hour = 3600 * 10**9
    spread = [shell_finding(i, rule="A", dt_ns=hour // 2) for i in range(5)]  # over two and a half hours
    store.ingest("s1", "n1", 1, spread)
    store.ingest("s1", "n1", 2, [shell_finding(0, rule="A", priority="ERROR")])
    assert store.ingest("s1", "n1", 2, [shell_finding(0, rule="A", priority="ERROR")]) is False  # a replay: once
    expected: dict[tuple[int, str], int] = {(T0 // hour, "ERROR"): 1}
    for f in spread:
        expected[(f.time_ns // hour, "WARNING")] = expected.get((f.time_ns // hour, "WARNING"), 0) + 1
    rows = store.finding_hours(T0 // hour)
    assert {(h, p): n for h, p, _, _, n in rows} == expected and len(expected) >= 4
    assert {(r, i) for _, _, r, i, _ in rows} == {("A", "cgsentry/busybox:latest")}
    assert store.finding_hours(max(h for h, _ in expected) + 1) == []


def test_baseline_versions_only_when_they_change_and_the_latest_kept(store: SqlStore) -> None:
    assert store.add_baseline_version("k", "img", "d1", 3, b"one") == 1
    assert store.add_baseline_version("k", "img", "d1", 3, b"one again") == 0  # same items: no version
    assert store.add_baseline_version("k", "img", "d2", 4, b"two") == 2
    assert store.add_baseline_version("other", "img2", "d2", 4, b"x") == 1  # per image key
    assert [(v["version"], v["items"]) for v in store.baseline_versions("k")] == [(2, 4), (1, 3)]
    assert store.baseline_version("k", 1) == b"one" and store.baseline_version("k", 3) is None
    for i in range(3, 8):
        store.add_baseline_version("k", "img", f"d{i}", i, b"n", keep=3)
    assert [v["version"] for v in store.baseline_versions("k")] == [7, 6, 5]


def test_audit_search_by_actor_action_target_and_time(store: SqlStore) -> None:
    store.audit("alice", "pause", "c" * 64, "why", "ok")
    store.audit("bob_1", "incident acknowledged", "12", "", "ok")
    store.audit("alice", "image mode enforce", "nginx:1", "", "ok")
    everything = store.search_audit()
    assert [e["actor"] for e in everything] == ["alice", "bob_1", "alice"]  # newest first
    assert [e["action"] for e in store.search_audit(actor="ALICE")] == ["image mode enforce", "pause"]
    assert [e["target"] for e in store.search_audit(target="ccc")] == ["c" * 64]
    assert [e["actor"] for e in store.search_audit(actor="b_")] == ["bob_1"] and store.search_audit(actor="%") == []
    mid = everything[1]["time_ns"]
    assert [e["actor"] for e in store.search_audit(since_ns=mid)][-1] == "bob_1"
    assert all(e["time_ns"] < mid for e in store.search_audit(until_ns=mid))
    assert [e["id"] for e in store.search_audit(before_id=everything[0]["id"], limit=1)] == [everything[1]["id"]]


# -- the CLI twin: cgsentry incidents list|show, through the console's JSON API -------------------
def cli(stack: Any, capsys: pytest.CaptureFixture[str], *argv: str, role: str = "viewer") -> tuple[int, str, str]:
    from collector.cli import main

    code = main(["--token", stack.tokens[role] if role else "", *argv[:2], "--web", stack.url.removeprefix("http://"),
                 *argv[2:]])
    out, err = capsys.readouterr()
    return code, out, err


def test_incidents_list_and_show_in_a_terminal_with_hostile_text_shown_not_obeyed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.consolekit import ROOT, console_stack

    with console_stack(tmp_path) as stack:
        iid = stack.server.incidents.list_page().rows[0].id
        code, out, err = cli(stack, capsys, "incidents", "list")
        assert code == 0 and err == ""
        header, row = out.splitlines()
        assert header.split()[:3] == ["ID", "LAST", "SEEN"] and row.split()[0] == str(iid)
        assert "CRITICAL" in row and "web-0" in row and "pause-container" in row
        code, out, _ = cli(stack, capsys, "incidents", "list", "--priority", "CRITICAL", "--tag", "T1059.004",
                           "-q", "nginx", "--json")
        assert code == 0 and [i["id"] for i in json.loads(out)] == [iid]
        assert cli(stack, capsys, "incidents", "list", "--status", "resolved", "--json")[1].strip() == "[]"

        code, out, err = cli(stack, capsys, "incidents", "show", str(iid))
        assert code == 0 and err == ""
        assert "\x1b" not in out and "\u202e" not in out  # the attacker's escapes are shown, not obeyed
        assert "\\x1b[31mred\\x1b[0m<script>window.pwned=1</script>" in out and "\\u202egnp.exe" in out
        tree = out[out.index("process tree"):out.index("findings:")].splitlines()[1:]
        assert [line.split()[:2] for line in tree] == [["*", ROOT], ["*", "/bin/sh"], ["*", "/usr/bin/nc"]]
        assert "T1059.004" in out and out.count("alert ") == 4 and "expected /usr/sbin/nginx  seen /usr/bin/nc" in out
        code, out, _ = cli(stack, capsys, "incidents", "show", str(iid), "--json")
        view = json.loads(out)
        assert view["incident"]["id"] == iid and "\x1b[31m" in view["findings"][0]["args"][2]  # JSON keeps data

        assert cli(stack, capsys, "incidents", "show", "999999")[0] == 66
        code, _, err = cli(stack, capsys, "incidents", "list", role="")
        assert code == 77 and err.count("\n") == 1 and "--token" in err
        code, _, err = cli(stack, capsys, "incidents", "list", role="sensor")
        assert code == 77 and err.count("\n") == 1 and "not an analyst" in err
        from collector.cli import main

        assert main(["--token", "x", "incidents", "list", "--web", "127.0.0.1:1"]) == 69
        assert "cannot reach the console at http://127.0.0.1:1" in capsys.readouterr().err
        assert main(["--token", "x", "incidents", "list", "--web", "ftp://x"]) == 64
        with pytest.raises(SystemExit) as usage:  # argparse: not an incident id
            main(["--token", "x", "incidents", "show", "0"])
        assert usage.value.code == 64
        capsys.readouterr()


def test_incidents_are_triaged_from_the_terminal_and_a_viewer_cannot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.consolekit import console_stack

    with console_stack(tmp_path) as stack:
        iid = stack.server.incidents.list_page().rows[0].id
        alert_ids = {a for a, _, _, _ in stack.server.incidents.findings(iid)}
        code, _, err = cli(stack, capsys, "incidents", "ack", str(iid))
        assert code == 77 and err.count("\n") == 1  # a viewer reads only
        code, out, err = cli(stack, capsys, "incidents", "ack", str(iid), "--comment", "looking", role="responder")
        assert (code, out, err) == (0, f"incident {iid}: acknowledged\n", "")
        assert {stack.store.get_alert(a).status for a in alert_ids} == {"acknowledged"}  # its alerts follow
        code, _, err = cli(stack, capsys, "incidents", "suppress", str(iid), role="responder")  # no terminal here
        assert code == 64 and "add --yes" in err and err.count("\n") == 1
        assert stack.server.incidents.get(iid).status == "acknowledged"  # nothing changed
        code, out, _ = cli(stack, capsys, "incidents", "resolve", str(iid), "--comment", "contained", "--json",
                           role="responder")
        assert code == 0 and json.loads(out)["status"] == "resolved"
        assert {stack.store.get_alert(a).status for a in alert_ids} == {"resolved"}
        assert [e["action"] for e in stack.store.search_audit(target=str(iid))
                if e["action"].startswith("incident")] == ["incident resolved", "incident acknowledged"]
        code, out, _ = cli(stack, capsys, "incidents", "reopen", str(iid), role="responder")
        assert code == 0 and out == f"incident {iid}: open\n"


def test_the_console_migration_fills_findings_per_hour_from_the_alerts_already_stored(store: SqlStore) -> None:
    from collector.store import MIGRATIONS

    store.ingest("s1", "n1", 1, [shell_finding(i, rule="A") for i in range(3)] + [shell_finding(0, rule="A")])
    # back to the schema before the console's migration, with its alerts stored
    with store.transaction():
        for stmt in ("DROP TABLE finding_hours", "DROP TABLE baseline_versions", "DROP INDEX audit_time",
                     "ALTER TABLE snapshots DROP COLUMN not_active"):  # migrations 7 and the later 8
            store.execute(stmt)
        store.execute("DELETE FROM schema_version WHERE version >= ?", (7,))
    again = SqlStore.open(store.url or store.path)
    try:
        assert again.schema_version() == len(MIGRATIONS)
        rows = again.finding_hours(0)
        assert sum(n for *_, n in rows) == 4
        assert {(r, i) for _, _, r, i, _ in rows} == {("A", "cgsentry/busybox:latest")}
        assert again.baseline_versions("k") == [] and again.search_audit(actor="x") == []
    finally:
        again.close()
