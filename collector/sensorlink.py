"""The sensor link: one bidirectional stream per sensor, and the hub of connected sensors.

A sensor says hello, then sends finding batches, heartbeats, model snapshots and the results of
container actions; the collector acknowledges each batch only after the store committed it, and
sends policies, rule sets, fleet baselines, accepted baseline items and container actions back
through whichever link the sensor holds (:class:`Hub`).
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import grpc
import msgpack

from collector.auth import SENSOR, AuthConfig, Identity, authenticate, require
from collector.convert import (
    ACTION_NAMES,
    ack_message,
    baseline_message,
    finding_from_pb,
    pb,
    policy_message,
    refused_message,
    rpc,
    rules_message,
)
from collector.errors import (
    CollectorError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    status_code,
)
from collector.export import Exporters
from collector.store import SqlStore

log = logging.getLogger(__name__)
# What one sensor's link remembers (to route container actions), at most: past a cap the link is
# refused with RESOURCE_EXHAUSTED, and the sensor's next link starts afresh.
MAX_CONTAINERS = 65_536
MAX_IMAGES = 4_096
MAX_NAMES = 65_536
MAX_KEY_CHARS = 512  # an id, name, image key or hello field; longer ones are no runtime's


@dataclass
class Session:
    sensor_id: str
    node: str
    version: str = ""  # from the hello; every heartbeat stores it again
    out: queue.Queue[pb.CollectorMessage] = field(default_factory=lambda: queue.Queue(maxsize=10000))
    containers: set[str] = field(default_factory=set)
    images: set[str] = field(default_factory=set)
    names: dict[str, str] = field(default_factory=dict)  # container name -> id, from its findings
    error: CollectorError | None = None  # why the link must end, with this status

    def remember(self, containers: Iterable[str], images: Iterable[str] = (),
                 names: Iterable[tuple[str, str]] = ()) -> None:
        """Add the containers, image keys and (name, container id) pairs a batch or a heartbeat
        names, all or nothing: ResourceExhausted if that would pass a cap (see MAX_CONTAINERS).
        Empty keys and keys over MAX_KEY_CHARS are not remembered (no action can route by them).
        The caller holds the hub's lock, which routing reads these under."""
        def fits(key: str) -> bool:
            return 0 < len(key) <= MAX_KEY_CHARS

        new_containers = {c for c in containers if fits(c)} - self.containers
        new_images = {i for i in images if fits(i)} - self.images
        new_names = {n: c for n, c in names if fits(n) and fits(c)}
        for total, cap, what in ((len(self.containers) + len(new_containers), MAX_CONTAINERS, "containers"),
                                 (len(self.images) + len(new_images), MAX_IMAGES, "images"),
                                 (len(self.names) + len(new_names.keys() - self.names.keys()), MAX_NAMES,
                                  "container names")):
            if total > cap:
                raise ResourceExhausted(f"sensor {self.sensor_id} reported more than {cap:,} {what} on one link, "
                                        "the most the collector remembers for a sensor: link closed (a new link "
                                        "starts afresh)")
        self.containers |= new_containers
        self.images |= new_images
        self.names.update(new_names)


def check_hello(hello: pb.Hello) -> None:
    """InvalidArgument if a hello's id, node or version is longer than any real one (it is kept
    for the link's life and stored with every alert)."""
    for name, value in (("sensor_id", hello.sensor_id), ("node", hello.node), ("version", hello.version)):
        if len(value) > MAX_KEY_CHARS:
            raise InvalidArgument(f"hello.{name} is {len(value):,} characters, over the limit of {MAX_KEY_CHARS}")


@dataclass
class Request:
    """An analyst's container action sent to one sensor: who asked (the audit's actor, never a
    string the sensor sends back), which sensor must answer, and the answer when it comes."""
    sensor_id: str
    actor: str
    done: threading.Event = field(default_factory=threading.Event)
    results: list[pb.ActionResult] = field(default_factory=list)


MAX_REQUESTS = 4096  # actions remembered for a late answer; the oldest are forgotten first


