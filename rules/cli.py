"""``cgsentry-sensor rules check|test|list``: validate rule files and dry-run them on journals."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from rules import loader
from rules.engine import RuleEngine, default_rule_files
from rules.errors import RuleError
from rules.loader import RuleSet
from rules.yamlfile import read_text
from sensor.text import visible


def judge(sources: list[tuple[str, str]], name: str = "") -> RuleSet:
    """The one answer on a rules file, for ``cgsentry-sensor rules check`` and the collector's
    ``PushRules`` alike: the default library first (its macros and lists are there for every
    file, as on a sensor), then ``sources`` ((name, YAML text) pairs) in order. A source that is
    itself a library file is not loaded twice. RuleError, one line, for anything that does not
    load: a loader bug that untrusted YAML hits too (then "NAME: does not load: ...", ``name``
    or the last source's)."""
    named = {name for name, _ in sources}
    library = [(str(p), read_text(p, "rules file")) for p in default_rule_files() if str(p) not in named]
    try:
        return loader.load_sources(library + sources)
    except RuleError:
        raise
    except Exception as err:  # untrusted YAML: a loader bug it hits is still a refusal, in one line
        detail = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        raise RuleError(f"{name or (sources[-1][0] if sources else 'rules')}: does not load: {detail}") from err


def cmd_check(args: argparse.Namespace) -> int:
    files = _files(args.files)
    rs = judge([(str(p), read_text(p, "rules file")) for p in files])  # RuleError: one line, exit 65
    mine = {str(p) for p in files}
    n = sum(r.source_file in mine for r in rs.rules)
    print(f"ok: {n} rules in {len(files)} file(s); {len(rs.rules)} rules, {len(rs.macros)} macros, "
          f"{len(rs.lists)} lists with the default library")
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
    c = rs.add_parser("check", help="validate rule files after the built-in library, as `cgsentry rules push` "
                                    "does (default: the library itself)")
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
