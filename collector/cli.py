"""``cgsentry``: run the collector, and the analyst/operator commands against it.

Human tables by default, ``--json`` everywhere; exit codes scripts can use: 0 ok, 64 usage
(any bad command line, including TLS flags the collector needs but were not given), 65 bad input
(including a container not in the state an action needs, e.g. kill on an exited one), 66 not
found, 69 collector unreachable (or a container action the runtime refused, or a port in use),
77 not authorised.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from collector.errors import CollectorError, InvalidArgument, Unavailable, action_failure, from_rpc_error
from sensor.errors import EX_DATAERR, EX_NOINPUT, EX_NOPERM, EX_USAGE, UsageParser, run_command

PROG = "cgsentry"
DEFAULT_SERVER = "127.0.0.1:7443"
INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1  # protobuf int32/int64 fields refuse more
MAX_TIMEOUT_S = 3600.0


# -- client side -------------------------------------------------------------------------------
class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        import grpc

        from collector.convert import rpc
        from collector.tlsprobe import client_files

        self.target = check_server(args.server)
        self._grpc = grpc
        self._tls = (bool(args.ca), bool(args.cert))
        if args.ca or args.cert or args.key:
            creds = grpc.ssl_channel_credentials(*client_files(args.ca, args.cert, args.key))
            channel = grpc.secure_channel(self.target, creds)
        else:
            channel = grpc.insecure_channel(self.target)
        self.stub = rpc.AnalystStub(channel)
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


def _alert_json(a: Any) -> dict[str, Any]:
    """A protobuf Alert in the same JSON form the store's rows get (collector.export.alert_json)."""
    from collector.convert import STATUS_NAMES, finding_from_pb
    from collector.export import alert_json
    from collector.store import AlertRow

    return alert_json(AlertRow(a.id, finding_from_pb(a.finding), a.count, a.first_seen_ns, a.last_seen_ns,
                               STATUS_NAMES.get(a.status, "open"), a.sensor_id, a.node, a.comment))


def _alerts(client: Client, args: argparse.Namespace) -> list[dict[str, Any]]:
    from collector.convert import pb, status_value

    q = pb.AlertQuery(image=args.image or "", since_ns=parse_since(args.since), min_priority=args.priority or "",
                      status=status_value(args.status) if args.status else pb.ALERT_STATUS_UNSPECIFIED,
                      limit=args.limit)
    return [_alert_json(a) for a in client.call("ListAlerts", q).alerts]


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
            print(f"{r['id']:>5} {r['last_seen'][:19]:<20} {r['priority']:<9} {r['rule'][:38]:<38} "
                  f"{(r['container_name'] or r['container_id'][:12])[:16]:<16} {r['action']:<16} {r['count']:>4} "
                  f"{r['status']}")
    return 0


def cmd_alerts_show(args: argparse.Namespace) -> int:
    from collector.convert import pb

    row = _alert_json(Client(args).call("GetAlert", pb.AlertId(id=args.id)))
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    for line in _alert_lines(row):
        print(line)
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
    from collector.convert import pb, status_value

    a = Client(args).call("UpdateAlert", pb.AlertUpdate(id=args.id, status=status_value(args.alerts_command),
                                                         comment=args.comment or ""))
    print(json.dumps({"id": a.id, "status": args.alerts_command}) if args.json else f"alert {a.id}: "
          f"{args.alerts_command}")
    return 0


def cmd_images_list(args: argparse.Namespace) -> int:
    from collector.convert import pb

    rows = [_image_row(i) for i in Client(args).call("ListImages", pb.Empty()).images]
    return _emit(args, rows, f"{'IMAGE':<40} {'MODE':<8} {'SET BY':<22} {'ACTION':<15} {'WOULD-ENF':>9} "
                             f"{'ALERTS':>6}  BANS",
                 lambda r: f"{r['image']:<40} {r['mode'] or '-':<8} {r['set_by'] or '-':<22} {r['action'] or '-':<15} "
                           f"{sum(r['would_enforce'].values()):>9} {r['alerts']:>6}  {','.join(r['bans']) or '-'}")


