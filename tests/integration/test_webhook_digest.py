"""A real `cgsentry collector serve` with a webhook and metrics, fed by a sensor link: a new alert
is POSTed at once in Falco's JSON form (what falcosidekick takes), its repeats once per digest
period, every POST with the operator's auth header; /metrics, on the address given, has open
alerts by priority, connected sensors, each sensor's drops and spool, webhook failures and the
ingest latency histogram."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.auth import TokenStore
from sensor.agent.link import CollectorLink, LinkCallbacks, LinkConfig
from sensor.spool import Spool
from tests.integration.helpers import finding
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
FALCO_KEYS = {"time", "rule", "priority", "output", "output_fields", "source", "tags", "hostname"}


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/falco"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.auth.append(self.headers.get("Authorization", ""))
        self.server.bodies.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_first_occurrence_then_a_digest_with_auth_header_and_metrics(receiver: Receiver, tmp_path: Path) -> None:
    tokens = TokenStore(tmp_path / "tokens")
    sensor_token = tokens.add("node-1", "sensor")
    port, metrics_port = _free_port(), _free_port()
    log = tmp_path / "collector.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "collector", "collector", "serve",  # noqa: S603
                                 "--listen", f"127.0.0.1:{port}", "--db", str(tmp_path / "c.db"),
                                 "--tokens", str(tmp_path / "tokens"), "--webhook", receiver.url,
                                 "--webhook-header", "Authorization: Bearer hook-secret", "--webhook-digest-s", "1",
                                 "--metrics-listen", f"127.0.0.1:{metrics_port}"],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    link = None
    try:
        wait_for(lambda: "collector listening" in log.read_text() or proc.poll() is not None, 30)
        assert proc.poll() is None, log.read_text()
        link = CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id="node-1", token=sensor_token,
                                        heartbeat_s=0.1),
                             Spool(tmp_path / "spool"),
                             callbacks=LinkCallbacks(counters=lambda: {"kernel_drops": 7, "queue_drops": 2})).start()
        repeat = finding(1)
        link.submit([repeat, finding(2, container=1)])
        wait_for(lambda: len(receiver.bodies) >= 2)
        for n in range(3):  # three more occurrences of the first alert
            link.submit([dataclasses.replace(repeat, time_ns=repeat.time_ns + n + 1)])
        # the repeats arrive as digests (one per period they fall in), never one POST each
        wait_for(lambda: sum(b["output_fields"].get("cgsentry.repeats", 0) for b in receiver.bodies) == 3)
        first, second, *digests = receiver.bodies
        assert all(set(b) >= FALCO_KEYS for b in receiver.bodies)  # Falco's form, nothing else
        assert first["output"] == "finding 1" and second["output"] == "finding 2"
        assert 1 <= len(digests) <= 3 and all(d["output_fields"]["cgsentry.digest"] is True for d in digests)
        n = digests[0]["output_fields"]["cgsentry.repeats"]
        assert digests[0]["output"].startswith(f"finding 1 (repeated {n} more time(s) since ")
        assert set(receiver.auth) == {"Bearer hook-secret"}
        wait_for(lambda: _metrics(metrics_port).get(("cgsentry_sensor_kernel_drops", (("sensor", "node-1"),))) == 7)
        m = _metrics(metrics_port)
        assert m[("cgsentry_open_alerts", (("priority", "WARNING"),))] == 2
        assert m[("cgsentry_sensors_connected", ())] == 1
        assert m[("cgsentry_sensor_queue_drops", (("sensor", "node-1"),))] == 2
        assert ("cgsentry_sensor_spool_bytes", (("sensor", "node-1"),)) in m
        assert m[("cgsentry_ingest_latency_seconds_count", ())] == 5
        assert m[("cgsentry_webhook_failures_total", (("reason", "timeout"),))] == 0
        assert m[("cgsentry_webhook_consecutive_failures", ())] == 0
        assert len(receiver.bodies) == 2 + len(digests)
    finally:
        if link is not None:
            link.close()
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(("argv", "why"), [(["--webhook-header", "Authorization Bearer x"], "give 'Name: value'"),
                                           (["--webhook-header", "X-Token: a\tb"], "printable ASCII"),
                                           (["--webhook-digest-s", "-1"], "give 0 (every occurrence)")])
def test_bad_webhook_options_are_one_line(argv: list[str], why: str, capsys: Any) -> None:
    from collector.cli import main

    with pytest.raises(SystemExit) as info:
        main(["collector", "serve", "--db", "/nonexistent/x.db", "--insecure", "--webhook", "http://127.0.0.1:1/x",
              *argv])
    assert info.value.code == 64 and why in capsys.readouterr().err.splitlines()[-1]


def test_a_digest_holds_the_latest_occurrence_and_forgets_the_oldest_alerts() -> None:
    from collector.webhook import Digest

    d = Digest(max_tracked=2)
    a1, a2 = {"time": "t1", "output": "a", "output_fields": {"x": 1}}, {"time": "t2", "output": "a2"}
    assert d.offer("a", a1) and not d.offer("a", a1) and not d.offer("a", a2)
    assert d.offer("b", {"time": "t3", "output": "b"}) and d.offer("c", {"time": "t4", "output": "c"})
    [digest] = d.take(60)
    assert digest["output"] == "a2 (repeated 2 more time(s) since t1, digest every 60s)"
    assert digest["output_fields"] == {"cgsentry.repeats": 2, "cgsentry.digest": True} and d.take(60) == []
    assert d.offer("a", a1)  # forgotten (only the two newest are kept): sent again as new
