"""Alert exports: the JSON form of our alerts, Falco's output form (so existing alert routers
such as falcosidekick accept them), a webhook (collector/webhook.py), and Prometheus counters."""

from __future__ import annotations

import json
import socket
from typing import Any

from collector.store import AlertRow
from collector.webhook import WebhookSender
from rules.fields import evt_type, labels_text
from sensor.events import Finding, rfc3339

_FALCO_PRIORITY = {"EMERGENCY": "Emergency", "ALERT": "Alert", "CRITICAL": "Critical", "ERROR": "Error",
                   "WARNING": "Warning", "NOTICE": "Notice", "INFORMATIONAL": "Informational",
                   "DEBUG": "Debug"}


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
              "proc.cmdline": " ".join((ev.comm, *ev.args[1:])), "user.uid": ev.uid, "evt.type": evt_type(ev),
              "cgsentry.kind": f.kind, "cgsentry.action": f.action, "cgsentry.mode": f.mode}
    if ev.kind in ("connect", "accept", "listen"):
        fields.update({"fd.sip": ev.saddr, "fd.sport": ev.sport, "fd.dip": ev.daddr, "fd.dport": ev.dport,
                       "fd.l4proto": ev.proto})
    if ev.path:
        fields["fd.name"] = ev.path
    if ev.namespace or ev.pod:  # Falco's Kubernetes field names, so its rules and outputs carry over
        fields.update({"k8s.ns.name": ev.namespace, "k8s.pod.name": ev.pod,
                       "k8s.pod.labels": labels_text(ev.labels)})
    if ev.image_digest:
        fields["container.image.digest"] = ev.image_digest.rpartition("@")[2]
    return {"time": rfc3339(f.time_ns), "rule": f.rule, "priority": _FALCO_PRIORITY.get(f.priority, "Notice"),
            "output": f.output, "output_fields": fields, "source": "syscall", "tags": list(f.tags),
            "hostname": hostname or socket.gethostname()}


def alert_json(a: AlertRow) -> dict[str, Any]:
    """Our alert JSON (DESIGN.md §4 keys) with the Falco form under ``falco``."""
    f, ev = a.finding, a.finding.event
    return {"id": a.id, "time": rfc3339(a.last_seen_ns), "rule": f.rule, "kind": f.kind,
            "priority": f.priority, "output": f.output, "image": ev.image, "image_id": ev.image_id,
            "container_id": ev.container_id, "container_name": ev.container_name, "runtime": ev.runtime,
            "pod": ev.pod, "namespace": ev.namespace, "labels": dict(ev.labels), "image_digest": ev.image_digest,
            "pid": ev.pid,
            "ppid": ev.ppid, "uid": ev.uid, "exe": ev.exe, "args": list(ev.args), "ancestry": list(ev.ancestry),
            "action": f.action, "mode": f.mode, "tags": list(f.tags), "count": a.count,
            "first_seen": rfc3339(a.first_seen_ns), "last_seen": rfc3339(a.last_seen_ns),
            "status": a.status, "comment": a.comment, "sensor_id": a.sensor_id, "node": a.node,
            "during_loss": f.during_loss, "explanation": dict(f.explanation),
            "falco": falco_json(f, a.node)}


class Exporters:
    """Fan-out of newly stored findings: webhook (bounded queue, retried, never blocks ingest), metrics.

    ``registry`` is the Prometheus registry the counters go to; by default the process's own (what
    ``--metrics-port`` serves) when ``metrics`` is on, else a private one nobody serves (the
    webhook's counters are kept either way). A bad webhook URL is InvalidArgument here, at start."""

    def __init__(self, webhook: str = "", metrics: bool = False, *, registry: Any = None,
                 **webhook_options: Any) -> None:
        from prometheus_client import REGISTRY, CollectorRegistry, Counter

        if registry is None:
            registry = REGISTRY if metrics else CollectorRegistry()
        self._counter: Any = None
        if metrics:
            self._counter = Counter("cgsentry_findings_total", "Findings stored by the collector",
                                    ["priority", "kind", "action"], registry=registry)
        self.webhook = WebhookSender(webhook, registry, **webhook_options) if webhook else None

    def publish(self, sensor_id: str, node: str, findings: list[Finding]) -> None:
        for f in findings:
            if self._counter is not None:
                self._counter.labels(f.priority, f.kind, f.action).inc()
            if self.webhook is not None:
                self.webhook.put(json.dumps(falco_json(f, node)).encode())

    def close(self) -> None:
        """Stop the webhook worker, if any."""
        if self.webhook is not None:
            self.webhook.close()
