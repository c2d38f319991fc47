"""Alert store: SQLite (WAL) by default, PostgreSQL (psycopg 3) for fleets — one schema, one SQL.

Ingest is idempotent per (sensor id, batch seq): a batch re-sent after a reconnect or a crash is
acknowledged but stores nothing twice. Identical findings (same sensor, container, rule, kind,
exe and args) aggregate into one alert with a count and first/last seen; the alert shows its
latest occurrence (pid, args, action, explanation). A newer occurrence of a resolved or
acknowledged alert reopens it (audited); a suppressed alert stays suppressed.

A batch holding a value the store cannot keep (an integer past 64 bits, a NUL or a lone surrogate
in text, an explanation that is not a JSON object, a finding over :data:`MAX_FINDING_BYTES`) is
refused whole with InvalidArgument before anything of it is written. Listings are pages bounded
by count and by bytes (:data:`PAGE_BYTES`, under gRPC's 4 MiB message limit), with a cursor to go
on. A SQLite file deleted or replaced under a running collector stops every write with
Unavailable instead of acknowledging into an unlinked file.

Several collectors may share one PostgreSQL (a fleet, :mod:`collector.fleet`): a batch is claimed
with ON CONFLICT, alert rows are locked in fingerprint order, reopenings read FOR UPDATE, and
migrations run under an advisory lock. A SQLite file serves one collector (:meth:`SqlStore.hold_alone`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol

from collector.errors import CollectorError, InvalidArgument, NotFound, Unavailable
from sensor.events import ACTIONS, PRIORITIES, RATE_ANOMALY, Event, Finding

MAX_FINDING_BYTES = 1 << 20  # a finding's stored form (JSON: args, output, explanation and the rest)
PAGE_BYTES = 3 << 20  # a listing page: under gRPC's default 4 MiB message limit, with room to spare
MAX_COMMENT_BYTES = 64 << 10  # an analyst's comment on an alert
UPDATE_STATUSES = ("acknowledged", "resolved", "suppressed")  # what an analyst may set an alert to
ALERT_STATUSES = ("open", *UPDATE_STATUSES)  # every status an alert can be in
_INT64 = 1 << 63
_RETRIES = 5  # an ingest that PostgreSQL aborted (deadlock, serialization) is tried again this often
_RETRY_STATES = frozenset({"40P01", "40001"})
_ROW_BYTES = 256  # a listed alert's fields besides its finding, comment, sensor id and node
_MAX_DEPTH = 32  # nesting of an explanation's values

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: initial schema
        "CREATE TABLE sensors (sensor_id TEXT PRIMARY KEY, node TEXT, version TEXT, "
        "last_seen_ns BIGINT, counters TEXT, connected INTEGER)",
        "CREATE TABLE batches (sensor_id TEXT NOT NULL, seq BIGINT NOT NULL, received_ns BIGINT, "
        "PRIMARY KEY (sensor_id, seq))",
        "CREATE TABLE alerts (id {autoid}, fingerprint TEXT UNIQUE NOT NULL, sensor_id TEXT, node TEXT, "
        "time_ns BIGINT, first_seen_ns BIGINT, last_seen_ns BIGINT, count BIGINT, status TEXT, "
        "comment TEXT, rule TEXT, priority TEXT, priority_rank INTEGER, kind TEXT, image TEXT, "
        "container_id TEXT, container_name TEXT, pid BIGINT, exe TEXT, action TEXT, output TEXT, "
        "finding TEXT)",
        "CREATE INDEX alerts_time ON alerts (last_seen_ns)",
        "CREATE INDEX alerts_image ON alerts (image)",
        "CREATE TABLE images (image TEXT PRIMARY KEY, mode TEXT, policy TEXT, updated_ns BIGINT)",
        "CREATE TABLE audit (id {autoid}, time_ns BIGINT, actor TEXT, action TEXT, target TEXT, "
        "reason TEXT, result TEXT, latency_ms DOUBLE PRECISION)",
        "CREATE TABLE snapshots (image_key TEXT NOT NULL, sensor_id TEXT NOT NULL, payload {blob}, "
        "time_ns BIGINT, PRIMARY KEY (image_key, sensor_id))",
    ),
    (  # 2: rule sets pushed to sensors
        "CREATE TABLE rulesets (name TEXT PRIMARY KEY, yaml TEXT, actor TEXT, updated_ns BIGINT)",
    ),
    (  # 3: who set an image's policy (images list shows operator vs. sensor lifecycle)
        "ALTER TABLE images ADD COLUMN actor TEXT",
    ),
    (  # 4: a fleet of collectors on one PostgreSQL (collector.fleet): who holds which sensor, and
       # the commands one collector leaves for the others (pushes, container actions and answers)
        "ALTER TABLE sensors ADD COLUMN collector TEXT",
        "CREATE TABLE collectors (collector_id TEXT PRIMARY KEY, address TEXT, started_ns BIGINT, "
        "last_seen_ns BIGINT)",
        "CREATE TABLE commands (id {autoid}, kind TEXT NOT NULL, target TEXT, except_sensor TEXT, "
        "payload {blob}, origin TEXT, actor TEXT, created_ns BIGINT, taken_by TEXT, declines INTEGER DEFAULT 0, "
        "result {blob}, done_ns BIGINT)",
    ),
    (  # 5: the Kubernetes workload of an alert's container (filters by namespace, pod, label)
        "ALTER TABLE alerts ADD COLUMN namespace TEXT",
        "ALTER TABLE alerts ADD COLUMN pod TEXT",
        "ALTER TABLE alerts ADD COLUMN labels TEXT",  # ",k=v,k2=v2," so that one label is one LIKE
        "CREATE INDEX alerts_namespace ON alerts (namespace)",
    ),
    (  # 6: every status change of an alert, with who, when and the comment (alerts show, audit --alert)
        "CREATE TABLE alert_history (id {autoid}, alert_id BIGINT NOT NULL, time_ns BIGINT, actor TEXT, "
        "from_status TEXT, to_status TEXT, comment TEXT)",
        "CREATE INDEX alert_history_alert ON alert_history (alert_id, id)",
    ),
    (  # 7: the console's history: each fleet baseline an image had (its items changed), and findings
       # per hour by priority, rule and image (the dashboard; filled from what alerts hold so far)
        "CREATE TABLE baseline_versions (id {autoid}, image_key TEXT NOT NULL, image TEXT, version INTEGER NOT NULL, "
        "digest TEXT NOT NULL, items BIGINT, time_ns BIGINT, payload {blob}, UNIQUE (image_key, version))",
        "CREATE TABLE finding_hours (hour BIGINT NOT NULL, priority TEXT NOT NULL, rule TEXT NOT NULL, "
        "image TEXT NOT NULL, count BIGINT NOT NULL, PRIMARY KEY (hour, priority, rule, image))",
        "INSERT INTO finding_hours (hour, priority, rule, image, count) SELECT last_seen_ns / 3600000000000, "
        "COALESCE(priority, ''), COALESCE(rule, ''), COALESCE(image, ''), SUM(count) FROM alerts "
        "GROUP BY last_seen_ns / 3600000000000, COALESCE(priority, ''), COALESCE(rule, ''), COALESCE(image, '')",
        "CREATE INDEX audit_time ON audit (time_ns)",
    ),
    (  # 8: the model parts a sensor says are not active yet (ModelSnapshot.not_active, JSON)
        "ALTER TABLE snapshots ADD COLUMN not_active TEXT",
    ),
)
MIGRATION_LOCK = 0x63677365  # "cgse": the PostgreSQL advisory lock two collectors starting together take
COLLECTOR_STALE_NS = 6 * 10**9  # a collector whose heartbeat is older (three missed) is taken for dead
NOTIFY_CHANNEL = "cgsentry_commands"


@dataclass
class AlertRow:
    id: int
    finding: Finding
    count: int
    first_seen_ns: int
    last_seen_ns: int
    status: str
    sensor_id: str
    node: str
    comment: str


@dataclass
class AlertPage:
    """One page of a listing; ``cursor`` is "" at the end, else what gets the next page."""

    rows: list[AlertRow]
    cursor: str


class Store(Protocol):
    def ingest(self, sensor_id: str, node: str, seq: int, findings: list[Finding]) -> bool: ...
    def list_alerts(self, image: str = "", since_ns: int = 0, min_priority: str = "",
                    status: str = "", limit: int = 100, after_id: int = 0, only_id: int = 0,
                    max_bytes: int = PAGE_BYTES, namespace: str = "", pod: str = "",
                    labels: tuple[str, ...] = (), **triage: Any) -> list[AlertRow]: ...
    def list_page(self, image: str = "", since_ns: int = 0, min_priority: str = "", status: str = "",
                  limit: int = 100, after_id: int = 0, only_id: int = 0, cursor: str = "",
                  max_bytes: int = PAGE_BYTES, namespace: str = "", pod: str = "",
                  labels: tuple[str, ...] = (), **triage: Any) -> AlertPage: ...
    def get_alert(self, alert_id: int, max_bytes: int = PAGE_BYTES) -> AlertRow: ...


def priority_rank(name: str) -> int:
    """0 for EMERGENCY ... 7 for DEBUG (any case); InvalidArgument naming the valid ones."""
    try:
        return PRIORITIES.index(name.upper())
    except ValueError:
        raise InvalidArgument(f"unknown priority {name!r}: use one of {', '.join(PRIORITIES)}") from None


def fingerprint(sensor_id: str, f: Finding) -> str:
    """Which alert a finding aggregates into: per sensor, container, rule and what it is about.

    A rate anomaly is about its container's window, not the process that happened to be the
    window's last event: with that in the key, bursts merged into or split from earlier alerts
    depending on which process ran last."""
    ev = f.event
    what = [] if f.kind == RATE_ANOMALY else [ev.exe, list(ev.args), ev.daddr, ev.dport, ev.sport, ev.path,
                                              ev.syscall]
    key = json.dumps([sensor_id, ev.container_id, f.rule, f.kind, *what], separators=(",", ":"))
    return hashlib.sha256(key.encode()).hexdigest()


def check_text(value: Any, where: str) -> None:
    """InvalidArgument unless ``value`` is text both backends can hold (no NUL: PostgreSQL's text
    refuses it; no lone surrogate: it has no UTF-8 form)."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{where}: expected text, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidArgument(f"{where}: text contains a NUL character, which the store cannot hold")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise InvalidArgument(f"{where}: text contains a lone surrogate (not valid UTF-8)") from None


