"""The analyst web console: Starlette pages (Jinja2, autoescaped) and the same data as JSON under
``/api/``, on the collector's store and sensor links.

Every request resolves its caller (:mod:`collector.websession`) and checks the role its route
needs: viewers read, responders act on incidents, alerts and containers, admins change image
modes. Actions go through the same functions as the gRPC API (:mod:`collector.analyst`), so they
are validated, routed to the sensor and audited the same way. Everything a page prints passes
through :func:`sensor.text.visible` (control, escape and bidi characters shown, never obeyed) and
HTML escaping; no page has inline script (the CSP forbids it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from collector import baselines
from collector.analyst import REFUSAL_AUDIT_S, container_action, set_image_mode, update_alert
from collector.auth import Identity
from collector.consoleviews import (
    MODES,
    POLICY_ACTIONS,
    SensorRates,
    alert_dict,
    dashboard,
    incident_dict,
    incident_view,
    mode_effect,
    raw_json,
    sensor_view,
    time_param,
)
from collector.convert import action_kind
from collector.errors import CollectorError, InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from collector.images import image_view
from collector.incidents import STATUSES, Incidents
from collector.sensorlink import Hub
from collector.store import UPDATE_STATUSES
from collector.websession import COOKIE, HEADERS, LOGIN_COOKIE, Caller, Sessions, caller, check_csrf, require_role
from sensor.events import PRIORITIES, rfc3339
from sensor.text import visible

log = logging.getLogger(__name__)
WEB_DIR = Path(__file__).parent / "web"
PAGE = 50
MAX_ITEMS_SHOWN = 2000  # a baseline page's items per dimension (the JSON API has them all)
MODE_EFFECTS = {m: mode_effect(m, "alert") for m in MODES}
Handler = Callable[[Request, Caller], Any]


def _finalize(value: Any) -> Any:
    """Every printed value: text an attacker may control is shown with its controls visible."""
    if isinstance(value, Markup) or not isinstance(value, str):
        return "" if value is None else value
    return visible(value)


def templates() -> Environment:
    env = Environment(loader=FileSystemLoader(str(WEB_DIR / "templates")),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      finalize=_finalize)
    env.globals.update(priorities=PRIORITIES, statuses=STATUSES, mode_effects=MODE_EFFECTS,
                       policy_actions=POLICY_ACTIONS)
    env.filters["time"] = lambda ns: rfc3339(int(ns)) if ns else ""
    env.filters["items"] = lambda v: ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else "" if v is None else v
    return env


class Console:
    """The console's state (store, incidents, sensors, sessions) and its Starlette app."""

    def __init__(self, hub: Hub, incidents: Incidents, sessions: Sessions, secure_cookies: bool) -> None:
        self.hub, self.store, self.incidents, self.sessions = hub, hub.store, incidents, sessions
        self.secure = secure_cookies
        self.env = templates()
        self.rates = SensorRates()
        self._refusals: dict[tuple[str, str], float] = {}  # (actor, path) -> monotonic time audited
        self.app = Starlette(routes=self._routes(), exception_handlers={404: self._not_found})

    # -- plumbing ---------------------------------------------------------------------------------
    def _routes(self) -> list[Any]:
        r, v, rs, ad = self._route, "viewer", "responder", "admin"
        return [
            Route("/login", self.login_page, methods=["GET"]), Route("/login", self.login, methods=["POST"]),
            r("/logout", self.logout, v, post=True),
            r("/", self.dashboard_page, v), r("/incidents", self.incidents_page, v),
            r("/incidents/rows", self.incident_rows, v), r("/incidents/{id:int}", self.incident_page, v),
            r("/incidents/{id:int}/status", self.incident_status, rs, post=True),
            r("/alerts", self.alerts_page, v), r("/alerts/{id:int}/status", self.alert_status, rs, post=True),
            r("/containers/action", self.container_action, rs, post=True),
            r("/images", self.images_page, v), r("/images/mode", self.image_mode, ad, post=True),
            r("/images/baseline", self.baseline_page, v),
            r("/sensors", self.sensors_page, v), r("/sensors/rows", self.sensor_rows, v),
            r("/audit", self.audit_page, v),
            r("/api/incidents", self.api_incidents, v), r("/api/incidents/{id:int}", self.api_incident, v),
            r("/api/incidents/{id:int}/status", self.incident_status, rs, post=True),
            r("/api/alerts", self.api_alerts, v), r("/api/alerts/{id:int}", self.api_alert, v),
            r("/api/alerts/{id:int}/status", self.alert_status, rs, post=True),
            r("/api/containers/action", self.container_action, rs, post=True),
            r("/api/images", self.api_images, v), r("/api/images/mode", self.image_mode, ad, post=True),
            r("/api/images/baseline", self.api_baseline, v),
            r("/api/sensors", self.api_sensors, v), r("/api/audit", self.api_audit, v),
            r("/api/dashboard", self.api_dashboard, v),
            Mount("/static", StaticFiles(directory=str(WEB_DIR / "static")), name="static"),
        ]

    def _route(self, path: str, fn: Handler, role: str, post: bool = False) -> Route:
        async def endpoint(request: Request) -> Response:
            api = request.url.path.startswith("/api/")
            try:
                who = caller(self.sessions, dict(request.headers), dict(request.cookies))
                require_role(who, role)
                if post:
                    form = await _body(request)
                    check_csrf(who, str(form.get("csrf") or request.headers.get("x-csrf-token", "")),
                               request.headers.get("origin", ""), request.headers.get("host", ""))
                    request.state.form = form
                result = await run_in_threadpool(fn, request, who)
            except CollectorError as err:
                return self._error(request, err, api, locals().get("who"))
            return _secure(result if isinstance(result, Response) else JSONResponse(result))
        return Route(path, endpoint, methods=["POST"] if post else ["GET"])

    def _error(self, request: Request, err: CollectorError, api: bool, who: Caller | None) -> Response:
        code = {Unauthenticated: 401, PermissionDenied: 403, InvalidArgument: 400, NotFound: 404}.get(type(err), 503)
        if code == 403 and who is not None and request.method == "POST":
            self._audit_refusal(who.ident, f"refused web {request.url.path[:80]}", str(err))
        if api:
            return _secure(JSONResponse({"error": str(err)}, status_code=code))
        if code == 401:
            return _secure(RedirectResponse("/login", status_code=303))
        return self._html("error.html", request, None, status_code=code, error=str(err), code=code)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return _secure(JSONResponse({"error": "not found"}, status_code=404))

    def _html(self, name: str, request: Request, who: Caller | None, status_code: int = 200,
              **ctx: Any) -> Response:
        html = self.env.get_template(name).render(who=who, path=request.url.path, **ctx)
        return _secure(HTMLResponse(html, status_code=status_code))

    def _audit(self, ident: Identity, action: str, target: str, reason: str, result: str) -> None:
        try:
            self.store.audit(ident.name, action, target, reason, result)
        except CollectorError as err:
            log.warning("cannot audit %s: %s", action, err)

    def _audit_refusal(self, ident: Identity, action: str, reason: str) -> None:
        """Audit a refused state change once per actor and path per REFUSAL_AUDIT_S (as the gRPC
        API does), so that a session hammering a form it may not use cannot flood the audit."""
        now, key = time.monotonic(), (ident.name, action)
        if now - self._refusals.get(key, -REFUSAL_AUDIT_S) < REFUSAL_AUDIT_S:
            return
        if len(self._refusals) > 10_000:
            self._refusals.clear()
        self._refusals[key] = now
        self._audit(ident, action, "", reason, "refused")

    # -- login ------------------------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        import secrets

        token = secrets.token_urlsafe(24)
        resp = self._html("login.html", request, None, csrf=token, error="")
        resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=self.secure, path="/login")
        return resp

    async def login(self, request: Request) -> Response:
        form = await request.form()
        sent, expected = str(form.get("csrf") or ""), request.cookies.get(LOGIN_COOKIE, "")
        try:
            if not expected or sent != expected:
                raise PermissionDenied("the login form expired: reload the page and log in again")
            sid, _ = await run_in_threadpool(self.sessions.login, str(form.get("token") or ""))
        except CollectorError as err:
            code = 403 if isinstance(err, PermissionDenied) else 401
            return self._html("login.html", request, None, status_code=code, csrf=expected, error=str(err))
        resp = _secure(RedirectResponse("/incidents", status_code=303))
        resp.set_cookie(COOKIE, sid, httponly=True, samesite="strict", secure=self.secure, path="/")
        resp.delete_cookie(LOGIN_COOKIE, path="/login")
        return resp

    def logout(self, request: Request, who: Caller) -> Response:
        self.sessions.logout(request.cookies.get(COOKIE, ""))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # -- pages ------------------------------------------------------------------------------------
    def dashboard_page(self, request: Request, who: Caller) -> Response:
        return self._html("dashboard.html", request, who, d=dashboard(self.store, self.incidents))

    def _incident_query(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        return {"status": q.get("status", ""), "min_priority": q.get("priority", ""), "image": q.get("image", ""),
                "rule": q.get("rule", ""), "tag": q.get("tag", ""), "text": q.get("q", ""),
                "since_ns": _int(q.get("since_ns", "0"), "since_ns"), "cursor": q.get("cursor", "")}

    def incidents_page(self, request: Request, who: Caller) -> Response:
        page = self.incidents.list_page(**self._incident_query(request), limit=PAGE)
        return self._html("incidents.html", request, who, rows=page.rows, cursor=page.cursor,
                          q=dict(request.query_params))

    def incident_rows(self, request: Request, who: Caller) -> Response:
        """The table's rows alone, for the page's live update (polled, first page only)."""
        page = self.incidents.list_page(**self._incident_query(request), limit=PAGE)
        return self._html("incident_rows.html", request, who, rows=page.rows)

    def incident_page(self, request: Request, who: Caller) -> Response:
        view = incident_view(self.store, self.incidents, request.path_params["id"],
                             _int(request.query_params.get("offset", "0"), "offset"))
        return self._html("incident.html", request, who, v=view, raw=raw_json(view),
                          message=request.query_params.get("msg", ""))

    def alerts_page(self, request: Request, who: Caller) -> Response:
        q = request.query_params
        page = self.store.list_page(image=q.get("image", ""), min_priority=q.get("priority", ""),
                                    status=q.get("status", ""), limit=PAGE, cursor=q.get("cursor", ""),
                                    max_bytes=1 << 20, **_workload_query(q))
        return self._html("alerts.html", request, who, rows=[alert_dict(r) for r in page.rows],
                          cursor=page.cursor, q=dict(q))

    def images_page(self, request: Request, who: Caller) -> Response:
        return self._html("images.html", request, who, images=self._images(),
                          message=request.query_params.get("msg", ""))

    def baseline_page(self, request: Request, who: Caller) -> Response:
        return self._html("baseline.html", request, who, b=self._baseline(request), max_items=MAX_ITEMS_SHOWN)

    def _baseline(self, request: Request) -> dict[str, Any]:
        """``key``'s baseline: version ``v`` (0 or absent: now), or with ``a`` (and ``b``, default
        now) the diff of two versions."""
        q = request.query_params
        if "a" in q:
            return baselines.diff_view(self.store, q.get("key", ""), _int(q.get("a", "0") or "0", "a"),
                                       _int(q.get("b", "0") or "0", "b"))
        return baselines.view(self.store, q.get("key", ""), _int(q.get("v", "0") or "0", "v"))

    def sensors_page(self, request: Request, who: Caller) -> Response:
        return self._html("sensors.html", request, who, sensors=self._sensors())

    def sensor_rows(self, request: Request, who: Caller) -> Response:
        """The sensors table's rows alone, for the page's live update."""
        return self._html("sensor_rows.html", request, who, sensors=self._sensors())

    def audit_page(self, request: Request, who: Caller) -> Response:
        entries = self._audit_entries(request)
        return self._html("audit.html", request, who, entries=entries, q=dict(request.query_params),
                          older=entries[-1]["id"] if len(entries) >= self._audit_limit(request) else 0)

    # -- actions (forms and /api/ alike) ----------------------------------------------------------
    def incident_status(self, request: Request, who: Caller) -> Response | dict[str, Any]:
        form, incident_id = request.state.form, request.path_params["id"]
        status, comment = str(form.get("status", "")), str(form.get("comment", ""))
        inc = self.incidents.set_status(incident_id, status, comment)
        pushed = 0
        if status in UPDATE_STATUSES:  # its alerts follow (suppressed: model items into the baseline)
            for alert_id in dict.fromkeys(a for a, _, _, _ in self.incidents.findings(incident_id, limit=10_000)):
                before = self.hub.store.get_alert(alert_id).status
                row = update_alert(self.hub, who.ident, alert_id, status, comment or f"incident {incident_id} {status}",
                                   skip_invalid=True)  # an alert already in that state (or past it) stays
                pushed += row.status != before
        self._audit(who.ident, f"incident {status}", str(incident_id), comment, f"ok; {pushed} alert(s)")
        return self._done(request, f"/incidents/{incident_id}", f"incident {status}", incident_dict(inc))

    def alert_status(self, request: Request, who: Caller) -> Response | dict[str, Any]:
        form = request.state.form
        row = update_alert(self.hub, who.ident, request.path_params["id"], str(form.get("status", "")),
                           str(form.get("comment", "")))
        return self._done(request, "/alerts", f"alert {row.status}", alert_dict(row))

    def container_action(self, request: Request, who: Caller) -> Response | dict[str, Any]:
        form = request.state.form
        action, cid = str(form.get("action", "")), str(form.get("container_id", ""))
        if not request.url.path.startswith("/api/") and form.get("confirm") != "yes":
            raise InvalidArgument(f"tick 'confirm' to {action} container {cid}")
        kind = action_kind(action)
        result = container_action(self.hub, who.ident, cid, kind, str(form.get("reason", "") or "web console"),
                                  float(form.get("timeout_s", 0) or 0))
        back = f"/incidents/{_int(str(form.get('incident', '0')), 'incident')}" if form.get("incident") else "/"
        msg = f"{action} {cid}: {'done' if result.ok else 'failed: ' + result.error}"
        return self._done(request, back, msg, {"ok": result.ok, "error": result.error, "method": result.method,
                                               "latency_ms": result.latency_ms})

    def image_mode(self, request: Request, who: Caller) -> Response | dict[str, Any]:
        form = request.state.form
        image, mode, action = str(form.get("image", "")), str(form.get("mode", "")), str(form.get("action", ""))
        if not request.url.path.startswith("/api/") and form.get("confirm") != "yes":
            raise InvalidArgument(f"tick 'confirm' to switch {image} to {mode}")
        # the console's form sets the mode and action: the operator's banned processes stay
        current = next((i for i in self.store.images() if i["image"] == image), None)
        bans = list((current or {}).get("policy", {}).get("banned_processes", []))
        info = set_image_mode(self.hub, who.ident, image, mode, action, bans)
        effect = mode_effect(info.mode, action or "alert", bans)
        return self._done(request, "/images", f"{info.image}: mode {info.mode}. {effect}",
                          {"image": info.image, "mode": info.mode, "set_by": info.set_by, "effect": effect})

    def _done(self, request: Request, back: str, msg: str, data: dict[str, Any]) -> Response | dict[str, Any]:
        if request.url.path.startswith("/api/"):
            return data
        from urllib.parse import urlencode

        return RedirectResponse(f"{back}?{urlencode({'msg': msg})}", status_code=303)

    # -- JSON -------------------------------------------------------------------------------------
    def api_incidents(self, request: Request, who: Caller) -> dict[str, Any]:
        limit = _int(request.query_params.get("limit", str(PAGE)), "limit")
        page = self.incidents.list_page(**self._incident_query(request), limit=limit)
        return {"incidents": [incident_dict(i) for i in page.rows], "next_cursor": page.cursor}

    def api_incident(self, request: Request, who: Caller) -> dict[str, Any]:
        return incident_view(self.store, self.incidents, request.path_params["id"],
                             _int(request.query_params.get("offset", "0"), "offset"))

    def api_alerts(self, request: Request, who: Caller) -> dict[str, Any]:
        q = request.query_params
        page = self.store.list_page(image=q.get("image", ""), min_priority=q.get("priority", ""),
                                    status=q.get("status", ""), limit=_int(q.get("limit", str(PAGE)), "limit"),
                                    cursor=q.get("cursor", ""), **_workload_query(q))
        return {"alerts": [alert_dict(r) for r in page.rows], "next_cursor": page.cursor}

    def api_alert(self, request: Request, who: Caller) -> dict[str, Any]:
        row = self.store.get_alert(request.path_params["id"])
        return {**alert_dict(row), "incidents": self.incidents.of_alert(row.id)}

    def api_images(self, request: Request, who: Caller) -> dict[str, Any]:
        return {"images": self._images()}

    def api_baseline(self, request: Request, who: Caller) -> dict[str, Any]:
        return self._baseline(request)

    def api_sensors(self, request: Request, who: Caller) -> dict[str, Any]:
        return {"sensors": self._sensors()}

    def api_audit(self, request: Request, who: Caller) -> dict[str, Any]:
        return {"audit": self._audit_entries(request)}

    def api_dashboard(self, request: Request, who: Caller) -> dict[str, Any]:
        return dashboard(self.store, self.incidents)

    def _images(self) -> list[dict[str, Any]]:
        out = []
        for i in image_view(self.store):
            out.append({**i, "alerts": self.store.count_alerts(i["image"]),
                        "effect": mode_effect(i["mode"], i["action"], i["bans"]) if i["mode"] else "",
                        "effects": {f"{m}|{a}": mode_effect(m, a, i["bans"]) for m in MODES for a in POLICY_ACTIONS},
                        "policy": json.dumps(i["policy"], sort_keys=True)})
        return out

    def _sensors(self) -> list[dict[str, Any]]:
        with self.hub.lock:
            connected = set(self.hub.sessions)
        rows = self.store.sensors()
        if self.hub.fleet is not None:
            connected |= set(self.hub.connected_ids(rows))
        else:  # one collector: which one holds a sensor says nothing (as ListSensors)
            rows = [{**s, "collector": ""} for s in rows]
        now = time.time_ns()
        return [sensor_view(s, s["sensor_id"] in connected, self.rates, now) for s in rows]

    @staticmethod
    def _audit_limit(request: Request) -> int:
        return max(1, min(_int(request.query_params.get("limit", "200"), "limit"), 1000))

    def _audit_entries(self, request: Request) -> list[dict[str, Any]]:
        """Audit entries by actor, action, target (an alert or incident id, a container, an image)
        and time (since/until: RFC 3339, UTC when no zone is given, or nanoseconds), newest first;
        ``before`` an entry's id for the page after it."""
        q = request.query_params
        rows = self.store.search_audit(actor=q.get("actor", ""), action=q.get("action", ""),
                                       target=q.get("target", ""), since_ns=time_param(q.get("since", ""), "since"),
                                       until_ns=time_param(q.get("until", ""), "until"),
                                       before_id=_int(q.get("before", "0") or "0", "before"),
                                       limit=self._audit_limit(request))
        return [{**e, "time": rfc3339(e["time_ns"] or 0)} for e in rows]


async def _body(request: Request) -> dict[str, Any]:
    """A POST's fields: a JSON object (scripts) or a form (pages)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError as err:
            raise InvalidArgument(f"request body is not JSON: {err}") from None
        if not isinstance(data, dict):
            raise InvalidArgument("request body must be a JSON object")
        return data
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


def _int(value: str, name: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer, not {value[:40]!r}") from None
    if not 0 <= n < 1 << 63:
        raise InvalidArgument(f"{name} {n} is out of range")
    return n


def _secure(resp: Response) -> Response:
    resp.headers.update(HEADERS)
    return resp


def _workload_query(q: Any) -> dict[str, Any]:
    """The Kubernetes filters of an alerts query: namespace, pod, and each label=KEY=VALUE."""
    return {"namespace": q.get("namespace", ""), "pod": q.get("pod", ""), "labels": tuple(q.getlist("label"))}
