"""The webhook worker against a real receiver on 127.0.0.1 that misbehaves: it answers garbage, hangs
until the POST times out, closes the connection, answers 5xx or refuses (issue 16, item 8). The worker
survives each, counts it, retries with backoff and delivers every queued finding, in order, once the
receiver answers again; a full queue drops what does not fit and counts it; a URL is checked whole
before anything starts."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from prometheus_client import CollectorRegistry

from collector.errors import InvalidArgument
from collector.export import Exporters
from collector.webhook import retry_delay_s
from sensor.events import EXEC, Event, Finding
from tests.waiting import wait_for

FAST = {"timeout_s": 0.3, "backoff_s": (0.01, 0.05)}


class Receiver(ThreadingHTTPServer):
    """Answers each POST as the next step of ``script`` says, then "ok" for ever after. Steps:
    ok (200), garbage (not HTTP), hang (no answer until released), close (no answer), or a status."""

    daemon_threads = True

    def __init__(self, *script: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.accepted: list[dict[str, Any]] = []  # the bodies answered with 200
        self.requests = 0
        self.release = threading.Event()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/falco?token=secret"

    def next_step(self) -> str:
        with self.lock:
            self.requests += 1
            return self.script.pop(0) if self.script else "ok"

    def rules(self) -> list[str]:
        return [body["rule"] for body in self.accepted]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        step = self.server.next_step()
        self.close_connection = True
        if step == "ok":
            self.server.accepted.append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif step == "garbage":
            self.wfile.write(b"SSH-2.0-OpenSSH_9.2 \x1b[2J not http at all\r\n\r\n")
        elif step == "hang":
            self.server.release.wait(30)
        elif step == "close":
            pass  # the handler returns without a word: the connection closes
        else:
            self.send_response(int(step))
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def receiver_of() -> Iterator[Any]:
    started: list[Receiver] = []

    def start(*script: str) -> Receiver:
        server = Receiver(*script)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def exporters_for() -> Iterator[Any]:
    made: list[Exporters] = []

    def make(url: str, **options: Any) -> tuple[Exporters, CollectorRegistry]:
        registry = CollectorRegistry()
        exp = Exporters(url, registry=registry, **{**FAST, **options})
        made.append(exp)
        return exp, registry

    yield make
    for exp in made:
        exp.close()


def finding(n: int) -> Finding:
    return Finding("rule", f"R{n}", "WARNING", f"finding {n}", Event(EXEC, n, pid=n, exe="/bin/sh"), time_ns=n)


def sample(registry: CollectorRegistry, name: str, reason: str | None = None) -> float:
    value = registry.get_sample_value(name, {"reason": reason} if reason else {})
    return 0.0 if value is None else value


def delivered(registry: CollectorRegistry, n: int) -> bool:
    return sample(registry, "cgsentry_webhook_sent_total") == n


@pytest.mark.parametrize(("steps", "reason"), [(["garbage", "garbage"], "bad_response"),
                                               (["hang"], "timeout"),
                                               (["close", "close", "close"], "closed"),
                                               (["500", "503"], "http_status"),
                                               (["429"], "http_status")])
def test_the_worker_survives_a_misbehaving_receiver_and_delivers_after_it(
        receiver_of: Any, exporters_for: Any, steps: list[str], reason: str) -> None:
    receiver = receiver_of(*steps)
    exp, registry = exporters_for(receiver.url)
    exp.publish("s1", "node1", [finding(1)])
    wait_for(lambda: delivered(registry, 1))
    assert receiver.rules() == ["R1"] and receiver.requests == len(steps) + 1
    assert sample(registry, "cgsentry_webhook_failures_total", reason) == len(steps)
    exp.publish("s1", "node1", [finding(2)])  # the worker is still there
    wait_for(lambda: delivered(registry, 2))
    assert receiver.rules() == ["R1", "R2"]


def test_findings_queued_during_an_outage_all_arrive_in_order(receiver_of: Any, exporters_for: Any) -> None:
    receiver = receiver_of("close", "garbage", "hang", "500", "close", "garbage")
    exp, registry = exporters_for(receiver.url)
    exp.publish("s1", "node1", [finding(n) for n in range(1, 6)])
    wait_for(lambda: delivered(registry, 5))
    assert receiver.rules() == ["R1", "R2", "R3", "R4", "R5"]
    failures = {r: sample(registry, "cgsentry_webhook_failures_total", r)
                for r in ("closed", "bad_response", "timeout", "http_status")}
    assert failures == {"closed": 2, "bad_response": 2, "timeout": 1, "http_status": 1}
    assert sample(registry, "cgsentry_webhook_dropped_total", "queue_full") == 0


def test_a_refused_finding_is_dropped_and_counted_not_retried(receiver_of: Any, exporters_for: Any) -> None:
    receiver = receiver_of("400", "301")
    exp, registry = exporters_for(receiver.url)
    exp.publish("s1", "node1", [finding(1), finding(2), finding(3)])
    wait_for(lambda: delivered(registry, 1))
    assert receiver.rules() == ["R3"] and receiver.requests == 3
    assert sample(registry, "cgsentry_webhook_dropped_total", "refused") == 2


def test_a_full_queue_drops_and_counts_and_keeps_what_it_holds(receiver_of: Any, exporters_for: Any) -> None:
    receiver = receiver_of("hang")
    exp, registry = exporters_for(receiver.url, queue_size=2, timeout_s=30)
    exp.publish("s1", "node1", [finding(1)])
    wait_for(lambda: receiver.requests == 1)  # the worker holds finding 1, waiting on the receiver
    exp.publish("s1", "node1", [finding(n) for n in range(2, 6)])
    assert sample(registry, "cgsentry_webhook_dropped_total", "queue_full") == 2
    assert sample(registry, "cgsentry_webhook_queued") == 2
    receiver.release.set()  # the hung POST ends without an answer: finding 1 is retried
    wait_for(lambda: delivered(registry, 3))
    assert receiver.rules() == ["R1", "R2", "R3"]


def test_the_retry_delay_doubles_up_to_its_bound() -> None:
    assert [retry_delay_s(n, (0.5, 60.0)) for n in (1, 2, 3, 4, 8, 9, 500)] == [0.5, 1, 2, 4, 60, 60, 60]


@pytest.mark.parametrize(("url", "why"), [("http://user:pw@hooks.example.com/x", "user or password"),
                                          ("https://token@hooks.example.com/x", "user or password"),
                                          ("http://hooks.example.com:0/x", "port"),
                                          ("http://hooks.example.com:/x", "port"),
                                          ("http://hooks.example.com:99999/x", "port"),
                                          ("http://hooks.example.com/a b", "space or a control character"),
                                          ("http://hooks.example.com/\x1b[2J", "control character"),
                                          ("http://hooks.example.com/é", "not ASCII"),
                                          ("file:///etc/passwd", "http or https"),
                                          ("http:///x", "no host")])
def test_a_webhook_url_is_checked_whole_at_start(url: str, why: str, capsys: Any) -> None:
    with pytest.raises(InvalidArgument, match=why):
        Exporters(url, registry=CollectorRegistry())
    from collector.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["collector", "serve", "--db", "/nonexistent/x.db", "--insecure", "--webhook", url])
    err = capsys.readouterr().err  # argparse's usage lines, then one error line
    assert exit_info.value.code == 64 and "Traceback" not in err and why in err.splitlines()[-1], err