def _image_row(i: Any) -> dict[str, Any]:
    """An ImageInfo as JSON: the operator's policy (action, bans) and the sensors' model state."""
    policy, model = json.loads(i.policy_yaml or "{}"), json.loads(i.learning or "{}")
    return {"image": i.image, "mode": i.mode, "set_by": i.set_by, "action": policy.get("default_action", ""),
            "bans": list(policy.get("banned_processes", [])), "alerts": i.alerts,
            "would_enforce": model.get("would_enforce", {}), "learned_s": model.get("learned_s", 0.0),
            "containers": model.get("containers", 0), "sensors": model.get("sensors", {}), "policy": policy}


def cmd_images_mode(args: argparse.Namespace) -> int:
    from collector.convert import pb

    action = {"pause": "pause-container", "kill": "kill-container", "kill-process": "kill-process",
              "alert": "alert"}[args.action]
    info = Client(args).call("SetImageMode", pb.ImageModeRequest(
        image=args.image, mode=args.mode, default_action=action, banned_processes=args.ban,
        require_seen=not args.force))
    print(json.dumps({"image": info.image, "mode": info.mode, "action": action}) if args.json
          else f"{info.image}: mode {info.mode}, action {action}")
    return 0


def cmd_rules_push(args: argparse.Namespace) -> int:
    from collector.convert import pb

    text = ""
    if not args.remove:
        if args.file is None:
            raise CollectorError("rules push: give a rules FILE, or --remove to delete the set", exit_code=64)
        text = _read_rules(Path(args.file))
    ruleset = pb.RuleSet(name=args.name, yaml=text)
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
    from collector.convert import pb

    rows = [{"name": r.name, "actor": r.actor, "updated_ns": r.updated_ns, "bytes": len(r.yaml.encode())}
            for r in Client(args).call("ListRuleSets", pb.Empty()).sets]
    return _emit(args, rows, f"{'RULE SET':<32} {'PUSHED BY':<16} {'BYTES':>7}",
                 lambda r: f"{r['name']:<32} {r['actor']:<16} {r['bytes']:>7}")


def cmd_containers(args: argparse.Namespace) -> int:
    from collector.convert import ACTION_NAMES, action_kind, pb

    reply = Client(args).call("ContainerAction", pb.ContainerActionRequest(
        container_id=args.id, action=action_kind(args.containers_command), reason=args.reason or "",
        timeout_s=args.timeout), timeout=args.timeout + 5)
    r = reply.result
    failure = None if r.ok else action_failure(args.id, args.containers_command, r.error)
    out = {"container": args.id, "container_id": r.container_id, "action": ACTION_NAMES.get(r.action), "ok": r.ok,
           "error": str(failure or ""), "sensor_error": r.error, "latency_ms": round(r.latency_ms, 1),
           "method": r.method}
    if args.json:
        print(json.dumps(out))
        return failure.exit_code if failure else 0
    if failure:
        raise failure
    print(f"{out['action']} {args.id}: ok ({out['latency_ms']} ms via {r.method or '?'})")
    return 0


def cmd_sensors(args: argparse.Namespace) -> int:
    from collector.convert import pb

    rows = [{"sensor_id": s.sensor_id, "node": s.node, "version": s.version, "connected": s.connected,
             "last_seen_ns": s.last_seen_ns, "counters": dict(s.counters)}
            for s in Client(args).call("ListSensors", pb.Empty()).sensors]
    return _emit(args, rows, "", lambda r: (
        f"{r['sensor_id']:<24} {'up' if r['connected'] else 'down':<5} "
        f"events/s={r['counters'].get('events_per_s', 0)} "
        f"drops={r['counters'].get('kernel_drops', 0) + r['counters'].get('queue_drops', 0)} "
        f"unacked={r['counters'].get('spool_unacked', 0)} spool={r['counters'].get('spool_bytes', 0)}B"
        + (f" bpf={r['counters']['bpf_run_ns_per_s'] / 1e7:.2f}%cpu" if "bpf_run_ns_per_s" in r["counters"] else "")))


def cmd_audit(args: argparse.Namespace) -> int:
    from collector.convert import pb
    from collector.export import rfc3339

    rows = [{"id": e.id, "time_ns": e.time_ns, "actor": e.actor, "action": e.action, "target": e.target,
             "reason": e.reason, "result": e.result, "latency_ms": e.latency_ms}
            for e in Client(args).call("ListAudit", pb.AuditQuery(limit=args.limit)).entries]
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
        print(line(row))
    return 0


