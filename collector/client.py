"""The analyst client: ``cgsentry alerts|images|rules|containers|sensors|audit`` against a collector.

Connection options (``--server``, ``--token``, TLS files, ``--timeout``) sit on the top-level
parser; a gRPC error becomes the CollectorError of its status code, and an unreachable TLS
collector is diagnosed (collector.tlsprobe) rather than reported as "unavailable".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector.argtypes import DEFAULT_SERVER, INT32_MAX, INT64_MAX, MAX_TIMEOUT_S, int_in, label_arg, timeout_s
from collector.errors import CollectorError, InvalidArgument, action_failure, from_rpc_error
from sensor.errors import EX_DATAERR, EX_NOINPUT, EX_NOPERM, EX_USAGE
from sensor.text import visible

if TYPE_CHECKING:
    from collector import convert


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        import grpc

        from collector import convert
        from collector.tlsprobe import client_files

        self.target = check_server(args.server)
        self._grpc = grpc
        self._tls = (bool(args.ca), bool(args.cert))
        if args.ca or args.cert or args.key:
            creds = grpc.ssl_channel_credentials(*client_files(args.ca, args.cert, args.key))
            channel = grpc.secure_channel(self.target, creds)
        else:
            channel = grpc.insecure_channel(self.target)
        self.stub = convert.rpc.AnalystStub(channel)
        self.metadata = [("authorization", f"Bearer {check_token(args.token)}")] if args.token else []
        self.timeout = args.timeout

    def call(self, name: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self.stub, name)(request, metadata=self.metadata, timeout=timeout or self.timeout)
        except self._grpc.RpcError as err:
            tls = None
            if err.code() == self._grpc.StatusCode.UNAVAILABLE:
                from collector.tlsprobe import diagnose

                tls = diagnose(err.details() or "", self.target, *self._tls)
            raise (tls or from_rpc_error(err, self.target)) from None


def check_server(target: str) -> str:
    """``--server`` as gRPC takes it, or a usage error: gRPC answers an empty target with C-level
    logs and a port past 65535 by connecting to another port."""
    if not target.strip() or any(not c.isprintable() or c.isspace() for c in target):
        raise CollectorError(f"--server {target!r}: give HOST:PORT of the collector (e.g. {DEFAULT_SERVER})",
                             exit_code=EX_USAGE)
    port = re.search(r":(\d+)$", target)
    if port and not 0 < int(port.group(1)) < 65536:
        raise CollectorError(f"--server {target!r}: port {port.group(1)} is not 1-65535", exit_code=EX_USAGE)
    return target


def check_token(token: str) -> str:
    """A token is sent as a gRPC metadata value: printable ASCII only (issued ones are)."""
    if not (token.isascii() and token.isprintable()):
        raise CollectorError("--token (or CGSENTRY_TOKEN) must be printable ASCII without line breaks "
                             "(as `cgsentry collector token add` prints it)", exit_code=EX_USAGE)
    return token


def parse_since(text: str) -> int:
    """'10m', '2h', '1d', '30s', epoch seconds, or RFC3339 -> epoch ns (0 for ''); a time before
    1970 or past 2262 (what int64 nanoseconds hold) is an error, not a protobuf ValueError."""
    if not text:
        return 0
    m = re.fullmatch(r"(\d+)([smhd])", text)
    if m:
        secs = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        since_ns = time.time_ns() - secs * 1_000_000_000
    elif text.isdigit():
        since_ns = int(text) * 1_000_000_000
    else:
        try:
            from datetime import datetime

            since_ns = int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e9)
        except (ValueError, OverflowError):
            raise InvalidArgument(f"--since {text!r}: use 10m, 2h, 1d, epoch seconds or RFC3339") from None
    if not 0 <= since_ns <= INT64_MAX:
        raise InvalidArgument(f"--since {text!r}: out of range (before 1970 or after 2262)")
    return since_ns


def _alert_json(a: convert.pb.Alert) -> dict[str, Any]:
    """A protobuf Alert in the same JSON form the store's rows get (collector.export.alert_json)."""
    from collector import convert
    from collector.export import alert_json

    return alert_json(convert.alert_from_pb(a))


