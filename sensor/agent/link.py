"""The sensor's link to the collector: one long-lived bidirectional gRPC stream, in its own thread.

``submit`` only appends to the on-disk spool and wakes the sender, so a dead collector never
blocks the event loop. On (re)connect every unacknowledged batch is resent (the collector dedups
on sensor id + seq); a batch the collector refuses for good (BatchRefused) is quarantined in the
spool with the reason instead. Reconnects back off exponentially with jitter. Commands coming down —
container actions, image policies, rule sets, fleet baselines — go to callbacks.

Failover: ``target`` may name several collectors (``a:7443,b:7443``), which share one PostgreSQL.
The sensor starts at one chosen by its id (so a fleet's sensors spread over the collectors) and,
when its link ends, moves to the next at once; only after a whole round failed does it back off.
The new collector gets every unacknowledged batch again and stores none twice (sensor id + seq).
A DNS name with several records needs no list: gRPC's resolver tries its addresses in turn.
"""

from __future__ import annotations

import logging
import queue
import random
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import grpc

from collector.convert import ACTION_NAMES, action_kind, finding_to_pb, pb, rpc
from sensor import __version__
from sensor.events import Finding
from sensor.response import ActionResult, Responder
from sensor.spool import Spool

log = logging.getLogger(__name__)


@dataclass
class LinkConfig:
    target: str  # HOST:PORT, or several collectors of one fleet: HOST:PORT,HOST:PORT
    sensor_id: str = field(default_factory=socket.gethostname)
    node: str = field(default_factory=socket.gethostname)
    token: str = ""
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    heartbeat_s: float = 5.0
    snapshot_s: float = 30.0
    backoff_max_s: float = 5.0

    @property
    def targets(self) -> list[str]:
        """The collectors to try, in order."""
        return [t.strip() for t in self.target.split(",") if t.strip()] or [self.target]


@dataclass
class LinkCallbacks:
    counters: Callable[[], dict[str, int]] = dict
    containers: Callable[[], list[str]] = list
    container_images: Callable[[], dict[str, str]] = dict  # container id -> image key
    # (image key, msgpack baseline[, JSON of its parts not active yet])
    snapshots: Callable[[], list[tuple[str, bytes] | tuple[str, bytes, str]]] = list
    on_policy: Callable[[str, bytes], None] = lambda image, policy: None
    on_rules: Callable[[str, str], None] = lambda name, text: None
    on_baseline: Callable[[str, bytes], None] = lambda image, payload: None
    on_accept: Callable[[Any], None] = lambda item: None  # pb.BaselineItem: suppressed alert
    cgroup_path: Callable[[str], str] = lambda container_id: ""
    # an action's target as the analyst named it (id, short id, name, namespace/pod/container) ->
    # the container's full id; "" when no runtime knows the name (the target is then used as given)
    resolve: Callable[[str], str] = lambda target: ""


