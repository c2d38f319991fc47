"""``cgsentry collector ...``: the server launcher (serve, pki, token).

``serve`` checks its configuration (authentication, TLS files, the port, the metrics port) before
it opens the database, so a refused start leaves nothing behind; SIGINT/SIGTERM stop it gracefully.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from collector.argtypes import digest_s, int_in, listen_addr, webhook_header, webhook_url
from collector.errors import CollectorError, InvalidArgument, Unavailable
from sensor.errors import EX_NOPERM
from sensor.text import visible

log = logging.getLogger(__name__)


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
    if len(tokens) and not args.tls_dir and host not in ("127.0.0.1", "localhost", "::1"):
        if not args.allow_plaintext_tokens:
            raise InvalidArgument(f"--listen {args.listen}: tokens would cross the network in plaintext; give "
                                  "--tls-dir DIR, listen on loopback, or say --allow-plaintext-tokens")
        log.warning("serving tokens without TLS on %s: anyone on the path can read and reuse them", args.listen)
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
    if args.web:
        _check_web(args)
    _raise_open_files()
    metrics = args.metrics_listen or (f"127.0.0.1:{args.metrics_port}" if args.metrics_port else "")
    if metrics:
        _start_metrics(metrics, "--metrics-listen" if args.metrics_listen else "--metrics-port")
    store = SqlStore.open(args.db)
    try:
        store.hold_alone()  # SQLite: one collector per file (several collectors share a PostgreSQL)
        server, port = create_server(args.listen, store, AuthConfig(tokens, insecure=args.insecure,
                                                                    mtls=tls is not None),
                                     tls, Exporters(args.webhook or "", metrics=bool(metrics), store=store,
                                                    **_webhook_options(args)),
                                     collector_id=args.collector_id or "")
    except CollectorError:
        store.close()
        raise
    print(f"collector listening on {args.listen.rsplit(':', 1)[0]}:{port} (db {args.db}, "
          f"{'TLS' if tls else 'plaintext'}, {'no auth' if args.insecure else 'auth on'})", flush=True)
    web = _start_web(args, server, tls is not None) if args.web else None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    if web is not None:
        web.stop()
    server.stop(grace=5).wait()
    store.close()
    return 0


def _check_web(args: argparse.Namespace) -> None:
    """--web follows --listen's rules: --insecure only on loopback, tokens in plaintext only on
    loopback unless allowed, and its port free."""
    from collector.server import check_bindable

    host = args.web.rsplit(":", 1)[0].strip("[]")
    loopback = host in ("127.0.0.1", "localhost", "::1")
    if args.insecure and not loopback:
        raise InvalidArgument("--insecure is allowed only on a loopback address (--web too)")
    if not args.tls_dir and not loopback and not args.allow_plaintext_tokens:
        raise InvalidArgument(f"--web {args.web}: tokens and session cookies would cross the network in plaintext; "
                              "give --tls-dir DIR, listen on loopback, or say --allow-plaintext-tokens")
    if args.web == args.listen:
        raise InvalidArgument(f"--web {args.web}: the console needs a port of its own, not --listen's")
    check_bindable(args.web)


def _start_web(args: argparse.Namespace, server: Any, tls: bool) -> Any:
    from collector.webserver import WebTls, start_web

    d = Path(args.tls_dir or ".")
    web_tls = WebTls(str(d / "server.crt"), str(d / "server.key"), str(d / "ca.crt")) if tls else None
    web = start_web(args.web, server.hub, server.incidents, server.auth, web_tls)
    host = args.web.rsplit(":", 1)[0]
    print(f"console on {'https' if tls else 'http'}://{host}:{web.port}/", flush=True)
    return web


def _raise_open_files() -> None:
    """Every sensor holds a connection: lift the soft open-files limit to the hard one (a
    default soft limit of 1,024 would refuse the thousandth sensor), and say so if it stays low."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as err:
            log.warning("cannot raise the open-files limit from %d: %s", soft, err)
    if soft != resource.RLIM_INFINITY and soft < 4096:
        log.warning("open-files limit is %d: at most about %d sensors can connect (raise it with ulimit -n or "
                    "LimitNOFILE=)", soft, soft - 64)