def _alerts(client: Client, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Up to ``--limit`` alerts, page by page: the collector bounds each reply by size (under gRPC's
    message limit), and its ``next_cursor`` gets the next page with the same filters."""
    from collector import convert

    since_ns, cursor = parse_since(args.since), ""  # one time for every page: the same filters
    rows: list[dict[str, Any]] = []
    while len(rows) < args.limit:
        q = convert.alert_query(image=args.image or "", since_ns=since_ns, min_priority=args.priority or "",
                                status=args.status or "", limit=args.limit - len(rows), cursor=cursor,
                                namespace=args.namespace or "", pod=args.pod or "", labels=tuple(args.label))
        page = client.call("ListAlerts", q)
        rows += [_alert_json(a) for a in page.alerts]
        if not page.next_cursor or not page.alerts:  # the last page (or a collector without cursors)
            break
        cursor = page.next_cursor
    return rows


def cmd_alerts_list(args: argparse.Namespace) -> int:
    rows = _alerts(Client(args), args)
    if args.falco:
        for r in rows:
            print(json.dumps(r["falco"]))
    elif args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'ID':>5} {'LAST SEEN':<20} {'PRIORITY':<9} {'RULE':<38} {'CONTAINER':<16} {'ACTION':<16} "
              f"{'N':>4} STATUS")
        for r in rows:
            print(visible(f"{r['id']:>5} {r['last_seen'][:19]:<20} {r['priority']:<9} {r['rule'][:38]:<38} "
                          f"{(r['container_name'] or r['container_id'][:12])[:16]:<16} {r['action']:<16} "
                          f"{r['count']:>4} {r['status']}"))
    return 0


def cmd_alerts_show(args: argparse.Namespace) -> int:
    from collector import convert

    row = _alert_json(Client(args).call("GetAlert", convert.alert_id(args.id)))
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    for line in _alert_lines(row):
        print(visible(line))
    return 0


def _alert_lines(row: dict[str, Any]) -> list[str]:
    """``alerts show``: what ``--json`` has, for people (the process is the latest occurrence)."""
    lines = [f"alert {row['id']}  {row['priority']}  {row['rule']}  [{row['status']}]  x{row['count']}",
             f"  {row['output']}",
             f"  container {row['container_name']} ({row['container_id'][:12]})  image {row['image']}",
             f"  process   pid {row['pid']}  ppid {row['ppid']}  uid {row['uid']}  {row['exe']} "
             f"{' '.join(row['args'][1:])}".rstrip(),
             f"  ancestry  {' <- '.join(row['ancestry']) or '-'}",
             f"  action    {row['action']}   mode {row['mode'] or '-'}",
             f"  seen      first {row['first_seen']}  last {row['last_seen']}",
             f"  sensor    {row['sensor_id']}  node {row['node'] or '-'}",
             f"  tags      {', '.join(row['tags']) or '-'}"]
    if row["during_loss"]:
        lines.append("  during_loss  yes: the sensor was dropping events then (context may be incomplete)")
    if row["comment"]:
        lines.append(f"  comment   {row['comment']}")
    empty: tuple[Any, ...] = ("", None, [], {})
    lines += [f"  why.{key:<10} {value}" for key, value in row["explanation"].items() if value not in empty]
    return lines


def cmd_alerts_update(args: argparse.Namespace) -> int:
    from collector import convert

    a = Client(args).call("UpdateAlert", convert.alert_update(args.id, args.alerts_command, args.comment or ""))
    print(json.dumps({"id": a.id, "status": args.alerts_command}) if args.json else f"alert {a.id}: "
          f"{args.alerts_command}")
    return 0


def cmd_rules_push(args: argparse.Namespace) -> int:
    from collector import convert

    text = ""
    if not args.remove:
        if args.file is None:
            raise CollectorError("rules push: give a rules FILE, or --remove to delete the set", exit_code=64)
        text = _read_rules(Path(args.file))
    ruleset = convert.ruleset(args.name, text)
    _check_size(ruleset.ByteSize())
    r = Client(args).call("PushRules", ruleset)
    out = {"name": r.name, "rules": r.rules, "sensors": r.sensors, "removed": args.remove}
    print(json.dumps(out) if args.json else (
        f"rule set {r.name} removed; sent to {r.sensors} connected sensor(s)" if args.remove else
        f"rule set {r.name}: {r.rules} rules, sent to {r.sensors} connected sensor(s)"))
    return 0


def _read_rules(path: Path) -> str:
    """A rules file's text: UTF-8, not empty, not over the collector's message limit."""
    try:
        _check_size(path.stat().st_size)  # before reading: a huge file is refused unread
        data = path.read_bytes()
    except OSError as err:
        raise CollectorError(f"{path}: cannot read rules file: {err.strerror}",
                             exit_code=EX_NOPERM if isinstance(err, PermissionError) else EX_NOINPUT) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CollectorError(f"{path}: not a rules file (not UTF-8 text at byte {err.start})",
                             exit_code=EX_DATAERR) from None
    if not text.strip():
        raise CollectorError(f"{path}: empty rules file (use --remove to delete the set)", exit_code=EX_DATAERR)
    return text


def _check_size(n_bytes: int) -> None:
    from collector.server import MAX_MESSAGE_BYTES

    if n_bytes > MAX_MESSAGE_BYTES:
        raise CollectorError(f"rule set is {n_bytes / 2**20:.1f} MB, the limit is {MAX_MESSAGE_BYTES / 2**20:g} MB "
                             "(split it into several named sets)", exit_code=EX_DATAERR)


def cmd_rules_list(args: argparse.Namespace) -> int:
    from collector import convert

    rows = [convert.ruleset_row(r) for r in Client(args).call("ListRuleSets", convert.empty()).sets]
    return _emit(args, rows, f"{'RULE SET':<32} {'PUSHED BY':<16} {'BYTES':>7}",
                 lambda r: f"{r['name']:<32} {r['actor']:<16} {r['bytes']:>7}")


def cmd_containers(args: argparse.Namespace) -> int:
    from collector import convert

    request = convert.container_action_request(args.id, args.containers_command, args.reason or "", args.timeout)
    r = Client(args).call("ContainerAction", request, timeout=args.timeout + 5).result
    failure = None if r.ok else action_failure(args.id, args.containers_command, r.error)
    out = convert.action_row(args.id, r, str(failure or ""))
    if args.json:
        print(json.dumps(out))
        return failure.exit_code if failure else 0
    if failure:
        raise failure
    print(visible(f"{out['action']} {args.id}: ok ({out['latency_ms']} ms via {r.method or '?'})"))
    return 0


def cmd_sensors(args: argparse.Namespace) -> int:
    from collector import convert

    rows = [convert.sensor_row(s) for s in Client(args).call("ListSensors", convert.empty()).sensors]
    return _emit(args, rows, "", lambda r: (
        f"{r['sensor_id']:<24} {'up' if r['connected'] else 'down':<5} "
        f"events/s={r['counters'].get('events_per_s', 0)} "
        f"drops={r['counters'].get('kernel_drops', 0) + r['counters'].get('queue_drops', 0)} "
        f"unacked={r['counters'].get('spool_unacked', 0)} spool={r['counters'].get('spool_bytes', 0)}B"
        + (f" bpf={r['counters']['bpf_run_ns_per_s'] / 1e7:.2f}%cpu" if "bpf_run_ns_per_s" in r["counters"] else "")
        + (f" via={r['collector']}" if r["collector"] else "")))


def cmd_audit(args: argparse.Namespace) -> int:
    from collector import convert
    from sensor.events import rfc3339

    rows = [convert.audit_row(e) for e in Client(args).call("ListAudit", convert.audit_query(args.limit)).entries]
    width = max([len(r["target"]) for r in rows] + [6])  # whole targets: two images differ at the tag
    return _emit(args, rows, f"{'ID':>5} {'TIME':<19} {'ACTOR':<28} {'ACTION':<22} {'TARGET':<{width}} "
                             f"{'RESULT':<10} {'LATENCY':>8} REASON",
                 lambda r: f"{r['id']:>5} {rfc3339(r['time_ns'])[:19]:<19} {r['actor']:<28} {r['action']:<22} "
                           f"{r['target']:<{width}} {r['result']:<10} {r['latency_ms']:>6.1f}ms {r['reason']}".rstrip())


def _emit(args: argparse.Namespace, rows: list[dict[str, Any]], header: str,
          line: Callable[[dict[str, Any]], str]) -> int:
    """``--json``: the rows as one JSON array; else the header (if any) and a line per row."""
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if header:
        print(header)
    for row in rows:
        print(visible(line(row)))
    return 0



# -- parser ------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def add_connection_options(p: argparse.ArgumentParser) -> None:
    """How to reach the collector (top-level options; environment variables give the defaults)."""
    p.add_argument("--server", default=os.environ.get("CGSENTRY_SERVER", DEFAULT_SERVER))
    p.add_argument("--token", default=os.environ.get("CGSENTRY_TOKEN", ""))
    p.add_argument("--ca", default=os.environ.get("CGSENTRY_CA", ""), help="CA certificate (TLS)")
    p.add_argument("--cert", default=os.environ.get("CGSENTRY_CERT", ""), help="client certificate (mTLS)")
    p.add_argument("--key", default=os.environ.get("CGSENTRY_KEY", ""), help="client key (mTLS)")
    p.add_argument("--timeout", type=timeout_s, default=10.0, help=f"seconds (at most {MAX_TIMEOUT_S:g})")


def add_commands(sub: Any) -> None:
    """The analyst commands, on the top-level parser's ``sub``."""
    from collector import imagescli

    _alerts_parser(sub)
    imagescli.add_commands(sub)
    _rules(sub)
    c = sub.add_parser("containers", help="pause, unpause or kill a container by id, short id or name "
                                          "(routed to its sensor)")
    cs = c.add_subparsers(dest="containers_command", required=True)
    for name in ("pause", "unpause", "kill", "stop"):
        x = cs.add_parser(name)
        x.add_argument("id")
        x.add_argument("--reason")
        _common(x)
        x.set_defaults(func=cmd_containers)
    s = sub.add_parser("sensors", help="connected sensors and their health")
    s.add_argument("action", choices=["list"])
    _common(s)
    s.set_defaults(func=cmd_sensors)
    a = sub.add_parser("audit", help="every action taken, by whom, with what result")
    a.add_argument("action", choices=["list"])
    a.add_argument("--limit", type=int_in(1, INT32_MAX), default=50)
    _common(a)
    a.set_defaults(func=cmd_audit)


def _alerts_parser(sub: Any) -> None:
    a = sub.add_parser("alerts", help="list, show, acknowledge, resolve, suppress alerts")
    as_ = a.add_subparsers(dest="alerts_command", required=True)
    ls = as_.add_parser("list")
    ls.add_argument("--image")
    ls.add_argument("--since", default="", help="10m, 2h, 1d, epoch seconds or RFC3339")
    ls.add_argument("--status", choices=["open", "acknowledged", "resolved", "suppressed"])
    ls.add_argument("--priority", help="minimum priority (e.g. WARNING)")
    ls.add_argument("--namespace", help="Kubernetes namespace of the container")
    ls.add_argument("--pod", help="Kubernetes pod of the container")
    ls.add_argument("--label", action="append", default=[], type=label_arg, metavar="KEY=VALUE",
                    help="a pod label the container's pod has (repeat: all of them)")
    ls.add_argument("--limit", type=int_in(1, INT32_MAX), default=100)
    ls.add_argument("--falco", action="store_true", help="one Falco-compatible JSON object per line")
    _common(ls)
    ls.set_defaults(func=cmd_alerts_list)
    sh = as_.add_parser("show")
    sh.add_argument("id", type=int_in(1, INT64_MAX))
    _common(sh)
    sh.set_defaults(func=cmd_alerts_show)
    for name in ("ack", "resolve", "suppress"):
        x = as_.add_parser(name)
        x.add_argument("id", type=int_in(1, INT64_MAX))
        x.add_argument("--comment")
        _common(x)
        x.set_defaults(func=cmd_alerts_update)


def _rules(sub: Any) -> None:
    r = sub.add_parser("rules", help="push rule sets to every sensor (hot-reloaded there)")
    rs = r.add_subparsers(dest="rules_command", required=True)
    push = rs.add_parser("push", help="validate, store and send a rule set; sensors load it after the library")
    push.add_argument("name", help="the set's name (a later push of the same name replaces it)")
    push.add_argument("file", nargs="?", type=Path, help="rules YAML")
    push.add_argument("--remove", action="store_true", help="delete the set from the collector and sensors")
    _common(push)
    push.set_defaults(func=cmd_rules_push)
    ls = rs.add_parser("list")
    _common(ls)
    ls.set_defaults(func=cmd_rules_list)
