"""The analyst API: alerts, images and their modes, container actions, sensors, audit, rule sets.

Every call is authenticated and authorised, and its CollectorError mapped to a status code, in
one place (:func:`_rpc`). Unary calls are plain functions the server runs on its thread pool;
the one stream, :meth:`AnalystServicer.WatchAlerts`, is a coroutine on the server's loop.
Container actions and pushes reach sensors through the :class:`Hub` of the sensor links.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from typing import Any, TypeVar

import grpc

from collector.argtypes import MAX_TIMEOUT_S
from collector.auth import AuthConfig, Identity, authenticate, require
from collector.convert import (
    STATUS_NAMES,
    accept_message,
    action_message,
    action_reply,
    alert_list,
    alert_to_pb,
    audit_list,
    image_info,
    image_list,
    pb,
    policy_message,
    rpc,
    rules_message,
    ruleset_list,
    ruleset_reply,
    sensor_list,
)
from collector.errors import (
    CollectorError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    status_code,
)
from collector.images import check_seen, image_view, known_images
from collector.sensorlink import Hub
from collector.store import PAGE_BYTES, AlertRow, priority_rank

log = logging.getLogger(__name__)
WATCH_POLL_S = 0.25
MIN_PAGE_BYTES = 64 << 10  # a listing page's smallest budget: a cut alert still fits in one
REFUSAL_AUDIT_S = 10.0  # a refused call is audited at most once per actor and call in this time
Req = TypeVar("Req")
Reply = TypeVar("Reply")


def _rpc(role: str) -> Callable[[Callable[[AnalystServicer, Req, grpc.ServicerContext, Identity], Reply]],
                                Callable[[AnalystServicer, Req, grpc.ServicerContext], Reply]]:
    """Authenticate + authorise, then map CollectorError to its status code (the one place)."""
    def wrap(fn: Callable[[AnalystServicer, Req, grpc.ServicerContext, Identity], Reply],
             ) -> Callable[[AnalystServicer, Req, grpc.ServicerContext], Reply]:
        @functools.wraps(fn)
        def handler(self: AnalystServicer, request: Req, context: grpc.ServicerContext) -> Reply:
            ident: Identity | None = None
            try:
                ident = authenticate(self.auth, context.invocation_metadata(), context.auth_context())
                require(ident, role)
                return fn(self, request, context, ident)
            except CollectorError as err:
                log.warning("%s refused or failed: %s", fn.__name__, err)
                if isinstance(err, (Unauthenticated, PermissionDenied)):
                    self.audit_refusal(ident.name if ident else "unauthenticated", fn.__name__, str(err))
                context.abort(status_code(err), str(err))
                raise  # not reached: abort raises
        return handler
    return wrap


class AnalystServicer(rpc.AnalystServicer):
    def __init__(self, hub: Hub, auth: AuthConfig, io: Executor) -> None:
        self.hub, self.auth, self.store, self.io = hub, auth, hub.store, io
        self._refusals_audited: dict[tuple[str, str], float] = {}  # (actor, call) -> monotonic time

    def audit_refusal(self, actor: str, call: str, reason: str) -> None:
        """Audit a call refused for who made it: once per actor and call per REFUSAL_AUDIT_S, so
        that a client hammering without a token cannot flood the audit table. Actors are the
        token store's names or "unauthenticated", so the map stays small."""
        now = time.monotonic()
        key = (actor, call)
        if now - self._refusals_audited.get(key, -REFUSAL_AUDIT_S) < REFUSAL_AUDIT_S:
            return
        self._refusals_audited[key] = now
        try:
            self.store.audit(actor, f"refused {call}", "", reason, "refused")
        except CollectorError as err:  # the refusal still goes out; the log says why it is not audited
            log.warning("cannot audit a refused %s: %s", call, err)

    @_rpc("viewer")
    def ListAlerts(self, req: pb.AlertQuery, ctx: Any, ident: Identity) -> pb.AlertList:  # noqa: N802
        """One page: at most ``limit`` alerts (default 100) and ``max_bytes`` (see :func:`page_bytes`),
        each alert itself bounded; ``next_cursor`` gets the next page, "" after the last."""
        budget = page_bytes(req.max_bytes)
        page = self.store.list_page(**self._filters(req), limit=req.limit or 100, cursor=req.cursor,
                                    max_bytes=budget)
        return alert_list(page.rows, page.cursor, budget)

    def _query(self, req: pb.AlertQuery, after_id: int = 0) -> list[AlertRow]:
        return self.store.list_alerts(**self._filters(req), limit=req.limit or 100, after_id=after_id)

    @staticmethod
    def _filters(req: pb.AlertQuery) -> dict[str, Any]:
        return {"image": req.image, "since_ns": req.since_ns, "min_priority": req.min_priority,
                "status": STATUS_NAMES.get(req.status, ""), "namespace": req.namespace, "pod": req.pod,
                "labels": tuple(req.labels), "container": req.container, "rule": req.rule,
                "process": req.process, "tag": req.tag,
                "statuses": tuple(STATUS_NAMES[s] for s in req.statuses if s in STATUS_NAMES)}

    @_rpc("viewer")
    def GetAlert(self, req: pb.AlertId, ctx: Any, ident: Identity) -> pb.Alert:  # noqa: N802
        """One alert with its history (every status change, who, when, the comment)."""
        return alert_to_pb(self.store.get_alert(req.id), history=self.store.alert_history(req.id))

    async def WatchAlerts(self, req: pb.AlertQuery,  # noqa: N802
                          ctx: grpc.aio.ServicerContext) -> AsyncIterator[pb.Alert]:
        """New alerts (and reopened ones) as they are stored: a coroutine on the server's loop,
        polling the store on the I/O pool, so a watching analyst holds no thread."""
        try:
            require(authenticate(self.auth, ctx.invocation_metadata(), ctx.auth_context()), "viewer")
            if req.min_priority:
                priority_rank(req.min_priority)  # refuse a bad query now, not inside the stream
        except CollectorError as err:
            await ctx.abort(status_code(err), str(err))
            return
        loop = asyncio.get_running_loop()
        cursor = await loop.run_in_executor(self.io, self._watch_start)
        while True:
            alerts, cursor = await loop.run_in_executor(self.io, self._watch_step, req, cursor)
            for alert in alerts:
                yield alert
            await asyncio.sleep(WATCH_POLL_S)

    def _watch_start(self) -> tuple[int, int]:
        rows = self.store.list_alerts(limit=1)
        return (rows[0].id if rows else 0), self.store.last_audit_id()

    def _watch_step(self, req: pb.AlertQuery, cursor: tuple[int, int]) -> tuple[list[pb.Alert], tuple[int, int]]:
        """The alerts stored (or reopened) since ``cursor`` (last alert id, last audit id)."""
        last, last_audit = cursor
        out: list[pb.Alert] = []
        for row in self._query(req, after_id=last):
            last = max(last, row.id)
            out.append(alert_to_pb(row))
        # a resolved or acknowledged alert that recurs is reopened under its old id: the
        # audit trail says which, and a watching analyst sees it again
        for audit_id, alert_id in self.store.reopened_after(last_audit):
            last_audit = audit_id
            if alert_id <= last:
                reopened = self.store.list_alerts(**self._filters(req), limit=1, only_id=alert_id)
                out.extend(alert_to_pb(row) for row in reopened)
        return out, (last, last_audit)

    @_rpc("responder")
    def UpdateAlert(self, req: pb.AlertUpdate, ctx: Any, ident: Identity) -> pb.Alert:  # noqa: N802
        status = STATUS_NAMES.get(req.status)
        if status is None:
            raise InvalidArgument("status must be open, acknowledged, resolved or suppressed")
        return alert_to_pb(update_alert(self.hub, ident, req.id, status, req.comment, expect=req.expect))

    @_rpc("viewer")
    def ListImages(self, req: pb.Empty, ctx: Any, ident: Identity) -> pb.ImageList:  # noqa: N802
        """Every image known from operator policies, sensor model snapshots and alerts."""
        return image_list(image_info(i["image"], i["mode"], i["policy"], i["set_by"],
                                     alerts=self.store.count_alerts(i["image"]), model=i["model"],
                                     workloads=i["workloads"])
                          for i in image_view(self.store))

    @_rpc("admin")
    def SetImageMode(self, req: pb.ImageModeRequest, ctx: Any, ident: Identity) -> pb.ImageInfo:  # noqa: N802
        return set_image_mode(self.hub, ident, req.image, req.mode, req.default_action,
                              list(req.banned_processes), req.require_seen, req.clear_bans, req.namespace,
                              list(req.labels))

    @_rpc("responder")
    def ContainerAction(self, req: pb.ContainerActionRequest, ctx: Any,  # noqa: N802
                        ident: Identity) -> pb.ActionReply:
        return action_reply(container_action(self.hub, ident, req.container_id, req.action, req.reason,
                                             req.timeout_s))

    @_rpc("viewer")
    def ListSensors(self, req: pb.Empty, ctx: Any, ident: Identity) -> pb.SensorList:  # noqa: N802
        rows = self.store.sensors()
        connected = self.hub.connected_ids(rows)
        if self.hub.fleet is None:  # one collector (SQLite): which one holds a sensor says nothing
            rows = [{**s, "collector": ""} for s in rows]
        return sensor_list(rows, connected=connected)

    @_rpc("viewer")
    def ListAudit(self, req: pb.AuditQuery, ctx: Any, ident: Identity) -> pb.AuditList:  # noqa: N802
        return audit_list(self.store.audit_entries(req.limit or 100, alert_id=req.alert_id))

    @_rpc("admin")
    def PushRules(self, req: pb.RuleSet, ctx: Any, ident: Identity) -> pb.RuleSetReply:  # noqa: N802
        """Validate a rule set after the default library and the other pushed sets (in the order
        sensors load them), store it, and send it to every connected sensor; empty YAML removes it."""
        from rules.cli import judge
        from rules.errors import RuleError
        from rules.pushed import NAME

        if not NAME.fullmatch(req.name):
            raise InvalidArgument(f"rule set name {req.name!r}: use letters, digits, '.', '_' and '-'")
        sets = {r["name"]: r["yaml"] for r in self.store.rulesets()}
        sets.pop(req.name, None)
        if req.yaml.strip():
            sets[req.name] = req.yaml
        try:  # the same judgement as `cgsentry-sensor rules check`: after the library, in load order
            loaded = judge([(f"pushed rule set {n}", sets[n]) for n in sorted(sets)], f"pushed rule set {req.name}")
        except RuleError as err:
            if err.__cause__ is not None and not isinstance(err.__cause__, RuleError):
                log.warning("PushRules %s: validating the rule set raised %r", req.name, err.__cause__)
            raise InvalidArgument(str(err)) from err
        self.store.set_ruleset(req.name, req.yaml, ident.name)
        self.hub.broadcast(rules_message(req.name, req.yaml))
        n = sum(r.source_file == f"pushed rule set {req.name}" for r in loaded.rules)
        self.store.audit(ident.name, "push rules" if req.yaml.strip() else "remove rules", req.name,
                         f"{n} rules", "ok")
        return ruleset_reply(req.name, n, len(self.hub.connected_ids()))

    @_rpc("viewer")
    def ListRuleSets(self, req: pb.Empty, ctx: Any, ident: Identity) -> pb.RuleSetList:  # noqa: N802
        return ruleset_list(self.store.rulesets())


