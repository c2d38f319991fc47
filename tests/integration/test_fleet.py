"""A fleet: several collectors on one real PostgreSQL are one service (issue 18).

Migrations of collectors starting together, ingest of one alert through two collectors at once,
commands reaching a sensor held by another collector, a SQLite file refusing a second collector,
and real collector processes killed with SIGKILL while a sensor with several addresses streams."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from bench.pgserver import create_database
from collector.auth import AuthConfig, TokenStore
from collector.convert import finding_to_pb, pb, rpc
from collector.errors import CollectorError
from collector.server import CollectorServer, create_server
from collector.store import MIGRATIONS, SqlStore
from sensor.agent.link import CollectorLink, LinkCallbacks, LinkConfig
from sensor.events import Finding
from sensor.response import ActionResult
from sensor.spool import Spool
from tests.integration.helpers import finding
from tests.waiting import wait_for

pytestmark = pytest.mark.postgres
_names = itertools.count()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db_url(postgres_url: str) -> str:
    """A fresh database on the throwaway server: every test starts with no schema."""
    return create_database(postgres_url, f"fleet_{os.getpid()}_{next(_names)}")


@pytest.fixture
def collectors(db_url: str) -> Iterator[list[tuple[CollectorServer, int, SqlStore]]]:
    """Three in-process collectors on one database, each with a store (a connection) of its own."""
    out = []
    for i in range(3):
        store = SqlStore.open(db_url)
        server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(None), insecure=True),
                                     collector_id=f"c{i}")
        out.append((server, port, store))
    yield out
    for server, _, store in out:
        server.stop(0)
        store.close()


def test_collectors_starting_together_migrate_once(db_url: str) -> None:
    start = threading.Barrier(6)
    opened: list[SqlStore] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        start.wait()
        try:
            opened.append(SqlStore.open(db_url))
        except BaseException as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(opened) == 6
    versions = [r[0] for r in opened[0]._exec("SELECT version FROM schema_version ORDER BY version").fetchall()]  # noqa: SLF001
    assert versions == list(range(1, len(MIGRATIONS) + 1))  # each migration ran once
    for s in opened:
        s.close()


def _stream(port: int, sensor_id: str, batches: list[tuple[int, list[Finding]]], start: threading.Barrier) -> set[int]:
    """A raw sensor link: hello, then ``batches``; returns the sequence numbers acknowledged."""
    acked: set[int] = set()
    want = {seq for seq, _ in batches}
    done = threading.Event()

    def requests() -> Iterator[pb.SensorMessage]:
        yield pb.SensorMessage(hello=pb.Hello(sensor_id=sensor_id, node="n"))
        start.wait()
        for seq, findings in batches:
            yield pb.SensorMessage(batch=pb.FindingBatch(seq=seq, findings=[finding_to_pb(f) for f in findings]))
        done.wait(30)

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for msg in rpc.SensorLinkStub(channel).Connect(requests(), timeout=60):
            if msg.WhichOneof("body") == "ack" and msg.ack.seq in want:
                acked.add(msg.ack.seq)
                if acked == want:
                    done.set()
                    break
    return acked


def _race(ports: list[int], plans: list[list[tuple[int, list[Finding]]]]) -> list[set[int]]:
    start = threading.Barrier(len(ports))
    results: list[set[int]] = [set() for _ in ports]

    def run(i: int) -> None:
        results[i] = _stream(ports[i], "s1", plans[i], start)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(ports))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_collectors_ingest_one_alert_at_once(collectors: list[Any]) -> None:
    (_, port_a, store), (_, port_b, _), _ = collectors
    base = finding(0)

    def batch(seq: int) -> tuple[int, list[Finding]]:  # five occurrences of one alert, newer each batch
        return seq, [base.replace(time_ns=base.time_ns + seq * 10 + k) for k in range(5)]

    # the same sensor on both (it failed over while its old link lingered): batches 21-40 go to both
    acked = _race([port_a, port_b], [[batch(s) for s in range(1, 41)], [batch(s) for s in range(21, 61)]])
    assert acked == [set(range(1, 41)), set(range(21, 61))]
    rows = store.list_alerts()
    assert len(rows) == 1 and rows[0].count == 60 * 5  # every batch once, no lost update
    assert store._exec("SELECT COUNT(*) FROM batches").fetchone()[0] == 60  # noqa: SLF001
    assert rows[0].last_seen_ns == base.time_ns + 604 and rows[0].status == "open"
    store.update_alert(rows[0].id, "resolved", "fixed")
    # both collectors get a newer occurrence at once: reopened once, audited once
    _race([port_a, port_b], [[batch(100)], [batch(101)]])
    row = store.get_alert(rows[0].id)
    assert row.status == "open" and row.count == 62 * 5
    assert [e["action"] for e in store.audit_entries()].count("alert reopened") == 1


class FakeResponder:
    def __init__(self) -> None:
        self.done: list[str] = []

    def act(self, action: str, container_id: str, cgroup_path: str = "", pid: int = 0) -> ActionResult:
        self.done.append(f"{action} {container_id}")
        return ActionResult(action, container_id, True, "", 1.5, "fake")


def test_commands_reach_a_sensor_held_by_another_collector(collectors: list[Any], tmp_path: Path) -> None:
    (_, port_a, store), (_, port_b, _), _ = collectors
    cid = "cd" * 32
    responder = FakeResponder()
    got: dict[str, list[Any]] = {"policy": [], "rules": []}
    link = CollectorLink(LinkConfig(f"127.0.0.1:{port_b}", sensor_id="s1", heartbeat_s=0.2), Spool(tmp_path / "sp"),
                         responder,  # type: ignore[arg-type]
                         LinkCallbacks(containers=lambda: [cid],
                                       on_policy=lambda image, p: got["policy"].append(image),
                                       on_rules=lambda name, text: got["rules"].append(name))).start()
    wait_for(link.connected.is_set)
    wait_for(lambda: any(s["collector"] == "c1" and s["connected"] for s in store.sensors()))
    time.sleep(0.5)  # a heartbeat tells c1 which containers s1 sees
    analyst = rpc.AnalystStub(grpc.insecure_channel(f"127.0.0.1:{port_a}"))  # the analyst talks to c0
    sensors = analyst.ListSensors(pb.Empty(), timeout=10).sensors
    assert [(s.sensor_id, s.connected, s.collector) for s in sensors] == [("s1", True, "c1")]
    asked = time.monotonic()
    reply = analyst.ContainerAction(pb.ContainerActionRequest(container_id=cid[:12], action=pb.ACTION_KIND_PAUSE,
                                                              reason="fleet"), timeout=10)
    print(f"action through another collector answered in {(time.monotonic() - asked) * 1000:.0f} ms")
    assert reply.result.ok and responder.done == [f"pause {cid}"]  # executed once, with the full id
    audit = [e for e in store.audit_entries() if e["action"] == "pause"]
    assert [(e["actor"], e["target"], e["result"], e["reason"]) for e in audit] == [("anonymous", cid, "ok", "fleet")]
    with pytest.raises(grpc.RpcError) as info:  # c1 and c2 both say they do not see it
        analyst.ContainerAction(pb.ContainerActionRequest(container_id="ffff", action=pb.ACTION_KIND_PAUSE),
                                timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    analyst.SetImageMode(pb.ImageModeRequest(image="busybox:*", mode="enforce"), timeout=10)
    wait_for(lambda: "busybox:*" in got["policy"])
    text = ("- rule: Pushed\n  desc: d\n  condition: spawned_process and proc.name = zz\n  output: o\n"
            "  priority: WARNING\n")
    pushed = analyst.PushRules(pb.RuleSet(name="team", yaml=text), timeout=10)
    assert pushed.sensors == 1  # counted across the fleet: s1 is on c1, not c0
    wait_for(lambda: got["rules"] == ["team"])  # once: c2 holds no sensor, c1 sends it once
    time.sleep(POLL_GRACE_S)  # a command read twice (NOTIFY, then the poll) would arrive twice by now
    assert got["rules"] == ["team"] and got["policy"].count("busybox:*") == 1 and responder.done == [f"pause {cid}"]
    link.close()


POLL_GRACE_S = 2.5  # longer than the fleet's table poll (1 s) and a heartbeat


def test_a_sqlite_file_serves_one_collector(tmp_path: Path) -> None:
    first = SqlStore.open(str(tmp_path / "c.db"))
    first.hold_alone()
    second = SqlStore.open(str(tmp_path / "c.db"))
    with pytest.raises(CollectorError, match="served by another collector already.*use one PostgreSQL"):
        second.hold_alone()
    first.close()
    second.hold_alone()  # the first is gone: the file is free
    second.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _collector(db_url: str, name: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "collector", "collector", "serve", "--listen",  # noqa: S603
                                 f"127.0.0.1:{port}", "--db", db_url, "--insecure", "--collector-id", name],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    wait_for(lambda: "collector listening" in log.read_text() or proc.poll() is not None, 30)
    assert proc.poll() is None, log.read_text()
    return proc


def test_sensors_fail_over_when_their_collector_is_killed(db_url: str, tmp_path: Path) -> None:
    names = ["c0", "c1", "c2"]
    ports = [_free_port() for _ in names]
    procs = [_collector(db_url, n, p, tmp_path / f"{n}.log") for n, p in zip(names, ports, strict=True)]
    store = SqlStore.open(db_url)
    cid = "ef" * 32
    responder = FakeResponder()
    targets = ",".join(f"127.0.0.1:{p}" for p in ports)

    def sensor(sid: str, containers: list[str]) -> CollectorLink:
        return CollectorLink(LinkConfig(targets, sensor_id=sid, heartbeat_s=0.2, backoff_max_s=0.5),
                             Spool(tmp_path / sid), responder,  # type: ignore[arg-type]
                             LinkCallbacks(containers=lambda: containers)).start()

    links = [sensor("s-failover", [cid])] + [sensor(f"s-other-{i}", []) for i in range(5)]
    try:
        for link in links:
            wait_for(link.connected.is_set)
        first = ports.index(int(links[0].target.rsplit(":", 1)[1]))
        wait_for(lambda: len([s for s in store.sensors() if s["connected"]]) == len(links))
        for i in range(40):
            for link in links:
                link.submit([finding(i)])
        wait_for(lambda: store.total_findings("s-failover") >= 10, 30)
        procs[first].kill()  # kill -9, mid-stream
        for i in range(40, 100):
            for link in links:
                link.submit([finding(i)])
            time.sleep(0.005)
        wait_for(lambda: store.total_findings("s-") == 100 * len(links) and
                 all(link.spool.count() == 0 for link in links), 60)
        for link in links:
            rows = [r for r in store.list_alerts(limit=1000) if r.sensor_id == link.cfg.sensor_id]
            assert sorted(int(r.finding.output.split()[1]) for r in rows) == list(range(100))
            assert all(r.count == 1 for r in rows)  # every finding stored exactly once
        survivor = (first + 1) % 3  # the next address in the sensor's list
        wait_for(lambda: [(s["collector"], s["connected"]) for s in store.sensors()
                          if s["sensor_id"] == "s-failover"] == [(names[survivor], True)])
        assert all(s["collector"] != names[first] for s in store.sensors())  # everyone moved
        time.sleep(0.5)  # a heartbeat tells the survivor which containers the sensor sees
        other = 3 - first - survivor  # the analyst talks to the collector that does not hold the sensor
        analyst = rpc.AnalystStub(grpc.insecure_channel(f"127.0.0.1:{ports[other]}"))
        reply = analyst.ContainerAction(pb.ContainerActionRequest(container_id=cid, action=pb.ACTION_KIND_KILL),
                                        timeout=20)
        assert reply.result.ok and responder.done == [f"kill {cid}"]  # executed once
        assert [e["action"] for e in store.audit_entries()].count("kill") == 1  # audited once
        assert links[0].stats()["link_failovers"] >= 1
    finally:
        for link in links:
            link.close()
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        store.close()
