"""``cgsentry incidents list|show|ack|resolve|suppress|reopen``: the console's incidents in a
terminal, through its JSON API.

The CLI twin of the web console's incidents pages: ``GET /api/incidents`` and
``/api/incidents/ID`` (and ``POST /api/incidents/ID/status`` for a change: a bearer call needs no
CSRF token) on the collector's ``--web`` port with ``Authorization: Bearer TOKEN`` (the
top-level ``--token``; with ``--ca``, and ``--cert``/``--key`` for mTLS, over HTTPS). Where the
console listens is ``--web`` (HOST:PORT or a URL; default ``$CGSENTRY_WEB``, else
127.0.0.1:8443). Every line printed passes through :func:`sensor.text.visible`: command lines and
container names come from containers an attacker may control, and their escape sequences are
shown, never obeyed; ``--json`` escapes them by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from collector.argtypes import INT64_MAX, int_in
from collector.errors import CollectorError, InvalidArgument, NotFound, PermissionDenied, Unauthenticated, Unavailable
from sensor.errors import EX_USAGE
from sensor.events import PRIORITIES
from sensor.text import visible

DEFAULT_WEB = "127.0.0.1:8443"
STATUSES = ("open", "acknowledged", "resolved", "suppressed")
_ERRORS: dict[int, type[CollectorError]] = {400: InvalidArgument, 401: Unauthenticated, 403: PermissionDenied,
                                            404: NotFound}


class ConsoleApi:
    """GET requests to the console's ``/api/`` with the caller's bearer token."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.base = console_url(args.web, bool(args.ca))
        self.timeout_s = float(args.timeout)
        if not args.token:
            raise Unauthenticated("the console needs a token: pass --token or set CGSENTRY_TOKEN")
        self.headers = {"Authorization": f"Bearer {args.token}", "Accept": "application/json"}
        self.context = _tls(args) if self.base.startswith("https://") else None

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v not in ("", None, 0)})
        url = f"{self.base}{path}{'?' + query if query else ''}"
        return self._send(path, urllib.request.Request(url, headers=self.headers))  # noqa: S310 - http(s) only

    def post(self, path: str, form: dict[str, str]) -> dict[str, Any]:
        """A state change: the form urlencoded, as the console's own forms send it."""
        body = urllib.parse.urlencode(form).encode()
        headers = {**self.headers, "Content-Type": "application/x-www-form-urlencoded"}
        return self._send(path, urllib.request.Request(f"{self.base}{path}", data=body, headers=headers,  # noqa: S310
                                                       method="POST"))

    def _send(self, path: str, request: urllib.request.Request) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self.context) as resp:  # noqa: S310
                data = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            raise _http_error(err, self.base) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise Unavailable(f"cannot reach the console at {self.base}: {reason} (is the collector serving "
                              "--web there? set --web or CGSENTRY_WEB)") from None
        except ValueError:
            raise Unavailable(f"{self.base}{path}: the answer is not JSON (is --web the console's port?)") from None
        if not isinstance(data, dict):
            raise Unavailable(f"{self.base}{path}: unexpected answer")
        return data


def console_url(web: str, tls: bool) -> str:
    """``HOST:PORT`` (https with a CA, else http) or an http(s) URL -> the base URL, no trailing /."""
    text = web.strip().rstrip("/")
    if "://" not in text:
        text = f"{'https' if tls else 'http'}://{text}"
    parts = urllib.parse.urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.query:
        raise CollectorError(f"--web {web!r}: give HOST:PORT or http(s)://HOST:PORT", exit_code=EX_USAGE)
    return text


def _tls(args: argparse.Namespace) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=args.ca or None)
        if args.cert:
            ctx.load_cert_chain(args.cert, args.key or None)
    except (OSError, ssl.SSLError) as err:
        raise CollectorError(f"cannot load the TLS files (--ca/--cert/--key): {err}", exit_code=EX_USAGE) from None
    return ctx


def _http_error(err: urllib.error.HTTPError, base: str) -> CollectorError:
    try:
        message = str(json.loads(err.read()).get("error", ""))
    except (ValueError, AttributeError, OSError):
        message = ""
    kind = _ERRORS.get(err.code, Unavailable)
    return kind(message or f"the console at {base} answered HTTP {err.code}")  # printed through visible()


# -- commands ------------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from collector.client import parse_since

    api, cursor = ConsoleApi(args), ""
    rows: list[dict[str, Any]] = []
    query = {"status": args.status, "priority": args.priority, "image": args.image, "rule": args.rule,
             "tag": args.tag, "q": args.text, "since_ns": parse_since(args.since)}
    while len(rows) < args.limit:
        page = api.get("/api/incidents", {**query, "limit": min(args.limit - len(rows), 1000), "cursor": cursor})
        rows += page.get("incidents", [])
        cursor = str(page.get("next_cursor", ""))
        if not cursor:
            break
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'ID':>6} {'LAST SEEN':<20} {'PRIORITY':<9} {'STATUS':<12} {'CONTAINER':<16} {'DISTINCT':>8} "
          f"{'N':>6} {'ACTION':<16} RULES")
    for r in rows:
        more = f" (+{len(r['rules']) - 3})" if len(r["rules"]) > 3 else ""
        print(visible(f"{r['id']:>6} {r['last_seen'][:19]:<20} {r['priority']:<9} {r['status']:<12} "
                      f"{(r['container_name'] or r['container_id'][:12])[:16]:<16} {r['distinct_findings']:>8} "
                      f"{r['count']:>6} {r['action']:<16} {', '.join(r['rules'][:3])}{more}"))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    view = ConsoleApi(args).get(f"/api/incidents/{args.id}")
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    for line in incident_lines(view):
        print(visible(line))
    return 0


