"""The operator/analyst CLI against a live collector: alerts that recur, bad filters, the audit
table, images as sensors report them, typo-proof image modes, container actions by name and on
stopped containers, TLS misconfiguration, and analyst client certificates."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import grpc
import msgpack
import pytest

from bench.workloads import IMAGE_ID
from collector import pki
from collector.auth import AuthConfig, TokenStore
from collector.convert import pb, rpc
from collector.server import TlsConfig, create_server
from collector.store import SqlStore
from models import store as model_store
from sensor.agent.link import CollectorLink, LinkCallbacks, LinkConfig
from sensor.events import Finding
from sensor.response import ActionResult
from sensor.spool import Spool
from tests.integration.helpers import finding, learned, run
from tests.waiting import wait_for

Live = tuple[str, dict[str, str], SqlStore]


def _as(live: Live, role: str) -> list[str]:
    server, toks, _ = live
    return ["--server", server, "--token", toks[role]]


def test_unknown_priority_is_one_line_naming_the_valid_ones(live: Live, capsys: Any) -> None:
    rc, out, err = run(capsys, *_as(live, "viewer"), "alerts", "list", "--priority", "BOGUS")
    assert rc == 65 and out == ""
    assert err == ("cgsentry: unknown priority 'BOGUS': use one of EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, "
                   "NOTICE, INFORMATIONAL, DEBUG\n")


def test_audit_list_has_a_header_and_whole_targets(live: Live, capsys: Any) -> None:
    store = live[2]
    a, b = "registry.example.com/team/payments-api:1.2.3", "registry.example.com/team/payments-api:1.2.4"
    for image in (a, b):
        rc, _, _ = run(capsys, *_as(live, "admin"), "images", "mode", image, "alert", "--force")
        assert rc == 0
    rc, out, _ = run(capsys, *_as(live, "viewer"), "audit", "list")
    lines = out.splitlines()
    assert rc == 0 and lines[0].split() == ["ID", "TIME", "ACTOR", "ACTION", "TARGET", "RESULT", "LATENCY", "REASON"]
    assert b in lines[1] and a in lines[2]
    assert len(store.audit_entries()) == len(lines) - 1


def _snapshot(name: str, key: str, mode: str, would: dict[str, int]) -> bytes:
    """A real baseline snapshot (as a sensor sends it) renamed to another image and mode."""
    data = model_store.to_dict(_LEARNED.images[IMAGE_ID])
    life = {**data["life"], "would_enforce": would}
    if mode == "learn":
        life.update(mode="learn", audit=[], promoted_ns=0)
    return msgpack.packb({**data, "image": name, "key": key, "life": life}, use_bin_type=True)


_LEARNED = learned(range(0, 2))  # auto-promoted to alert by its sensor


def test_images_list_shows_what_sensors_learn_and_promote(live: Live, capsys: Any, tmp_path: Path) -> None:
    server, _, store = live
    snaps = [(IMAGE_ID, _snapshot("cgsentry/busybox:latest", IMAGE_ID, "alert", {"new_process:kill-process": 3})),
             ("sha256:" + "c" * 64, _snapshot("cgsentry/nginx:1.25", "sha256:" + "c" * 64, "learn", {}))]
    link = CollectorLink(LinkConfig(server, sensor_id="sensor", token=live[1]["sensor"], heartbeat_s=0.1,
                                    snapshot_s=0.1), Spool(tmp_path / "sp"),
                         callbacks=LinkCallbacks(snapshots=lambda: snaps, container_images=lambda: {
                             "a" * 64: IMAGE_ID, "b" * 64: "sha256:" + "c" * 64})).start()
    wait_for(lambda: len(store.all_snapshots()) == 2)
    link.close()
    rc, _, _ = run(capsys, *_as(live, "admin"), "images", "mode", "cgsentry/redis:7", "enforce", "--action", "kill",
                   "--ban", "nc", "--ban", "wget", "--force")
    assert rc == 0
    rc, out, _ = run(capsys, *_as(live, "viewer"), "images", "list", "--json")
    rows = {r["image"]: r for r in json.loads(out)}
    assert rc == 0 and sorted(rows) == ["cgsentry/busybox:latest", "cgsentry/nginx:1.25", "cgsentry/redis:7"]
    busybox, nginx, redis = (rows[k] for k in sorted(rows))
    assert (busybox["mode"], busybox["set_by"], busybox["would_enforce"]) == (
        "alert", "sensor auto-promotion", {"new_process:kill-process": 3})
    assert (nginx["mode"], nginx["set_by"], nginx["sensors"]) == ("learn", "", {"sensor": "learn"})
    assert (redis["mode"], redis["set_by"], redis["action"], redis["bans"]) == (
        "enforce", "operator admin", "kill-container", ["nc", "wget"])
    rc, out, _ = run(capsys, *_as(live, "viewer"), "images", "list")
    header, *lines = out.splitlines()
    assert header.split()[:4] == ["IMAGE", "MODE", "SET", "BY"] and "ACTION" in header and "BANS" in header
    assert lines[0].split() == ["cgsentry/busybox:latest", "alert", "sensor", "auto-promotion", "-", "3", "0", "-"]
    assert lines[1].split() == ["cgsentry/nginx:1.25", "learn", "-", "-", "0", "0", "-"]
    assert lines[2].split() == ["cgsentry/redis:7", "enforce", "operator", "admin", "kill-container", "0", "0",
                                "nc,wget"]


def test_a_mode_for_an_image_no_sensor_has_seen_needs_force(live: Live, capsys: Any) -> None:
    store = live[2]
    store.ingest("sensor", "n", 1, [finding(1)])  # cgsentry/busybox:latest is known from its alert
    admin = _as(live, "admin")
    rc, _, err = run(capsys, *admin, "images", "mode", "cgsentry/busybx:latest", "learn")
    assert rc == 65 and err.count("\n") == 1
    assert "'cgsentry/busybx:latest' has not been seen by any sensor (did you mean cgsentry/busybox:latest?)" in err
    assert "--force" in err and store.images()[0]["mode"] == ""  # nothing set
    assert run(capsys, *admin, "images", "mode", "cgsentry/busybox:latest", "learn")[0] == 0
    assert run(capsys, *admin, "images", "mode", "cgsentry/busybox:*", "alert")[0] == 0  # a glob that matches
    assert run(capsys, *admin, "images", "mode", "cgsentry/nginx:*", "alert")[0] == 65
    rc, out, _ = run(capsys, *admin, "images", "mode", "cgsentry/busybx:latest", "learn", "--force")
    assert rc == 0 and "cgsentry/busybx:latest: mode learn" in out


class FakeResponder:
    def __init__(self, error: str = "") -> None:
        self.error, self.done = error, list[str]()

    def act(self, action: str, container_id: str, cgroup_path: str = "", pid: int = 0) -> ActionResult:
        self.done.append(f"{action} {container_id}")
        return ActionResult(action, container_id, not self.error, self.error, 6.8, "" if self.error else "fake")


@pytest.fixture
def sensor_with(live: Live, tmp_path: Path) -> Iterator[Any]:
    """Start a sensor link with a fake responder that reported an alert from container web-0."""
    links = []

    def start(responder: FakeResponder) -> CollectorLink:
        cid = finding(1).event.container_id
        link = CollectorLink(LinkConfig(live[0], sensor_id="sensor", token=live[1]["sensor"], heartbeat_s=0.1),
                             Spool(tmp_path / f"sp{len(links)}"), responder,  # type: ignore[arg-type]
                             LinkCallbacks(containers=lambda: [cid])).start()
        links.append(link)
        link.submit([finding(1)])
        wait_for(lambda: live[2].count_alerts() == 1)
        return link

    yield start
    for link in links:
        link.close()


def test_containers_are_found_by_name(live: Live, capsys: Any, sensor_with: Any) -> None:
    responder = FakeResponder()
    sensor_with(responder)
    rc, out, err = run(capsys, *_as(live, "responder"), "containers", "unpause", "web-0")
    assert (rc, err) == (0, "") and out.startswith("unpause web-0: ok (6.8 ms via fake)")
    assert responder.done == [f"unpause {finding(1).event.container_id}"]  # the name resolved to its id
    rc, _, err = run(capsys, *_as(live, "responder"), "containers", "unpause", "web-9")
    assert rc == 66 and "no connected sensor sees container web-9" in err


# What the sensor reports for `docker kill` of an exited container: the Docker SDK's error, cut
# at 160 characters by sensor/response.py (so the explanation itself is lost).
CUT_409 = ("docker: 409 Client Error for http+docker://localhost/v1.47/containers/" + "0" * 64
           + '/kill: Conflict ("Cannot kill cont')[:168]


def test_kill_of_a_stopped_container_says_it_is_not_running(live: Live, capsys: Any, sensor_with: Any) -> None:
    sensor_with(FakeResponder(CUT_409))
    rc, out, err = run(capsys, *_as(live, "responder"), "containers", "kill", "web-0")
    assert (rc, out, err) == (65, "", "cgsentry: container web-0 is not running\n")
    rc, out, _ = run(capsys, *_as(live, "responder"), "containers", "kill", "web-0", "--json")
    assert rc == 65 and json.loads(out)["error"] == "container web-0 is not running"


def test_alerts_show_has_what_json_has_and_hides_empty_why(live: Live, capsys: Any) -> None:
    store = live[2]
    f = finding(1)
    ev = f.event.replace(uid=1001, ppid=77)
    store.ingest("sensor-a", "node-a", 1, [Finding(f.kind, f.rule, f.priority, f.output, ev, time_ns=f.time_ns,
                                                   tags=("mitre_execution", "T1059"), during_loss=True,
                                                   explanation={"expected": ["sh"], "seeded_from": ""})])
    [row] = store.list_alerts()
    rc, out, _ = run(capsys, *_as(live, "viewer"), "alerts", "show", str(row.id))
    assert rc == 0
    assert "pid 9000  ppid 77  uid 1001" in out
    assert "tags      mitre_execution, T1059" in out and "sensor    sensor-a  node node-a" in out
    assert "during_loss  yes" in out
    assert "why.expected" in out and "seeded_from" not in out


@pytest.fixture
def tls_collector(tmp_path: Path) -> Iterator[tuple[Path, str, dict[str, str], SqlStore]]:
    d = tmp_path / "pki"
    pki.init_ca(d)
    tokens = TokenStore(tmp_path / "tokens")
    toks = {r: tokens.add(r, r) for r in ("viewer", "admin")}
    tls = TlsConfig((d / "server.crt").read_bytes(), (d / "server.key").read_bytes(), (d / "ca.crt").read_bytes())
    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(tokens, mtls=True), tls)
    yield d, f"127.0.0.1:{port}", toks, store
    server.stop(0)
    store.close()


def test_cli_says_which_tls_flags_the_collector_needs(tls_collector: Any, capsys: Any) -> None:
    d, server, toks, _ = tls_collector
    rc, _, err = run(capsys, "--server", server, "--token", toks["viewer"], "--timeout", "3", "alerts", "list")
    assert rc == 64 and err.count("\n") == 1
    assert f"collector at {server} uses TLS: give --ca" in err and "--cert" in err and "--key" in err
    rc, _, err = run(capsys, "--server", server, "--token", toks["viewer"], "--timeout", "3", "--ca",
                     str(d / "ca.crt"), "alerts", "list")
    assert rc == 64 and "requires a client certificate: give --cert and --key" in err and "pki client" in err


def test_client_certificates_are_never_sensors(tls_collector: Any, capsys: Any, tmp_path: Path) -> None:
    d, server, toks, store = tls_collector
    rc, out, _ = run(capsys, "collector", "pki", "client", "alice", "--dir", str(d))
    assert rc == 0 and str(d / "client-alice.crt") in out
    link = CollectorLink(LinkConfig(server, sensor_id="alice", ca=d / "ca.crt", cert=d / "client-alice.crt",
                                    key=d / "client-alice.key"), Spool(tmp_path / "sp-alice")).start()
    link.submit([finding(1)])
    pki.issue_sensor(d, "s1")
    sensor = CollectorLink(LinkConfig(server, sensor_id="s1", ca=d / "ca.crt", cert=d / "sensor-s1.crt",
                                      key=d / "sensor-s1.key"), Spool(tmp_path / "sp-s1")).start()
    sensor.submit([finding(2)])
    wait_for(lambda: store.count_alerts() == 1)
    assert not link.connected.is_set() and [s["sensor_id"] for s in store.sensors()] == ["s1"]
    link.close()
    sensor.close()
    tls = ["--server", server, "--timeout", "3", "--ca", str(d / "ca.crt"), "--cert", str(d / "client-alice.crt"),
           "--key", str(d / "client-alice.key")]
    rc, _, err = run(capsys, *tls, "alerts", "list")  # a client certificate alone gives no role
    assert rc == 77 and "'alice' (OU client) is not a sensor certificate" in err and err.count("\n") == 1
    assert run(capsys, *tls, "--token", toks["viewer"], "alerts", "list")[0] == 0


def test_certificates_without_a_role_are_refused(tls_collector: Any, tmp_path: Path) -> None:
    """A CA-signed certificate with no OU (one issued before the marker, or the CA's own) is
    not a sensor: the link is refused with how to re-issue it, and nothing is stored."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d, server, _, store = tls_collector
    crt = pki._issue(d, "sensor-old", pki._name("old"), [x509.DNSName("old")],  # noqa: SLF001 - no OU, as before
                     ExtendedKeyUsageOID.CLIENT_AUTH)
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    assert not cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    channel = grpc.secure_channel(server, grpc.ssl_channel_credentials(
        (d / "ca.crt").read_bytes(), (d / "sensor-old.key").read_bytes(), crt.read_bytes()))
    hello = pb.SensorMessage(hello=pb.Hello(sensor_id="old", node="n"))
    with pytest.raises(grpc.RpcError) as info:
        list(rpc.SensorLinkStub(channel).Connect(iter([hello]), timeout=10))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "carries no role" in (info.value.details() or "") and "pki sensor" in (info.value.details() or "")
    link = CollectorLink(LinkConfig(server, sensor_id="old", ca=d / "ca.crt", cert=crt,
                                    key=d / "sensor-old.key"), Spool(tmp_path / "sp")).start()
    link.submit([finding(1)])
    time.sleep(1.5)
    assert not link.connected.is_set() and store.count_alerts() == 0
    link.close()


def test_routing_prefers_a_full_id_then_a_name_then_a_unique_prefix(tmp_path: Path) -> None:
    """`containers kill db` must kill the container named db, not one whose id starts with "db";
    a prefix that fits two containers is refused rather than acting on the first."""
    from types import SimpleNamespace

    from collector.errors import InvalidArgument, NotFound
    from collector.sensorlink import Hub

    hub = Hub(SqlStore.open(str(tmp_path / "h.db")))
    db_id, other_id, named_db = "db" + "1" * 62, "db" + "2" * 62, "ab" + "3" * 62
    hub.sessions = {"s1": SimpleNamespace(sensor_id="s1", containers={db_id, other_id}, names={}),  # type: ignore[dict-item]
                    "s2": SimpleNamespace(sensor_id="s2", containers={named_db}, names={"db": named_db})}
    assert hub.route("db")[1] == named_db  # the name wins over the id prefix
    assert hub.route(other_id) == (hub.sessions["s1"], other_id)
    assert hub.route("db1")[1] == db_id  # a unique prefix resolves to the full id
    with pytest.raises(InvalidArgument, match="ambiguous"):
        hub.route("d")
    with pytest.raises(NotFound):
        hub.route("ff")
    with pytest.raises(InvalidArgument):
        hub.route("")


@pytest.mark.parametrize("timeout_s", [float("nan"), -1.0, float("inf"), 1e300, 3601.0])
def test_a_container_action_with_a_bad_timeout_is_refused_before_the_sensor_acts(
        live: Live, sensor_with: Any, timeout_s: float) -> None:
    """Only the CLI checked --timeout: a raw API call with NaN returned at once (the sensor still
    acted, the analyst read 'not confirmed'), and a huge one held a server thread for ever."""
    import grpc

    from collector.convert import pb, rpc

    responder = FakeResponder()
    sensor_with(responder)
    with grpc.insecure_channel(live[0]) as channel, pytest.raises(grpc.RpcError) as err:
        rpc.AnalystStub(channel).ContainerAction(
            pb.ContainerActionRequest(container_id="web-0", action=pb.ACTION_KIND_PAUSE, timeout_s=timeout_s),
            metadata=[("authorization", f"Bearer {live[1]['responder']}")], timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "timeout_s" in (err.value.details() or "")
    assert responder.done == []  # nothing reached the sensor


def test_refused_calls_are_audited_once_per_actor_and_call(live: Live, capsys: Any) -> None:
    """A viewer trying a responder's action, and a caller with a wrong token, leave an audit
    entry each; repeats within REFUSAL_AUDIT_S do not flood the table."""
    for _ in range(3):
        rc, _, err = run(capsys, *_as(live, "viewer"), "containers", "kill", "web-0")
        assert rc == 77, err
    rc, _, err = run(capsys, "--server", live[0], "--token", "cgs_not_a_token", "alerts", "list")
    assert rc == 77, err
    entries = [e for e in live[2].audit_entries(100) if e["result"] == "refused"]
    assert sorted((e["actor"], e["action"]) for e in entries) == [
        ("unauthenticated", "refused ListAlerts"), ("viewer", "refused ContainerAction")], entries
    assert all(e["reason"] for e in entries)


@pytest.mark.parametrize("role", ["admin", "responder", "viewer"])
def test_only_sensor_identities_stream_findings(live: Live, role: str) -> None:
    """An admin token could open a sensor link under any sensor's id, file findings there and take
    that sensor's sequence numbers (its real batches were then acknowledged as duplicates)."""
    import grpc

    from collector.convert import pb, rpc

    hello = pb.SensorMessage(hello=pb.Hello(sensor_id="sensor", node="n"))
    with grpc.insecure_channel(live[0]) as channel:
        replies = rpc.SensorLinkStub(channel).Connect(iter([hello]), timeout=5,
                                                      metadata=[("authorization", f"Bearer {live[1][role]}")])
        with pytest.raises(grpc.RpcError) as err:
            next(replies)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"{role} ({role}) is not a sensor" in (err.value.details() or "")
    assert live[2].sensors() == []  # nothing was registered under the sensor's name


def test_an_action_result_is_audited_under_who_asked_never_the_sensors_word(live: Live) -> None:
    """A sensor's own policy action is audited as the sensor's; a result naming another actor, or
    answering a request that was never sent to this sensor, cannot put words in an analyst's mouth."""
    import grpc

    from collector.convert import pb, rpc
    from tests.waiting import wait_for

    def results() -> Iterator[Any]:
        yield pb.SensorMessage(hello=pb.Hello(sensor_id="sensor", node="n"))
        yield pb.SensorMessage(action_result=pb.ActionResult(
            container_id="c1", action=pb.ACTION_KIND_KILL, ok=True, actor="admin", reason="rule hit"))
        yield pb.SensorMessage(action_result=pb.ActionResult(
            request_id="feedface", container_id="c2", action=pb.ACTION_KIND_PAUSE, ok=True, actor="alice"))
        wait_for(lambda: len(live[2].audit_entries(10)) >= 2)

    with grpc.insecure_channel(live[0]) as channel:
        replies = rpc.SensorLinkStub(channel).Connect(results(), timeout=10,
                                                      metadata=[("authorization", f"Bearer {live[1]['sensor']}")])
        next(replies)  # the welcome
        wait_for(lambda: len(live[2].audit_entries(10)) >= 2)
    got = {e["target"]: (e["actor"], e["result"]) for e in live[2].audit_entries(10)}
    assert got["c1"] == ("sensor:sensor (own policy)", "ok")
    assert got["c2"][0] == "sensor:sensor" and got["c2"][1].startswith("refused: answer to a request not sent")