# -- server side -------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from collector.auth import AuthConfig, TokenStore
    from collector.export import Exporters
    from collector.server import TlsConfig, check_bindable, create_server
    from collector.store import SqlStore
    from collector.tlsprobe import check_pems

    host = args.listen.rsplit(":", 1)[0].strip("[]")
    if args.insecure and host not in ("127.0.0.1", "localhost", "::1"):
        raise InvalidArgument("--insecure is allowed only on a loopback address")
    tokens = TokenStore.existing(Path(args.tokens)) if args.tokens else TokenStore(None)
    if not args.insecure and not args.tls_dir and not len(tokens):
        raise InvalidArgument("no authentication configured: give --tokens FILE and/or --tls-dir DIR "
                              "(or --insecure on loopback)")
    tls = None
    if args.tls_dir:
        d = Path(args.tls_dir)
        try:
            cert, key, ca = ((d / n).read_bytes() for n in ("server.crt", "server.key", "ca.crt"))
            tls = TlsConfig(cert, key, ca)
        except OSError as err:
            raise CollectorError(f"{d}: missing TLS files ({err.strerror}); run `cgsentry collector pki init`",
                                 exit_code=66) from err
        check_pems(str(d / "ca.crt"), ca, str(d / "server.crt"), cert, str(d / "server.key"), key)
    check_bindable(args.listen)  # before the store: a refused start leaves no new database file behind
    if args.metrics_port:
        _start_metrics(args.metrics_port)
    store = SqlStore.open(args.db)
    try:
        server, port = create_server(args.listen, store, AuthConfig(tokens, insecure=args.insecure,
                                                                    mtls=tls is not None),
                                     tls, Exporters(args.webhook or "", metrics=bool(args.metrics_port)))
    except CollectorError:
        store.close()
        raise
    print(f"collector listening on {args.listen.rsplit(':', 1)[0]}:{port} (db {args.db}, "
          f"{'TLS' if tls else 'plaintext'}, {'no auth' if args.insecure else 'auth on'})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=5).wait()
    store.close()
    return 0


def _start_metrics(port: int) -> None:
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr="127.0.0.1")
    except OSError as err:
        code = EX_NOPERM if isinstance(err, PermissionError) else Unavailable.exit_code
        raise CollectorError(f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}: {err.strerror}",
                             exit_code=code) from None


def cmd_pki(args: argparse.Namespace) -> int:
    from collector import pki

    d = Path(args.dir)
    if args.pki_command == "init":
        pki.init_ca(d, args.san)
        print(f"CA and server certificate written to {d}")
    elif args.pki_command == "client":
        crt = pki.issue_client(d, args.name)
        print(f"client certificate written to {crt} (use: cgsentry --ca {d / 'ca.crt'} --cert {crt} "
              f"--key {crt.with_suffix('.key')} --token TOKEN ...; the token gives the role)")
    else:
        print(f"sensor certificate written to {pki.issue_sensor(d, args.name)}")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from collector.auth import TokenStore

    print(TokenStore(Path(args.tokens)).add(args.name, args.role))
    return 0


# -- parser ------------------------------------------------------------------------------------
def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [lo, hi] (protobuf refuses what its field cannot hold)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text} is out of range ({lo} to {hi})")
        return value
    return parse


def timeout_s(text: str) -> float:
    """``--timeout``: seconds, more than 0 and at most an hour (gRPC reads nan or 1e300 as "expired")."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= MAX_TIMEOUT_S:  # false for nan too
        raise argparse.ArgumentTypeError(f"{text} seconds: give more than 0 and at most {MAX_TIMEOUT_S:g}")
    return value


def listen_addr(text: str) -> str:
    """``--listen``: HOST:PORT ([V6ADDR]:PORT), port 1-65535 — gRPC binds 443 for a bare host and
    some other port for one past 65535."""
    m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})", text)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: use HOST:PORT with a port from 1 to 65535 (e.g. {DEFAULT_SERVER})")
    return text


def webhook_url(text: str) -> str:
    """``--webhook``: an http:// or https:// URL with a host (collector.webhook.check_webhook_url)."""
    from collector.webhook import check_webhook_url

    try:
        return check_webhook_url(text)
    except InvalidArgument as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def build_parser() -> argparse.ArgumentParser:
    p = UsageParser(prog=PROG, description="cgsentry collector and analyst CLI")
    p.add_argument("--server", default=os.environ.get("CGSENTRY_SERVER", DEFAULT_SERVER))
    p.add_argument("--token", default=os.environ.get("CGSENTRY_TOKEN", ""))
    p.add_argument("--ca", default=os.environ.get("CGSENTRY_CA", ""), help="CA certificate (TLS)")
    p.add_argument("--cert", default=os.environ.get("CGSENTRY_CERT", ""), help="client certificate (mTLS)")
    p.add_argument("--key", default=os.environ.get("CGSENTRY_KEY", ""), help="client key (mTLS)")
    p.add_argument("--timeout", type=timeout_s, default=10.0, help=f"seconds (at most {MAX_TIMEOUT_S:g})")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _collector(sub)
    _alerts_parser(sub)
    _images(sub)
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
    return p