# -- what an analyst does, for every front end (this API, the web console) ---------------------
# The alert state machine, one for every front end (CLI, API, web console), documented in the
# README ("Alert states"): a status -> the statuses an analyst may set it from. A recurrence reopens
# a resolved or acknowledged alert by itself (the store, audited as "alert reopened"); a suppressed
# alert stays suppressed until an analyst unsuppresses it (back to open).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "acknowledged": ("open",),
    "resolved": ("open", "acknowledged"),
    "suppressed": ("open", "acknowledged", "resolved"),
    "open": ("acknowledged", "resolved", "suppressed"),  # hand back, reopen, unsuppress
}
_VERBS = {"acknowledged": "acknowledge", "resolved": "resolve", "suppressed": "suppress", "open": "reopen"}


def update_alert(hub: Hub, ident: Identity, alert_id: int, status: str, comment: str, *,
                 expect: bool = False, skip_invalid: bool = False) -> AlertRow:
    """Change an alert's status along :data:`TRANSITIONS` (kept in its history and audited), else
    InvalidArgument in one line. Suppressing a model finding accepts its item into the image's
    baseline on every sensor; unsuppressing it (status "open" from "suppressed") asks them to
    forget the item again. ``expect`` (with "resolved"): a learnable rule's finding becomes an
    expected behaviour of its image the same way. ``skip_invalid``: an invalid transition returns
    the alert unchanged instead (bulk changes, such as an incident's alerts)."""
    if status not in TRANSITIONS:
        raise InvalidArgument(f"alert status {status!r}: use one of {', '.join(TRANSITIONS)}")
    row = hub.store.get_alert(alert_id)
    if row.status not in TRANSITIONS[status]:
        if skip_invalid:
            return row
        raise InvalidArgument(_refusal(row, status))
    if expect:
        _check_expectable(row, status)
    before = row.status
    row = hub.store.change_alert_status(alert_id, status, comment, ident.name, allowed_from=TRANSITIONS[status])
    action, pushed = f"alert {status}", 0
    if status == "suppressed":
        pushed = _teach_baseline(hub, row, ident, comment or f"alert {row.id} suppressed")
    elif status == "open":
        action = "alert unsuppressed" if before == "suppressed" else "alert reopened"
        if before == "suppressed":
            pushed = _teach_baseline(hub, row, ident, comment or f"alert {row.id} unsuppressed", forget=True)
        elif before == "resolved" and _resolved_as_expected(hub, alert_id):  # the rule item is forgotten
            pushed = _teach_baseline(hub, row, ident, comment or f"alert {row.id} reopened", forget=True, rule=True)
    elif expect:
        pushed = _teach_baseline(hub, row, ident, comment or f"alert {row.id} resolved as expected", rule=True)
        action = "alert resolved as expected"
    hub.store.audit(ident.name, action, str(alert_id), comment,
                    f"ok; baseline item {'forget ' if status == 'open' else ''}sent to {pushed} sensor(s)"
                    if pushed else "ok")
    return row


