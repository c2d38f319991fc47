"""The one module that imports generated protobuf code: Python values <-> protobuf messages.

Every message the collector builds is built here, and every message it reads into Python values
(dataclasses, the JSON rows the CLI prints) is read here, so a proto change touches one file.
Other modules may name message types (:data:`pb`) in annotations and read a typed request's
fields; service stubs and servicers come from :data:`rpc`. The messages are typed by the committed
``cgsentry_pb2.pyi``; ``rpc`` (gRPC's generated code) has no stub and stays untyped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from collector.proto.cgsentry.v1 import cgsentry_pb2 as pb
from collector.proto.cgsentry.v1 import cgsentry_pb2_grpc as rpc
from sensor.events import Event, Finding

if TYPE_CHECKING:
    from collector.store import AlertRow

__all__ = ["pb", "rpc", "event_to_pb", "event_from_pb", "finding_to_pb", "finding_from_pb",
           "ACTION_NAMES", "action_kind", "STATUS_NAMES", "status_value"]

log = logging.getLogger(__name__)
_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(Event))
_TUPLES = {"args", "ancestry", "sc_args"}
ACTION_NAMES = {pb.ACTION_KIND_PAUSE: "pause", pb.ACTION_KIND_UNPAUSE: "unpause",
                pb.ACTION_KIND_KILL: "kill", pb.ACTION_KIND_STOP: "stop"}
STATUS_NAMES = {pb.ALERT_STATUS_OPEN: "open", pb.ALERT_STATUS_ACKNOWLEDGED: "acknowledged",
                pb.ALERT_STATUS_RESOLVED: "resolved", pb.ALERT_STATUS_SUPPRESSED: "suppressed"}
Row = dict[str, Any]


def action_kind(name: str) -> pb.ActionKind:
    """'pause' / 'pause-container' -> ACTION_KIND_PAUSE (0 if unknown)."""
    short = name.replace("-container", "")
    return next((k for k, v in ACTION_NAMES.items() if v == short), pb.ACTION_KIND_UNSPECIFIED)


def status_value(name: str) -> pb.AlertStatus:
    aliases = {"ack": "acknowledged", "resolve": "resolved", "suppress": "suppressed", "reopen": "open",
               "unsuppress": "open"}
    name = aliases.get(name, name)
    return next((k for k, v in STATUS_NAMES.items() if v == name), pb.ALERT_STATUS_UNSPECIFIED)


# -- events and findings (sensor -> collector) --------------------------------------------------
def event_to_pb(ev: Event) -> pb.Event:
    msg = pb.Event()
    for name in _EVENT_FIELDS:
        value = getattr(ev, name)
        if name in _TUPLES:
            getattr(msg, name).extend(value)
        elif name == "labels":
            msg.labels.update(dict(value))
        elif value:
            setattr(msg, name, value)
    if ev.syscall_nr == -1:
        msg.syscall_nr = -1
    return msg


def event_from_pb(msg: pb.Event) -> Event:
    kwargs: dict[str, Any] = {}
    for name in _EVENT_FIELDS:
        value = getattr(msg, name)
        kwargs[name] = tuple(value) if name in _TUPLES else value
    kwargs["labels"] = tuple(sorted(msg.labels.items()))
    return Event(**kwargs)


def finding_to_pb(f: Finding) -> pb.Finding:
    return pb.Finding(kind=f.kind, rule=f.rule, priority=f.priority, output=f.output,
                      event=event_to_pb(f.event), time_ns=f.time_ns, source=f.source, tags=list(f.tags),
                      explanation_json=json.dumps(dict(f.explanation), default=str), action=f.action,
                      mode=f.mode, during_loss=f.during_loss,
                      ancestors=[pb.Ancestor(pid=pid, exe=exe, args=list(args)) for pid, exe, args in f.ancestors],
                      ancestors_end=f.ancestors_end)


def finding_from_pb(msg: pb.Finding) -> Finding:
    try:
        explanation = json.loads(msg.explanation_json) if msg.explanation_json else {}
    except (json.JSONDecodeError, RecursionError):
        explanation = None
    if not isinstance(explanation, dict):  # valid JSON that is not an object ("[1]") is kept as text too
        explanation = {"raw": msg.explanation_json}
    return Finding(kind=msg.kind, rule=msg.rule, priority=msg.priority, output=msg.output,
                   event=event_from_pb(msg.event), time_ns=msg.time_ns, source=msg.source,
                   tags=tuple(msg.tags), explanation=explanation, action=msg.action, mode=msg.mode,
                   during_loss=msg.during_loss,
                   ancestors=tuple((a.pid, a.exe, tuple(a.args)) for a in msg.ancestors),
                   ancestors_end=msg.ancestors_end)


# -- collector -> sensor ------------------------------------------------------------------------
def ack_message(seq: int) -> pb.CollectorMessage:
    """The acknowledgement of batch ``seq`` (0: the welcome that says the link is up)."""
    return pb.CollectorMessage(ack=pb.Ack(seq=seq))


MAX_REASON_CHARS = 2000  # a refusal's reason as sent to the sensor


def refused_message(seq: int, reason: str) -> pb.CollectorMessage:
    """Batch ``seq`` will never be stored, and why (cut to :data:`MAX_REASON_CHARS`)."""
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[:MAX_REASON_CHARS] + f"... [{len(reason) - MAX_REASON_CHARS:,} characters cut]"
    return pb.CollectorMessage(refused=pb.BatchRefused(seq=seq, reason=reason))


def policy_message(image: str, mode: str, policy: Mapping[str, Any]) -> pb.CollectorMessage:
    """An image's policy for the sensors: the policy's keys and the mode, as JSON."""
    return pb.CollectorMessage(policy=pb.ImagePolicy(image=image, policy_yaml=json.dumps(
        {**policy, "mode": mode}).encode()))


def rules_message(name: str, yaml: str) -> pb.CollectorMessage:
    """A pushed rule set (empty ``yaml``: remove the set)."""
    return pb.CollectorMessage(rules=pb.RuleSet(name=name, yaml=yaml))


def baseline_message(image_key: str, payload: bytes) -> pb.CollectorMessage:
    """A fleet-merged baseline (msgpack ``payload``) for the image."""
    return pb.CollectorMessage(baseline=pb.FleetBaseline(image_key=image_key, payload=payload))


def accept_message(f: Finding, dimension: str, key: Iterable[Any], actor: str, reason: str,
                   forget: bool = False) -> pb.CollectorMessage:
    """Accept one model item (``dimension``, ``key``) of ``f``'s image into its baseline (``forget``:
    remove it again)."""
    return pb.CollectorMessage(accept=pb.BaselineItem(
        image=f.event.image, image_key=f.event.image_key, dimension=dimension, key_json=json.dumps(list(key)),
        actor=actor, reason=reason, forget=forget))


def action_message(request_id: str, container_id: str, action: pb.ActionKind, actor: str,
                   reason: str) -> pb.CollectorMessage:
    """A container action for the sensor that sees the container; it answers with ``request_id``."""
    return pb.CollectorMessage(action=pb.ContainerAction(
        request_id=request_id, container_id=container_id, action=action, actor=actor, reason=reason))


# -- analyst API: replies (collector side) ------------------------------------------------------
def alert_to_pb(a: AlertRow, max_bytes: int = 0, history: Iterable[Mapping[str, Any]] = ()) -> pb.Alert:
    """An alert as sent, at most ``max_bytes`` (0: the store's page, under gRPC's message limit).

    The store cuts a finding bigger than a page, but an alert holds more than its finding (the
    comment, the sensor's id and node, as a sensor or an older collector stored them): one whose
    message would pass the budget is sent shortened, its bulky fields cut, each cut saying so
    (:func:`collector.store.shrink_row`), never dropped and never failing the call or the watch."""
    msg = _alert_pb(a)
    msg.history.extend(pb.AlertHistoryEntry(**h) for h in history)
    size = msg.ByteSize()
    from collector.store import PAGE_BYTES, shrink_row

    budget = max_bytes or PAGE_BYTES
    if size <= budget:
        return msg
    log.warning("alert %d is %d bytes as a message, over the %d-byte budget: sent shortened", a.id, size, budget)
    return _alert_pb(shrink_row(a, size, budget))


def _alert_pb(a: AlertRow) -> pb.Alert:
    return pb.Alert(id=a.id, finding=finding_to_pb(a.finding), count=a.count, first_seen_ns=a.first_seen_ns,
                    last_seen_ns=a.last_seen_ns, status=status_value(a.status), sensor_id=a.sensor_id,
                    node=a.node or "", comment=a.comment)


def alert_list(rows: Iterable[AlertRow], next_cursor: str = "", max_bytes: int = 0) -> pb.AlertList:
    """A page of alerts (each at most ``max_bytes``, see :func:`alert_to_pb`); ``next_cursor``
    gets the next page ("" after the last)."""
    return pb.AlertList(alerts=[alert_to_pb(a, max_bytes) for a in rows], next_cursor=next_cursor)


def image_info(image: str, mode: str, policy: Mapping[str, Any], set_by: str, alerts: int = 0,
               model: Mapping[str, Any] | None = None, workloads: Iterable[Mapping[str, Any]] = ()) -> pb.ImageInfo:
    """An image's policy (as JSON) and, when given, the sensors' model state (``learning``) and
    the policies whose selectors can apply to it (most specific first)."""
    return pb.ImageInfo(image=image, mode=mode, policy_yaml=json.dumps(policy), set_by=set_by, alerts=alerts,
                        learning=json.dumps(model) if model is not None else "",
                        workload_policies=json.dumps(list(workloads)))


def image_list(images: Iterable[pb.ImageInfo]) -> pb.ImageList:
    return pb.ImageList(images=images)


def sensor_list(rows: Iterable[Mapping[str, Any]], connected: set[str]) -> pb.SensorList:
    """The store's sensor rows; ``connected``: the ids with a live link to this collector."""
    return pb.SensorList(sensors=[pb.SensorInfo(
        sensor_id=s["sensor_id"], node=s["node"] or "", version=s["version"] or "",
        connected=s["sensor_id"] in connected, last_seen_ns=s["last_seen_ns"] or 0,
        counters=s["counters"], collector=s.get("collector") or "") for s in rows])


def audit_list(rows: Iterable[Mapping[str, Any]]) -> pb.AuditList:
    return pb.AuditList(entries=[pb.AuditEntry(**e) for e in rows])


def ruleset_list(rows: Iterable[Mapping[str, Any]]) -> pb.RuleSetList:
    return pb.RuleSetList(sets=[pb.RuleSetInfo(**r) for r in rows])


def ruleset_reply(name: str, rules: int, sensors: int) -> pb.RuleSetReply:
    return pb.RuleSetReply(name=name, rules=rules, sensors=sensors)


def action_reply(result: pb.ActionResult) -> pb.ActionReply:
    return pb.ActionReply(result=result)


# -- analyst API: requests (client side) --------------------------------------------------------
def empty() -> pb.Empty:
    return pb.Empty()


def alert_query(image: str = "", since_ns: int = 0, min_priority: str = "", status: str = "",
                limit: int = 0, cursor: str = "", max_bytes: int = 0, namespace: str = "", pod: str = "",
                labels: tuple[str, ...] = (), container: str = "", rule: str = "", process: str = "",
                tag: str = "", statuses: tuple[str, ...] = ()) -> pb.AlertQuery:
    """``status`` by name ('' for any), ``statuses`` several (any of them); ``cursor``: the previous
    page's ``next_cursor``; ``labels``: KEY=VALUE pod labels that must all be present."""
    return pb.AlertQuery(image=image, since_ns=since_ns, min_priority=min_priority,
                         status=status_value(status) if status else pb.ALERT_STATUS_UNSPECIFIED, limit=limit,
                         cursor=cursor, max_bytes=max_bytes, namespace=namespace, pod=pod, labels=list(labels),
                         container=container, rule=rule, process=process, tag=tag,
                         statuses=[status_value(s) for s in statuses])


def alert_id(alert: int) -> pb.AlertId:
    return pb.AlertId(id=alert)


def alert_update(alert: int, status: str, comment: str, expect: bool = False) -> pb.AlertUpdate:
    """``status`` by name or CLI verb (ack, resolve, suppress, reopen, unsuppress)."""
    return pb.AlertUpdate(id=alert, status=status_value(status), comment=comment, expect=expect)


def image_mode_request(image: str, mode: str, action: str, banned: Iterable[str], require_seen: bool,
                       clear_bans: bool = False, namespace: str = "",
                       labels: Iterable[str] = ()) -> pb.ImageModeRequest:
    """``mode``/``action`` "" and no ``banned``: keep what the stored policy has."""
    return pb.ImageModeRequest(image=image, mode=mode, default_action=action, banned_processes=banned,
                               require_seen=require_seen, clear_bans=clear_bans, namespace=namespace, labels=labels)


def ruleset(name: str, yaml: str) -> pb.RuleSet:
    return pb.RuleSet(name=name, yaml=yaml)


def container_action_request(container: str, action: str, reason: str, timeout_s: float) -> pb.ContainerActionRequest:
    """``action`` by name ('pause', 'kill-container', ...)."""
    return pb.ContainerActionRequest(container_id=container, action=action_kind(action), reason=reason,
                                     timeout_s=timeout_s)


def audit_query(limit: int, alert_id: int = 0) -> pb.AuditQuery:
    return pb.AuditQuery(limit=limit, alert_id=alert_id)


# -- analyst API: replies read into Python values (client side) ---------------------------------
def alert_from_pb(a: pb.Alert) -> AlertRow:
    """An Alert as the store's row, so it prints like one (collector.export.alert_json)."""
    from collector.store import AlertRow

    return AlertRow(a.id, finding_from_pb(a.finding), a.count, a.first_seen_ns, a.last_seen_ns,
                    STATUS_NAMES.get(a.status, "open"), a.sensor_id, a.node, a.comment)


def history_rows(a: pb.Alert) -> list[Row]:
    """An alert's status changes as JSON rows, oldest first."""
    return [{"time_ns": h.time_ns, "actor": h.actor, "from": h.from_status, "to": h.to_status,
             "comment": h.comment} for h in a.history]


def image_row(i: pb.ImageInfo) -> Row:
    """An ImageInfo as JSON: the operator's policy (action, bans) and the sensors' model state."""
    policy, model = json.loads(i.policy_yaml or "{}"), json.loads(i.learning or "{}")
    return {"image": i.image, "mode": i.mode, "set_by": i.set_by, "action": policy.get("default_action", ""),
            "bans": list(policy.get("banned_processes", [])), "alerts": i.alerts,
            "would_enforce": model.get("would_enforce", {}), "learned_s": model.get("learned_s", 0.0),
            "containers": model.get("containers", 0), "sensors": model.get("sensors", {}), "policy": policy,
            "not_active": model.get("not_active", []), "workloads": json.loads(i.workload_policies or "[]")}


def action_row(container: str, r: pb.ActionResult, error: str) -> Row:
    """A container action's result as JSON; ``error`` is the client's reading of the sensor's."""
    return {"container": container, "container_id": r.container_id, "action": ACTION_NAMES.get(r.action),
            "ok": r.ok, "error": error, "sensor_error": r.error, "latency_ms": round(r.latency_ms, 1),
            "method": r.method}


def ruleset_row(r: pb.RuleSetInfo) -> Row:
    return {"name": r.name, "actor": r.actor, "updated_ns": r.updated_ns, "bytes": len(r.yaml.encode())}


def sensor_row(s: pb.SensorInfo) -> Row:
    return {"sensor_id": s.sensor_id, "node": s.node, "version": s.version, "connected": s.connected,
            "last_seen_ns": s.last_seen_ns, "counters": dict(s.counters), "collector": s.collector}


def audit_row(e: pb.AuditEntry) -> Row:
    return {"id": e.id, "time_ns": e.time_ns, "actor": e.actor, "action": e.action, "target": e.target,
            "reason": e.reason, "result": e.result, "latency_ms": e.latency_ms}