def check_int(value: Any, where: str, unsigned: bool = False) -> None:
    """InvalidArgument unless ``value`` is an int that fits 64 bits (signed, or unsigned)."""
    if type(value) is bool or not isinstance(value, int):
        raise InvalidArgument(f"{where}: expected an integer, got {type(value).__name__}")
    low, high = (0, 2 * _INT64) if unsigned else (-_INT64, _INT64)
    if not low <= value < high:
        kind = "an unsigned" if unsigned else "a signed"
        raise InvalidArgument(f"{where}: {_int_text(value)} does not fit {kind} 64-bit integer")


def _int_text(value: int) -> str:
    return str(value) if value.bit_length() < 80 else f"a {value.bit_length()}-bit integer"


# Event fields by type; cgroup ids and syscall arguments are unsigned 64-bit (the proto's uint64).
_EVENT_CHECKS = tuple((f.name, str(f.type)) for f in dataclasses.fields(Event))
_UNSIGNED = frozenset({"cgroup_id", "sc_args"})
_EVENT_TEXT = tuple(n for n, kind in _EVENT_CHECKS if kind == "str")
_EVENT_INTS = tuple(n for n, kind in _EVENT_CHECKS if kind == "int" and n not in _UNSIGNED)
_FINDING_TEXT = ("kind", "rule", "priority", "output", "source", "action", "mode")


def check_finding(f: Finding, where: str = "finding") -> str:
    """The finding's stored form (JSON text), or InvalidArgument naming the field and why: a value
    the store cannot hold, or a finding over :data:`MAX_FINDING_BYTES`."""
    ev = f.event
    if not isinstance(ev, Event):
        raise InvalidArgument(f"{where}.event: expected an event, got {type(ev).__name__}")
    # the common case in one cheap pass (plain ASCII text, small ints); anything else is checked in full
    plain = all(type(v) is str and v.isascii() and "\x00" not in v for v in
                [*(getattr(ev, n) for n in _EVENT_TEXT), *ev.args, *ev.ancestry, *f.tags,
                 *(getattr(f, n) for n in _FINDING_TEXT)])
    small = all(type(v) is int and -_INT64 <= v < _INT64 for v in
                [*(getattr(ev, n) for n in _EVENT_INTS), f.time_ns])
    if not (plain and small and type(ev.cgroup_id) is int and 0 <= ev.cgroup_id < 2 * _INT64 and
            isinstance(ev.sc_args, tuple) and all(type(v) is int and 0 <= v < 2 * _INT64 for v in ev.sc_args)):
        _check_fields(f, where)
    for name in ("killed", "truncated"):
        _check_field(getattr(ev, name), "bool", f"{where}.event.{name}", False)
    _check_field(f.during_loss, "bool", f"{where}.during_loss", False)
    if not isinstance(f.explanation, Mapping):
        raise InvalidArgument(f"{where}.explanation: expected an object of named values, got "
                              f"{type(f.explanation).__name__}")
    _check_json(f.explanation, f"{where}.explanation", 0)
    text = json.dumps(f.to_dict(), default=str)
    if len(text) > MAX_FINDING_BYTES:
        raise InvalidArgument(f"{where} is {len(text):,} bytes stored, over the limit of {MAX_FINDING_BYTES:,} "
                              f"bytes (1 MiB) per finding; largest fields: {_largest(f)}")
    return text


def _check_fields(f: Finding, where: str) -> None:
    """Every typed field of ``f``, one by one: InvalidArgument naming the first bad one."""
    for name, kind in _EVENT_CHECKS:
        _check_field(getattr(f.event, name), kind, f"{where}.event.{name}", name in _UNSIGNED)
    for name in _FINDING_TEXT:
        check_text(getattr(f, name), f"{where}.{name}")
    check_int(f.time_ns, f"{where}.time_ns")
    _check_field(f.tags, "tuple[str, ...]", f"{where}.tags", False)


def _check_field(value: Any, kind: str, where: str, unsigned: bool) -> None:
    if kind == "str":
        check_text(value, where)
    elif kind == "int":
        check_int(value, where, unsigned)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise InvalidArgument(f"{where}: expected true or false, got {type(value).__name__}")
    else:  # tuple[str, ...] or tuple[int, ...]
        if not isinstance(value, (tuple, list)):
            raise InvalidArgument(f"{where}: expected a list, got {type(value).__name__}")
        item = "int" if "int" in kind else "str"
        for i, v in enumerate(value):
            _check_field(v, item, f"{where}[{i}]", unsigned)


def _check_json(value: Any, where: str, depth: int) -> None:
    """An explanation value: JSON's types, finite numbers, integers within 64 bits (signed or
    unsigned), text the store can hold, nested at most :data:`_MAX_DEPTH` deep. Other Python
    objects are stored as their text, as before."""
    if depth > _MAX_DEPTH:
        raise InvalidArgument(f"{where}: nested more than {_MAX_DEPTH} deep")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -_INT64 <= value < 2 * _INT64:
            raise InvalidArgument(f"{where}: {_int_text(value)} does not fit a 64-bit integer")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(f"{where}: {value} is not a finite number (JSON has no NaN or infinity)")
    elif isinstance(value, Mapping):
        for key, v in value.items():
            if not isinstance(key, str):
                raise InvalidArgument(f"{where}: a key of type {type(key).__name__} is not text")
            check_text(key, f"{where}: key")
            _check_json(v, f"{where}.{key[:64]}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]", depth + 1)
    else:
        check_text(value if isinstance(value, str) else str(value), where)


