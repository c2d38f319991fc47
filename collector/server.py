"""The collector's gRPC server: sensor link (bidi stream per sensor) and the analyst API.

Errors become status codes in one place (:func:`_rpc`); every call is authenticated and
authorised there too. Batches are acknowledged only after the store committed them.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import grpc
import msgpack
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from collector.auth import SENSOR, AuthConfig, Identity, authenticate, require
from collector.convert import (
    ACTION_NAMES,
    STATUS_NAMES,
    action_kind,
    finding_from_pb,
    finding_to_pb,
    pb,
    rpc,
    status_value,
)
from collector.errors import CollectorError, InvalidArgument, NotFound, PermissionDenied, Unavailable, status_code
from collector.export import Exporters
from collector.images import check_seen, image_view, known_images
from collector.store import AlertRow, SqlStore, priority_rank

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 4 << 20


def _rpc(role: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Authenticate + authorise, then map CollectorError to its status code (the one place)."""
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def handler(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                ident = authenticate(self.auth, context.invocation_metadata(), context.auth_context())
                require(ident, role)
                return fn(self, request, context, ident)
            except CollectorError as err:
                log.warning("%s refused or failed: %s", fn.__name__, err)
                context.abort(status_code(err), str(err))
        return handler
    return wrap


@dataclass
class Session:
    sensor_id: str
    node: str
    version: str = ""  # from the hello; every heartbeat stores it again
    out: queue.Queue[Any] = field(default_factory=lambda: queue.Queue(maxsize=10000))
    containers: set[str] = field(default_factory=set)
    images: set[str] = field(default_factory=set)
    names: dict[str, str] = field(default_factory=dict)  # container name -> id, from its findings


class Hub:
    """Connected sensors, pending analyst actions, and the policies to push."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.sessions: dict[str, Session] = {}
        self.pending: dict[str, tuple[threading.Event, list[Any]]] = {}
        self.lock = threading.Lock()

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

    def broadcast(self, msg: Any, except_id: str = "") -> None:
        with self.lock:
            sessions = [s for s in self.sessions.values() if s.sensor_id != except_id]
        for s in sessions:
            try:
                s.out.put_nowait(msg)
            except queue.Full:
                log.warning("sensor %s outbound queue full; dropping a push", s.sensor_id)

    def policy_messages(self) -> list[Any]:
        """What a sensor gets when it connects: image policies, then the pushed rule sets."""
        return [pb.CollectorMessage(policy=pb.ImagePolicy(image=i["image"], policy_yaml=json.dumps(
            {**i["policy"], "mode": i["mode"]}).encode())) for i in self.store.images() if i["mode"]] + [
            pb.CollectorMessage(rules=pb.RuleSet(name=r["name"], yaml=r["yaml"])) for r in self.store.rulesets()]


class SensorLinkServicer(rpc.SensorLinkServicer):
    def __init__(self, hub: Hub, auth: AuthConfig, exporters: Exporters) -> None:
        self.hub, self.auth, self.exporters = hub, auth, exporters

    def Connect(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:  # noqa: N802
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
        yield pb.CollectorMessage(ack=pb.Ack(seq=0))  # welcome: the link is up
        yield from self.hub.policy_messages()
        try:
            while not done.is_set() or not session.out.empty():
                try:
                    yield session.out.get(timeout=0.2)
                except queue.Empty:
                    continue
        finally:
            # Under the lock, like the hello's write: a sensor that already reconnected on a new
            # link stays up whatever order the two streams' ends and starts interleave in.
            with self.hub.lock:
                if self.hub.sessions.get(session.sensor_id) is session:
                    del self.hub.sessions[session.sensor_id]
                    self.hub.store.sensor_disconnected(session.sensor_id)

    def _hello(self, first: Any, ident: Identity) -> Session:
        if first is None or first.WhichOneof("body") != "hello":
            raise InvalidArgument("the first message on a sensor link must be hello")
        hello = first.hello
        if ident.role == SENSOR and hello.sensor_id != ident.name:
            raise PermissionDenied(f"sensor {ident.name} may not report as {hello.sensor_id!r}")
        session = Session(hello.sensor_id, hello.node, hello.version)
        with self.hub.lock:
            self.hub.sessions[session.sensor_id] = session
            self.hub.store.upsert_sensor(session.sensor_id, hello.node, hello.version, {}, connected=True)
        log.info("sensor %s (%s) connected", session.sensor_id, hello.node)
        return session

    def _read(self, s: Session, requests: Iterator[Any], done: threading.Event) -> None:
        try:
            for msg in requests:
                self._dispatch(s, msg)
        except grpc.RpcError:
            pass  # the sensor went away; it will resend what was not acked
        except Exception:  # noqa: BLE001 - a bug in one message must not kill the link silently
            log.exception("sensor link %s: error handling a message", s.sensor_id)
        finally:
            done.set()

    def _dispatch(self, s: Session, msg: Any) -> None:
        kind = msg.WhichOneof("body")
        if kind == "batch":
            findings = [finding_from_pb(f) for f in msg.batch.findings]
            for f in findings:
                s.containers.add(f.event.container_id)
                s.images.add(f.event.image_key)
                if f.event.container_name:
                    s.names[f.event.container_name] = f.event.container_id
            if self.hub.store.ingest(s.sensor_id, s.node, msg.batch.seq, findings):
                self.exporters.publish(s.sensor_id, s.node, findings)
            s.out.put(pb.CollectorMessage(ack=pb.Ack(seq=msg.batch.seq)))
        elif kind == "heartbeat":
            s.containers.update(msg.heartbeat.containers)
            self.hub.store.upsert_sensor(s.sensor_id, s.node, s.version, dict(msg.heartbeat.counters), True)
        elif kind == "action_result":
            self._action_result(s, msg.action_result)
        elif kind == "snapshot":
            self._snapshot(s, msg.snapshot)

    def _action_result(self, s: Session, r: Any) -> None:
        self.hub.store.audit(r.actor or f"sensor:{s.sensor_id}", ACTION_NAMES.get(r.action, "?"),
                             r.container_id, r.reason, "ok" if r.ok else f"failed: {r.error}", r.latency_ms)
        waiter = self.hub.pending.pop(r.request_id, None)
        if waiter is not None:
            waiter[1].append(r)
            waiter[0].set()

    def _snapshot(self, s: Session, snap: Any) -> None:
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
        out = pb.CollectorMessage(baseline=pb.FleetBaseline(image_key=snap.image_key,
                                                            payload=msgpack.packb(merged, use_bin_type=True)))
        self.hub.broadcast(out, except_id=s.sensor_id)


class AnalystServicer(rpc.AnalystServicer):
    def __init__(self, hub: Hub, auth: AuthConfig) -> None:
        self.hub, self.auth, self.store = hub, auth, hub.store

    @_rpc("viewer")
    def ListAlerts(self, req: Any, ctx: Any, ident: Identity) -> Any:  # noqa: N802
        return pb.AlertList(alerts=[alert_to_pb(a) for a in self._query(req)])

    def _query(self, req: Any, after_id: int = 0) -> list[AlertRow]:
        return self.store.list_alerts(**self._filters(req), limit=req.limit or 100, after_id=after_id)

    @staticmethod
    def _filters(req: Any) -> dict[str, Any]:
        return {"image": req.image, "since_ns": req.since_ns, "min_priority": req.min_priority,
                "status": STATUS_NAMES.get(req.status, "")}

    @_rpc("viewer")
    def GetAlert(self, req: Any, ctx: Any, ident: Identity) -> Any:  # noqa: N802
        return alert_to_pb(self.store.get_alert(req.id))

    def WatchAlerts(self, req: Any, ctx: grpc.ServicerContext) -> Iterator[Any]:  # noqa: N802
        try:
            require(authenticate(self.auth, ctx.invocation_metadata(), ctx.auth_context()), "viewer")
            if req.min_priority:
                priority_rank(req.min_priority)  # refuse a bad query now, not inside the stream
        except CollectorError as err:
            ctx.abort(status_code(err), str(err))
        rows = self.store.list_alerts(limit=1)
        last = rows[0].id if rows else 0
        last_audit = self.store.last_audit_id()
        while ctx.is_active():
            for row in self._query(req, after_id=last):
                last = max(last, row.id)
                yield alert_to_pb(row)
            # a resolved or acknowledged alert that recurs is reopened under its old id: the
            # audit trail says which, and a watching analyst sees it again
            for audit_id, alert_id in self.store.reopened_after(last_audit):
                last_audit = audit_id
                if alert_id <= last:
                    reopened = self.store.list_alerts(**self._filters(req), limit=1, only_id=alert_id)
                    yield from (alert_to_pb(row) for row in reopened)
            time.sleep(0.25)

    @_rpc("responder")
    def UpdateAlert(self, req: Any, ctx: Any, ident: Identity) -> Any:  # noqa: N802
        status = STATUS_NAMES.get(req.status)
        if status is None:
            raise InvalidArgument("status must be acknowledged, resolved or suppressed")
        row = self.store.update_alert(req.id, status, req.comment)
        pushed = self._suppress_into_baseline(row, ident, req.comment) if status == "suppressed" else 0
        self.store.audit(ident.name, f"alert {status}", str(req.id), req.comment,
                         f"ok; baseline item sent to {pushed} sensor(s)" if pushed else "ok")
        return alert_to_pb(row)

    def _suppress_into_baseline(self, row: AlertRow, ident: Identity, comment: str) -> int:
        """A model finding's item is accepted into the image's baseline on every sensor."""
        f = row.finding
        dim = f.explanation.get("dimension") if f.source == "model" else None
        if not dim:
            return 0  # rule hits: the alert stays suppressed; repeats aggregate into it
        from models.profile import item_keys

        keys = [k for d, k in item_keys(f.event) if d == dim]
        if not keys:
            return 0
        msg = pb.CollectorMessage(accept=pb.BaselineItem(
            image=f.event.image, image_key=f.event.image_key, dimension=dim, key_json=json.dumps(list(keys[0])),
            actor=ident.name, reason=comment or f"alert {row.id} suppressed"))
        with self.hub.lock:
            n = len(self.hub.sessions)
        self.hub.broadcast(msg)
        return n

    @_rpc("viewer")
    def ListImages(self, req: Any, ctx: Any, ident: Identity) -> Any:  # noqa: N802
        """Every image known from operator policies, sensor model snapshots and alerts."""
        return pb.ImageList(images=[pb.ImageInfo(
            image=i["image"], mode=i["mode"], policy_yaml=json.dumps(i["policy"]), set_by=i["set_by"],
            alerts=self.store.count_alerts(i["image"]), learning=json.dumps(i["model"]))
            for i in image_view(self.store)])

    @_rpc("admin")
    def SetImageMode(self, req: Any, ctx: Any, ident: Identity) -> Any:  # noqa: N802
        if req.mode not in ("learn", "alert", "enforce") or not req.image:
            raise InvalidArgument("image and a mode of learn, alert or enforce are required")
        if req.require_seen:
            check_seen(req.image, known_images(self.store))
        action = req.default_action or "alert"
        policy = {"match": req.image, "default_action": action, "banned_processes": list(req.banned_processes)}
        from rules.errors import RuleError
        from rules.policy import PolicySet

        try:
            PolicySet.from_dict({"images": [{**policy, "mode": req.mode}]})
        except RuleError as err:
            raise InvalidArgument(str(err)) from err
        self.store.set_image(req.image, req.mode, policy, ident.name)
        self.store.audit(ident.name, f"image mode {req.mode}", req.image, f"default action {action}", "ok")
        self.hub.broadcast(pb.CollectorMessage(policy=pb.ImagePolicy(
            image=req.image, policy_yaml=json.dumps({**policy, "mode": req.mode}).encode())))
        return pb.ImageInfo(image=req.image, mode=req.mode, policy_yaml=json.dumps(policy),
                            set_by=f"operator {ident.name}")

    @_rpc("responder")
    def ContainerAction(self, req: Any, ctx: Any, ident: Identity) -> Any:  # noqa: N802
        if req.action == pb.ACTION_KIND_UNSPECIFIED or not req.container_id:
            raise InvalidArgument("container_id and an action (pause, unpause, kill, stop) are required")
        session, container_id = self.hub.route(req.container_id)
        request_id = uuid.uuid4().hex
        waiter: tuple[threading.Event, list[Any]] = (threading.Event(), [])
        self.hub.pending[request_id] = waiter
        session.out.put(pb.CollectorMessage(action=pb.ContainerAction(
            request_id=request_id, container_id=container_id, action=req.action, actor=ident.name,
            reason=req.reason)))
        if not waiter[0].wait(req.timeout_s or 10.0):
            self.hub.pending.pop(request_id, None)
            raise Unavailable(f"sensor {session.sensor_id} did not confirm the action in time")
        return pb.ActionReply(result=waiter[1][0])

    @_rpc("viewer")
    def ListSensors(self, req: Any, ctx: Any, ident: Identity) -> Any:  # noqa: N802
        connected = set(self.hub.sessions)
        return pb.SensorList(sensors=[pb.SensorInfo(
            sensor_id=s["sensor_id"], node=s["node"] or "", version=s["version"] or "",
            connected=s["sensor_id"] in connected, last_seen_ns=s["last_seen_ns"] or 0,
            counters=s["counters"]) for s in self.store.sensors()])

    @_rpc("viewer")
    def ListAudit(self, req: Any, ctx: Any, ident: Identity) -> Any:  # noqa: N802
        return pb.AuditList(entries=[pb.AuditEntry(**e) for e in self.store.audit_entries(req.limit or 100)])

    @_rpc("admin")
    def PushRules(self, req: Any, ctx: Any, ident: Identity) -> Any:  # noqa: N802
        """Validate a rule set after the default library and the other pushed sets (in the order
        sensors load them), store it, and send it to every connected sensor; empty YAML removes it."""
        from rules.engine import default_rule_files
        from rules.errors import RuleError
        from rules.loader import load_sources
        from rules.pushed import NAME

        if not NAME.fullmatch(req.name):
            raise InvalidArgument(f"rule set name {req.name!r}: use letters, digits, '.', '_' and '-'")
        sets = {r["name"]: r["yaml"] for r in self.store.rulesets()}
        sets.pop(req.name, None)
        if req.yaml.strip():
            sets[req.name] = req.yaml
        library = [(str(p), p.read_text(encoding="utf-8")) for p in default_rule_files()]
        try:
            loaded = load_sources(library + [(f"pushed rule set {n}", sets[n]) for n in sorted(sets)])
        except RuleError as err:
            raise InvalidArgument(str(err)) from err
        except Exception as err:  # noqa: BLE001 - pushed YAML is untrusted: a loader bug it hits is still a refusal
            log.exception("PushRules %s: validating the rule set raised", req.name)
            detail = " ".join(f"{type(err).__name__}: {err}".split())[:300]
            raise InvalidArgument(f"pushed rule set {req.name}: does not load: {detail}") from err
        self.store.set_ruleset(req.name, req.yaml, ident.name)
        self.hub.broadcast(pb.CollectorMessage(rules=pb.RuleSet(name=req.name, yaml=req.yaml)))
        n = sum(r.source_file == f"pushed rule set {req.name}" for r in loaded.rules)
        self.store.audit(ident.name, "push rules" if req.yaml.strip() else "remove rules", req.name,
                         f"{n} rules", "ok")
        with self.hub.lock:
            sensors = len(self.hub.sessions)
        return pb.RuleSetReply(name=req.name, rules=n, sensors=sensors)

    @_rpc("viewer")
    def ListRuleSets(self, req: Any, ctx: Any, ident: Identity) -> Any:  # noqa: N802
        return pb.RuleSetList(sets=[pb.RuleSetInfo(**r) for r in self.store.rulesets()])


def alert_to_pb(a: AlertRow) -> Any:
    return pb.Alert(id=a.id, finding=finding_to_pb(a.finding), count=a.count, first_seen_ns=a.first_seen_ns,
                    last_seen_ns=a.last_seen_ns, status=status_value(a.status), sensor_id=a.sensor_id,
                    node=a.node or "", comment=a.comment)


@dataclass
class TlsConfig:
    cert: bytes
    key: bytes
    ca: bytes | None = None  # set: require client certificates (mTLS for sensors)


def check_bindable(addr: str) -> None:
    """Raise the one-line reason ``host:port`` cannot be listened on (in use, not local,
    privileged port), so that gRPC's bind, which only says "failed" after C-level log lines,
    is not the one to find out. A gRPC listener uses SO_REUSEADDR, so this does too: a port
    with connections in TIME_WAIT is free, one with a listener is not."""
    import errno
    import socket

    from sensor.errors import EX_NOPERM

    host, _, port = addr.rpartition(":")
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (OSError, ValueError) as err:
        raise Unavailable(f"cannot listen on {addr}: {getattr(err, 'strerror', None) or err}") from None
    errors: list[OSError] = []
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
            except OSError as err:
                errors.append(err)
    # Another listener on any of the addresses splits clients between two collectors: refuse.
    all_failed = errors[0] if errors and len(errors) == len(infos) else None
    first = next((e for e in errors if e.errno == errno.EADDRINUSE), all_failed)
    if first is None:
        return
    if first.errno == errno.EADDRINUSE:
        raise Unavailable(f"cannot listen on {addr}: address in use (is another collector running there?)")
    if first.errno == errno.EACCES:
        raise CollectorError(f"cannot listen on {addr}: permission denied (ports below 1024 need root or "
                             "CAP_NET_BIND_SERVICE)", exit_code=EX_NOPERM)
    raise Unavailable(f"cannot listen on {addr}: {first.strerror} (is it an address of this host?)")


def create_server(addr: str, store: SqlStore, auth: AuthConfig, tls: TlsConfig | None = None,
                  exporters: Exporters | None = None, workers: int = 32) -> tuple[grpc.Server, int]:
    """Build and start the server; returns (server, bound port) — port 0 picks a free one.

    A port another process listens on is an error (Unavailable), never shared: gRPC's default
    SO_REUSEPORT would let a second collector bind it too, and the kernel would then split
    sensors and clients between two databases at random."""
    check_bindable(addr)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=[
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    hub = Hub(store)
    rpc.add_SensorLinkServicer_to_server(SensorLinkServicer(hub, auth, exporters or Exporters()), server)
    rpc.add_AnalystServicer_to_server(AnalystServicer(hub, auth), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        if tls is None:
            port = server.add_insecure_port(addr)
        else:
            # gRPC Python either requires client certificates or never asks for them: with a CA
            # configured every client (sensor or analyst CLI) must present one; roles still come
            # from tokens, sensor identities from the CN of a sensor certificate (collector.auth).
            creds = grpc.ssl_server_credentials([(tls.key, tls.cert)], root_certificates=tls.ca,
                                                require_client_auth=tls.ca is not None)
            port = server.add_secure_port(addr, creds)
    except RuntimeError:  # "Failed to bind": taken between the check above and now
        port = 0
    if port == 0:
        raise Unavailable(f"cannot listen on {addr}: address in use (taken meanwhile), or gRPC refused the TLS "
                          "certificate or key")
    server.start()
    for name in ("", "cgsentry.v1.SensorLink", "cgsentry.v1.Analyst"):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    server.hub = hub  # for in-process tests and the web console
    return server, port


__all__ = ["create_server", "TlsConfig", "action_kind"]
