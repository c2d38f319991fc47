"""``cgsentry-sensor rules check|test|list``: validate rule files and dry-run them on journals."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from rules.engine import RuleEngine, default_rule_files
from rules.loader import load_files
from sensor.text import visible


def cmd_check(args: argparse.Namespace) -> int:
    files = _files(args.files)
    rs = load_files(files)  # raises RuleError: one line, exit 65
    print(f"ok: {len(rs.rules)} rules, {len(rs.macros)} macros, {len(rs.lists)} lists "
          f"in {len(files)} file(s)")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from sensor.journal import read_journal

    engine = RuleEngine.load(_files(args.files))
    counts: Counter[str] = Counter()
    n = 0
    for ev in read_journal(args.events):
        n += 1
        for f in engine.handle(ev):
            counts[f.rule] += 1
            if args.json:
                print(json.dumps({"rule": f.rule, "priority": f.priority, "output": f.output,
                                  "time_ns": f.time_ns, "container_id": ev.container_id}))
            else:
                print(visible(f"{f.priority:<9} {f.rule}: {f.output}"))
    summary = ", ".join(f"{r}={c}" for r, c in counts.most_common()) or "nothing"
    print(f"# {n} events, {sum(counts.values())} would fire: {summary}",
          file=__import__("sys").stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    engine = RuleEngine.load(_files(args.files))
    rows: list[dict[str, Any]] = [{"rule": r.name, "priority": r.priority, "tags": list(r.tags),
                                   "kinds": sorted(r.kinds) if r.kinds else ["*"],
                                   "enabled": r.enabled} for r in engine.rules()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['priority']:<13} {row['rule']:<50} {','.join(row['kinds'])}")
    return 0


def _files(given: list[Path] | None) -> list[Path]:
    return list(given) if given else default_rule_files()


def register(sub: Any) -> None:
    p = sub.add_parser("rules", help="validate, list and dry-run rule files")
    rs = p.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    c = rs.add_parser("check", help="validate rule files (default: the built-in library)")
    c.add_argument("files", nargs="*", type=Path)
    c.set_defaults(func=cmd_check)
    t = rs.add_parser("test", help="run rules over a recorded journal, print what would fire")
    t.add_argument("files", nargs="*", type=Path)
    t.add_argument("--events", type=Path, required=True, metavar="JOURNAL")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_test)
    ls = rs.add_parser("list", help="list loaded rules")
    ls.add_argument("files", nargs="*", type=Path)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
