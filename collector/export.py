"""Alert exports: the JSON form of our alerts, Falco's output form (so existing alert routers
such as falcosidekick accept them), a webhook, and Prometheus counters."""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import urllib.request
from datetime import UTC, datetime
from typing import Any

from collector.store import AlertRow
from sensor.events import Finding

log = logging.getLogger(__name__)
_FALCO_PRIORITY = {"EMERGENCY": "Emergency", "ALERT": "Alert", "CRITICAL": "Critical", "ERROR": "Error",
                   "WARNING": "Warning", "NOTICE": "Notice", "INFORMATIONAL": "Informational",
                   "DEBUG": "Debug"}


def rfc3339(ns: int) -> str:
    dt = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}Z"


def _repo_tag(image: str) -> tuple[str, str]:
    head, _, tail = image.rpartition(":")
    return (head, tail) if head and "/" not in tail else (image, "")


def falco_json(f: Finding, hostname: str = "") -> dict[str, Any]:
    """Falco's JSON output shape: time, rule, priority, output, output_fields, source, tags, hostname."""
    ev = f.event
    repo, tag = _repo_tag(ev.image)
    fields = {"container.id": ev.container_id[:12], "container.name": ev.container_name,
              "container.image.repository": repo, "container.image.tag": tag, "proc.pid": ev.pid,
              "proc.ppid": ev.ppid, "proc.exe": ev.exe, "proc.name": ev.comm, "proc.pexe": ev.pexe,
              "proc.cmdline": " ".join((ev.comm, *ev.args[1:])), "user.uid": ev.uid, "evt.type": ev.kind,
              "cgsentry.kind": f.kind, "cgsentry.action": f.action, "cgsentry.mode": f.mode}
    if ev.kind in ("connect", "accept", "listen"):
        fields.update({"fd.sip": ev.saddr, "fd.sport": ev.sport, "fd.dip": ev.daddr, "fd.dport": ev.dport,
                       "fd.l4proto": ev.proto})
    if ev.path:
        fields["fd.name"] = ev.path
    return {"time": rfc3339(f.time_ns), "rule": f.rule, "priority": _FALCO_PRIORITY.get(f.priority, "Notice"),
            "output": f.output, "output_fields": fields, "source": "syscall", "tags": list(f.tags),
            "hostname": hostname or socket.gethostname()}


def alert_json(a: AlertRow) -> dict[str, Any]:
    """Our alert JSON (DESIGN.md §4 keys) with the Falco form under ``falco``."""
    f, ev = a.finding, a.finding.event
    return {"id": a.id, "time": rfc3339(a.last_seen_ns), "rule": f.rule, "kind": f.kind,
            "priority": f.priority, "output": f.output, "image": ev.image, "image_id": ev.image_id,
            "container_id": ev.container_id, "container_name": ev.container_name, "pid": ev.pid,
            "ppid": ev.ppid, "uid": ev.uid, "exe": ev.exe, "args": list(ev.args), "ancestry": list(ev.ancestry),
            "action": f.action, "mode": f.mode, "tags": list(f.tags), "count": a.count,
            "first_seen": rfc3339(a.first_seen_ns), "last_seen": rfc3339(a.last_seen_ns),
            "status": a.status, "comment": a.comment, "sensor_id": a.sensor_id, "node": a.node,
            "during_loss": f.during_loss, "explanation": dict(f.explanation),
            "falco": falco_json(f, a.node)}


class Exporters:
    """Fan-out of newly stored findings: webhook (bounded queue, never blocks ingest), metrics."""

    def __init__(self, webhook: str = "", metrics: bool = False) -> None:
        self.webhook = webhook
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=10000)
        self.dropped = 0
        self._counter: Any = None
        if metrics:
            from prometheus_client import Counter

            self._counter = Counter("cgsentry_findings_total", "Findings stored by the collector",
                                    ["priority", "kind", "action"])
        if webhook:
            threading.Thread(target=self._post_loop, name="cgsentry-webhook", daemon=True).start()

    def publish(self, sensor_id: str, node: str, findings: list[Finding]) -> None:
        for f in findings:
            if self._counter is not None:
                self._counter.labels(f.priority, f.kind, f.action).inc()
            if self.webhook:
                try:
                    self._queue.put_nowait(falco_json(f, node))
                except queue.Full:
                    self.dropped += 1

    def _post_loop(self) -> None:
        while True:
            body = json.dumps(self._queue.get()).encode()
            req = urllib.request.Request(self.webhook, body, {"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(req, timeout=5).close()  # noqa: S310 - operator-given URL
            except OSError as err:
                log.warning("webhook %s failed: %s", self.webhook, err)