def _refusal(row: AlertRow, status: str) -> str:
    """One line: why ``row`` cannot become ``status``, and what can be done instead."""
    if row.status == status:
        return f"alert {row.id} is already {status}"
    hint = {"resolved": f"reopen it first (cgsentry alerts reopen {row.id})",
            "suppressed": f"unsuppress it first (cgsentry alerts unsuppress {row.id})"}.get(row.status, "")
    return f"alert {row.id} is {row.status}: cannot {_VERBS[status]} it" + (f"; {hint}" if hint else "")


def _resolved_as_expected(hub: Hub, alert_id: int) -> bool:
    """Whether the alert's latest resolution was ``--expect`` (its audit says so)."""
    for entry in hub.store.audit_entries(limit=50, alert_id=alert_id):
        if entry["action"] in ("alert resolved", "alert resolved as expected"):
            return bool(entry["action"] == "alert resolved as expected")
    return False


def _check_expectable(row: AlertRow, status: str) -> None:
    """InvalidArgument unless ``row`` is a learnable rule's finding being resolved."""
    f = row.finding
    if status != "resolved":
        raise InvalidArgument("expect goes with resolve: a finding resolved as expected behaviour of its image")
    if f.source != "rule":
        raise InvalidArgument(f"alert {row.id} is a model finding, not a rule's: suppress it to accept its item "
                              f"into the baseline (cgsentry alerts suppress {row.id})")
    if f.explanation.get("learnable") is False:
        raise InvalidArgument(f"rule {f.rule!r} is marked learnable: false (it must always fire): it cannot "
                              "become an expected behaviour of the image; resolve it without --expect")
    if not f.explanation.get("learnable") or not f.event.container_id:
        raise InvalidArgument(f"alert {row.id}: its finding does not say its rule is learnable (a host process, "
                              "or a sensor older than learnable rules): resolve it without --expect")


