"""``cgsentry``: run the collector, and the analyst/operator commands against it.

Human tables by default, ``--json`` everywhere; exit codes scripts can use: 0 ok, 64 usage
(any bad command line, including TLS flags the collector needs but were not given), 65 bad input
(including a container not in the state an action needs, e.g. kill on an exited one), 66 not
found, 69 collector unreachable (or a container action the runtime refused, or a port in use),
77 not authorised.

The two programs live apart: :mod:`collector.launcher` (``cgsentry collector serve|pki|token``)
and :mod:`collector.client` (the analyst commands); this module only joins their parsers.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from collector import client, incidentscli, launcher
from sensor.errors import UsageParser, leaves, run_command, show_defaults

PROG = "cgsentry"


def build_parser() -> argparse.ArgumentParser:
    """The whole command line. Global options (connection, ``--json``, ``-v``) are accepted before
    or after the command; every option's help shows its default."""
    from sensor import __version__

    p = UsageParser(prog=PROG, description="cgsentry collector and analyst CLI")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    client.add_connection_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    launcher.add_commands(sub)
    client.add_commands(sub)
    incidentscli.add_commands(sub)
    for leaf, path in leaves(p, ()):
        if path[0] != "collector":  # the server's own commands take no connection options
            client.add_connection_options(leaf, top=False)
        _also(leaf, "--json", action="store_true", help=argparse.SUPPRESS)
        _also(leaf, "-v", "--verbose", action="store_true", help=argparse.SUPPRESS)
    for parser, _ in leaves(p, (), every=True):
        show_defaults(parser)
    return p


def _also(p: argparse.ArgumentParser, *names: str, **kw: Any) -> None:
    """Add a global option to a command unless it has one of that name (then its own stays)."""
    if not any(n in p._option_string_actions for n in names):  # noqa: SLF001 - argparse has no API
        p.add_argument(*names, default=argparse.SUPPRESS, **kw)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.Formatter.converter = time.gmtime  # log times as every human output writes them: RFC 3339, UTC
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO if args.command == "collector"
                        else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%Y-%m-%dT%H:%M:%SZ")
    handler: Callable[[argparse.Namespace], int] = args.func
    return run_command(PROG, handler, args)


if __name__ == "__main__":
    sys.exit(main())
