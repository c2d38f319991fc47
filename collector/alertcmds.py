"""``cgsentry alerts ...``: list (fitted to the terminal, filtered, paged, followed), show, and the
status changes along the alert state machine (collector.analyst.TRANSITIONS).

Exports (``--json``, ``--falco``) page through everything unless ``--limit`` stops them, and then
say so on stderr with the cursor that goes on; a table shows a page and names the cursor too.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from collector.argtypes import INT32_MAX, INT64_MAX, int_in, label_arg
from collector.client import Client, _common, parse_since
from collector.errors import CollectorError, from_rpc_error
from sensor.errors import EX_DATAERR, EX_USAGE

if TYPE_CHECKING:
    from collector import convert


def _alert_json(a: convert.pb.Alert) -> dict[str, Any]:
    """A protobuf Alert in the same JSON form the store's rows get (collector.export.alert_json);
    its Falco form carries the cgsentry id and count (``cgsentry.id``, ``cgsentry.count``)."""
    from collector import convert
    from collector.export import alert_json

    row = alert_json(convert.alert_from_pb(a))
    row["falco"]["output_fields"].update({"cgsentry.id": row["id"], "cgsentry.count": row["count"]})
    return row


DEFAULT_STATUSES = ("open", "acknowledged", "resolved")  # what `alerts list` shows without --status/--all
HUMAN_PAGE = 50  # alerts a human listing shows at once (the cursor gets the next page)
PAGE_REQUEST = 1000  # alerts asked for per request while an export pages through everything


def alert_statuses(args: argparse.Namespace) -> tuple[str, ...]:
    """``--status open,acknowledged`` (any of them), ``--all``, or the default view (suppressed
    alerts left out); an unknown status is a usage error naming the valid ones."""
    from collector.store import ALERT_STATUSES

    if not args.status:
        return () if args.all else DEFAULT_STATUSES
    wanted = tuple(dict.fromkeys(s.strip() for s in args.status.split(",") if s.strip()))
    bad = [s for s in wanted if s not in ALERT_STATUSES]
    if bad or not wanted:
        raise CollectorError(f"--status {args.status!r}: use one or more of {', '.join(ALERT_STATUSES)}, "
                             "comma-separated", exit_code=EX_USAGE)
    return wanted


def _alert_query(args: argparse.Namespace, since_ns: int, limit: int = 0, cursor: str = "") -> Any:
    from collector import convert

    return convert.alert_query(image=args.image or "", since_ns=since_ns, min_priority=args.priority or "",
                               limit=limit, cursor=cursor, namespace=args.namespace or "", pod=args.pod or "",
                               labels=tuple(args.label), container=args.container or "", rule=args.rule or "",
                               process=args.process or "", tag=args.tag or "", statuses=alert_statuses(args))


def _alerts(client: Client, args: argparse.Namespace, limit: int | None) -> tuple[list[dict[str, Any]], str]:
    """Alerts page by page (the collector bounds each reply by size and count; its ``next_cursor``
    gets the next page with the same filters), up to ``limit`` (None: all of them). Returns the
    rows and the cursor that goes on from the last one ("" when nothing is left)."""
    since_ns, cursor = parse_since(args.since), args.cursor  # one time for every page: the same filters
    rows: list[dict[str, Any]] = []
    while limit is None or len(rows) < limit:
        want = PAGE_REQUEST if limit is None else min(limit - len(rows), PAGE_REQUEST)
        page = client.call("ListAlerts", _alert_query(args, since_ns, want, cursor))
        rows += [_alert_json(a) for a in page.alerts]
        cursor = page.next_cursor
        if not cursor or not page.alerts:  # the last page (or a collector without cursors)
            return rows, ""
    return rows, cursor


def cmd_alerts_list(args: argparse.Namespace) -> int:
    import sys

    from collector.alertview import alert_table, terminal_columns, use_colour

    client = Client(args)
    if args.follow:
        return _follow(client, args)
    export = args.json or args.falco
    limit = args.limit if args.limit else None if export else HUMAN_PAGE
    rows, cursor = _alerts(client, args, limit)
    if args.falco:
        for r in rows:
            print(json.dumps(r["falco"]))
    elif args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        for line in alert_table(rows, terminal_columns(), use_colour(sys.stdout)):
            print(line)
    else:
        print("no alerts" + ("" if args.status or args.all else " (suppressed ones are left out: --all shows them)"))
    if cursor:  # never capped silently: say so, and how to go on
        what = f"stopped after {len(rows)} alerts (--limit {limit})" if export else \
            f"{len(rows)} alerts shown, newest first"
        print(f"cgsentry: {what}; more remain: add --cursor {cursor} for the next ones", file=sys.stderr)
    return 0


def _follow(client: Client, args: argparse.Namespace) -> int:
    """``alerts list --follow``: new (and reopened) alerts as the collector stores them, until
    Ctrl-C (exit 0). One JSON object a line with --json or --falco."""
    import sys

    import grpc

    from collector.alertview import alert_table, terminal_columns, use_colour

    stream = client.stub.WatchAlerts(_alert_query(args, parse_since(args.since)), metadata=client.metadata)
    columns, colour = terminal_columns(), use_colour(sys.stdout)
    if not (args.json or args.falco):  # the header at once: the table is waiting for alerts
        print(alert_table([], columns, fixed=True)[0], flush=True)
    try:
        for a in stream:
            row = _alert_json(a)
            if args.json or args.falco:
                print(json.dumps(row["falco"] if args.falco else row), flush=True)
                continue
            print(alert_table([row], columns, colour, fixed=True)[1], flush=True)
    except KeyboardInterrupt:
        stream.cancel()
        return 0
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.CANCELLED:
            return 0
        raise from_rpc_error(err, client.target) from None
    return 0


def cmd_alerts_show(args: argparse.Namespace) -> int:
    import sys

    from collector import convert
    from collector.alertview import alert_lines, use_colour

    a = Client(args).call("GetAlert", convert.alert_id(args.id))
    row, history = _alert_json(a), convert.history_rows(a)
    if args.json:
        print(json.dumps({**row, "history": history}, indent=2))
        return 0
    for line in alert_lines(row, history, use_colour(sys.stdout)):
        print(line)
    return 0


def cmd_alerts_update(args: argparse.Namespace) -> int:
    """ack, resolve (--expect), suppress, reopen, unsuppress: the reply names the stored status.
    Suppress of a model finding and resolve --expect teach every sensor's baseline: said first,
    and confirmed on a terminal (or --yes)."""
    from collector import convert
    from collector.analyst import teaches_baseline

    client = Client(args)
    verb, expect = args.alerts_command, bool(getattr(args, "expect", False))
    if (verb == "suppress" or expect) and not args.yes:
        row = convert.alert_from_pb(client.call("GetAlert", convert.alert_id(args.id)))
        if expect or teaches_baseline(row):
            _confirm(_teaching(row, expect))
    a = client.call("UpdateAlert", convert.alert_update(args.id, verb, args.comment or "", expect=expect))
    status = convert.STATUS_NAMES.get(a.status, "open")
    note = {"suppressed": "it leaves the default list and notifies no more",
            "open": "it is open again"}.get(status, "")
    if expect:
        note = "expected behaviour of its image from now on (sent to every sensor)"
    print(json.dumps({"id": a.id, "status": status, "expected": expect}) if args.json
          else f"alert {a.id}: {status}" + (f" ({note})" if note else ""))
    return 0


def _teaching(row: Any, expect: bool) -> str:
    f = row.finding
    image = f.event.image or f.event.image_key or "its image"
    what = (f"rule {f.rule!r} for {f.event.exe or '?'} (parent {f.event.pexe or '?'})" if expect else
            f"{f.explanation.get('dimension')} item {f.explanation.get('seen') or f.event.exe}")
    undo = f"cgsentry alerts reopen {row.id}" if expect else f"cgsentry alerts unsuppress {row.id}"
    return (f"alert {row.id}: this teaches every sensor's baseline for image {image}: {what} becomes expected "
            f"behaviour and is no longer reported there (undo: {undo})")


def _confirm(message: str) -> None:
    """Ask on a terminal; refuse in one line without one (scripts say --yes)."""
    import sys

    from sensor.text import visible

    if not sys.stdin.isatty():
        raise CollectorError(f"{visible(message)}; not a terminal to confirm on: add --yes", exit_code=EX_USAGE)
    print(visible(message), file=sys.stderr)
    answer = input("continue? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise CollectorError("nothing changed", exit_code=EX_DATAERR)


def add_alerts(sub: Any) -> None:
    """The ``alerts`` command and its subcommands, on the top-level parser's ``sub``."""
    a = sub.add_parser("alerts", help="list, show, acknowledge, resolve, suppress alerts")
    as_ = a.add_subparsers(dest="alerts_command", required=True)
    ls = as_.add_parser("list", help="alerts, newest last seen first; fits the terminal; paged with --cursor")
    ls.add_argument("--image")
    ls.add_argument("--since", default="", help="10m, 2h, 1d, epoch seconds or RFC3339")
    ls.add_argument("--status", metavar="STATUS[,STATUS...]",
                    help="open, acknowledged, resolved, suppressed; several comma-separated (default: all but "
                         "suppressed)")
    ls.add_argument("--all", action="store_true", help="suppressed alerts too")
    ls.add_argument("--priority", help="minimum priority (e.g. WARNING)")
    ls.add_argument("--container", help="container name, id or id prefix, or NAMESPACE/POD")
    ls.add_argument("--rule", help="rule name (any case)")
    ls.add_argument("--process", help="executable path or base name")
    ls.add_argument("--tag", help="a tag of the alert (e.g. T1059, baseline)")
    ls.add_argument("--namespace", help="Kubernetes namespace of the container")
    ls.add_argument("--pod", help="Kubernetes pod of the container")
    ls.add_argument("--label", action="append", default=[], type=label_arg, metavar="KEY=VALUE",
                    help="a pod label the container's pod has (repeat: all of them)")
    ls.add_argument("--limit", type=int_in(1, INT32_MAX),
                    help=f"at most this many (default: {HUMAN_PAGE} in a table, all with --json/--falco)")
    ls.add_argument("--cursor", default="", help="go on where a listing stopped (it prints the cursor)")
    ls.add_argument("--follow", "-f", action="store_true", help="stream new alerts until Ctrl-C")
    ls.add_argument("--falco", action="store_true", help="one Falco-compatible JSON object per line")
    _common(ls)
    ls.set_defaults(func=cmd_alerts_list)
    sh = as_.add_parser("show", help="one alert: process, ancestry, explanation, history")
    sh.add_argument("id", type=int_in(1, INT64_MAX))
    _common(sh)
    sh.set_defaults(func=cmd_alerts_show)
    helps = {"ack": "acknowledge: someone is on it", "resolve": "resolved (--expect: expected of its image)",
             "suppress": "never again for this alert (a model finding's item joins every sensor's baseline)",
             "reopen": "open again (a resolved or acknowledged alert)",
             "unsuppress": "open again; a model finding's item leaves the sensors' baselines"}
    for name, text in helps.items():
        x = as_.add_parser(name, help=text)
        x.add_argument("id", type=int_in(1, INT64_MAX))
        x.add_argument("--comment", help="why (kept in the alert's history with who and when)")
        if name in ("suppress", "resolve"):
            x.add_argument("--yes", "-y", action="store_true", help="do not ask to confirm teaching the baseline")
        if name == "resolve":
            x.add_argument("--expect", action="store_true",
                           help="a learnable rule's finding becomes expected behaviour of its image (every sensor)")
        _common(x)
        x.set_defaults(func=cmd_alerts_update, yes=False)
    s = as_.add_parser("states", help="the alert state machine")
    s.set_defaults(func=cmd_alerts_states)


def cmd_alerts_states(args: argparse.Namespace) -> int:
    """Print the state machine every front end follows."""
    from collector.analyst import TRANSITIONS

    for to, froms in TRANSITIONS.items():
        print(f"{to:<13} from {', '.join(froms)}")
    print("(a recurrence reopens a resolved or acknowledged alert by itself; a suppressed one stays suppressed)")
    return 0
