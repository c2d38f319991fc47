"""Alert exports: the JSON form of our alerts, Falco's output form (so existing alert routers
such as falcosidekick accept them), a webhook (collector/webhook.py), and Prometheus metrics:
findings stored, ingest latency, and gauges read from the store at each scrape (open alerts by
priority, connected sensors, each sensor's drops and spool)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from collector.store import AlertRow, SqlStore, fingerprint
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
            "ancestors": [{"pid": pid, "exe": exe, "args": list(args)} for pid, exe, args in f.ancestors],
            "ancestors_end": f.ancestors_end,
            "falco": falco_json(f, a.node)}


# seconds from a finding (the sensor's clock) to its being stored here (the collector's)
LATENCY_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_SENSOR_GAUGES = (("kernel_drops", "cgsentry_sensor_kernel_drops", "Events the sensor's kernel side dropped"),
                  ("queue_drops", "cgsentry_sensor_queue_drops", "Events the sensor's read queue dropped"),
                  ("spool_bytes", "cgsentry_sensor_spool_bytes", "Bytes of findings the sensor spools, unacked"),
                  ("spool_unacked", "cgsentry_sensor_spool_unacked", "Finding batches the sensor holds unacked"))


class StoreMetrics:
    """A Prometheus collector read at each scrape from the store (so every collector of a fleet
    on one PostgreSQL reports the same numbers): open alerts by priority, connected sensors, and
    each sensor's drops and spool as its last heartbeat said."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        alerts = GaugeMetricFamily("cgsentry_open_alerts", "Open alerts by priority", labels=["priority"])
        for priority, n in sorted(self.store.open_alerts_by_priority().items()):
            alerts.add_metric([priority], n)
        yield alerts
        sensors = self.store.sensors()
        # one collector (SQLite) keeps its sensors' flags itself; in a fleet (PostgreSQL) a sensor
        # counts while the collector holding it is alive (a killed one leaves its rows "connected")
        fleet = self.store.dialect == "postgres"
        yield GaugeMetricFamily("cgsentry_sensors_connected", "Sensors with a live link to a collector",
                                value=sum(bool(s["connected"] and (s["collector_alive"] or not fleet))
                                          for s in sensors))
        for key, name, doc in _SENSOR_GAUGES:
            family = GaugeMetricFamily(name, doc, labels=["sensor"])
            for s in sensors:
                family.add_metric([s["sensor_id"]], float(s["counters"].get(key, 0)))
            yield family


class Exporters:
    """Fan-out of newly stored findings: webhook (bounded queue, retried, never blocks ingest;
    first occurrence of an alert at once, its repeats in a periodic digest), metrics.

    ``registry`` is the Prometheus registry the metrics go to; by default the process's own (what
    ``--metrics-listen`` serves) when ``metrics`` is on, else a private one nobody serves (the
    webhook's counters are kept either way). ``store``, with metrics on, adds the gauges read from
    it (:class:`StoreMetrics`). A bad webhook URL or header is InvalidArgument here, at start."""

    def __init__(self, webhook: str = "", metrics: bool = False, *, registry: Any = None,
                 store: SqlStore | None = None, **webhook_options: Any) -> None:
        from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

        if registry is None:
            registry = REGISTRY if metrics else CollectorRegistry()
        self._counter: Any = None
        self._latency: Any = None
        if metrics:
            self._counter = Counter("cgsentry_findings_total", "Findings stored by the collector",
                                    ["priority", "kind", "action"], registry=registry)
            self._latency = Histogram("cgsentry_ingest_latency_seconds", "Seconds from a finding on its sensor to "
                                      "its being stored by the collector (clocks apart count too)",
                                      buckets=LATENCY_BUCKETS_S, registry=registry)
            if store is not None:
                registry.register(StoreMetrics(store))
        self.webhook = WebhookSender(webhook, registry, **webhook_options) if webhook else None

    def publish(self, sensor_id: str, node: str, findings: list[Finding],
                notifiable: Callable[[list[Finding]], list[Finding]] | None = None) -> None:
        """Count every finding in the metrics; send the webhook those ``notifiable`` keeps (all of
        them without it): a suppressed alert still counts, but notifies no one."""
        now_ns = time.time_ns()
        if self._counter is not None:
            for f in findings:
                self._counter.labels(f.priority, f.kind, f.action).inc()
                self._latency.observe(max(0.0, (now_ns - f.time_ns) / 1e9) if f.time_ns else 0.0)
        if self.webhook is not None:
            for f in notifiable(findings) if notifiable is not None else findings:
                self.webhook.notify(fingerprint(sensor_id, f), falco_json(f, node))

    def close(self) -> None:
        """Stop the webhook worker, if any."""
        if self.webhook is not None:
            self.webhook.close()
