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

from collector.argtypes import (
    DEFAULT_PORT,
    DEFAULT_SERVER,
    INT32_MAX,
    INT64_MAX,
    MAX_TIMEOUT_S,
    int_in,
    timeout_s,
)
from collector.errors import CollectorError, InvalidArgument, action_failure, from_rpc_error
from sensor.errors import EX_DATAERR, EX_NOINPUT, EX_NOPERM, EX_USAGE
from sensor.text import visible

if TYPE_CHECKING:
    pass


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
    logs and a port past 65535 by connecting to another port. A host without a port gets the
    collector's default port (gRPC would take 443)."""
    if not target.strip() or any(not c.isprintable() or c.isspace() for c in target):
        raise CollectorError(f"--server {target!r}: give HOST:PORT of the collector (e.g. {DEFAULT_SERVER})",
                             exit_code=EX_USAGE)
    if re.fullmatch(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]", target):
        target = f"{target}:{DEFAULT_PORT}"
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
    """Sensors with a header: up or down, last seen, and rates only for a sensor that is up (a
    down sensor's last rates say nothing about now; its drops and spool are kept, they are totals)."""
    from collector import convert
    from collector.alertview import human_time

    rows = [convert.sensor_row(s) for s in Client(args).call("ListSensors", convert.empty()).sensors]
    width = max([len(r["sensor_id"]) for r in rows] + [6])

    def line(r: dict[str, Any]) -> str:
        c = r["counters"]
        text = f"{r['sensor_id']:<{width}} {'up' if r['connected'] else 'down':<5} {human_time(r['last_seen_ns']):<20} "
        if r["connected"]:
            text += f"events/s={c.get('events_per_s', 0)} "
        text += (f"drops={c.get('kernel_drops', 0) + c.get('queue_drops', 0)} "
                 f"unacked={c.get('spool_unacked', 0)} spool={c.get('spool_bytes', 0)}B")
        if r["connected"] and "bpf_run_ns_per_s" in c:
            text += f" bpf={c['bpf_run_ns_per_s'] / 1e7:.2f}%cpu"
        return text + (f" via={r['collector']}" if r["collector"] else "")

    return _emit(args, rows, f"{'SENSOR':<{width}} {'STATE':<5} {'LAST SEEN':<20} HEALTH", line)


def cmd_audit(args: argparse.Namespace) -> int:
    from collector import convert
    from collector.alertview import human_time

    query = convert.audit_query(args.limit, args.alert or 0)
    rows = [convert.audit_row(e) for e in Client(args).call("ListAudit", query).entries]
    width = max([len(r["target"]) for r in rows] + [6])  # whole targets: two images differ at the tag
    return _emit(args, rows, f"{'ID':>5} {'TIME':<20} {'ACTOR':<28} {'ACTION':<26} {'TARGET':<{width}} "
                             f"{'RESULT':<10} {'LATENCY':>8} REASON",
                 lambda r: f"{r['id']:>5} {human_time(r['time_ns']):<20} {r['actor']:<28} {r['action']:<26} "
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
    """``--json`` on a command: only when given (the top-level ``--json`` holds the default)."""
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")


def add_connection_options(p: argparse.ArgumentParser, top: bool = True) -> None:
    """How to reach the collector; environment variables give the defaults. On the top-level
    parser (``top``) with their defaults; on each command again with no default, so that an
    option given after the command wins and one not given there leaves the top-level value."""
    def add(*names: str, env: str = "", default: Any = "", **kw: Any) -> None:
        if top:
            value = os.environ.get(env, default) if env else default
            shown = f" (default: ${env} or {default or 'none'})" if env else ""
            p.add_argument(*names, default=value, **{**kw, "help": kw.get("help", "") + shown})
        else:
            p.add_argument(*names, default=argparse.SUPPRESS, **{**kw, "help": argparse.SUPPRESS})

    add("--server", env="CGSENTRY_SERVER", default=DEFAULT_SERVER,
        help=f"the collector's HOST[:PORT] (port {DEFAULT_PORT} if not given)")
    add("--token", env="CGSENTRY_TOKEN", help="bearer token (`cgsentry collector token add`)")
    add("--ca", env="CGSENTRY_CA", help="CA certificate (TLS)")
    add("--cert", env="CGSENTRY_CERT", help="client certificate (mTLS)")
    add("--key", env="CGSENTRY_KEY", help="client key (mTLS)")
    add("--timeout", type=timeout_s, default=10.0, help=f"seconds, at most {MAX_TIMEOUT_S:g} (default: 10)")


def add_commands(sub: Any) -> None:
    """The analyst commands, on the top-level parser's ``sub``."""
    from collector import imagescli
    from collector.alertcmds import add_alerts

    add_alerts(sub)
    imagescli.add_commands(sub)
    _rules(sub)
    c = sub.add_parser("containers", help="pause, unpause or kill a container by id, short id or name "
                                          "(routed to its sensor)")
    cs = c.add_subparsers(dest="containers_command", required=True)
    for name in ("pause", "unpause", "kill", "stop"):
        x = cs.add_parser(name)
        x.add_argument("id")
        x.add_argument("--comment", "--reason", dest="reason", help="why (kept in the audit)")
        _common(x)
        x.set_defaults(func=cmd_containers)
    s = sub.add_parser("sensors", help="connected sensors and their health")
    s.add_argument("action", choices=["list"])
    _common(s)
    s.set_defaults(func=cmd_sensors)
    a = sub.add_parser("audit", help="every action taken, by whom, with what result")
    a.add_argument("action", choices=["list"])
    a.add_argument("--limit", type=int_in(1, INT32_MAX), default=50)
    a.add_argument("--alert", type=int_in(1, INT64_MAX), metavar="ID", help="only what happened to this alert")
    _common(a)
    a.set_defaults(func=cmd_audit)




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
