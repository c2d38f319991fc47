"""The one module that imports generated protobuf code: dataclasses <-> protobuf messages.

Everything else uses :data:`pb` (messages) and :data:`rpc` (service stubs/servicers) re-exported
from here, and the converters below, so a proto change touches one file.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from collector.proto.cgsentry.v1 import cgsentry_pb2 as pb
from collector.proto.cgsentry.v1 import cgsentry_pb2_grpc as rpc
from sensor.events import Event, Finding

__all__ = ["pb", "rpc", "event_to_pb", "event_from_pb", "finding_to_pb", "finding_from_pb",
           "ACTION_NAMES", "action_kind", "STATUS_NAMES", "status_value"]

_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(Event))
_TUPLES = {"args", "ancestry", "sc_args"}
ACTION_NAMES = {pb.ACTION_KIND_PAUSE: "pause", pb.ACTION_KIND_UNPAUSE: "unpause",
                pb.ACTION_KIND_KILL: "kill", pb.ACTION_KIND_STOP: "stop"}
STATUS_NAMES = {pb.ALERT_STATUS_OPEN: "open", pb.ALERT_STATUS_ACKNOWLEDGED: "acknowledged",
                pb.ALERT_STATUS_RESOLVED: "resolved", pb.ALERT_STATUS_SUPPRESSED: "suppressed"}


def action_kind(name: str) -> pb.ActionKind:
    """'pause' / 'pause-container' -> ACTION_KIND_PAUSE (0 if unknown)."""
    short = name.replace("-container", "")
    return next((k for k, v in ACTION_NAMES.items() if v == short), pb.ACTION_KIND_UNSPECIFIED)


def status_value(name: str) -> pb.AlertStatus:
    aliases = {"ack": "acknowledged", "resolve": "resolved", "suppress": "suppressed"}
    name = aliases.get(name, name)
    return next((k for k, v in STATUS_NAMES.items() if v == name), pb.ALERT_STATUS_UNSPECIFIED)


def event_to_pb(ev: Event) -> Any:
    msg = pb.Event()
    for name in _EVENT_FIELDS:
        value = getattr(ev, name)
        if name in _TUPLES:
            getattr(msg, name).extend(value)
        elif value:
            setattr(msg, name, value)
    if ev.syscall_nr == -1:
        msg.syscall_nr = -1
    return msg


def event_from_pb(msg: Any) -> Event:
    kwargs: dict[str, Any] = {}
    for name in _EVENT_FIELDS:
        value = getattr(msg, name)
        kwargs[name] = tuple(value) if name in _TUPLES else value
    return Event(**kwargs)


def finding_to_pb(f: Finding) -> Any:
    return pb.Finding(kind=f.kind, rule=f.rule, priority=f.priority, output=f.output,
                      event=event_to_pb(f.event), time_ns=f.time_ns, source=f.source, tags=list(f.tags),
                      explanation_json=json.dumps(dict(f.explanation), default=str), action=f.action,
                      mode=f.mode, during_loss=f.during_loss)


def finding_from_pb(msg: Any) -> Finding:
    try:
        explanation = json.loads(msg.explanation_json) if msg.explanation_json else {}
    except (json.JSONDecodeError, RecursionError):
        explanation = None
    if not isinstance(explanation, dict):  # valid JSON that is not an object ("[1]") is kept as text too
        explanation = {"raw": msg.explanation_json}
    return Finding(kind=msg.kind, rule=msg.rule, priority=msg.priority, output=msg.output,
                   event=event_from_pb(msg.event), time_ns=msg.time_ns, source=msg.source,
                   tags=tuple(msg.tags), explanation=explanation, action=msg.action, mode=msg.mode,
                   during_loss=msg.during_loss)
