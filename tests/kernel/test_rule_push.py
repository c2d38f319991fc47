"""Kernel tier: a rule set pushed from the collector is hot-loaded by a running sensor daemon and
fires on real behaviour in a real container; the alert lands back at the collector."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from collector.auth import AuthConfig, TokenStore
from collector.convert import pb, rpc
from collector.server import create_server
from collector.store import SqlStore
from tests.waiting import wait_for

pytestmark = [pytest.mark.kernel, pytest.mark.docker]
MARKER = """
- rule: Pushed Marker Binary
  desc: pushed while the sensor runs
  condition: spawned_process and container and proc.name = cgsmark
  output: marker ran in %container.name
  priority: WARNING
"""


def test_pushed_rule_fires_in_a_running_sensor(tmp_path: Path, busybox) -> None:  # type: ignore[no-untyped-def]
    knob = Path("/proc/sys/kernel/bpf_stats_enabled")
    knob_before = knob.read_text().strip()
    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(None), insecure=True))
    state = tmp_path / "state"
    sensor = subprocess.Popen([sys.executable, "-m", "sensor", "run", "--collector", f"127.0.0.1:{port}",
                               "--state-dir", str(state), "--sensor-id", "push-test", "--learn-s", "1e9"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        knob.write_text("1")  # the heartbeat then carries the BPF programs' run time (checked below)
        wait_for(lambda: any(s["connected"] for s in store.sensors()), timeout_s=90)
        stub = rpc.AnalystStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        assert stub.PushRules(pb.RuleSet(name="team", yaml=MARKER), timeout=10).sensors == 1
        wait_for(lambda: store.sensors()[0]["counters"].get("rule_pushes_applied") == 1, timeout_s=20)
        counters = store.sensors()[0]["counters"]  # the heartbeat carries the loss counters, split
        assert counters["kernel_drops"] == counters["kernel_drops_with_room"] == counters["queue_drops"] == 0
        assert (state / "rules.d" / "team.yaml").read_text() == MARKER
        c = busybox("cp /bin/busybox /tmp/cgsmark && /tmp/cgsmark true; sleep 30")
        wait_for(lambda: any(a.finding.rule == "Pushed Marker Binary" for a in store.list_alerts()), timeout_s=30)
        alert = next(a for a in store.list_alerts() if a.finding.rule == "Pushed Marker Binary")
        assert alert.finding.event.container_id == c.id
        chain = alert.finding.ancestors  # the sensor's process table, through the link and the store
        assert chain and chain[0][0] == alert.finding.event.ppid, chain
        assert any("cgsmark" in " ".join(args) for _, _, args in chain), chain  # the sh -c that ran it
        wait_for(lambda: store.sensors()[0]["counters"].get("bpf_run_ns_per_s", 0) > 0, timeout_s=20)
        bad = pb.RuleSet(name="team", yaml="- rule: [unclosed")
        with pytest.raises(grpc.RpcError):  # refused by the collector: nothing reaches the sensor
            stub.PushRules(bad, timeout=10)
        assert (state / "rules.d" / "team.yaml").read_text() == MARKER
    finally:
        knob.write_text(knob_before)
        sensor.terminate()
        out, _ = sensor.communicate(timeout=30)
        server.stop(0)
    assert sensor.returncode == 0, out[-2000:]
