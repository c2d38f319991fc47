"""The sensor link: one bidirectional stream per sensor, and the hub of connected sensors.

A sensor says hello (within :data:`HELLO_TIMEOUT_S`, or the stream is closed), then sends finding
batches, heartbeats, model snapshots and the results of container actions; the collector
acknowledges each batch only after the store committed it, and sends policies, rule sets, fleet
baselines, accepted baseline items and container actions back through whichever link the sensor
holds (:class:`Hub`).

The link is a coroutine on the server's event loop (``grpc.aio``): an idle sensor costs a few
kilobytes, not a thread. Whatever blocks (the store, the exporters) runs on the server's I/O
thread pool; analysts' threads and pushes reach a link through its thread-safe :class:`Outbox`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, TypeVar

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
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    status_code,
)
from collector.export import Exporters
from collector.store import SqlStore
from sensor.events import HOST

log = logging.getLogger(__name__)
HELLO_TIMEOUT_S = 5.0  # a stream that has not said hello by then is closed
OUTBOX_SIZE = 10000
NOT_CONTAINERS = frozenset({HOST, "unknown"})  # what every sensor reports; no one holds them
T = TypeVar("T")


class Outbox:
    """Messages for one sensor link: put from any thread, taken by the link's coroutine.

    Bounded: :meth:`put` raises ``queue.Full`` past ``maxsize`` unless ``force`` (acknowledgements,
    which the sensor's own batches pace). The event is set through the loop, after the append,
    so a getter that found the box empty and cleared the event under the lock always wakes."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, maxsize: int = OUTBOX_SIZE) -> None:
        self._loop = loop
        self._items: deque[pb.CollectorMessage] = deque()
        self._lock = threading.Lock()
        self._ready = asyncio.Event()
        self.maxsize = maxsize

    def put(self, msg: pb.CollectorMessage, force: bool = False) -> None:
        with self._lock:
            if len(self._items) >= self.maxsize and not force:
                raise queue.Full
            self._items.append(msg)
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:  # the loop is closed: the link is gone, nobody waits
                pass

    put_nowait = put

    def get_nowait(self) -> pb.CollectorMessage | None:
        with self._lock:
            return self._items.popleft() if self._items else None

    async def get(self) -> pb.CollectorMessage:
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                self._ready.clear()
            await self._ready.wait()

    def empty(self) -> bool:
        with self._lock:
            return not self._items


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
    out: Outbox = field(default_factory=Outbox)
    containers: set[str] = field(default_factory=set)
    images: set[str] = field(default_factory=set)
    names: dict[str, str] = field(default_factory=dict)  # container name -> id, from its findings
    _refused: set[str] = field(default_factory=set)  # claims already logged as refused

    def refused(self, what: str) -> bool:
        """Note a refused claim; True the first time (log it then), False after (or past 4,096)."""
        if what in self._refused or len(self._refused) >= 4096:
            return False
        self._refused.add(what)
        return True

    def check_room(self, containers: Iterable[str], images: Iterable[str] = (),
                   names: Iterable[tuple[str, str]] = ()) -> None:
        """ResourceExhausted if remembering these containers, image keys and (name, container id)
        pairs would pass a cap (see MAX_CONTAINERS); checked before anything of the message is
        stored. Empty keys and keys over MAX_KEY_CHARS do not count: they are never remembered.
        The caller holds the hub's lock."""
        new_containers = {c for c in containers if fits(c)} - self.containers
        new_images = {i for i in images if fits(i)} - self.images
        new_names = {n for n, c in names if fits(n) and fits(c)} - self.names.keys()
        for total, cap, what in ((len(self.containers) + len(new_containers), MAX_CONTAINERS, "containers"),
                                 (len(self.images) + len(new_images), MAX_IMAGES, "images"),
                                 (len(self.names) + len(new_names), MAX_NAMES, "container names")):
            if total > cap:
                raise ResourceExhausted(f"sensor {self.sensor_id} reported more than {cap:,} {what} on one link, "
                                        "the most the collector remembers for a sensor: link closed (a new link "
                                        "starts afresh)")


def fits(key: str) -> bool:
    """A key the collector remembers: not empty, not longer than any runtime's."""
    return 0 < len(key) <= MAX_KEY_CHARS


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
    command_id: int = 0  # asked through another collector (collector.fleet): its answer goes there


MAX_REQUESTS = 4096  # actions remembered for a late answer; the oldest are forgotten first


class Hub:
    """Connected sensors, pending analyst actions, and the policies to push."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.sessions: dict[str, Session] = {}
        self.pending: OrderedDict[str, Request] = OrderedDict()  # request id -> action, until answered
        # container id -> (sensor id, reported in a finding) of the connected sensor that holds it
        self.owners: dict[str, tuple[str, bool]] = {}
        self.lock = threading.Lock()
        self.collector_id = ""  # this collector, in the sensors table (which collector holds which sensor)
        self.fleet: Any = None  # collector.fleet.Fleet on PostgreSQL: pushes and actions reach other collectors

    def claim(self, s: Session, container_id: str, image: str, reported: bool) -> bool:
        """``s`` says it sees ``container_id`` (running ``image``); call with :attr:`lock` held.

        The first connected sensor to report a container holds it: actions go to it. A finding
        outranks a heartbeat's claim (a sensor that reports events of a container sees it); any
        other second claim is logged once and not obeyed. True if ``s`` holds the container."""
        if container_id in NOT_CONTAINERS or not fits(container_id):
            return False
        owner = self.owners.get(container_id)
        if owner is not None and owner[0] != s.sensor_id and owner[0] in self.sessions:
            if not (reported and not owner[1]):
                if s.refused("container:" + container_id):
                    log.warning("sensor %s claims container %s, which sensor %s reported first: not obeyed",
                                s.sensor_id, container_id[:80], owner[0])
                return False
            log.warning("sensor %s reports container %s, which sensor %s only claimed: actions now go to %s",
                        s.sensor_id, container_id[:80], owner[0], s.sensor_id)
            self.sessions[owner[0]].containers.discard(container_id)
        self.owners[container_id] = (s.sensor_id, reported or (owner is not None and owner == (s.sensor_id, True)))
        s.containers.add(container_id)
        if fits(image):
            s.images.add(image)
        return True

    def release(self, s: Session) -> None:
        """``s`` is gone: the containers it held may be claimed by others. Call with the lock held."""
        for cid in s.containers:
            if self.owners.get(cid, ("",))[0] == s.sensor_id:
                del self.owners[cid]

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
        """Send ``msg`` to every sensor (but ``except_id``), those other collectors hold too."""
        self.send_local(msg, except_id)
        if self.fleet is not None:
            self.fleet.publish(msg, except_id)

    def connected_ids(self, rows: list[dict[str, Any]] | None = None) -> set[str]:
        """The sensors connected to this collector, and those other live collectors hold (a
        collector killed outright left its rows marked connected). ``rows``: store.sensors()."""
        with self.lock:
            here = set(self.sessions)
        if self.fleet is None:
            return here
        return here | {s["sensor_id"] for s in (self.store.sensors() if rows is None else rows)
                       if s["connected"] and s["collector_alive"] and s["collector"] != self.collector_id}

    def send_local(self, msg: pb.CollectorMessage, except_id: str = "") -> None:
        """Send ``msg`` to the sensors connected to this collector (but ``except_id``)."""
        with self.lock:
            sessions = [s for s in self.sessions.values() if s.sensor_id != except_id]
        for s in sessions:
            try:
                s.out.put_nowait(msg)
            except queue.Full:
                log.warning("sensor %s outbound queue full; dropping a push", s.sensor_id)

    def policy_messages(self) -> list[pb.CollectorMessage]:
        """What a sensor gets when it connects: image policies, then the pushed rule sets."""
        return [policy_message(i["image"], i["mode"], i["policy"]) for i in self.store.images()
                if i["mode"] or i["policy"]] + [
            rules_message(r["name"], r["yaml"]) for r in self.store.rulesets()]


class SensorLinkServicer(rpc.SensorLinkServicer):
    def __init__(self, hub: Hub, auth: AuthConfig, exporters: Exporters, io: Executor,
                 hello_timeout_s: float = HELLO_TIMEOUT_S) -> None:
        self.hub, self.auth, self.exporters, self.io = hub, auth, exporters, io
        self.hello_timeout_s = hello_timeout_s

    async def _blocking(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` (the store, the exporters) on the I/O pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.io, functools.partial(fn, *args))

    async def Connect(self, request_iterator: AsyncIterator[pb.SensorMessage],  # noqa: N802
                      context: grpc.aio.ServicerContext) -> AsyncIterator[pb.CollectorMessage]:
        try:
            ident = authenticate(self.auth, context.invocation_metadata(), context.auth_context())
            require(ident, SENSOR)
            try:
                first = await asyncio.wait_for(anext(request_iterator, None), self.hello_timeout_s)
            except TimeoutError:
                raise DeadlineExceeded(f"no hello within {self.hello_timeout_s:g} s: closing the stream") from None
            session = await self._blocking(self._hello, first, ident, Outbox(asyncio.get_running_loop()))
        except CollectorError as err:
            log.warning("sensor link refused: %s", err)
            await context.abort(status_code(err), str(err))
            return
        reader = asyncio.create_task(self._read(session, request_iterator))
        take: asyncio.Future[pb.CollectorMessage] | None = None
        try:
            yield ack_message(0)  # welcome: the link is up
            for msg in await self._blocking(self.hub.policy_messages):
                yield msg
            while True:
                take = asyncio.ensure_future(session.out.get())
                await asyncio.wait({take, reader}, return_when=asyncio.FIRST_COMPLETED)
                if not take.done():  # the sensor stopped sending: flush what is queued, then end
                    while (left := session.out.get_nowait()) is not None:
                        yield left
                    break
                yield take.result()
            if (why := reader.result()) is not None:
                await context.abort(status_code(why), str(why))
        finally:
            for task in (take, reader):
                if task is not None:
                    task.cancel()
            await self._blocking(self._forget, session)

    def _forget(self, session: Session) -> None:
        # Under the lock, like the hello's write: a sensor that already reconnected on a new
        # link stays up whatever order the two streams' ends and starts interleave in.
        with self.hub.lock:
            if self.hub.sessions.get(session.sensor_id) is session:
                del self.hub.sessions[session.sensor_id]
                self.hub.release(session)
                self.hub.store.sensor_disconnected(session.sensor_id, self.hub.collector_id)

    def _hello(self, first: pb.SensorMessage | None, ident: Identity, out: Outbox) -> Session:
        if first is None or first.WhichOneof("body") != "hello":
            raise InvalidArgument("the first message on a sensor link must be hello")
        hello = first.hello
        check_hello(hello)
        if ident.role == SENSOR and hello.sensor_id != ident.name:
            raise PermissionDenied(f"sensor {ident.name} may not report as {hello.sensor_id!r}")
        session = Session(hello.sensor_id, hello.node, hello.version, out)
        with self.hub.lock:
            old = self.hub.sessions.get(session.sensor_id)
            if old is not None:  # the same sensor on a new link: it keeps what it held
                session.containers, session.images, session.names = old.containers, old.images, old.names
            self.hub.sessions[session.sensor_id] = session
            self.hub.store.upsert_sensor(session.sensor_id, hello.node, hello.version, {}, connected=True,
                                         collector=self.hub.collector_id)
        log.info("sensor %s (%s) connected", session.sensor_id, hello.node)
        return session

    async def _read(self, s: Session, requests: AsyncIterator[pb.SensorMessage]) -> CollectorError | None:
        """Dispatch the sensor's messages in order; returns why the link must end, if it must."""
        try:
            async for msg in requests:
                await self._blocking(self._dispatch, s, msg)
        except CollectorError as err:  # e.g. a message that is not protobuf: the link ends with why
            log.warning("sensor link %s: %s", s.sensor_id, err)
            return err
        except grpc.RpcError:
            pass  # the sensor went away; it will resend what was not acked
        except Exception:  # a bug in one message must not kill the link silently
            log.exception("sensor link %s: error handling a message", s.sensor_id)
        return None

    def _dispatch(self, s: Session, msg: pb.SensorMessage) -> None:
        kind = msg.WhichOneof("body")
        if kind == "batch":
            findings = [finding_from_pb(f) for f in msg.batch.findings]
            with self.hub.lock:
                s.check_room([f.event.container_id for f in findings], [f.event.image_key for f in findings],
                             [(f.event.container_name, f.event.container_id) for f in findings])
            try:
                stored = self.hub.store.ingest(s.sensor_id, s.node, msg.batch.seq, findings)
            except InvalidArgument as err:  # never storable: this batch is refused, the link goes on
                log.warning("sensor %s: %s", s.sensor_id, err)
                s.out.put(refused_message(msg.batch.seq, str(err)), force=True)
                return
            if stored:  # a suppressed alert is counted but notifies no one (webhook)
                self.exporters.publish(s.sensor_id, s.node, findings,
                                       lambda fs: self.hub.store.notifiable(s.sensor_id, fs))
            with self.hub.lock:
                for f in findings:
                    ev = f.event
                    if self.hub.claim(s, ev.container_id, ev.image_key, True) and fits(ev.container_name):
                        s.names[ev.container_name] = ev.container_id
            s.out.put(ack_message(msg.batch.seq), force=True)
        elif kind == "heartbeat":
            hb = msg.heartbeat
            with self.hub.lock:
                s.check_room([*hb.containers, *hb.container_images], hb.container_images.values())
                for cid in {*hb.containers, *hb.container_images}:
                    self.hub.claim(s, cid, hb.container_images.get(cid, ""), False)
            self.hub.store.upsert_sensor(s.sensor_id, s.node, s.version, dict(msg.heartbeat.counters), True,
                                         self.hub.collector_id)
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
            if req.command_id:  # the analyst waits on another collector: the answer goes there
                self.hub.store.finish_command(req.command_id, r.SerializeToString())

    def _snapshot(self, s: Session, snap: pb.ModelSnapshot) -> None:
        """Store this sensor's baseline; merge all sensors' for the image; send it to the others.
        Only for an image the sensor runs (a container of it that this sensor holds, or findings
        from it): a sensor cannot rewrite the fleet baseline of images it never ran."""
        with self.hub.lock:
            runs = snap.image_key in s.images or snap.image_key == HOST  # every sensor runs a host
        if not runs:
            if s.refused("snapshot:" + snap.image_key):
                log.warning("sensor %s sent a model snapshot of %r, an image none of its containers runs: not stored",
                            s.sensor_id, snap.image_key[:200])
            return
        self.hub.store.put_snapshot(snap.image_key, s.sensor_id, snap.payload)
        self.hub.store.set_not_active(snap.image_key, s.sensor_id, snap.not_active)
        try:
            from collector.baselines import record_version
            from models.engine import merge_snapshots

            parts = [msgpack.unpackb(p, raw=False, strict_map_key=False)
                     for _, p in self.hub.store.snapshots(snap.image_key)]
            merged = functools.reduce(merge_snapshots, parts)
        except Exception as err:  # noqa: BLE001 - a bad snapshot must not break the link
            log.warning("cannot merge snapshots of %s: %s", snap.image_key, err)
            return
        record_version(self.hub.store, snap.image_key, merged)  # the console's history of fleet baselines
        self.hub.broadcast(baseline_message(snap.image_key, msgpack.packb(merged, use_bin_type=True)),
                           except_id=s.sensor_id)
