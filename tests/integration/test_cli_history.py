"""Alert history, the state machine and what suppress teaches, through the real `cgsentry` CLI and a
real collector (issue 23 items 3 and 4, issue 20 item 1's "expect this for the image"): every
comment kept with who and when (SQLite and PostgreSQL), an invalid change refused in one line,
suppress and resolve --expect teach every sensor and can be undone, a suppressed alert leaves the
default list and stops notifying the webhook."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from bench.workloads import deviation
from collector.auth import AuthConfig, TokenStore
from collector.export import Exporters
from collector.server import create_server
from collector.store import SqlStore
from sensor.agent.link import CollectorLink, LinkCallbacks, LinkConfig
from sensor.events import Event, Finding
from sensor.spool import Spool
from tests.integration.helpers import backend_collector, learned, run
from tests.waiting import wait_for

_names = itertools.count()


def rule_finding(i: int, learnable: bool = True, rule: str = "Shell Spawned By Non-Shell Program") -> Finding:
    ev = Event("exec", 1_700_000_000_000_000_000 + i * 10**9, pid=100 + i, ppid=7, comm="sh", exe="/bin/sh",
               args=("sh", "-c", f"logrotate {i}"), container_id="ab" * 32, container_name="web-1",
               image="shop/web:1", image_id="sha256:" + "cd" * 32, runtime="docker", pexe="/usr/sbin/logrotate")
    return Finding("rule", rule, "WARNING", f"shell {i}", ev, time_ns=ev.time_ns, source="rule", tags=("T1059",),
                   explanation={"learnable": learnable})


@pytest.fixture(params=["sqlite", "postgres"])
def collector(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], SqlStore]]:
    with backend_collector(request, tmp_path, {"vic": "viewer", "rita": "responder"}, "history") as live:
        yield live


def test_every_change_is_kept_with_who_when_and_why(collector: Any, capsys: Any) -> None:
    server, toks, store = collector
    assert store.schema_version() >= 6
    store.ingest("s1", "n1", 1, [rule_finding(1), rule_finding(2)])
    first, other = (str(r.id) for r in sorted(store.list_alerts(), key=lambda r: r.finding.output))
    rita = ("--server", server, "--token", toks["responder"])
    rc, out, _ = run(capsys, *rita, "alerts", "ack", first, "--comment", "on it")
    assert rc == 0 and out == f"alert {first}: acknowledged\n"  # the stored word, not the verb
    rc, out, _ = run(capsys, *rita, "alerts", "resolve", first, "--comment", "patched the image")
    assert rc == 0 and out.startswith(f"alert {first}: resolved")
    rc, out, err = run(capsys, *rita, "alerts", "ack", first)
    assert rc == 65 and out == "" and err.count("\n") == 1
    assert f"alert {first} is resolved: cannot acknowledge it; reopen it first (cgsentry alerts reopen {first})" in err
    rc, _, err = run(capsys, *rita, "alerts", "resolve", first)
    assert rc == 65 and f"alert {first} is already resolved" in err
    rc, out, _ = run(capsys, *rita, "alerts", "reopen", first, "--comment", "came back")
    assert rc == 0 and out.startswith(f"alert {first}: open")
    run(capsys, *rita, "alerts", "ack", other, "--comment", "not this one")
    viewer = ("--server", server, "--token", toks["viewer"])
    rc, out, _ = run(capsys, *viewer, "alerts", "show", first)
    lines = out.splitlines()
    history = lines[lines.index("  history") + 1:]
    assert rc == 0 and len(history) == 3, out
    assert [h.split()[1:5] for h in history] == [["rita", "open", "->", "acknowledged"],
                                                  ["rita", "acknowledged", "->", "resolved"],
                                                  ["rita", "resolved", "->", "open"]]
    assert history[1].endswith("'patched the image'") and history[0].split()[0].endswith("Z")
    rc, out, _ = run(capsys, *viewer, "alerts", "show", first, "--json")
    assert [(h["actor"], h["to"], h["comment"]) for h in json.loads(out)["history"]] == [
        ("rita", "acknowledged", "on it"), ("rita", "resolved", "patched the image"), ("rita", "open", "came back")]
    rc, out, _ = run(capsys, *viewer, "audit", "list", "--alert", first, "--json")
    entries = json.loads(out)
    assert rc == 0 and [e["action"] for e in entries] == ["alert reopened", "alert resolved", "alert acknowledged"]
    assert {e["target"] for e in entries} == {first} and entries[1]["reason"] == "patched the image"
    rc, out, _ = run(capsys, *viewer, "audit", "list", "--alert", first)  # the table, times with their zone
    assert rc == 0 and len(out.splitlines()) == 4 and out.splitlines()[1].split()[1].endswith("Z")
    rc, out, _ = run(capsys, "alerts", "states")
    assert rc == 0 and out.splitlines()[0].split()[0] == "acknowledged"


@pytest.fixture
def linked(live: Any, tmp_path: Path) -> Iterator[tuple[Any, list[Any], CollectorLink]]:
    server, toks, store = live
    accepted: list[Any] = []
    link = CollectorLink(LinkConfig(server, sensor_id="sensor", token=toks["sensor"]), Spool(tmp_path / "sp"),
                         callbacks=LinkCallbacks(on_accept=accepted.append)).start()
    wait_for(lambda: link.connected.is_set())
    yield live, accepted, link
    link.close()


def test_suppressing_a_model_finding_asks_teaches_and_can_be_undone(linked: Any, capsys: Any) -> None:
    (server, toks, store), accepted, link = linked
    eng = learned(range(0, 1))
    [finding] = eng.handle(deviation("new_listen_port", 2_000_000_000 * 10**9)[0])
    link.submit([finding])
    wait_for(lambda: store.count_alerts() == 1)
    alert_id = str(store.list_alerts()[0].id)
    rita = ("--server", server, "--token", toks["responder"])
    rc, out, err = run(capsys, *rita, "alerts", "suppress", alert_id)  # stdin is not a terminal here
    assert rc == 64 and out == "" and err.count("\n") == 1
    assert "teaches every sensor's baseline" in err and "--yes" in err and f"alerts unsuppress {alert_id}" in err
    assert store.get_alert(int(alert_id)).status == "open" and not accepted
    rc, out, _ = run(capsys, *rita, "alerts", "suppress", alert_id, "--yes", "--comment", "debug port")
    assert rc == 0 and out.startswith(f"alert {alert_id}: suppressed (it leaves the default list")
    wait_for(lambda: len(accepted) == 1)
    assert (accepted[0].dimension, json.loads(accepted[0].key_json), accepted[0].forget) == ("listen", ["tcp", 4444],
                                                                                              False)
    viewer = ("--server", server, "--token", toks["viewer"])
    assert json.loads(run(capsys, *viewer, "alerts", "list", "--json")[1]) == []
    assert len(json.loads(run(capsys, *viewer, "alerts", "list", "--json", "--all")[1])) == 1
    rc, out, _ = run(capsys, *viewer, "alerts", "list")
    assert rc == 0 and "suppressed ones are left out" in out
    rc, out, _ = run(capsys, *rita, "alerts", "unsuppress", alert_id, "--comment", "port closed again")
    assert rc == 0 and out.startswith(f"alert {alert_id}: open")
    wait_for(lambda: len(accepted) == 2)
    assert (accepted[1].dimension, json.loads(accepted[1].key_json), accepted[1].forget) == ("listen", ["tcp", 4444],
                                                                                              True)
    audit = store.audit_entries(alert_id=int(alert_id))
    assert [e["action"] for e in audit] == ["alert unsuppressed", "alert suppressed"]
    assert "baseline item forget sent to 1 sensor" in audit[0]["result"]


def test_resolve_expect_makes_a_learnable_rule_expected_and_refuses_an_unlearnable_one(linked: Any,
                                                                                      capsys: Any) -> None:
    (server, toks, store), accepted, link = linked
    link.submit([rule_finding(1), rule_finding(2, learnable=False, rule="Reverse Shell")])
    wait_for(lambda: store.count_alerts() == 2)
    ids = {r.finding.rule: str(r.id) for r in store.list_alerts()}
    rita = ("--server", server, "--token", toks["responder"])
    rc, _, err = run(capsys, *rita, "alerts", "resolve", ids["Reverse Shell"], "--expect", "--yes")
    assert rc == 65 and err.count("\n") == 1 and "'Reverse Shell' is marked learnable: false" in err
    rc, _, err = run(capsys, *rita, "alerts", "resolve", ids["Shell Spawned By Non-Shell Program"], "--expect")
    assert rc == 64 and "teaches every sensor's baseline for image shop/web:1" in err  # asks first
    rc, out, _ = run(capsys, *rita, "alerts", "resolve", ids["Shell Spawned By Non-Shell Program"], "--expect",
                     "--yes", "--comment", "logrotate's postrotate")
    assert rc == 0 and "expected behaviour of its image" in out
    wait_for(lambda: len(accepted) == 1)
    item = accepted[0]
    assert (item.dimension, json.loads(item.key_json), item.forget) == (
        "rule", ["Shell Spawned By Non-Shell Program", "/bin/sh", "/usr/sbin/logrotate"], False)
    assert item.reason == "logrotate's postrotate" and item.image == "shop/web:1"
    assert store.get_alert(int(ids["Shell Spawned By Non-Shell Program"])).status == "resolved"
    assert store.get_alert(int(ids["Reverse Shell"])).status == "open"
    rc, out, _ = run(capsys, *rita, "alerts", "reopen", ids["Shell Spawned By Non-Shell Program"])  # the undo
    assert rc == 0 and out.startswith(f"alert {ids['Shell Spawned By Non-Shell Program']}: open")
    wait_for(lambda: len(accepted) == 2)
    assert (accepted[1].dimension, json.loads(accepted[1].key_json), accepted[1].forget) == (
        "rule", ["Shell Spawned By Non-Shell Program", "/bin/sh", "/usr/sbin/logrotate"], True)


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_suppressed_alert_notifies_no_more(tmp_path: Path, capsys: Any) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    receiver.bodies = []  # type: ignore[attr-defined]
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    store = SqlStore.open(str(tmp_path / "c.db"))
    tokens = TokenStore(tmp_path / "tokens")
    toks = {r: tokens.add(r, r) for r in ("responder", "sensor")}
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    exporters = Exporters(f"http://127.0.0.1:{receiver.server_address[1]}/hook", metrics=True, registry=registry)
    server, port = create_server("127.0.0.1:0", store, AuthConfig(tokens), exporters=exporters)
    link = CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id="sensor", token=toks["sensor"]),
                         Spool(tmp_path / "sp")).start()
    try:
        noisy = rule_finding(1)
        link.submit([noisy])
        wait_for(lambda: len(receiver.bodies) == 1)  # type: ignore[attr-defined]
        alert_id = str(store.list_alerts()[0].id)
        rc, _, _ = run(capsys, "--server", f"127.0.0.1:{port}", "--token", toks["responder"], "alerts", "suppress",
                       alert_id)  # a rule's finding: nothing is taught, nothing to confirm
        assert rc == 0
        again = dataclasses.replace(noisy, time_ns=noisy.time_ns + 10**9,
                                    event=noisy.event.replace(time_ns=noisy.time_ns + 10**9))
        link.submit([again])
        link.submit([rule_finding(2, rule="Other Rule")])  # the webhook is in order: this one comes after
        wait_for(lambda: any(b["rule"] == "Other Rule" for b in receiver.bodies))  # type: ignore[attr-defined]
        assert [b["output"] for b in receiver.bodies] == ["shell 1", "shell 2"]  # type: ignore[attr-defined]
        assert store.get_alert(int(alert_id)).count == 2  # still counted, only not notified
        counted = sum(m.value for metric in registry.collect() if metric.name == "cgsentry_findings"
                      for m in metric.samples if m.name == "cgsentry_findings_total")
        assert counted == 3  # the metrics count the suppressed repeat too
    finally:
        link.close()
        server.stop(0)
        exporters.close()
        receiver.shutdown()
        store.close()
