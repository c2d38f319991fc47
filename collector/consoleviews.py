"""What the console's pages show, as plain data (the same dicts the ``/api/`` JSON returns):
an incident with its timeline and process tree, the dashboard's counts. No HTML here: the
templates escape everything they print (:mod:`collector.console`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from collector.errors import InvalidArgument
from collector.incidents import Incident, Incidents
from collector.store import AlertRow, SqlStore
from sensor.events import PRIORITIES, rfc3339

TIMELINE_PAGE = 200  # findings shown per page of an incident


@dataclass
class TreeNode:
    """One process in an incident's tree: its executable, the findings about it, its children."""

    exe: str
    findings: list[int] = field(default_factory=list)  # alert ids
    pids: list[int] = field(default_factory=list)
    args: str = ""
    offending: bool = False  # on the branch of the incident's most severe finding
    children: dict[str, TreeNode] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"exe": self.exe, "findings": self.findings, "pids": self.pids, "args": self.args,
                "offending": self.offending, "children": [c.to_dict() for c in self.children.values()]}


def process_tree(rows: list[AlertRow]) -> TreeNode:
    """The processes of an incident's findings: each finding's ancestry (farthest first) down to its
    own process. The branch of the most severe finding (the earliest of equals) is marked offending."""
    root = TreeNode("")
    worst: tuple[int, int, list[TreeNode]] | None = None
    for row in rows:
        ev = row.finding.event
        path = [*reversed(ev.ancestry), ev.exe or ev.comm or "?"]
        node, branch = root, []
        for exe in path:
            node = node.children.setdefault(exe, TreeNode(exe))
            branch.append(node)
        node.findings.append(row.id)
        if ev.pid and ev.pid not in node.pids and len(node.pids) < 20:
            node.pids.append(ev.pid)
        node.args = node.args or " ".join(ev.args)[:500]
        rank = PRIORITIES.index(row.finding.priority) if row.finding.priority in PRIORITIES else 99
        if worst is None or (rank, row.first_seen_ns) < worst[:2]:
            worst = (rank, row.first_seen_ns, branch)
    for node in worst[2] if worst else []:
        node.offending = True
    return root


def alert_dict(row: AlertRow, count_here: int | None = None) -> dict[str, Any]:
    f, ev = row.finding, row.finding.event
    expl = dict(f.explanation)
    return {"id": row.id, "time": rfc3339(f.time_ns), "first_seen": rfc3339(row.first_seen_ns),
            "last_seen": rfc3339(row.last_seen_ns), "count": row.count, "count_in_incident": count_here,
            "status": row.status, "rule": f.rule, "kind": f.kind, "priority": f.priority, "output": f.output,
            "source": f.source, "action": f.action, "mode": f.mode, "tags": list(f.tags),
            "mitre": [t for t in f.tags if t.upper().startswith(("T1", "TA0", "MITRE"))],
            "image": ev.image, "container_id": ev.container_id, "container_name": ev.container_name,
            "pid": ev.pid, "exe": ev.exe, "args": list(ev.args), "ancestry": list(ev.ancestry),
            "expected": expl.get("expected"), "seen": expl.get("seen"), "explanation": expl,
            "sensor_id": row.sensor_id, "node": row.node, "comment": row.comment}


def incident_dict(inc: Incident) -> dict[str, Any]:
    d = inc.to_dict()
    d["first_seen"], d["last_seen"] = rfc3339(inc.first_seen_ns), rfc3339(inc.last_seen_ns)
    d["mitre"] = [t for t in inc.tags if t.upper().startswith(("T1", "TA0", "MITRE"))]
    return d


def incident_view(store: SqlStore, incidents: Incidents, incident_id: int, offset: int = 0) -> dict[str, Any]:
    """An incident, a page of its findings in time order (each with its count here), its process
    tree (from that page) and the raw JSON of both."""
    inc = incidents.get(incident_id)
    listed = incidents.findings(incident_id, limit=offset + TIMELINE_PAGE)[offset:]
    counts = {alert_id: count for alert_id, count, _, _ in listed}
    # one query for the page (an alert removed by retention is left out; the incident keeps its count)
    rows = [(r, counts[r.id]) for r in store.get_alerts(list(counts), max_bytes=64 << 10)]
    timeline = [alert_dict(r, c) for r, c in rows]
    return {"incident": incident_dict(inc), "findings": timeline, "offset": offset,
            "more": offset + len(listed) < inc.distinct_findings,
            "tree": process_tree([r for r, _ in rows]).to_dict()}