_VERBS = {"ack": "acknowledged", "resolve": "resolved", "suppress": "suppressed", "reopen": "open"}


def cmd_status(args: argparse.Namespace) -> int:
    """ack, resolve, suppress, reopen: the incident and its alerts (suppress teaches the sensors'
    baselines every model finding it holds: said first, confirmed on a terminal or --yes)."""
    from collector.alertcmds import _confirm

    status = _VERBS[args.incidents_command]
    api = ConsoleApi(args)
    if status == "suppressed" and not args.yes:
        _confirm(f"suppressing incident {args.id} suppresses each of its alerts; its model findings are "
                 "accepted into their image's baseline on every sensor (undo: cgsentry alerts unsuppress ID)")
    got = api.post(f"/api/incidents/{args.id}/status", {"status": status, "comment": args.comment or ""})
    if args.json:
        print(json.dumps(got, indent=2))
    else:
        print(visible(f"incident {got.get('id', args.id)}: {got.get('status', status)}"))
    return 0


def incident_lines(view: dict[str, Any]) -> list[str]:
    """``incidents show``: the incident, its process tree (offending branch marked) and its findings."""
    i = view["incident"]
    lines = [f"incident {i['id']}  {i['priority']}  [{i['status']}]  {i['distinct_findings']} distinct finding(s), "
             f"{i['count']} in all",
             f"  container {i['container_name']} ({i['container_id'][:12]})  image {i['image']}",
             f"  sensor    {i['sensor_id']}",
             f"  seen      first {i['first_seen']}  last {i['last_seen']}",
             f"  action    {i['action']}",
             f"  mitre     {', '.join(i['mitre']) or '-'}",
             f"  rules     {', '.join(i['rules']) or '-'}"]
    if i.get("comment"):
        lines.append(f"  comment   {i['comment']}")
    lines.append("process tree (* offending branch):")
    lines += _tree_lines(view["tree"].get("children", []), 1)
    lines.append("findings:")
    for f in view["findings"]:
        lines.append(f"  {f['first_seen'][:19]}  {f['priority']:<9} {f['rule']}  x{f['count_in_incident']}  "
                     f"alert {f['id']}  action {f['action']}")
        lines.append(f"      {f['exe']} {' '.join(f['args'][1:])}".rstrip())
        lines.append(f"      {f['output']}")
        if f.get("expected") or f.get("seen"):
            lines.append(f"      expected {_items(f.get('expected'))}  seen {_items(f.get('seen'))}")
    if view.get("more"):
        lines.append(f"  ... more findings: the console's /incidents/{i['id']}?offset={len(view['findings'])}")
    return lines


def _tree_lines(nodes: list[dict[str, Any]], depth: int) -> list[str]:
    out = []
    for n in nodes:
        mark = "*" if n.get("offending") else " "
        hits = f"  [{len(n['findings'])} finding(s)]" if n.get("findings") else ""
        pids = f"  pid {', '.join(map(str, n['pids']))}" if n.get("pids") else ""
        out.append(f"{mark} {'  ' * depth}{n['exe']}{pids}{hits}")
        out += _tree_lines(n.get("children", []), depth + 1)
    return out


def _items(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "-"
    return "-" if value in (None, "") else str(value)


# -- parser --------------------------------------------------------------------------------------
def add_commands(sub: Any) -> None:
    """``incidents list|show`` on the top-level parser's ``sub``."""
    p = sub.add_parser("incidents", help="list, show and triage incidents (the console's JSON API, --web)")
    ps = p.add_subparsers(dest="incidents_command", required=True)
    ls = ps.add_parser("list", help="incidents, most recently active first")
    ls.add_argument("--status", choices=STATUSES, default="")
    ls.add_argument("--priority", choices=PRIORITIES, default="", help="this priority or worse")
    ls.add_argument("--image", default="")
    ls.add_argument("--rule", default="")
    ls.add_argument("--tag", default="", help="e.g. T1059")
    ls.add_argument("-q", "--text", default="", help="free text (container, image, process, rules, tags)")
    ls.add_argument("--since", default="", help="10m, 2h, 1d, epoch seconds or RFC3339")
    ls.add_argument("--limit", type=int_in(1, 100_000), default=50)
    ls.set_defaults(func=cmd_list)
    sh = ps.add_parser("show", help="one incident: its process tree and findings")
    sh.add_argument("id", type=int_in(1, INT64_MAX))
    sh.set_defaults(func=cmd_show)
    changes = []
    for verb, status in _VERBS.items():
        x = ps.add_parser(verb, help=f"set the incident (and its alerts) {status}")
        x.add_argument("id", type=int_in(1, INT64_MAX))
        x.add_argument("--comment", help="why (kept with the incident and in the audit)")
        if verb == "suppress":
            x.add_argument("--yes", action="store_true", help="do not ask to confirm")
        x.set_defaults(func=cmd_status, yes=False)
        changes.append(x)
    for x in (ls, sh, *changes):
        x.add_argument("--web", default=os.environ.get("CGSENTRY_WEB", DEFAULT_WEB),
                       help="the console: HOST:PORT or URL (default $CGSENTRY_WEB, else %(default)s)")
        x.add_argument("--json", action="store_true", help="machine-readable output")
