"""Incidents: the alerts that belong together, so that one attack reads as one thing to triage.

A finding joins the incident of its *process tree*: the same sensor, the same container and the
same root of its ancestry (the container's top process its chain descends from), within
:data:`WINDOW_S` of that incident's findings. A reverse shell that trips four rules, or one
process connecting to 61 new ports, is one incident. An incident never hides a finding: it lists
every distinct finding (each an alert, by fingerprint) with how often it occurred in the incident,
takes the highest priority and the strongest action of them, and has a status of its own
(open, acknowledged, resolved, suppressed). A resolved incident takes no new findings: the next
one of its tree starts a new incident.

The tables are this module's own (``incident_*``, versioned apart from the alert store's schema)
and are written inside the alert store's ingest transaction (:attr:`SqlStore.ingest_hooks`), so a
batch and its incidents commit together. ``incident_open`` holds one row per tree that a new
finding would join; under PostgreSQL that row is locked (``FOR UPDATE``), so collectors sharing
one database never open two incidents for one tree.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from collector.errors import CollectorError, InvalidArgument, NotFound
from collector.store import MAX_COMMENT_BYTES, SqlStore, check_text, priority_rank
from sensor.events import ACTIONS, PRIORITIES, Finding

WINDOW_S = 600.0  # a finding joins its tree's incident if within this of the incident's findings
STATUSES = ("open", "acknowledged", "resolved", "suppressed")
MAX_LIST_BYTES = 4096  # the rules/tags summary kept on an incident row (for filters); beyond: "..."
_CHUNK = 500

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE incidents (id {autoid}, tree_key TEXT NOT NULL, sensor_id TEXT, container_id TEXT, "
        "container_name TEXT, image TEXT, root_exe TEXT, first_seen_ns BIGINT, last_seen_ns BIGINT, "
        "count BIGINT, distinct_findings BIGINT, priority TEXT, priority_rank INTEGER, action TEXT, "
        "status TEXT, comment TEXT, updated_ns BIGINT, rules TEXT, tags TEXT)",
        "CREATE INDEX incidents_seen ON incidents (last_seen_ns, id)",
        "CREATE INDEX incidents_status_seen ON incidents (status, last_seen_ns, id)",
        "CREATE TABLE incident_open (tree_key TEXT PRIMARY KEY, incident_id BIGINT NOT NULL)",
        "CREATE TABLE incident_findings (incident_id BIGINT NOT NULL, alert_id BIGINT NOT NULL, count BIGINT, "
        "first_seen_ns BIGINT, last_seen_ns BIGINT, PRIMARY KEY (incident_id, alert_id))",
        "CREATE INDEX incident_findings_alert ON incident_findings (alert_id)",
    ),
)
_COLS = ("id, sensor_id, container_id, container_name, image, root_exe, first_seen_ns, last_seen_ns, count, "
         "distinct_findings, priority, action, status, comment, updated_ns, rules, tags")


@dataclass
class Incident:
    id: int
    sensor_id: str
    container_id: str
    container_name: str
    image: str
    root_exe: str
    first_seen_ns: int
    last_seen_ns: int
    count: int  # findings, repeats included
    distinct_findings: int  # alerts listed
    priority: str
    action: str
    status: str
    comment: str
    updated_ns: int
    rules: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class IncidentPage:
    rows: list[Incident]
    cursor: str  # "" after the last page


def tree_root(f: Finding) -> str:
    """The top of the finding's process chain: its ancestry's farthest executable, else its own."""
    ev = f.event
    return ev.ancestry[-1] if ev.ancestry else ev.exe


def tree_key(sensor_id: str, f: Finding) -> str:
    ev = f.event
    return json.dumps([sensor_id, ev.container_id, tree_root(f)], separators=(",", ":"))


def _action_rank(action: str) -> int:
    return ACTIONS.index(action) if action in ACTIONS else 0


def _rank(priority: str) -> int:
    return PRIORITIES.index(priority) if priority in PRIORITIES else len(PRIORITIES) - 1


def _merge(old: str, new: list[str]) -> str:
    """Newline-separated distinct names, bounded by MAX_LIST_BYTES (filters see the first ones)."""
    items = [i for i in (old.split("\n") if old else []) if i]
    for n in new:
        if n and n not in items and "\n" not in n:
            items.append(n)
    text = "\n".join(items)
    return text if len(text) <= MAX_LIST_BYTES else text[:MAX_LIST_BYTES].rsplit("\n", 1)[0] + "\n..."


@dataclass
class _Open:
    id: int
    first: int
    last: int
    count: int = 0
    rank: int = 99
    action: str = "none"
    rules: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    per_alert: dict[int, list[int]] = field(default_factory=dict)  # alert id -> [count, first, last]
    new: bool = False


class Incidents:
    """Incidents over one :class:`SqlStore`; :meth:`attach` hooks them into its ingest."""

    def __init__(self, store: SqlStore, window_s: float = WINDOW_S) -> None:
        self.store, self.window_ns = store, int(window_s * 1e9)
        self._migrate()

    @classmethod
    def attach(cls, store: SqlStore, window_s: float = WINDOW_S) -> Incidents:
        inc = cls(store, window_s)
        store.ingest_hooks.append(inc.record)
        store.ingest_hooks.append(store.count_finding_hours)  # the dashboard's findings per hour
        return inc

    def _migrate(self) -> None:
        s = self.store
        autoid = "INTEGER PRIMARY KEY AUTOINCREMENT" if s.dialect == "sqlite" else "BIGSERIAL PRIMARY KEY"
        with s.transaction():
            if s.dialect == "postgres":  # collectors starting together migrate one at a time
                s.execute("SELECT pg_advisory_xact_lock(7319001)")
            s.execute("CREATE TABLE IF NOT EXISTS incident_schema (version INTEGER NOT NULL)")
            current = int(s.execute("SELECT MAX(version) FROM incident_schema").fetchone()[0] or 0)
            if current > len(MIGRATIONS):
                raise CollectorError(f"incident schema version {current} is newer than this collector "
                                     f"({len(MIGRATIONS)}); upgrade cgsentry", exit_code=78)
            for version, statements in enumerate(MIGRATIONS, start=1):
                if version > current:
                    for stmt in statements:
                        s.execute(stmt.format(autoid=autoid))
                    s.execute("INSERT INTO incident_schema (version) VALUES (?)", (version,))

    # -- ingest (inside the alert store's transaction) ------------------------------------------
    def record(self, sensor_id: str, findings: list[Finding], fingerprints: list[str]) -> None:
        """File a stored batch's findings into incidents (called by SqlStore.ingest in its transaction)."""
        if not findings:
            return
        ids = self._alert_ids(sorted(set(fingerprints)))
        groups: dict[str, list[tuple[Finding, int]]] = defaultdict(list)
        for f, fp in zip(findings, fingerprints, strict=True):
            groups[tree_key(sensor_id, f)].append((f, ids[fp]))
        for key in sorted(groups):  # a fixed order: two collectors lock trees in the same order
            self._record_tree(sensor_id, key, sorted(groups[key], key=lambda p: p[0].time_ns))

    def _alert_ids(self, fps: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in range(0, len(fps), _CHUNK):
            chunk = fps[i:i + _CHUNK]
            rows = self.store.execute(f"SELECT fingerprint, id FROM alerts WHERE fingerprint IN "
                                      f"({', '.join('?' * len(chunk))})", chunk).fetchall()
            out.update({str(r[0]): int(r[1]) for r in rows})
        return out

    def _current(self, key: str) -> _Open | None:
        s = self.store
        s.execute("INSERT INTO incident_open (tree_key, incident_id) VALUES (?, 0) ON CONFLICT (tree_key) DO NOTHING",
                  (key,))
        lock = " FOR UPDATE" if s.dialect == "postgres" else ""
        (incident_id,) = s.execute(f"SELECT incident_id FROM incident_open WHERE tree_key = ?{lock}",
                                   (key,)).fetchone()
        row = s.execute("SELECT id, first_seen_ns, last_seen_ns, status FROM incidents WHERE id = ?",
                        (incident_id,)).fetchone()
        if row is None or row[3] == "resolved":
            return None
        return _Open(int(row[0]), int(row[1]), int(row[2]))

    def _record_tree(self, sensor_id: str, key: str, items: list[tuple[Finding, int]]) -> None:
        cur = self._current(key)
        touched: list[_Open] = []
        for f, alert_id in items:
            t = f.time_ns
            if cur is None or not cur.first - self.window_ns <= t <= cur.last + self.window_ns:
                cur = self._new(sensor_id, key, f)
                touched.append(cur)
            elif not touched or touched[-1] is not cur:
                touched.append(cur)
            cur.first, cur.last, cur.count = min(cur.first, t), max(cur.last, t), cur.count + 1
            cur.rank = min(cur.rank, _rank(f.priority))
            if _action_rank(f.action) > _action_rank(cur.action):
                cur.action = f.action
            cur.rules.append(f.rule)
            cur.tags.extend(f.tags)
            c = cur.per_alert.setdefault(alert_id, [0, t, t])
            c[0], c[1], c[2] = c[0] + 1, min(c[1], t), max(c[2], t)
        for inc in {id(i): i for i in touched}.values():
            self._write(inc)
        newest = max((i for i in touched), key=lambda i: i.last, default=None)
        if newest is not None and newest.new:
            self.store.execute("UPDATE incident_open SET incident_id = ? WHERE tree_key = ?", (newest.id, key))

    def _new(self, sensor_id: str, key: str, f: Finding) -> _Open:
        ev, now = f.event, time.time_ns()
        row = self.store.execute(
            "INSERT INTO incidents (tree_key, sensor_id, container_id, container_name, image, root_exe, "
            "first_seen_ns, last_seen_ns, count, distinct_findings, priority, priority_rank, action, status, "
            "comment, updated_ns, rules, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?, 'none', 'open', '', ?, "
            "'', '') RETURNING id",
            (key, sensor_id, ev.container_id, ev.container_name, ev.image, tree_root(f), f.time_ns, f.time_ns,
             f.priority, _rank(f.priority), now)).fetchone()
        return _Open(int(row[0]), f.time_ns, f.time_ns, new=True)

    def _write(self, inc: _Open) -> None:
        s = self.store
        s.execute_many(
            "INSERT INTO incident_findings (incident_id, alert_id, count, first_seen_ns, last_seen_ns) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (incident_id, alert_id) DO UPDATE SET "
            "count = incident_findings.count + excluded.count, "
            f"first_seen_ns = {self._least}(incident_findings.first_seen_ns, excluded.first_seen_ns), "
            f"last_seen_ns = {self._greatest}(incident_findings.last_seen_ns, excluded.last_seen_ns)",
            [(inc.id, a, c[0], c[1], c[2]) for a, c in sorted(inc.per_alert.items())])
        old = s.execute("SELECT priority_rank, action, rules, tags, first_seen_ns, last_seen_ns FROM incidents "
                        "WHERE id = ?", (inc.id,)).fetchone()
        rank = min(int(old[0]), inc.rank)
        action = inc.action if _action_rank(inc.action) > _action_rank(old[1] or "none") else old[1]
        distinct = s.execute("SELECT COUNT(*) FROM incident_findings WHERE incident_id = ?", (inc.id,)).fetchone()[0]
        s.execute("UPDATE incidents SET count = count + ?, distinct_findings = ?, first_seen_ns = ?, "
                  "last_seen_ns = ?, priority_rank = ?, priority = ?, action = ?, rules = ?, tags = ?, "
                  "updated_ns = ? WHERE id = ?",
                  (inc.count, int(distinct), min(int(old[4]), inc.first), max(int(old[5]), inc.last), rank,
                   PRIORITIES[min(rank, len(PRIORITIES) - 1)], action, _merge(old[2] or "", inc.rules),
                   _merge(old[3] or "", inc.tags), time.time_ns(), inc.id))

    @property
    def _least(self) -> str:
        return "LEAST" if self.store.dialect == "postgres" else "MIN"

    @property
    def _greatest(self) -> str:
        return "GREATEST" if self.store.dialect == "postgres" else "MAX"

    # -- queries ----------------------------------------------------------------------------------
    def list_page(self, status: str = "", min_priority: str = "", image: str = "", rule: str = "", tag: str = "",
                  text: str = "", since_ns: int = 0, limit: int = 50, cursor: str = "") -> IncidentPage:
        """Incidents, most recently active first, filtered; ``cursor`` from the previous page."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if status:
            if status not in STATUSES:
                raise InvalidArgument(f"incident status {status!r}: use one of {', '.join(STATUSES)}")
            where.append("status = ?")
            params.append(status)
        if min_priority:
            where.append("priority_rank <= ?")
            params.append(priority_rank(min_priority))
        for column, value in (("image", image),):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if since_ns:
            where.append("last_seen_ns >= ?")
            params.append(since_ns)
        for column, value in (("rules", rule), ("tags", tag)):
            if value:
                where.append(f"(? || {column} || ?) LIKE ? ESCAPE '!'")
                params += ["\n", "\n", "%\n" + _like(value) + "\n%"]
        if text:
            where.append("(container_name || ' ' || container_id || ' ' || image || ' ' || root_exe || ' ' || "
                         "rules || ' ' || tags) LIKE ? ESCAPE '!'")
            params.append("%" + _like(text) + "%")
        if cursor:
            seen, last_id = _parse_cursor(cursor)
            where.append("(last_seen_ns < ? OR (last_seen_ns = ? AND id < ?))")
            params += [seen, seen, last_id]
        limit = max(1, min(limit, 1000))
        rows = self.store.execute(f"SELECT {_COLS} FROM incidents WHERE {' AND '.join(where)} "
                                  "ORDER BY last_seen_ns DESC, id DESC LIMIT ?", (*params, limit + 1)).fetchall()
        out = [_incident(r) for r in rows[:limit]]
        more = len(rows) > limit
        return IncidentPage(out, f"{out[-1].last_seen_ns}:{out[-1].id}" if more else "")

    def get(self, incident_id: int) -> Incident:
        row = self.store.execute(f"SELECT {_COLS} FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        if row is None:
            raise NotFound(f"incident {incident_id} not found")
        return _incident(row)

    def findings(self, incident_id: int, limit: int = 1000) -> list[tuple[int, int, int, int]]:
        """(alert id, count in this incident, first seen ns, last seen ns), earliest first."""
        rows = self.store.execute("SELECT alert_id, count, first_seen_ns, last_seen_ns FROM incident_findings "
                                  "WHERE incident_id = ? ORDER BY first_seen_ns, alert_id LIMIT ?",
                                  (incident_id, limit)).fetchall()
        return [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]

    def of_alert(self, alert_id: int) -> list[int]:
        rows = self.store.execute("SELECT incident_id FROM incident_findings WHERE alert_id = ? ORDER BY incident_id",
                                  (alert_id,)).fetchall()
        return [int(r[0]) for r in rows]

    def counts_by_status(self) -> dict[str, int]:
        rows = self.store.execute("SELECT status, COUNT(*) FROM incidents GROUP BY status").fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def set_status(self, incident_id: int, status: str, comment: str) -> Incident:
        """Set an incident's status and comment; a resolved incident takes no new findings."""
        if status not in STATUSES:
            raise InvalidArgument(f"incident status {status!r}: use one of {', '.join(STATUSES)}")
        check_text(comment, "comment")
        if len(comment.encode()) > MAX_COMMENT_BYTES:
            raise InvalidArgument(f"comment is {len(comment.encode()):,} bytes, over the limit of "
                                  f"{MAX_COMMENT_BYTES:,} bytes")
        with self.store.transaction():
            self.get(incident_id)
            self.store.execute("UPDATE incidents SET status = ?, comment = ?, updated_ns = ? WHERE id = ?",
                               (status, comment, time.time_ns(), incident_id))
            if status == "resolved":
                self.store.execute("UPDATE incident_open SET incident_id = 0 WHERE incident_id = ?", (incident_id,))
        return self.get(incident_id)


def _like(value: str) -> str:
    return value.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _parse_cursor(cursor: str) -> tuple[int, int]:
    head, _, tail = cursor.partition(":")
    try:
        return int(head), int(tail)
    except ValueError:
        raise InvalidArgument(f"malformed incident cursor {cursor[:80]!r}: pass back the cursor a page "
                              "returned") from None


def _incident(r: Any) -> Incident:
    return Incident(int(r[0]), r[1] or "", r[2] or "", r[3] or "", r[4] or "", r[5] or "", int(r[6]), int(r[7]),
                    int(r[8]), int(r[9]), r[10] or "", r[11] or "none", r[12] or "open", r[13] or "", int(r[14] or 0),
                    [x for x in (r[15] or "").split("\n") if x], [x for x in (r[16] or "").split("\n") if x])