def raw_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=True)


HOUR_NS = 3600 * 10**9
CHART_W, CHART_H = 720, 160  # the dashboard's findings chart (SVG user units)


def dashboard(store: SqlStore, incidents: Incidents, hours: int = 24, now_ns: int = 0) -> dict[str, Any]:
    """Findings per hour by priority over the last ``hours`` hours (each finding in the hour it
    happened, repeats counted: migration 7's finding_hours), top rules and images of that time,
    incidents by status and the most recent open ones."""
    last = (now_ns or time.time_ns()) // HOUR_NS
    first = last - hours + 1
    buckets: dict[int, dict[str, int]] = {}
    by_rule: dict[str, int] = {}
    by_image: dict[str, int] = {}
    for hour, priority, rule, image, n in store.finding_hours(first):
        if hour > last:
            continue  # a sensor's clock ahead of ours: not in the last hours
        per = buckets.setdefault(hour, {})
        per[priority] = per.get(priority, 0) + n
        by_rule[rule] = by_rule.get(rule, 0) + n
        by_image[image] = by_image.get(image, 0) + n
    order = [p for p in PRIORITIES]
    series: list[dict[str, Any]] = []
    for h in range(first, last + 1):
        per = buckets.get(h, {})
        ranked = sorted(per.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
        series.append({"hour": rfc3339(h * HOUR_NS), "by_priority": dict(ranked), "total": sum(per.values())})
    peak = max((int(s["total"]) for s in series), default=0)
    return {"hours": hours, "series": series, "peak": peak, "chart": _chart(series, peak),
            "top_rules": _top(by_rule), "top_images": _top(by_image),
            "incidents": incidents.counts_by_status(),
            "open_incidents": [incident_dict(i) for i in incidents.list_page(status="open", limit=10).rows]}


def _top(counts: dict[str, int], n: int = 10) -> list[dict[str, Any]]:
    return [{"name": k, "findings": v} for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def _chart(series: list[dict[str, Any]], peak: int) -> list[dict[str, Any]]:
    """Stacked bars for an SVG (attributes only: the CSP allows no inline style): per hour, one
    rect per priority, most severe at the bottom."""
    if not peak:
        return []
    width = CHART_W / max(1, len(series))
    bars = []
    for i, s in enumerate(series):
        y = float(CHART_H)
        for priority, n in s["by_priority"].items():
            h = CHART_H * n / peak
            y -= h
            bars.append({"x": round(i * width + 1, 1), "y": round(y, 1), "w": round(width - 2, 1),
                         "h": round(h, 1), "priority": priority, "n": n, "hour": s["hour"]})
    return bars


class SensorRates:
    """Events/s of each sensor from its successive heartbeats' counters (what the store keeps of
    the latest heartbeat, taken whenever the console reads it), for heartbeats that carry no rate.
    Two readings of one heartbeat change nothing; a sensor that restarted (its counter went
    down) starts over."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}  # sensor id -> (heartbeat ns, events counter)
        self._rate: dict[str, float] = {}

    def rate(self, sensor_id: str, seen_ns: int, events: int | None) -> float | None:
        if events is None or not seen_ns:
            return None
        prev = self._last.get(sensor_id)
        if prev is None or seen_ns > prev[0]:
            self._last[sensor_id] = (seen_ns, events)
            if prev is not None and events >= prev[1]:
                self._rate[sensor_id] = (events - prev[1]) / ((seen_ns - prev[0]) / 1e9)
            elif prev is not None:
                self._rate.pop(sensor_id, None)
        return self._rate.get(sensor_id)


STALE_S = 30.0  # a connected sensor whose last heartbeat is older than this is reported stale
_DROPS = ("kernel_drops", "queue_drops", "ringbuf_drops", "drops")


def sensor_view(s: dict[str, Any], connected: bool, rates: SensorRates, now_ns: int) -> dict[str, Any]:
    """One sensor for the sensors page: health (ok, dropping, spooling, stale, down, collector
    gone), events/s (the heartbeat's, else from its counters), drops, spool and collector."""
    c = {str(k): int(v) for k, v in (s.get("counters") or {}).items() if isinstance(v, (int, float))}
    seen_ns = int(s.get("last_seen_ns") or 0)
    derived = rates.rate(str(s["sensor_id"]), seen_ns, c.get("events"))
    eps = float(c["events_per_s"]) if "events_per_s" in c else derived
    drops = sum(c.get(k, 0) for k in _DROPS)
    spool = c.get("spool_bytes")
    age_s = (now_ns - seen_ns) / 1e9 if seen_ns else None
    if not connected:
        health = "down"
    elif s.get("collector") and not s.get("collector_alive", True):
        health = "collector gone"
    elif age_s is not None and age_s > STALE_S:
        health = "stale"
    elif drops:
        health = "dropping"
    elif c.get("spool_unacked", 0):
        health = "spooling"
    else:
        health = "ok"
    return {"sensor_id": s["sensor_id"], "node": s.get("node") or "", "version": s.get("version") or "",
            "connected": connected, "health": health, "last_seen": rfc3339(seen_ns) if seen_ns else "",
            "age_s": None if age_s is None else round(age_s, 1),
            "events_per_s": None if eps is None else round(eps, 1),
            "events_per_s_source": "heartbeat" if "events_per_s" in c else "counters" if derived is not None else "",
            "events": c.get("events"), "drops": drops, "drops_by_kind": {k: c[k] for k in _DROPS if k in c},
            "spool_bytes": spool, "spool_unacked": c.get("spool_unacked"),
            "collector": s.get("collector") or "", "collector_alive": bool(s.get("collector_alive", True)),
            "counters": c}


MODES = ("learn", "alert", "enforce")
POLICY_ACTIONS = ("alert", "kill-process", "pause-container", "kill-container")
_ENFORCED = {"alert": "nothing is stopped (the image's action is alert)",
             "kill-process": "the process behind each finding is killed",
             "pause-container": "the container is paused", "kill-container": "the container is killed"}


def mode_effect(mode: str, action: str, bans: list[str] | tuple[str, ...] = ()) -> str:
    """What switching an image to ``mode`` with ``action`` does on its sensors (rules.policy's
    ImagePolicy.decide and the sensor daemon's respond, as they are)."""
    if mode == "learn":
        return ("learn: the sensors learn its behaviour; deviations from the baseline are learned, not "
                "alerted on; rule and policy hits are still alerted on; nothing is stopped")
    if mode == "alert":
        return ("alert: deviations from the learned baseline, rule and policy hits are alerted on; nothing "
                "is stopped; what enforce mode would do is counted as 'would have enforced'")
    text = (f"enforce: deviations from the baseline, rule and policy hits are alerted on and "
            f"{_ENFORCED.get(action, _ENFORCED['alert'])}")
    if bans:
        text += f"; banned processes ({', '.join(bans)}) are killed at exec"
    return text


def time_param(value: str, name: str) -> int:
    """A time filter in ns since the epoch: "" (none, 0), digits (ns), or an RFC 3339 / ISO time
    (UTC unless it names its zone; a browser's datetime-local input sends one without). Before
    1970 or past what 64-bit nanoseconds hold (2262) is refused."""
    value = value.strip()
    if not value:
        return 0
    if value.isdigit():
        ns = int(value)
    else:
        from datetime import UTC, datetime

        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            ns = int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1e9)
        except (ValueError, OverflowError):
            raise InvalidArgument(f"{name} {value[:40]!r}: give a time like 2026-12-03T16:00 (UTC) or "
                                  "nanoseconds since the epoch") from None
    if not 0 <= ns < 1 << 63:
        raise InvalidArgument(f"{name} {value[:40]!r} is out of range (1970 to 2262)")
    return ns