def _teach_baseline(hub: Hub, row: AlertRow, ident: Identity, reason: str, forget: bool = False,
                    rule: bool = False) -> int:
    """Send the finding's baseline item (a model finding's, or with ``rule`` the rule item: rule,
    executable, parent) to every connected sensor, to accept or with ``forget`` to remove; how many
    sensors it went to (0: a rule hit without ``rule``, which stays suppressed at the collector)."""
    f = row.finding
    if rule:
        from models.engine import rule_key

        dim, key = "rule", list(rule_key(f))
    else:
        dim = str(f.explanation.get("dimension") or "") if f.source == "model" else ""
        if not dim:
            return 0
        from models.profile import item_keys

        keys = [k for d, k in item_keys(f.event) if d == dim]
        if not keys:
            return 0
        key = list(keys[0])
    msg = accept_message(f, dim, key, ident.name, reason, forget=forget)
    n = len(hub.connected_ids())  # every collector's sensors get it
    hub.broadcast(msg)
    return n


def teaches_baseline(row: AlertRow) -> bool:
    """Whether suppressing ``row`` changes the sensors' baselines (a model finding with an item)."""
    return row.finding.source == "model" and bool(row.finding.explanation.get("dimension"))


def set_image_mode(hub: Hub, ident: Identity, image: str, mode: str = "", default_action: str = "",
                   banned: list[str] | None = None, require_seen: bool = False, clear_bans: bool = False,
                   namespace: str = "", labels: Sequence[str] = ()) -> pb.ImageInfo:
    """Validate, store, audit and broadcast an image's (or a workload's) mode and policy. What is
    not given is kept from the stored policy: mode "", default_action "", no ``banned`` (unless
    ``clear_bans``); a policy set for the first time starts from mode-less alert, no bans."""
    from collector.images import merged_policy

    if not image:
        raise InvalidArgument("an image (name, digest or glob) is required")
    if require_seen:
        check_seen(image, known_images(hub.store))
    key, mode, policy = merged_policy(hub.store, image, mode, default_action, banned, clear_bans, namespace, labels)
    hub.store.set_image(key, mode, policy, ident.name)
    hub.store.audit(ident.name, f"image mode {mode}", key, f"default action {policy['default_action']}"
                    f"; bans {','.join(policy['banned_processes']) or 'none'}", "ok")
    hub.broadcast(policy_message(key, mode, policy))
    return image_info(key, mode, policy, f"operator {ident.name}")