class Hub:
    """Connected sensors, pending analyst actions, and the policies to push."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.sessions: dict[str, Session] = {}
        self.pending: OrderedDict[str, Request] = OrderedDict()  # request id -> action, until answered
        self.lock = threading.Lock()

    def request(self, sensor_id: str, actor: str) -> tuple[str, Request]:
        """Remember an action for ``sensor_id`` asked by ``actor``; its id goes with the command.
        Kept after a time-out, so a late answer is still audited under who asked."""
        request_id, req = uuid.uuid4().hex, Request(sensor_id, actor)
        with self.lock:
            self.pending[request_id] = req
            while len(self.pending) > MAX_REQUESTS:
                self.pending.popitem(last=False)
        return request_id, req

    def route(self, ref: str) -> tuple[Session, str]:
        """The session of the sensor that sees container ``ref``, and the container's full id.

        ``ref`` is a full id, a name, or a unique id prefix, tried in that order (as Docker does):
        a name that happens to be hex, such as ``db`` or ``cafe``, is that container and not
        whichever id starts with it. A prefix that matches several containers is refused."""
        if not ref:
            raise InvalidArgument("no container given (an id, a unique id prefix or a name)")
        with self.lock:
            for s in self.sessions.values():
                if ref in s.containers:
                    return s, ref
            ids = [s.names[ref] for s in self.sessions.values() if ref in s.names]
        for cid in ids + self.store.container_ids_named(ref):  # the freshest first, then alerts
            with self.lock:
                found = next((s for s in self.sessions.values() if cid in s.containers), None)
            if found is not None:
                return found, cid
        with self.lock:
            matches = {(s.sensor_id, c): s for s in self.sessions.values() for c in s.containers if c.startswith(ref)}
        if len(matches) > 1:
            raise InvalidArgument(f"container {ref!r} is ambiguous: {len(matches)} containers' ids start with it "
                                  "(give more of the id, or the name)")
        if matches:
            (_sensor, cid), session = next(iter(matches.items()))
            return session, cid
        raise NotFound(f"no connected sensor sees container {ref} (by id or name)")

    def broadcast(self, msg: pb.CollectorMessage, except_id: str = "") -> None:
        with self.lock:
            sessions = [s for s in self.sessions.values() if s.sensor_id != except_id]
        for s in sessions:
            try:
                s.out.put_nowait(msg)
            except queue.Full:
                log.warning("sensor %s outbound queue full; dropping a push", s.sensor_id)

    def policy_messages(self) -> list[pb.CollectorMessage]:
        """What a sensor gets when it connects: image policies, then the pushed rule sets."""
        return [policy_message(i["image"], i["mode"], i["policy"]) for i in self.store.images() if i["mode"]] + [
            rules_message(r["name"], r["yaml"]) for r in self.store.rulesets()]


class SensorLinkServicer(rpc.SensorLinkServicer):
    def __init__(self, hub: Hub, auth: AuthConfig, exporters: Exporters) -> None:
        self.hub, self.auth, self.exporters = hub, auth, exporters

    def Connect(self, request_iterator: Iterator[pb.SensorMessage],  # noqa: N802
                context: grpc.ServicerContext) -> Iterator[pb.CollectorMessage]:
        try:
            ident = authenticate(self.auth, context.invocation_metadata(), context.auth_context())
            require(ident, SENSOR)
            first = next(request_iterator, None)
            session = self._hello(first, ident)
        except CollectorError as err:
            log.warning("sensor link refused: %s", err)
            context.abort(status_code(err), str(err))
            return
        done = threading.Event()
        threading.Thread(target=self._read, args=(session, request_iterator, done), daemon=True).start()
        yield ack_message(0)  # welcome: the link is up
        yield from self.hub.policy_messages()
        try:
            while not done.is_set() or not session.out.empty():
                try:
                    yield session.out.get(timeout=0.2)
                except queue.Empty:
                    continue
            if session.error is not None:
                context.abort(status_code(session.error), str(session.error))
        finally:
            # Under the lock, like the hello's write: a sensor that already reconnected on a new
            # link stays up whatever order the two streams' ends and starts interleave in.
            with self.hub.lock:
                if self.hub.sessions.get(session.sensor_id) is session:
                    del self.hub.sessions[session.sensor_id]
                    self.hub.store.sensor_disconnected(session.sensor_id)

    def _hello(self, first: pb.SensorMessage | None, ident: Identity) -> Session:
        if first is None or first.WhichOneof("body") != "hello":
            raise InvalidArgument("the first message on a sensor link must be hello")
        hello = first.hello
        check_hello(hello)
        if ident.role == SENSOR and hello.sensor_id != ident.name:
            raise PermissionDenied(f"sensor {ident.name} may not report as {hello.sensor_id!r}")
        session = Session(hello.sensor_id, hello.node, hello.version)
        with self.hub.lock:
            self.hub.sessions[session.sensor_id] = session
            self.hub.store.upsert_sensor(session.sensor_id, hello.node, hello.version, {}, connected=True)
        log.info("sensor %s (%s) connected", session.sensor_id, hello.node)
        return session

    def _read(self, s: Session, requests: Iterator[pb.SensorMessage], done: threading.Event) -> None:
        try:
            for msg in requests:
                self._dispatch(s, msg)
        except CollectorError as err:  # the link ends with this status; what was not acked is resent
            log.warning("sensor link %s: %s", s.sensor_id, err)
            s.error = err
        except grpc.RpcError:
            pass  # the sensor went away; it will resend what was not acked
        except Exception:  # a bug in one message must not kill the link silently
            log.exception("sensor link %s: error handling a message", s.sensor_id)
        finally:
            done.set()

    def _dispatch(self, s: Session, msg: pb.SensorMessage) -> None:
        kind = msg.WhichOneof("body")
        if kind == "batch":
            findings = [finding_from_pb(f) for f in msg.batch.findings]
            with self.hub.lock:
                s.remember([f.event.container_id for f in findings], [f.event.image_key for f in findings],
                           [(f.event.container_name, f.event.container_id) for f in findings])
            try:
                stored = self.hub.store.ingest(s.sensor_id, s.node, msg.batch.seq, findings)
            except InvalidArgument as err:  # never storable: this batch is refused, the link goes on
                log.warning("sensor %s: %s", s.sensor_id, err)
                s.out.put(refused_message(msg.batch.seq, str(err)))
                return
            if stored:
                self.exporters.publish(s.sensor_id, s.node, findings)
            s.out.put(ack_message(msg.batch.seq))
        elif kind == "heartbeat":
            with self.hub.lock:
                s.remember(msg.heartbeat.containers)
            self.hub.store.upsert_sensor(s.sensor_id, s.node, s.version, dict(msg.heartbeat.counters), True)
        elif kind == "action_result":
            self._action_result(s, msg.action_result)
        elif kind == "snapshot":
            self._snapshot(s, msg.snapshot)

    def _action_result(self, s: Session, r: pb.ActionResult) -> None:
        """Audit an action's result under who asked for it: the analyst whose request this
        answers, or the sensor itself for its own policy (no request id). The actor text the
        sensor sends is never trusted, and an answer to another sensor's request is refused."""
        with self.hub.lock:
            req = self.hub.pending.get(r.request_id) if r.request_id else None
            if req is not None and req.sensor_id == s.sensor_id:
                del self.hub.pending[r.request_id]
        result = "ok" if r.ok else f"failed: {r.error}"
        if not r.request_id:
            actor = f"sensor:{s.sensor_id} (own policy)"
        elif req is None or req.sensor_id != s.sensor_id:
            log.warning("sensor %s answered request %s, which was not sent to it: ignored", s.sensor_id,
                        r.request_id[:64])
            actor, result = f"sensor:{s.sensor_id}", f"refused: answer to a request not sent to it ({result})"
        else:
            actor = req.actor
        self.hub.store.audit(actor, ACTION_NAMES.get(r.action, "?"), r.container_id, r.reason, result, r.latency_ms)
        if req is not None and req.sensor_id == s.sensor_id:
            req.results.append(r)
            req.done.set()

    def _snapshot(self, s: Session, snap: pb.ModelSnapshot) -> None:
        """Store this sensor's baseline; merge all sensors' for the image; send it to the others."""
        self.hub.store.put_snapshot(snap.image_key, s.sensor_id, snap.payload)
        try:
            from models.engine import merge_snapshots

            parts = [msgpack.unpackb(p, raw=False, strict_map_key=False)
                     for _, p in self.hub.store.snapshots(snap.image_key)]
            merged = functools.reduce(merge_snapshots, parts)
        except Exception as err:  # noqa: BLE001 - a bad snapshot must not break the link
            log.warning("cannot merge snapshots of %s: %s", snap.image_key, err)
            return
        self.hub.broadcast(baseline_message(snap.image_key, msgpack.packb(merged, use_bin_type=True)),
                           except_id=s.sensor_id)
