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
from collections.abc import Callable

from collector import client, incidentscli, launcher
from sensor.errors import UsageParser, run_command

PROG = "cgsentry"


def build_parser() -> argparse.ArgumentParser:
    p = UsageParser(prog=PROG, description="cgsentry collector and analyst CLI")
    client.add_connection_options(p)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    launcher.add_commands(sub)
    client.add_commands(sub)
    incidentscli.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO if args.command == "collector"
                        else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler: Callable[[argparse.Namespace], int] = args.func
    return run_command(PROG, handler, args)


if __name__ == "__main__":
    sys.exit(main())