def _largest(f: Finding) -> str:
    """The three biggest fields of a finding's stored form, for an error message."""
    d = f.to_dict()
    sizes = {f"event.{k}": len(json.dumps(v, default=str)) for k, v in d.pop("event").items()}
    sizes.update({k: len(json.dumps(v, default=str)) for k, v in d.items()})
    top = sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
    return ", ".join(f"{k} {n:,} bytes" for k, n in top)


class SqlStore:
    """Both backends; ``dialect`` is "sqlite" or "postgres"."""

    def __init__(self, conn: Any, dialect: str, path: str = "") -> None:
        self.conn, self.dialect = conn, dialect
        # The SQLite file this connection holds open: checked before every commit (one stat), so
        # a file deleted or replaced under the collector stops writes instead of acknowledging
        # them into an unlinked inode. "" (PostgreSQL, in-memory): nothing to check.
        self.path, self._file_id = path, _file_id(path) if path else None
        # Every statement and close() hold this lock: one connection is shared by the server's
        # handler threads, and closing it while another thread is inside a query crashes sqlite3.
        self.lock = threading.RLock()
        self.closed = False
        # Called inside ingest's transaction with (sensor id, the batch's findings, their alert
        # fingerprints): incidents (collector/incidents.py) hook in here, so a batch and its
        # incidents commit together.
        self.ingest_hooks: list[Callable[[str, list[Finding], list[str]], None]] = []
        self.url = ""  # what open() was given: a fleet's listener opens its own connection with it
        self._lock_file: Any = None  # hold_alone()'s
        self._migrate()

    @classmethod
    def open(cls, url: str) -> SqlStore:
        conn: Any  # a psycopg or a sqlite3 connection: SqlStore uses what the two have in common
        if url.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg

                conn = psycopg.connect(url, autocommit=False)
            except ImportError as err:
                raise CollectorError("PostgreSQL store needs psycopg: pip install 'cgsentry[postgres]'",
                                     exit_code=69) from err
            except Exception as err:  # psycopg.OperationalError and friends
                raise CollectorError(f"cannot connect to PostgreSQL: {str(err).splitlines()[0]}",
                                     exit_code=69) from err
            store = cls(conn, "postgres")
            store.url = url
            return store
        path = url.removeprefix("sqlite://")
        try:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as err:
            raise CollectorError(f"cannot open database {path}: {err}", exit_code=73) from err
        on_disk = path and path != ":memory:" and not path.startswith("file:")
        return cls(conn, "sqlite", os.path.abspath(path) if on_disk else "")

    def check_file(self) -> None:
        """Unavailable if the SQLite file at the store's path is no longer the one it holds open."""
        if self._file_id is None:
            return
        why = "deleted"
        try:
            if _file_id(self.path) == self._file_id:
                return
            why = "replaced by another file"
        except FileNotFoundError:
            pass
        except OSError as err:
            why = f"unreadable ({err.strerror})"
        raise Unavailable(f"database file {self.path} was {why} while the collector ran: writes are refused, "
                          "not acknowledged into a file no one will read (restore it and restart the collector)")

    # -- plumbing ------------------------------------------------------------------------------
    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgres" else sql

    def _exec(self, sql: str, params: Iterable[Any] = ()) -> Any:
        """Run one statement; returns a cursor whose rows are already fetched (so no reads
        happen after the lock is released)."""
        with self.lock:
            if self.closed:
                raise Unavailable("the collector store is closed (shutting down)")
            cur = self.conn.cursor()
            cur.execute(self._q(sql), tuple(params))
            return _Rows(cur.fetchall() if cur.description else [])

    def _exec_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """One statement over many parameter rows (no results)."""
        if not rows:
            return
        with self.lock:
            if self.closed:
                raise Unavailable("the collector store is closed (shutting down)")
            self.conn.cursor().executemany(self._q(sql), rows)

    def _tx(self) -> _Tx:
        return _Tx(self)

    # Public forms of the plumbing, for modules that keep tables of their own in this database
    # (collector/incidents.py): same lock, same connection, same transaction rules.
    execute = _exec
    execute_many = _exec_many
    transaction = _tx

    def _migrate(self) -> None:
        """Bring the schema to :data:`MIGRATIONS`' version. On PostgreSQL under an advisory lock held
        to the commit: collectors starting together migrate one after the other, and the later
        ones find the schema done (even its first CREATE TABLE would race without it)."""
        with self._tx():
            if self.dialect == "postgres":
                self._exec("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            self._exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._exec("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            autoid = "INTEGER PRIMARY KEY AUTOINCREMENT" if self.dialect == "sqlite" else "BIGSERIAL PRIMARY KEY"
            blob = "BLOB" if self.dialect == "sqlite" else "BYTEA"
            for version, statements in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                for stmt in statements:
                    self._exec(stmt.format(autoid=autoid, blob=blob))
                self._exec("INSERT INTO schema_version (version) VALUES (?)", (version,))
        if current > len(MIGRATIONS):
            raise CollectorError(f"database schema version {current} is newer than this collector "
                                 f"({len(MIGRATIONS)}); upgrade cgsentry", exit_code=78)

    def schema_version(self) -> int:
        return int(self._exec("SELECT MAX(version) FROM schema_version").fetchone()[0])

    # -- ingest ----------------------------------------------------------------------------------
    def ingest(self, sensor_id: str, node: str, seq: int, findings: list[Finding]) -> bool:
        """Store a batch once. False if (sensor, seq) was already stored (a replay).

        InvalidArgument, before anything is written, if any part of the batch is a value the
        store cannot hold (see :func:`check_finding`); the store stays usable."""
        # Sorted by fingerprint (stable: one fingerprint's occurrences keep their order), so that
        # collectors ingesting overlapping batches at once lock alert rows in one order.
        params = self._batch_params(sensor_id, node, seq, findings)
        order = sorted(range(len(params)), key=lambda i: str(params[i][0]))
        rows, ordered = [params[i] for i in order], [findings[i] for i in order]  # the hooks pair them
        for attempt in range(_RETRIES):
            try:
                return self._ingest_once(sensor_id, seq, rows, ordered)
            except Exception as err:
                if attempt + 1 == _RETRIES or getattr(err, "sqlstate", None) not in _RETRY_STATES:
                    raise
        return False  # not reached

    def _ingest_once(self, sensor_id: str, seq: int, rows: list[tuple[Any, ...]], findings: list[Finding]) -> bool:
        now = time.time_ns()
        with self._tx():
            # ON CONFLICT, not a look first: two collectors given one batch at once (a sensor that
            # failed over while its old collector was still committing) store it once; the later
            # one waits for the first's commit, then finds the row and stores nothing.
            claimed = self._exec("INSERT INTO batches (sensor_id, seq, received_ns) VALUES (?, ?, ?) "
                                 "ON CONFLICT (sensor_id, seq) DO NOTHING RETURNING seq",
                                 (sensor_id, seq, now)).fetchone()
            if claimed is None:
                return False
            reopened = self._reopened(rows)
            # One executemany per batch: psycopg pipelines it (one round trip, not one per finding)
            self._exec_many(self._upsert_sql(), rows)
            self._exec_many("INSERT INTO audit (time_ns, actor, action, target, reason, result, latency_ms) "
                            "VALUES (?, ?, 'alert reopened', ?, ?, 'ok', 0)",
                            [(now, f"sensor:{sensor_id}", str(alert_id), f"recurred after it was {status}")
                             for alert_id, status in reopened])
            for hook in self.ingest_hooks:
                hook(sensor_id, findings, [r[0] for r in rows])
        return True

    def _reopened(self, rows: list[tuple[Any, ...]]) -> list[tuple[int, str]]:
        """(id, status) of the resolved or acknowledged alerts this batch reopens: those it has a
        newer occurrence of (the same rule as the upsert's CASE, evaluated before it runs)."""
        newest: dict[str, int] = {}
        for r in rows:  # fingerprint is params[0], the finding's time params[3]
            newest[r[0]] = max(newest.get(r[0], r[3]), r[3])
        keys, out = list(newest), []
        for i in range(0, len(keys), 500):  # SQLite allows ~32k parameters; stay well under
            chunk = keys[i:i + 500]
            out += [(int(a[0]), str(a[2])) for a in self._exec(
                f"SELECT id, fingerprint, status, last_seen_ns FROM alerts WHERE fingerprint IN "
                f"({', '.join('?' * len(chunk))}) AND status IN ('resolved', 'acknowledged') ORDER BY fingerprint"
                + self._for_update, chunk).fetchall()
                if newest[a[1]] > a[3]]
        return out

    @property
    def _for_update(self) -> str:
        """PostgreSQL: lock the rows read, so a collector ingesting the same alert at once waits
        and then sees it reopened already (one reopening, audited once). SQLite: one writer."""
        return " FOR UPDATE" if self.dialect == "postgres" else ""

    def _upsert_sql(self) -> str:
        greatest = "GREATEST" if self.dialect == "postgres" else "MAX"
        least = "LEAST" if self.dialect == "postgres" else "MIN"
        # Every SET expression sees the row as it was (both SQLite and PostgreSQL): "newer" is
        # this occurrence against the latest one stored, so a late replay of an older finding
        # neither reopens the alert nor replaces its latest details.
        newer = "excluded.last_seen_ns >= alerts.last_seen_ns"
        latest = ", ".join(f"{c} = CASE WHEN {newer} THEN excluded.{c} ELSE alerts.{c} END" for c in _LATEST)
        # The action column is the strongest action any occurrence took: an alert whose container
        # was paused once still says so after later occurrences that were only alerted on (the
        # finding itself, with its own action, is the latest occurrence's).
        stronger = f"{_action_rank('excluded.action')} > {_action_rank('alerts.action')}"
        return (
            "INSERT INTO alerts (fingerprint, sensor_id, node, time_ns, first_seen_ns, last_seen_ns, count, "
            "status, comment, rule, priority, priority_rank, kind, image, container_id, container_name, pid, "
            "exe, action, output, finding, namespace, pod, labels) VALUES (?, ?, ?, ?, ?, ?, 1, 'open', '', ?, ?, "
            "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET count = alerts.count + 1, "
            f"last_seen_ns = {greatest}(alerts.last_seen_ns, excluded.last_seen_ns), "
            f"first_seen_ns = {least}(alerts.first_seen_ns, excluded.first_seen_ns), "
            "status = CASE WHEN excluded.last_seen_ns > alerts.last_seen_ns AND alerts.status IN "
            f"('resolved', 'acknowledged') THEN 'open' ELSE alerts.status END, {latest}, "
            f"action = CASE WHEN {stronger} THEN excluded.action ELSE alerts.action END")

    @staticmethod
    def _batch_params(sensor_id: str, node: str, seq: int, findings: list[Finding]) -> list[tuple[Any, ...]]:
        """The alert upsert's parameters for every finding of a batch, once all were checked."""
        try:
            check_text(sensor_id, "sensor id")
            check_text(node, "node")
            if type(seq) is bool or not isinstance(seq, int) or not 0 <= seq < _INT64:
                raise InvalidArgument(f"sequence number {_int_text(seq) if isinstance(seq, int) else seq!r} "
                                      "is outside 0 to 2^63-1, which the store holds")
            return [SqlStore._alert_params(sensor_id, node, f, check_finding(f, f"findings[{i}]"))
                    for i, f in enumerate(findings)]
        except InvalidArgument as err:
            raise InvalidArgument(f"batch {seq} refused: {err}") from None

    @staticmethod
    def _alert_params(sensor_id: str, node: str, f: Finding, stored: str) -> tuple[Any, ...]:
        ev = f.event
        return (fingerprint(sensor_id, f), sensor_id, node, f.time_ns, f.time_ns, f.time_ns, f.rule, f.priority,
                PRIORITIES.index(f.priority) if f.priority in PRIORITIES else 7, f.kind, ev.image,
                ev.container_id, ev.container_name, ev.pid, ev.exe, f.action, f.output, stored, ev.namespace, ev.pod,
                "".join(f",{k}={v}" for k, v in ev.labels) + "," if ev.labels else "")

    # -- queries ---------------------------------------------------------------------------------
    def list_alerts(self, image: str = "", since_ns: int = 0, min_priority: str = "", status: str = "",
                    limit: int = 100, after_id: int = 0, only_id: int = 0,
                    max_bytes: int = PAGE_BYTES, namespace: str = "", pod: str = "",
                    labels: tuple[str, ...] = (), **triage: Any) -> list[AlertRow]:
        """The first page of :meth:`list_page` (at most ``limit`` rows and ``max_bytes``)."""
        return self.list_page(image, since_ns, min_priority, status, limit, after_id, only_id,
                              max_bytes=max_bytes, namespace=namespace, pod=pod, labels=labels, **triage).rows

    def list_page(self, image: str = "", since_ns: int = 0, min_priority: str = "", status: str = "",
                  limit: int = 100, after_id: int = 0, only_id: int = 0, cursor: str = "",
                  max_bytes: int = PAGE_BYTES, namespace: str = "", pod: str = "",
                  labels: tuple[str, ...] = (), **triage: Any) -> AlertPage:
        """Alerts, newest last-seen first (by id after ``after_id`` if given), filtered; a page
        ends at ``limit`` rows (1 to 10,000) or before its stored size passes ``max_bytes``
        (0: :data:`PAGE_BYTES`), whichever comes first. A page holds at least one row; a row
        bigger than the budget on its own comes with its bulky fields cut, visibly. Pass the
        page's ``cursor`` back, with the same filters, for the next page. ``since_ns`` 0 means
        no time filter (alerts before 1970 are listed too). ``triage``: the filters of
        :meth:`triage_filter` (container, rule, process, tag, statuses)."""
        max_bytes = max_bytes if max_bytes > 0 else PAGE_BYTES
        where, params = self._where(image, since_ns, min_priority, status, after_id, only_id, cursor)
        where, params = _workload_filter(where, params, namespace, pod, labels)
        where, params = self.triage_filter(where, params, **triage)
        order = "id ASC" if after_id else "last_seen_ns DESC, id DESC"
        size = " + ".join(self._octets(c) for c in ("finding", "comment", "sensor_id", "node"))
        with self.lock:  # sizes and rows from one connection without a write between them
            sizes = self._exec(f"SELECT id, last_seen_ns, {size} FROM alerts WHERE {where} ORDER BY {order} "
                               "LIMIT ?", (*params, max(1, min(limit, 10000)) + 1)).fetchall()
            chosen: list[tuple[int, int]] = []
            total = 0
            for alert_id, last_seen_ns, n in sizes[:max(1, min(limit, 10000))]:
                n = int(n or 0) + _ROW_BYTES
                if chosen and total + n > max_bytes:
                    break
                chosen.append((int(alert_id), int(last_seen_ns)))
                total += n
            rows = self._rows([a for a, _ in chosen], max_bytes)
        if len(chosen) == len(sizes):
            return AlertPage(rows, "")
        last_id, last_seen_ns = chosen[-1]
        return AlertPage(rows, f"id:{last_id}" if after_id else f"{last_seen_ns}:{last_id}")

    def _where(self, image: str, since_ns: int, min_priority: str, status: str, after_id: int, only_id: int,
               cursor: str) -> tuple[str, list[Any]]:
        where: list[str] = ["id > ?"]
        params: list[Any] = [after_id]
        value: int | str
        for cond, value in (("last_seen_ns >= ?", since_ns), ("id = ?", only_id), ("image = ?", image),
                            ("status = ?", status)):
            if value:
                where.append(cond)
                params.append(value)
        if min_priority:
            where.append("priority_rank <= ?")
            params.append(priority_rank(min_priority))
        if cursor:
            last_seen_ns, last_id = _parse_cursor(cursor, by_id=bool(after_id))
            if after_id:
                where.append("id > ?")
                params.append(last_id)
            else:
                where.append("(last_seen_ns < ? OR (last_seen_ns = ? AND id < ?))")
                params += [last_seen_ns, last_seen_ns, last_id]
        return " AND ".join(where), params

    def _octets(self, column: str) -> str:
        """SQL for a text column's size in bytes (0 for NULL)."""
        if self.dialect == "postgres":
            return f"COALESCE(OCTET_LENGTH({column}), 0)"
        return f"COALESCE(LENGTH(CAST({column} AS BLOB)), 0)"

    def _rows(self, ids: list[int], max_bytes: int) -> list[AlertRow]:
        """The alerts ``ids``, in that order, each cut to ``max_bytes`` if it is bigger."""
        if not ids:
            return []
        found = {int(r[0]): r for r in self._exec(f"SELECT {_COLS} FROM alerts WHERE id IN "
                                                 f"({', '.join('?' * len(ids))})", ids).fetchall()}
        return [_row(found[i], max_bytes) for i in ids if i in found]

    def get_alerts(self, alert_ids: list[int], max_bytes: int = PAGE_BYTES) -> list[AlertRow]:
        """The alerts ``alert_ids`` that exist, in that order, in one query, each cut to ``max_bytes``."""
        return self._rows(alert_ids, max_bytes)

    def get_alert(self, alert_id: int, max_bytes: int = PAGE_BYTES) -> AlertRow:
        """One alert; if its stored finding is over ``max_bytes`` its bulky fields are cut, visibly."""
        row = self._exec(f"SELECT {_COLS} FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if row is None:
            raise NotFound(f"alert {alert_id} not found")
        return _row(row, max_bytes)

    def update_alert(self, alert_id: int, status: str, comment: str, actor: str = "") -> AlertRow:
        """Set an alert's status (one of :data:`UPDATE_STATUSES`) and comment (kept in its history)."""
        if status not in UPDATE_STATUSES:
            raise InvalidArgument(f"alert status {status!r}: use one of {', '.join(UPDATE_STATUSES)}")
        return self.change_alert_status(alert_id, status, comment, actor)

    # -- alert history and triage filters (issue 23) ---------------------------------------------
    def change_alert_status(self, alert_id: int, status: str, comment: str, actor: str,
                            allowed_from: tuple[str, ...] = ()) -> AlertRow:
        """Set an alert's status (any of :data:`ALERT_STATUSES`, "open" too) and comment, and keep
        the change in its history (who, when, from and to, the comment) in the same transaction.
        ``allowed_from``: the statuses it may change from (checked under the row's lock; empty: any),
        else InvalidArgument naming the status it is in."""
        if status not in ALERT_STATUSES:
            raise InvalidArgument(f"alert status {status!r}: use one of {', '.join(ALERT_STATUSES)}")
        check_text(comment, "comment")
        check_text(actor, "actor")
        if len(comment.encode()) > MAX_COMMENT_BYTES:
            raise InvalidArgument(f"comment is {len(comment.encode()):,} bytes, over the limit of "
                                  f"{MAX_COMMENT_BYTES:,} bytes")
        with self._tx():
            row = self._exec("SELECT status FROM alerts WHERE id = ?" + self._for_update, (alert_id,)).fetchone()
            if row is None:
                raise NotFound(f"alert {alert_id} not found")
            if allowed_from and row[0] not in allowed_from:
                raise InvalidArgument(f"alert {alert_id} is {row[0]}: it cannot become {status} "
                                      f"(only from {', '.join(allowed_from)})")
            self._exec("UPDATE alerts SET status = ?, comment = ? WHERE id = ?", (status, comment, alert_id))
            self._exec("INSERT INTO alert_history (alert_id, time_ns, actor, from_status, to_status, comment) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (alert_id, time.time_ns(), actor, row[0], status, comment))
        return self.get_alert(alert_id)

    def alert_history(self, alert_id: int) -> list[dict[str, Any]]:
        """Every status change of an alert by an analyst, oldest first (recurrences that reopened
        it are in the audit, actor ``sensor:ID``)."""
        rows = self._exec("SELECT time_ns, actor, from_status, to_status, comment FROM alert_history "
                          "WHERE alert_id = ? ORDER BY id", (alert_id,)).fetchall()
        keys = ("time_ns", "actor", "from_status", "to_status", "comment")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def notifiable(self, sensor_id: str, findings: list[Finding]) -> list[Finding]:
        """``findings`` without those whose alert is suppressed (a suppressed alert notifies no one)."""
        if not findings:
            return findings
        prints = [fingerprint(sensor_id, f) for f in findings]
        quiet: set[str] = set()
        unique = sorted(set(prints))
        for i in range(0, len(unique), 500):
            chunk = unique[i:i + 500]
            quiet.update(str(r[0]) for r in self._exec(
                f"SELECT fingerprint FROM alerts WHERE status = 'suppressed' AND fingerprint IN "
                f"({', '.join('?' * len(chunk))})", chunk).fetchall())
        return [f for f, p in zip(findings, prints, strict=True) if p not in quiet]

    def triage_filter(self, where: str, params: list[Any], container: str = "", rule: str = "",
                      process: str = "", tag: str = "", statuses: tuple[str, ...] = ()) -> tuple[str, list[Any]]:
        """Add the analyst's filters: ``container`` a name, an id or id prefix, or NAMESPACE/POD;
        ``rule`` its name in any case; ``process`` an executable path or its base name; ``tag`` one
        tag of the alert; ``statuses`` any of them."""
        parts, params = [where], list(params)
        if container:
            ns, slash, pod = container.partition("/")
            if slash:
                parts.append("(namespace = ? AND pod = ?)")
                params += [ns, pod]
            else:
                parts.append("(container_name = ? OR container_id = ? OR container_id LIKE ? ESCAPE '!')")
                params += [container, container, _like_prefix(container.lower()) if len(container) >= 6 else container]
        if rule:
            parts.append("LOWER(rule) = LOWER(?)")
            params.append(rule)
        if process:
            parts.append("(exe = ? OR exe LIKE ? ESCAPE '!')")
            params += [process, "%/" + _like_prefix(process).removesuffix("%")]
        if tag:
            if self.dialect == "postgres":
                parts.append("(CAST(finding AS jsonb) -> 'tags') @> jsonb_build_array(CAST(? AS text))")
            else:
                parts.append("EXISTS (SELECT 1 FROM json_each(finding, '$.tags') WHERE value = ?)")
            params.append(tag)
        for status in statuses:
            if status not in ALERT_STATUSES:
                raise InvalidArgument(f"alert status {status!r}: use one of {', '.join(ALERT_STATUSES)}")
        if statuses:
            parts.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += list(statuses)
        return " AND ".join(parts), params

    def count_alerts(self, image: str = "") -> int:
        params: tuple[str, ...]
        sql, params = "SELECT COUNT(*) FROM alerts", ()
        if image:
            sql, params = sql + " WHERE image = ?", (image,)
        return int(self._exec(sql, params).fetchone()[0])

    def total_findings(self, sensor_prefix: str = "") -> int:
        """Findings stored, repeats included (the sum of alert counts), for sensors whose id
        starts with ``sensor_prefix``."""
        pattern = sensor_prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
        row = self._exec("SELECT COALESCE(SUM(count), 0) FROM alerts WHERE sensor_id LIKE ? ESCAPE '!'",
                         (pattern,)).fetchone()
        return int(row[0])

    # -- sensors, images, audit, snapshots ------------------------------------------------------
    def upsert_sensor(self, sensor_id: str, node: str, version: str, counters: dict[str, int],
                      connected: bool, collector: str = "") -> None:
        """The sensor's health, and which collector holds its link now (``collector``)."""
        with self._tx():
            self._exec("INSERT INTO sensors (sensor_id, node, version, last_seen_ns, counters, connected, collector) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sensor_id) DO UPDATE SET node = excluded.node, "
                       "version = excluded.version, last_seen_ns = excluded.last_seen_ns, "
                       "counters = excluded.counters, connected = excluded.connected, collector = excluded.collector",
                       (sensor_id, node, version, time.time_ns(), json.dumps(counters), int(connected), collector))

    def sensor_disconnected(self, sensor_id: str, collector: str = "") -> None:
        """The link to ``collector`` ended: the sensor is down, last seen now, and keeps its node,
        version and last counters (what it reported before it went away is what an analyst asks
        about). Not if it is held by another collector meanwhile (it failed over there first)."""
        with self._tx():
            self._exec("UPDATE sensors SET connected = 0, last_seen_ns = ? WHERE sensor_id = ? "
                       "AND COALESCE(collector, '') = ?", (time.time_ns(), sensor_id, collector))

    def sensors(self) -> list[dict[str, Any]]:
        """Every sensor; ``collector`` holds its link, ``collector_alive`` if that collector's own
        heartbeat is fresh (a collector killed outright leaves its sensors marked connected)."""
        fresh = time.time_ns() - COLLECTOR_STALE_NS
        rows = self._exec("SELECT s.sensor_id, s.node, s.version, s.last_seen_ns, s.counters, s.connected, "
                          "s.collector, c.last_seen_ns FROM sensors s LEFT JOIN collectors c ON "
                          "c.collector_id = s.collector ORDER BY s.sensor_id").fetchall()
        return [{"sensor_id": r[0], "node": r[1], "version": r[2], "last_seen_ns": r[3],
                 "counters": json.loads(r[4] or "{}"), "connected": bool(r[5]), "collector": r[6] or "",
                 "collector_alive": r[7] is not None and r[7] >= fresh} for r in rows]

    # -- a fleet of collectors (PostgreSQL; collector.fleet) --------------------------------------
    def collector_alive(self, collector_id: str, address: str, started_ns: int) -> None:
        """This collector's heartbeat: it is up and serving at ``address``."""
        with self._tx():
            self._exec("INSERT INTO collectors (collector_id, address, started_ns, last_seen_ns) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (collector_id) DO UPDATE SET address = excluded.address, "
                       "started_ns = excluded.started_ns, last_seen_ns = excluded.last_seen_ns",
                       (collector_id, address, started_ns, time.time_ns()))

    def collector_gone(self, collector_id: str) -> None:
        """A collector stopping: the others stop counting it at once (no wait for staleness)."""
        with self._tx():
            self._exec("DELETE FROM collectors WHERE collector_id = ?", (collector_id,))

    def collectors(self) -> list[dict[str, Any]]:
        """Collectors whose heartbeat is fresh (see :data:`COLLECTOR_STALE_NS`)."""
        rows = self._exec("SELECT collector_id, address, started_ns, last_seen_ns FROM collectors "
                          "WHERE last_seen_ns >= ? ORDER BY collector_id", (time.time_ns() - COLLECTOR_STALE_NS,))
        return [{"collector_id": r[0], "address": r[1], "started_ns": r[2], "last_seen_ns": r[3]}
                for r in rows.fetchall()]

    def add_command(self, kind: str, origin: str, payload: bytes, target: str = "", except_sensor: str = "",
                    actor: str = "") -> int:
        """Leave a command for the other collectors and wake them (NOTIFY, sent at the commit);
        returns its id. ``kind`` "push": a message for every sensor (but ``except_sensor``);
        "action": a container action for whichever collector holds container ``target``."""
        with self._tx():
            row = self._exec("INSERT INTO commands (kind, target, except_sensor, payload, origin, actor, created_ns) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                             (kind, target, except_sensor, payload, origin, actor, time.time_ns())).fetchone()
            self._notify(f"{kind}:{row[0]}")
        return int(row[0])

    def command_ids_after(self, after_id: int) -> list[int]:
        """Ids of the commands past ``after_id``, oldest first (cheap: no payloads)."""
        return [int(r[0]) for r in self._exec("SELECT id FROM commands WHERE id > ? ORDER BY id",
                                              (after_id,)).fetchall()]

    def command(self, command_id: int) -> dict[str, Any] | None:
        """One command with its payload; None if it was pruned meanwhile."""
        row = self._exec("SELECT id, kind, target, except_sensor, payload, origin, actor, taken_by FROM commands "
                         "WHERE id = ?", (command_id,)).fetchone()
        keys = ("id", "kind", "target", "except_sensor", "payload", "origin", "actor", "taken_by")
        return None if row is None else dict(zip(keys, row, strict=True))

    def last_command_id(self) -> int:
        return int(self._exec("SELECT COALESCE(MAX(id), 0) FROM commands").fetchone()[0])

    def take_command(self, command_id: int, collector_id: str) -> bool:
        """Claim an action for ``collector_id``; True for the one collector that got it."""
        with self._tx():
            return self._exec("UPDATE commands SET taken_by = ? WHERE id = ? AND taken_by IS NULL RETURNING id",
                              (collector_id, command_id)).fetchone() is not None

    def decline_command(self, command_id: int) -> None:
        """One more collector does not hold the action's container (its origin counts them)."""
        with self._tx():
            self._exec("UPDATE commands SET declines = declines + 1 WHERE id = ?", (command_id,))
            self._notify(f"declined:{command_id}")

    def finish_command(self, command_id: int, result: bytes) -> None:
        """The action's answer, for the collector that asked (woken by NOTIFY)."""
        with self._tx():
            self._exec("UPDATE commands SET result = ?, done_ns = ? WHERE id = ?", (result, time.time_ns(), command_id))
            self._notify(f"done:{command_id}")

    def command_state(self, command_id: int) -> tuple[str, int, bytes | None]:
        """(who took it or "", how many declined, the answer or None)."""
        row = self._exec("SELECT taken_by, declines, result FROM commands WHERE id = ?", (command_id,)).fetchone()
        if row is None:
            raise NotFound(f"command {command_id} not found")
        return row[0] or "", int(row[1] or 0), None if row[2] is None else bytes(row[2])

    def prune_commands(self, pushes_before_ns: int, actions_before_ns: int) -> None:
        """Forget pushes (sensors get the stored state when they connect) and actions (whose
        analysts stopped waiting) created before these times."""
        with self._tx():
            self._exec("DELETE FROM commands WHERE created_ns < ? AND (kind = 'push' OR created_ns < ?)",
                       (pushes_before_ns, actions_before_ns))

    def _notify(self, payload: str) -> None:
        if self.dialect == "postgres":
            self._exec("SELECT pg_notify(?, ?)", (NOTIFY_CHANNEL, payload))

    def hold_alone(self) -> None:
        """SQLite serves one collector: refuse (one line, why, what to do) if another collector
        process serves this file already. An exclusive flock on the file, held while the store is
        open (released by the kernel when the process dies, even by kill -9). PostgreSQL: nothing."""
        if self.dialect != "sqlite" or not self.path:
            return
        import fcntl

        self._lock_file = open(self.path, "rb")  # noqa: SIM115 - held open for the store's life
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise CollectorError(f"database {self.path} is served by another collector already: a SQLite file holds "
                                 "one collector; for several collectors use one PostgreSQL (--db postgresql://...)",
                                 exit_code=75) from None

    def set_image(self, image: str, mode: str, policy: dict[str, Any], actor: str = "") -> None:
        with self._tx():
            self._exec("INSERT INTO images (image, mode, policy, updated_ns, actor) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (image) DO UPDATE SET mode = excluded.mode, policy = excluded.policy, "
                       "updated_ns = excluded.updated_ns, actor = excluded.actor",
                       (image, mode, json.dumps(policy), time.time_ns(), actor))

    def images(self) -> list[dict[str, Any]]:
        """Images with an operator policy (``set_by`` the operator who last set it), then images
        only alerts name (mode ""). Images known only from model snapshots: :meth:`all_snapshots`."""
        known = {r[0]: {"image": r[0], "mode": r[1], "policy": json.loads(r[2] or "{}"), "set_by": r[3] or ""}
                 for r in self._exec("SELECT image, mode, policy, actor FROM images").fetchall()}
        for (image,) in self._exec("SELECT DISTINCT image FROM alerts").fetchall():
            known.setdefault(image, {"image": image, "mode": "", "policy": {}, "set_by": ""})
        return sorted(known.values(), key=lambda d: d["image"])

    def container_ids_named(self, name: str) -> list[str]:
        """Ids of containers alerts name ``name``, most recently seen first (a name can be reused)."""
        rows = self._exec("SELECT container_id, MAX(last_seen_ns) AS seen FROM alerts WHERE container_name = ? "
                          "GROUP BY container_id ORDER BY seen DESC", (name,)).fetchall()
        return [str(r[0]) for r in rows if r[0]]

    def set_ruleset(self, name: str, yaml_text: str, actor: str) -> None:
        """Store a pushed rule set; empty text removes it."""
        with self._tx():
            if not yaml_text.strip():
                self._exec("DELETE FROM rulesets WHERE name = ?", (name,))
                return
            self._exec("INSERT INTO rulesets (name, yaml, actor, updated_ns) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET yaml = excluded.yaml, actor = excluded.actor, "
                       "updated_ns = excluded.updated_ns", (name, yaml_text, actor, time.time_ns()))

    def rulesets(self) -> list[dict[str, Any]]:
        rows = self._exec("SELECT name, yaml, actor, updated_ns FROM rulesets ORDER BY name").fetchall()
        return [{"name": r[0], "yaml": r[1], "actor": r[2], "updated_ns": r[3]} for r in rows]

    def audit(self, actor: str, action: str, target: str, reason: str, result: str,
              latency_ms: float = 0.0) -> None:
        with self._tx():
            self._exec("INSERT INTO audit (time_ns, actor, action, target, reason, result, latency_ms) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", (time.time_ns(), actor, action, target, reason, result,
                                                        latency_ms))

    def last_audit_id(self) -> int:
        row = self._exec("SELECT MAX(id) FROM audit").fetchone()
        return int(row[0] or 0)

    def reopened_after(self, audit_id: int) -> list[tuple[int, int]]:
        """(audit id, alert id) of the alerts reopened since audit entry ``audit_id``, in order."""
        rows = self._exec("SELECT id, target FROM audit WHERE id > ? AND action = 'alert reopened' ORDER BY id",
                          (audit_id,)).fetchall()
        return [(int(r[0]), int(r[1])) for r in rows if str(r[1]).isdigit()]

    def audit_entries(self, limit: int = 100, alert_id: int = 0) -> list[dict[str, Any]]:
        """The newest audit entries; ``alert_id``: only those about that alert (its status changes,
        reopenings)."""
        where, params = ("WHERE target = ? AND action LIKE ? ", [str(alert_id), "alert %"]) if alert_id else ("", [])
        rows = self._exec("SELECT id, time_ns, actor, action, target, reason, result, latency_ms FROM audit "
                          f"{where}ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
        keys = ("id", "time_ns", "actor", "action", "target", "reason", "result", "latency_ms")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def put_snapshot(self, image_key: str, sensor_id: str, payload: bytes) -> None:
        with self._tx():
            self._exec("INSERT INTO snapshots (image_key, sensor_id, payload, time_ns) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (image_key, sensor_id) DO UPDATE SET payload = excluded.payload, "
                       "time_ns = excluded.time_ns", (image_key, sensor_id, payload, time.time_ns()))

    def all_snapshots(self) -> list[tuple[str, str, bytes]]:
        """(image key, sensor id, payload) of every stored model snapshot."""
        rows = self._exec("SELECT image_key, sensor_id, payload FROM snapshots ORDER BY image_key, sensor_id")
        return [(r[0], r[1], bytes(r[2])) for r in rows.fetchall()]

    def snapshots(self, image_key: str) -> list[tuple[str, bytes]]:
        rows = self._exec("SELECT sensor_id, payload FROM snapshots WHERE image_key = ? ORDER BY sensor_id",
                          (image_key,)).fetchall()
        return [(r[0], bytes(r[1])) for r in rows]

    # -- the console's history (migration 7): baseline versions, findings per hour, audit search ----
    def add_baseline_version(self, image_key: str, image: str, digest: str, items: int, payload: bytes,
                             keep: int = 100) -> int:
        """Store a fleet baseline of ``image_key`` as its next version unless its ``digest`` is the
        latest version's; returns the new version number, or 0 when nothing changed. Only the
        ``keep`` latest versions stay. Two collectors adding one at once: one of them wins."""
        with self._tx():
            row = self._exec("SELECT version, digest FROM baseline_versions WHERE image_key = ? "
                             "ORDER BY version DESC LIMIT 1", (image_key,)).fetchone()
            if row is not None and row[1] == digest:
                return 0
            version = int(row[0]) + 1 if row is not None else 1
            self._exec("INSERT INTO baseline_versions (image_key, image, version, digest, items, time_ns, payload) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (image_key, version) DO NOTHING",
                       (image_key, image, version, digest, items, time.time_ns(), payload))
            self._exec("DELETE FROM baseline_versions WHERE image_key = ? AND version <= ?",
                       (image_key, version - keep))
        return version

    def baseline_versions(self, image_key: str) -> list[dict[str, Any]]:
        """The stored versions of an image's fleet baseline, newest first (without payloads)."""
        rows = self._exec("SELECT version, image, digest, items, time_ns FROM baseline_versions WHERE image_key = ? "
                          "ORDER BY version DESC", (image_key,)).fetchall()
        return [{"version": int(r[0]), "image": r[1] or "", "digest": r[2], "items": int(r[3] or 0),
                 "time_ns": int(r[4] or 0)} for r in rows]

    def baseline_version(self, image_key: str, version: int) -> bytes | None:
        row = self._exec("SELECT payload FROM baseline_versions WHERE image_key = ? AND version = ?",
                         (image_key, version)).fetchone()
        return None if row is None else bytes(row[0])

    def count_finding_hours(self, sensor_id: str, findings: list[Finding], fingerprints: list[str]) -> None:
        """An ingest hook: add a stored batch's findings to their hour, priority, rule and image."""
        counts: dict[tuple[int, str, str, str], int] = {}
        for f in findings:
            key = (f.time_ns // 3_600_000_000_000, f.priority, f.rule, f.event.image)
            counts[key] = counts.get(key, 0) + 1
        self._exec_many("INSERT INTO finding_hours (hour, priority, rule, image, count) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (hour, priority, rule, image) DO UPDATE SET "
                        "count = finding_hours.count + excluded.count",
                        [(*k, n) for k, n in sorted(counts.items())])

    def finding_hours(self, since_hour: int) -> list[tuple[int, str, str, str, int]]:
        """(hour, priority, rule, image, findings) from ``since_hour`` (hours since the epoch) on."""
        rows = self._exec("SELECT hour, priority, rule, image, count FROM finding_hours WHERE hour >= ?",
                          (since_hour,)).fetchall()
        return [(int(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4])) for r in rows]

    def search_audit(self, actor: str = "", action: str = "", target: str = "", since_ns: int = 0,
                     until_ns: int = 0, before_id: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Audit entries, newest first: actor, action and target contain the given text (any case),
        time within [since_ns, until_ns), ids below ``before_id`` (the next page)."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        for column, text in (("actor", actor), ("action", action), ("target", target)):
            if text:
                where.append(f"LOWER(COALESCE({column}, '')) LIKE ? ESCAPE '!'")
                params.append("%" + text.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%")
        for cond, value in (("time_ns >= ?", since_ns), ("time_ns < ?", until_ns), ("id < ?", before_id)):
            if value:
                where.append(cond)
                params.append(value)
        rows = self._exec("SELECT id, time_ns, actor, action, target, reason, result, latency_ms FROM audit "
                          f"WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                          (*params, max(1, min(limit, 1000)))).fetchall()
        keys = ("id", "time_ns", "actor", "action", "target", "reason", "result", "latency_ms")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # -- model parts not active yet, image policies by selector (images), open alerts (metrics) ----
    def set_not_active(self, image_key: str, sensor_id: str, not_active: str) -> None:
        """What the sensor's latest snapshot of ``image_key`` says is not active yet (JSON)."""
        with self._tx():
            self._exec("UPDATE snapshots SET not_active = ? WHERE image_key = ? AND sensor_id = ?",
                       (not_active, image_key, sensor_id))

    def not_active(self) -> dict[tuple[str, str], str]:
        """(image key, sensor id) -> the JSON its sensor last sent ("" when it said nothing)."""
        rows = self._exec("SELECT image_key, sensor_id, not_active FROM snapshots").fetchall()
        return {(str(r[0]), str(r[1])): str(r[2] or "") for r in rows}

    def open_alerts_by_priority(self) -> dict[str, int]:
        """Priority -> how many alerts are open (the metrics' gauge)."""
        rows = self._exec("SELECT priority, COUNT(*) FROM alerts WHERE status = 'open' GROUP BY priority").fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def image_policy(self, image: str) -> dict[str, Any] | None:
        """The operator's stored mode, policy and actor for ``image`` (a selector key), or None."""
        r = self._exec("SELECT image, mode, policy, actor FROM images WHERE image = ?", (image,)).fetchone()
        return None if r is None else {"image": r[0], "mode": r[1] or "", "policy": json.loads(r[2] or "{}"),
                                       "set_by": r[3] or ""}

    def close(self) -> None:
        """Close once no statement is running (idempotent)."""
        with self.lock:
            if not self.closed:
                self.closed = True
                self.conn.close()
                if self._lock_file is not None:
                    self._lock_file.close()


class _Rows:
    """Rows fetched under the store lock, with the cursor methods callers use."""

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows


class _Tx:
    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def __enter__(self) -> None:
        self.store.lock.acquire()
        if self.store.closed:
            self.store.lock.release()
            raise Unavailable("the collector store is closed (shutting down)")
        if self.store.dialect == "sqlite":
            self.store.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        try:
            if exc_type is None:
                try:
                    self.store.check_file()
                except Unavailable:
                    self._rollback()
                    raise
                self.store.conn.commit() if self.store.dialect == "postgres" else self.store.conn.execute("COMMIT")
            else:
                self._rollback()
        finally:
            self.store.lock.release()

    def _rollback(self) -> None:
        self.store.conn.rollback() if self.store.dialect == "postgres" else self.store.conn.execute("ROLLBACK")


def _file_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


# Columns an alert takes from its latest occurrence (count and first/last seen aggregate).
def _workload_filter(where: str, params: list[Any], namespace: str, pod: str,
                     labels: tuple[str, ...]) -> tuple[str, list[Any]]:
    """Add the Kubernetes filters: namespace and pod exact, each ``key=value`` label present.
    A label without '=' is refused (InvalidArgument), never read as a pattern."""
    parts, params = [where], list(params)
    for column, value in (("namespace", namespace), ("pod", pod)):
        if value:
            parts.append(f"{column} = ?")
            params.append(value)
    for label in labels:
        key, eq, value = label.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"label {label!r}: give KEY=VALUE")
        escaped = f",{key}={value},".replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        parts.append("labels LIKE ? ESCAPE '\\'")
        params.append(f"%{escaped}%")
    return " AND ".join(parts), params


def _like_prefix(text: str) -> str:
    """A LIKE pattern (ESCAPE '!') for values starting with ``text``."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


_LATEST = ("time_ns", "node", "container_name", "pid", "priority", "priority_rank", "output", "finding")


def _action_rank(column: str) -> str:
    """SQL for an action's strength, weakest first as in sensor.events.ACTIONS."""
    return "CASE " + column + " " + " ".join(f"WHEN '{a}' THEN {i}" for i, a in enumerate(ACTIONS)) + " ELSE 0 END"
_COLS = ("id, finding, count, first_seen_ns, last_seen_ns, status, sensor_id, node, comment, action")


def _row(r: Any, max_bytes: int = PAGE_BYTES) -> AlertRow:
    finding = Finding.from_dict(json.loads(r[1]))
    finding = finding.replace(action=r[9] or finding.action)
    if len(r[1]) > max_bytes:  # stored before findings were limited, or a caller's small budget
        finding = _shrunk(finding, len(r[1]), max_bytes)
    return AlertRow(int(r[0]), finding, int(r[2]), int(r[3]), int(r[4]), r[5], r[6], r[7], r[8] or "")


def _parse_cursor(cursor: str, by_id: bool) -> tuple[int, int]:
    """(last_seen_ns, id) from a cursor :meth:`SqlStore.list_page` returned."""
    head, _, tail = cursor.partition(":")
    try:
        if by_id == (head == "id"):
            return (0 if by_id else int(head)), int(tail)
    except ValueError:
        pass
    raise InvalidArgument(f"malformed listing cursor {cursor[:80]!r}: pass back the cursor a page returned, "
                          "with the same filters")


_CUT_LISTS = ("args", "ancestry")


def shrink_row(row: AlertRow, size: int, budget: int) -> AlertRow:
    """``row`` (``size`` bytes as sent) cut to fit ``budget``: its finding as :meth:`SqlStore.get_alert`
    cuts one, and its comment, sensor id and node (a sensor's hello or an older collector may have
    stored any length there) cut to the same share, each cut saying so."""
    keep = max(budget // 256, 64)
    note = f"cut: the alert is {size:,} bytes, over the {budget:,}-byte message"

    def text(s: str) -> str:
        return s if len(s) <= keep else f"{s[:keep]}... [{len(s) - keep:,} characters {note}]"

    return dataclasses.replace(row, finding=_shrunk(row.finding, size, budget), comment=text(row.comment),
                               sensor_id=text(row.sensor_id), node=text(row.node or ""))


def _shrunk(f: Finding, size: int, budget: int) -> Finding:
    """``f`` (``size`` bytes stored) with every long text, list and the explanation cut to a share
    of ``budget``, each cut saying so."""
    keep = max(budget // 256, 64)  # ~25 fields of up to 4 UTF-8 bytes a character stay under budget
    note = f"cut: the finding is {size:,} bytes stored, over the {budget:,}-byte page"

    def text(s: str) -> str:
        return s if len(s) <= keep else f"{s[:keep]}... [{len(s) - keep:,} characters {note}]"

    def items(values: tuple[str, ...]) -> tuple[str, ...]:
        out: list[str] = []
        used = 0
        for v in values:
            if used + len(v) > keep:
                return (*out, f"... [{len(values) - len(out):,} more items {note}]")
            out.append(text(v))
            used += len(out[-1])
        return tuple(out)

    ev = f.event.replace(**{n: text(getattr(f.event, n)) for n in _EVENT_TEXT},
                         **{n: items(getattr(f.event, n)) for n in _CUT_LISTS})
    explanation = f.explanation
    if len(json.dumps(dict(explanation), default=str)) > keep:
        explanation = {"cut": f"explanation {note}"}
    return f.replace(event=ev, output=text(f.output), tags=items(f.tags), explanation=explanation,
                     **{n: text(getattr(f, n)) for n in ("kind", "rule", "priority", "source", "action", "mode")})