def _collector(sub: Any) -> None:
    c = sub.add_parser("collector", help="run the collector, manage its PKI and tokens")
    cs = c.add_subparsers(dest="collector_command", required=True)
    s = cs.add_parser("serve")
    s.add_argument("--listen", type=listen_addr, default="127.0.0.1:7443", help="HOST:PORT")
    s.add_argument("--db", default="cgsentry.db", help="SQLite path or postgresql:// URL")
    s.add_argument("--tls-dir", help="directory with ca.crt, server.crt, server.key (mTLS for sensors)")
    s.add_argument("--tokens", help="tokens file (see `collector token add`)")
    s.add_argument("--insecure", action="store_true", help="no TLS, no auth (loopback only)")
    s.add_argument("--metrics-port", type=int_in(1, 65535), default=0, help="Prometheus /metrics on 127.0.0.1:PORT")
    s.add_argument("--webhook", type=webhook_url, help="POST each finding in Falco JSON to this http(s) URL")
    s.set_defaults(func=cmd_serve)
    k = cs.add_parser("pki")
    ks = k.add_subparsers(dest="pki_command", required=True)
    i = ks.add_parser("init")
    i.add_argument("--dir", required=True)
    i.add_argument("--san", action="append", default=[])
    i.set_defaults(func=cmd_pki)
    n = ks.add_parser("sensor", help="a sensor's certificate (its CN is the sensor id)")
    n.add_argument("name")
    n.add_argument("--dir", required=True)
    n.set_defaults(func=cmd_pki)
    cl = ks.add_parser("client", help="an analyst's client certificate (never a sensor; roles come from tokens)")
    cl.add_argument("name")
    cl.add_argument("--dir", required=True)
    cl.set_defaults(func=cmd_pki)
    t = cs.add_parser("token")
    ts = t.add_subparsers(dest="token_command", required=True)
    ta = ts.add_parser("add")
    ta.add_argument("name")
    ta.add_argument("--role", required=True, choices=["viewer", "responder", "admin", "sensor"])
    ta.add_argument("--tokens", required=True)
    ta.set_defaults(func=cmd_token)


def _alerts_parser(sub: Any) -> None:
    a = sub.add_parser("alerts", help="list, show, acknowledge, resolve, suppress alerts")
    as_ = a.add_subparsers(dest="alerts_command", required=True)
    ls = as_.add_parser("list")
    ls.add_argument("--image")
    ls.add_argument("--since", default="", help="10m, 2h, 1d, epoch seconds or RFC3339")
    ls.add_argument("--status", choices=["open", "acknowledged", "resolved", "suppressed"])
    ls.add_argument("--priority", help="minimum priority (e.g. WARNING)")
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


def _images(sub: Any) -> None:
    i = sub.add_parser("images", help="images, their mode (learn/alert/enforce) and response")
    is_ = i.add_subparsers(dest="images_command", required=True)
    ls = is_.add_parser("list")
    _common(ls)
    ls.set_defaults(func=cmd_images_list)
    m = is_.add_parser("mode")
    m.add_argument("image")
    m.add_argument("mode", choices=["learn", "alert", "enforce"])
    m.add_argument("--action", choices=["alert", "pause", "kill", "kill-process"], default="alert",
                   help="what enforce mode does on a finding")
    m.add_argument("--ban", action="append", default=[], metavar="PROCESS", help="banned process (repeat)")
    m.add_argument("--force", action="store_true", help="set it although no sensor has seen the image yet")
    _common(m)
    m.set_defaults(func=cmd_images_mode)


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO if args.command == "collector"
                        else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler: Callable[[argparse.Namespace], int] = args.func
    return run_command(PROG, handler, args)


if __name__ == "__main__":
    sys.exit(main())