def container_action(hub: Hub, ident: Identity, container_id: str, action: pb.ActionKind, reason: str,
                     timeout_s: float = 0.0) -> pb.ActionResult:
    """Send a container action to the sensor that holds the container and wait for its answer
    (audited when it comes, under ``ident``); Unavailable if it does not come in time."""
    if action == pb.ACTION_KIND_UNSPECIFIED or not container_id:
        raise InvalidArgument("container_id and an action (pause, unpause, kill, stop) are required")
    wait_s = action_timeout_s(timeout_s)  # before anything reaches a sensor
    try:
        session, cid = hub.route(container_id)
    except NotFound:
        if hub.fleet is None:
            raise
        # not a sensor of this collector's: the one whose sensor sees it executes and audits it
        answer: pb.ActionResult = hub.fleet.action(container_id, action, ident.name, reason, wait_s)
        return answer
    request_id, pending = hub.request(session.sensor_id, ident.name)
    session.out.put(action_message(request_id, cid, action, ident.name, reason))
    if not pending.done.wait(wait_s):  # still pending: a late answer is audited under ident
        raise Unavailable(f"sensor {session.sensor_id} did not confirm the action in time")
    result: pb.ActionResult = pending.results[0]
    return result


def action_timeout_s(value: float) -> float:
    """A container action's wait: 0 means the default (10 s); NaN, negative, infinite or past
    MAX_TIMEOUT_S is refused (a NaN wait returns at once, a huge one holds the call for ever)."""
    if value == 0:
        return 10.0
    if not 0 < value <= MAX_TIMEOUT_S:  # false for NaN too
        raise InvalidArgument(f"timeout_s {value!r}: give more than 0 and at most {MAX_TIMEOUT_S:g} seconds "
                              "(0 for the default of 10)")
    return value


def page_bytes(requested: int) -> int:
    """A listing page's budget in bytes: 0 for the store's page (PAGE_BYTES, under gRPC's 4 MiB
    message limit), else ``requested`` within MIN_PAGE_BYTES..PAGE_BYTES; negative is refused."""
    if requested < 0:
        raise InvalidArgument(f"max_bytes {requested}: give 0 for the default page or a positive size")
    return min(max(requested, MIN_PAGE_BYTES), PAGE_BYTES) if requested else PAGE_BYTES