def _start_metrics(listen: str, flag: str) -> None:
    """Prometheus /metrics on ``listen`` (HOST:PORT, [V6]:PORT), or a one-line error."""
    from prometheus_client import start_http_server

    host, port = listen.rsplit(":", 1)
    try:
        start_http_server(int(port), addr=host.strip("[]"))
    except OSError as err:
        code = EX_NOPERM if isinstance(err, PermissionError) else Unavailable.exit_code
        raise CollectorError(f"{flag} {listen if flag == '--metrics-listen' else port}: cannot listen on {listen}: "
                             f"{err.strerror}", exit_code=code) from None


def _webhook_options(args: argparse.Namespace) -> dict[str, Any]:
    if not args.webhook and (args.webhook_header or args.webhook_digest_s is not None):
        raise InvalidArgument("--webhook-header and --webhook-digest-s need --webhook URL")
    out: dict[str, Any] = {"headers": args.webhook_header} if args.webhook else {}
    if args.webhook and args.webhook_digest_s is not None:
        out["digest_s"] = args.webhook_digest_s
    return out


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
    """``token add``: prints the new token, the only time it is shown."""
    from collector.auth import TokenStore

    print(TokenStore(Path(args.tokens)).add(args.name, args.role))
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    """``token list``: names, roles and ids (from the hash), never the tokens."""
    import json

    from collector.auth import TokenStore

    rows = TokenStore.existing(Path(args.tokens)).entries()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'ID':<12} {'ROLE':<10} NAME")
    for r in rows:
        print(visible(f"{r['id']:<12} {r['role']:<10} {r['name']}"))
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    """``token revoke NAME|ID``: a running collector stops taking it at its next call."""
    import json

    from collector.auth import TokenStore

    rows = TokenStore.existing(Path(args.tokens)).revoke(args.name)
    for r in rows:
        print(json.dumps(r) if args.json else visible(f"revoked token {r['id']} ({r['name']}, {r['role']})"))
    return 0


def add_commands(sub: Any) -> None:
    """The ``collector`` command and its subcommands, on the top-level parser's ``sub``."""
    c = sub.add_parser("collector", help="run the collector, manage its PKI and tokens")
    cs = c.add_subparsers(dest="collector_command", required=True)
    s = cs.add_parser("serve")
    s.add_argument("--listen", type=listen_addr, default="127.0.0.1:7443", help="HOST:PORT")
    s.add_argument("--db", default="cgsentry.db", help="SQLite path or postgresql:// URL")
    s.add_argument("--tls-dir", help="directory with ca.crt, server.crt, server.key (mTLS for sensors)")
    s.add_argument("--tokens", help="tokens file (see `collector token add`)")
    s.add_argument("--insecure", action="store_true", help="no TLS, no auth (loopback only)")
    s.add_argument("--allow-plaintext-tokens", action="store_true",
                   help="accept bearer tokens without TLS on a non-loopback address (they can be sniffed)")
    m = s.add_mutually_exclusive_group()
    m.add_argument("--metrics-port", type=int_in(1, 65535), default=0, help="Prometheus /metrics on 127.0.0.1:PORT")
    m.add_argument("--metrics-listen", type=listen_addr, metavar="HOST:PORT",
                   help="Prometheus /metrics on HOST:PORT (e.g. 0.0.0.0:9464 for a cluster's scraper)")
    s.add_argument("--web", type=listen_addr, help="serve the analyst web console on HOST:PORT (e.g. 127.0.0.1:8443)")
    s.add_argument("--webhook", type=webhook_url, help="POST alerts in Falco JSON (falcosidekick takes it as-is) to "
                                                       "this http(s) URL: each new alert at once, repeats in a digest")
    s.add_argument("--webhook-header", action="append", default=[], type=webhook_header, metavar="'NAME: VALUE'",
                   help="a header every POST carries, e.g. 'Authorization: Bearer TOKEN' (repeat)")
    s.add_argument("--webhook-digest-s", type=digest_s, metavar="S",
                   help="send an alert's repeats once per S seconds (default 60; 0: every occurrence)")
    s.add_argument("--collector-id", metavar="NAME",
                   help="this collector's name in `sensors list` and the fleet (default: HOST:PORT)")
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
    tl = ts.add_parser("list", help="names, roles and ids of the tokens (never the tokens)")
    tl.add_argument("--tokens", required=True)
    tl.set_defaults(func=cmd_token_list)
    tr = ts.add_parser("revoke", help="remove a token by its name (all of that name) or its id")
    tr.add_argument("name", metavar="NAME|ID")
    tr.add_argument("--tokens", required=True)
    tr.set_defaults(func=cmd_token_revoke)