class CollectorLink:
    def __init__(self, config: LinkConfig, spool: Spool, responder: Responder | None = None,
                 callbacks: LinkCallbacks | None = None) -> None:
        self.cfg, self.spool = config, spool
        self.responder = responder or Responder(None)
        self.cb = callbacks or LinkCallbacks()
        self._out: queue.Queue[Any] = queue.Queue(maxsize=10000)
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.sent = self.acked_batches = self.reconnects = self.refused_batches = self.failovers = 0
        targets = self.cfg.targets
        self._index = zlib.crc32(self.cfg.sensor_id.encode()) % len(targets)
        self._thread = threading.Thread(target=self._run, name="cgsentry-link", daemon=True)

    def start(self) -> CollectorLink:
        self._thread.start()
        threading.Thread(target=self._ticker, name="cgsentry-heartbeat", daemon=True).start()
        return self

    # -- producer side (never blocks) ------------------------------------------------------------
    def submit(self, findings: list[Finding]) -> int:
        seq = self.spool.append(findings)
        if self.connected.is_set():
            self._enqueue(self._batch(seq, findings))
        return seq

    def report_action(self, r: ActionResult, actor: str, reason: str, request_id: str = "") -> None:
        msg = pb.SensorMessage(action_result=pb.ActionResult(
            request_id=request_id, container_id=r.container_id, action=action_kind(r.action), ok=r.ok,
            error=r.error, latency_ms=r.latency_ms, method=r.method, actor=actor, reason=reason))
        self._enqueue(msg)

    def _enqueue(self, msg: Any) -> None:
        try:
            self._out.put_nowait(msg)
        except queue.Full:
            pass  # batches stay in the spool and are resent on reconnect

    @staticmethod
    def _batch(seq: int, findings: list[Finding]) -> Any:
        return pb.SensorMessage(batch=pb.FindingBatch(seq=seq, findings=[finding_to_pb(f) for f in findings]))

    # -- connection loop -----------------------------------------------------------------------
    @property
    def target(self) -> str:
        """The collector the link is on (or tries next)."""
        targets = self.cfg.targets
        return targets[self._index % len(targets)]

    def _channel(self) -> grpc.Channel:
        opts = [("grpc.max_send_message_length", 4 << 20), ("grpc.max_receive_message_length", 4 << 20),
                ("grpc.keepalive_time_ms", 10000)]
        if self.cfg.ca is None:
            return grpc.insecure_channel(self.target, options=opts)
        creds = grpc.ssl_channel_credentials(
            self.cfg.ca.read_bytes(), self.cfg.key.read_bytes() if self.cfg.key else None,
            self.cfg.cert.read_bytes() if self.cfg.cert else None)
        return grpc.secure_channel(self.target, creds, options=opts)

    def _run(self) -> None:
        backoff = 0.2
        tried = 0  # collectors tried since the last link that came up
        while not self._stop.is_set():
            try:
                self._session()
            except grpc.RpcError as err:  # the collector's reason too (e.g. RESOURCE_EXHAUSTED: which cap)
                log.warning("collector link %s: %s%s", self.target, err.code().name,
                            f": {err.details()}" if err.details() else "")
            except Exception:  # keep the link alive whatever happens
                log.exception("collector link error")
            was_up = self.connected.is_set()
            self.connected.clear()
            if self._stop.is_set():
                break
            self.reconnects += 1
            if was_up:
                backoff, tried = 0.2, 0
            tried += 1
            if len(self.cfg.targets) > 1:  # the next collector of the fleet, at once
                self._index = (self._index + 1) % len(self.cfg.targets)
                self.failovers += 1
                log.warning("collector link: trying %s", self.target)
                if tried < len(self.cfg.targets):
                    continue
                tried = 0
            self._stop.wait(backoff * (0.5 + random.random()))  # noqa: S311 - reconnect jitter, not a secret
            backoff = min(backoff * 2, self.cfg.backoff_max_s)

    def _session(self) -> None:
        with self._channel() as channel:
            stub = rpc.SensorLinkStub(channel)
            metadata = [("authorization", f"Bearer {self.cfg.token}")] if self.cfg.token else []
            self._out = queue.Queue(maxsize=10000)
            closed = threading.Event()
            responses = stub.Connect(self._requests(closed), metadata=metadata)
            try:
                for msg in responses:
                    if not self.connected.is_set():
                        self._on_connected()
                    self._handle(msg)
            finally:
                closed.set()

    def _on_connected(self) -> None:
        self.connected.set()
        for seq, findings in self.spool.pending():
            self._enqueue(self._batch(seq, findings))
        self._enqueue(self._heartbeat())

    def _requests(self, closed: threading.Event) -> Any:
        yield pb.SensorMessage(hello=pb.Hello(sensor_id=self.cfg.sensor_id, node=self.cfg.node,
                                              version=__version__, capabilities=["pause", "kill", "baseline"]))
        # The collector answers the hello with pushed policies or an ack; make sure the first
        # response exists so the connection is confirmed even with nothing to push.
        yield self._heartbeat()
        while not closed.is_set() and not self._stop.is_set():
            try:
                msg = self._out.get(timeout=0.2)
            except queue.Empty:
                continue
            self.sent += 1
            yield msg

    def _heartbeat(self) -> Any:
        return pb.SensorMessage(heartbeat=pb.Heartbeat(
            time_ns=time.time_ns(), counters={k: int(v) for k, v in self.cb.counters().items()},
            containers=self.cb.containers(), container_images=self.cb.container_images()))

    def _ticker(self) -> None:
        last_snap = time.monotonic()
        while not self._stop.wait(self.cfg.heartbeat_s):
            if not self.connected.is_set():
                continue
            self._enqueue(self._heartbeat())
            if time.monotonic() - last_snap >= self.cfg.snapshot_s:
                last_snap = time.monotonic()
                for image, payload, *not_active in self.cb.snapshots():
                    self._enqueue(pb.SensorMessage(snapshot=pb.ModelSnapshot(
                        image_key=image, payload=payload, not_active=not_active[0] if not_active else "")))

    def _handle(self, msg: Any) -> None:
        kind = msg.WhichOneof("body")
        if kind == "ack":
            self.spool.ack(msg.ack.seq)
            self.acked_batches += 1
        elif kind == "refused":  # before the ack of any later batch, which covers this one's seq
            if self.spool.quarantine(msg.refused.seq, msg.refused.reason) is not None:
                self.refused_batches += 1  # a batch sent twice (resent as it connected) is refused twice
        elif kind == "action":
            a = msg.action
            name = ACTION_NAMES.get(a.action, "")
            target = self.cb.resolve(a.container_id) or a.container_id
            r = self.responder.act(name, target, self.cb.cgroup_path(target))
            self.report_action(r, a.actor, a.reason, a.request_id)
        elif kind == "policy":
            self.cb.on_policy(msg.policy.image, msg.policy.policy_yaml)
        elif kind == "rules":
            self.cb.on_rules(msg.rules.name, msg.rules.yaml)
        elif kind == "baseline":
            self.cb.on_baseline(msg.baseline.image_key, msg.baseline.payload)
        elif kind == "accept":
            self.cb.on_accept(msg.accept)

    def stats(self) -> dict[str, int]:
        return {"link_connected": int(self.connected.is_set()), "link_sent": self.sent,
                "link_acked": self.acked_batches, "link_reconnects": self.reconnects,
                "link_refused": self.refused_batches, "link_failovers": self.failovers, **self.spool.stats()}

    def close(self, timeout_s: float = 3.0) -> None:
        """Give queued messages a moment to go out, then stop."""
        deadline = time.monotonic() + timeout_s
        while self.connected.is_set() and not self._out.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=timeout_s)
