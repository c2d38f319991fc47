"""The `cgsentry` CLI against a live in-process collector; mTLS for sensors."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from collector import pki
from collector.auth import AuthConfig, TokenStore
from collector.cli import main
from collector.server import TlsConfig, create_server
from collector.store import SqlStore
from sensor import __version__
from sensor.agent.link import CollectorLink, LinkCallbacks, LinkConfig
from sensor.spool import Spool
from tests.integration.helpers import finding, run
from tests.waiting import wait_for

ALERT_KEYS = {"id", "time", "rule", "priority", "output", "image", "container_id", "container_name", "pid", "exe",
              "args", "action", "tags"}
FALCO_KEYS = {"time", "rule", "priority", "output", "output_fields", "source", "tags", "hostname"}


def test_alerts_json_falco_show_ack(live: Any, capsys: Any, tmp_path: Path) -> None:
    server, toks, store = live
    link = CollectorLink(LinkConfig(server, sensor_id="sensor", token=toks["sensor"]), Spool(tmp_path / "sp")).start()
    second = finding(2, container=1)
    second = dataclasses.replace(second, event=second.event.replace(ancestry=("/bin/sh", "/usr/bin/runc")),
                                 explanation={"expected": ["/bin/date"], "learned_s": 60})
    link.submit([finding(1), second])
    wait_for(lambda: store.count_alerts() == 2)
    link.close()
    rc, out, _ = run(capsys, "--server", server, "--token", toks["viewer"], "alerts", "list", "--json")
    rows = json.loads(out)
    assert rc == 0 and len(rows) == 2 and all(set(r) >= ALERT_KEYS for r in rows)
    rc, out, _ = run(capsys, "--server", server, "--token", toks["viewer"], "alerts", "list", "--falco")
    falco = [json.loads(line) for line in out.splitlines()]
    assert all(set(f) >= FALCO_KEYS for f in falco) and falco[0]["priority"] == "Warning"
    assert falco[0]["output_fields"]["container.image.repository"] == "cgsentry/busybox"
    shown = next(r for r in rows if r["exe"] == "/tmp/x2")
    rc, out, _ = run(capsys, "--server", server, "--token", toks["viewer"], "alerts", "show", str(shown["id"]))
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == f"alert {shown['id']}  WARNING  New Process  [open]  x1", lines
    assert "  container web-1 (010101010101)  image cgsentry/busybox:latest" in lines, lines
    assert "  ancestry  /bin/sh <- /usr/bin/runc" in lines, lines
    assert [line.split()[0] for line in lines if line.startswith("  why.")] == ["why.expected", "why.learned_s"]
    rc, _, err = run(capsys, "--server", server, "--token", toks["viewer"], "alerts", "ack", str(rows[0]["id"]))
    assert rc == 77 and err.startswith("cgsentry: not allowed") and err.count("\n") == 1
    rc, out, _ = run(capsys, "--server", server, "--token", toks["responder"], "alerts", "ack", str(rows[0]["id"]))
    assert rc == 0
    rc, out, _ = run(capsys, "--server", server, "--token", toks["viewer"], "alerts", "list", "--json",
                     "--status", "acknowledged")
    assert [r["id"] for r in json.loads(out)] == [rows[0]["id"]]
    rc, out, _ = run(capsys, "--server", server, "--token", toks["admin"], "images", "mode",
                     "cgsentry/busybox:latest", "enforce", "--action", "pause", "--json")
    assert rc == 0 and json.loads(out)["action"] == "pause-container"
    rc, out, _ = run(capsys, "--server", server, "--token", toks["viewer"], "audit", "list", "--json")
    assert {e["action"] for e in json.loads(out)} >= {"alert acknowledged", "image mode enforce"}


def test_exit_codes(live: Any, capsys: Any) -> None:
    server, toks, _ = live
    assert run(capsys, "--server", server, "alerts", "list")[0] == 77  # no token
    rc, _, err = run(capsys, "--server", "127.0.0.1:1", "--timeout", "2", "alerts", "list")
    assert rc == 69 and "cannot reach collector at 127.0.0.1:1" in err and err.count("\n") == 1
    rc, _, err = run(capsys, "--server", server, "--token", toks["viewer"], "alerts", "list", "--since", "yesterday")
    assert rc == 65 and "--since 'yesterday'" in err
    rc, _, err = run(capsys, "--server", server, "--token", toks["viewer"], "alerts", "show", "424242")
    assert rc == 66
    with pytest.raises(SystemExit) as info:
        main(["alerts", "frobnicate"])
    assert info.value.code == 64  # sysexits EX_USAGE, not argparse's 2


def test_rules_push_list_remove(live: Any, capsys: Any, tmp_path: Path) -> None:
    server, toks, store = live
    admin = ["--server", server, "--token", toks["admin"]]
    f = tmp_path / "team.yaml"
    f.write_text("- rule: Pushed\n  desc: d\n  condition: spawned_process and proc.name = zz\n"
                 "  output: o\n  priority: WARNING\n")
    rc, out, _ = run(capsys, *admin, "rules", "push", "team", str(f))
    assert rc == 0 and out.strip() == "rule set team: 1 rules, sent to 0 connected sensor(s)"
    rc, out, _ = run(capsys, *admin, "rules", "list", "--json")
    assert rc == 0 and [(r["name"], r["actor"]) for r in json.loads(out)] == [("team", "admin")]
    f.write_text("- rule: Pushed\n  desc: d\n  condition: proc.nmae = zz\n  output: o\n  priority: WARNING\n")
    rc, _, err = run(capsys, *admin, "rules", "push", "team", str(f))
    assert rc == 65 and "proc.nmae" in err and err.count("\n") == 1
    assert "zz" in store.rulesets()[0]["yaml"] and "nmae" not in store.rulesets()[0]["yaml"]  # kept
    rc, _, err = run(capsys, *admin, "rules", "push", "team", str(tmp_path / "missing.yaml"))
    assert rc == 66 and "cannot read rules file" in err
    rc, _, err = run(capsys, "--server", server, "--token", toks["viewer"], "rules", "push", "team", str(f))
    assert rc == 77
    rc, out, _ = run(capsys, *admin, "rules", "push", "team", "--remove")
    assert rc == 0 and "removed" in out and store.rulesets() == []


def test_mtls_sensor_identity(tmp_path: Path) -> None:
    pki.init_ca(tmp_path / "ca")
    pki.issue_sensor(tmp_path / "ca", "node-1")
    pki.init_ca(tmp_path / "rogue")  # a CA the collector does not trust
    pki.issue_sensor(tmp_path / "rogue", "node-1")
    d = tmp_path / "ca"
    tls = TlsConfig((d / "server.crt").read_bytes(), (d / "server.key").read_bytes(), (d / "ca.crt").read_bytes())
    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(None), mtls=True), tls)

    def link(cert_dir: Path, sensor_id: str) -> CollectorLink:
        return CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id=sensor_id, ca=d / "ca.crt",
                                        cert=cert_dir / "sensor-node-1.crt", key=cert_dir / "sensor-node-1.key"),
                             Spool(tmp_path / f"sp-{cert_dir.name}-{sensor_id}")).start()

    good = link(d, "node-1")
    good.submit([finding(1)])
    wait_for(lambda: store.count_alerts() == 1)
    good.close()
    rogue = link(tmp_path / "rogue", "node-1")  # certificate from an untrusted CA: handshake fails
    liar = link(d, "node-2")  # valid certificate, but claims another sensor's identity
    rogue.submit([finding(2)])
    liar.submit([finding(3)])
    import time

    time.sleep(2)
    assert store.count_alerts() == 1 and not rogue.connected.is_set() and not liar.connected.is_set()
    rogue.close()
    liar.close()
    # an analyst needs a client certificate AND a token for a role; the certificate alone is not enough
    tokens_path = tmp_path / "tok"
    server.stop(0)
    viewer = TokenStore(tokens_path).add("alice", "viewer")
    server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(tokens_path), mtls=True), tls)
    ch = grpc.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(
        (d / "ca.crt").read_bytes(), (d / "sensor-node-1.key").read_bytes(), (d / "sensor-node-1.crt").read_bytes()))
    from collector.convert import pb, rpc

    stub = rpc.AnalystStub(ch)
    with pytest.raises(grpc.RpcError) as info:
        stub.ListAlerts(pb.AlertQuery(), timeout=5)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED  # cert = sensor identity, not an analyst
    md = [("authorization", f"Bearer {viewer}")]
    assert len(stub.ListAlerts(pb.AlertQuery(), metadata=md, timeout=5).alerts) == 1
    no_cert = rpc.AnalystStub(grpc.secure_channel(f"127.0.0.1:{port}",
                                                  grpc.ssl_channel_credentials((d / "ca.crt").read_bytes())))
    with pytest.raises(grpc.RpcError) as info:
        no_cert.ListAlerts(pb.AlertQuery(), metadata=[("authorization", f"Bearer {viewer}")], timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # TLS handshake refused without a certificate
    server.stop(0)


def test_issued_tokens_never_look_like_options(tmp_path: Path) -> None:
    """A token is passed as `--token <it>`: one that begins with "-" would be parsed as a flag."""
    tokens = TokenStore(tmp_path / "tokens")
    issued = [tokens.add(f"n{i}", "viewer") for i in range(200)]  # a bare urlsafe token: ~6 would start with "-"
    assert not [t for t in issued if t.startswith("-")]
    assert all(tokens.lookup(t) is not None for t in issued[:3])


def test_sensors_line_shows_bpf_cost_only_when_the_sensor_reports_it(live: Any, capsys: Any, tmp_path: Path) -> None:
    server, toks, store = live
    lines = []
    for i, counters in enumerate([{"events_per_s": 12, "bpf_run_ns_per_s": 8_000_000}, {"events_per_s": 13}]):
        link = CollectorLink(LinkConfig(server, sensor_id="sensor", token=toks["sensor"], heartbeat_s=0.1),
                             Spool(tmp_path / f"sp{i}"), callbacks=LinkCallbacks(counters=lambda c=counters: c)).start()
        wait_for(lambda c=counters: [s["counters"] for s in store.sensors()] == [c])
        rc, out, _ = run(capsys, "--server", server, "--token", toks["viewer"], "sensors", "list")
        link.close()
        assert rc == 0
        lines.append(out.strip())
    assert lines[0].endswith(" bpf=0.80%cpu") and "bpf=" not in lines[1]
    wait_for(lambda: not store.sensors()[0]["connected"])  # gone: when it was last seen, no rate (issue 23.10)
    rc, out, _ = run(capsys, "--server", server, "--token", toks["viewer"], "sensors", "list")
    header, row = out.splitlines()
    assert rc == 0 and header.split()[:3] == ["SENSOR", "STATE", "LAST"] and row.split()[1] == "down"
    assert row.split()[2].endswith("Z") and "events/s" not in row and "bpf=" not in row and "drops=0" in row
    assert store.sensors()[0]["version"] == __version__  # from the hello, kept through heartbeats


def test_the_old_link_of_a_reconnected_sensor_does_not_mark_it_down(live: Any, tmp_path: Path) -> None:
    server, toks, store = live
    cfg = LinkConfig(server, sensor_id="sensor", token=toks["sensor"], heartbeat_s=60)
    old = CollectorLink(cfg, Spool(tmp_path / "old")).start()
    wait_for(lambda: old.connected.is_set())
    new = CollectorLink(cfg, Spool(tmp_path / "new")).start()
    wait_for(lambda: new.connected.is_set())
    old.close()  # the old stream ends after the new one took over the sensor id
    time.sleep(0.5)
    assert store.sensors()[0]["connected"]
    new.close()
    wait_for(lambda: not store.sensors()[0]["connected"])


def test_alerts_and_audit_show_hostile_text_escaped(live: Any, capsys: Any, tmp_path: Path) -> None:
    """A command line, container name or audit reason chosen in a container cannot drive the
    analyst's terminal: no ESC/BEL/CSI byte reaches it and no value starts a row of its own."""
    server, toks, store = live
    hostile = "\x1b[2J\x1b]8;;http://evil\x07x\n FAKE ROW\u202e"
    f = finding(1)
    f = dataclasses.replace(f, rule="New Process" + hostile, output="ran " + hostile,
                            event=f.event.replace(args=("sh", hostile), container_name="web" + hostile))
    link = CollectorLink(LinkConfig(server, sensor_id="sensor", token=toks["sensor"]), Spool(tmp_path / "sp")).start()
    link.submit([f])
    wait_for(lambda: store.count_alerts() == 1)
    link.close()
    store.audit("sensor:x", "kill", "c1", "reason " + hostile, "ok")
    viewer = ("--server", server, "--token", toks["viewer"])
    for argv, rows in ((("alerts", "list"), 2), (("alerts", "show", "1"), None), (("audit", "list"), 2)):
        rc, out, err = run(capsys, *viewer, *argv)
        assert rc == 0 and err == "", err
        assert not any(c in out for c in "\x1b\x07\u202e"), (argv, out)
        assert "\\x1b" in out and ("FAKE ROW" in out or argv == ("alerts", "list")), (argv, out)  # list cuts
        if rows is not None:
            assert len(out.splitlines()) == rows, (argv, out)
