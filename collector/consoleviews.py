"""What the console's pages show, as plain data (the same dicts the ``/api/`` JSON returns):
an incident with its timeline and process tree, the dashboard's counts. No HTML here: the
templates escape everything they print (:mod:`collector.console`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

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


def dashboard(store: SqlStore, incidents: Incidents, hours: int = 24) -> dict[str, Any]:
    """Findings per hour by priority (alerts by when last seen, repeats counted), top rules and
    images, incidents by status."""
    hour_ns = 3600 * 10**9
    since = (time.time_ns() // hour_ns - hours + 1) * hour_ns
    rows = store.execute("SELECT last_seen_ns / ? AS h, priority, SUM(count) FROM alerts WHERE last_seen_ns >= ? "
                         "GROUP BY h, priority", (hour_ns, since)).fetchall()
    buckets: dict[int, dict[str, int]] = {}
    for h, priority, n in rows:
        buckets.setdefault(int(h), {})[str(priority)] = int(n)
    series: list[dict[str, Any]] = [{"hour": rfc3339(h * hour_ns), "by_priority": buckets.get(h, {}),
               "total": sum(buckets.get(h, {}).values())} for h in range(since // hour_ns, since // hour_ns + hours)]
    top: dict[str, list[dict[str, Any]]] = {}
    for column in ("rule", "image"):
        top[column] = [{"name": r[0] or "", "findings": int(r[1])} for r in store.execute(
            f"SELECT {column}, SUM(count) AS n FROM alerts GROUP BY {column} ORDER BY n DESC LIMIT 10").fetchall()]
    return {"series": series, "peak": max((int(s["total"]) for s in series), default=0), "top_rules": top["rule"],
            "top_images": top["image"], "incidents": incidents.counts_by_status()}
