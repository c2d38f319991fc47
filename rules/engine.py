"""The rule engine: a :class:`~sensor.pipeline.Sink` that turns matching events into findings.

Rules are indexed by event kind (derived from their ``evt.type`` tests), so an event meets only
the rules that can match it. A failed reload keeps the last good rule set.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from rules.loader import CompiledRule, RuleSet, load_files
from sensor.events import KINDS, RULE, Event, Finding

log = logging.getLogger(__name__)
LIBRARY_DIR = Path(__file__).resolve().parent / "library"
# Not matched by rules: first-seen syscall records feed the models only.
_SKIP_KINDS = frozenset({"syscall"})
# Path prefixes the kernel must report opens for, with the PM_* mode (0 any, 1 write, 2 /mem).
_PREFIX_HINTS = {"/proc/": 2}


def default_rule_files() -> list[Path]:
    return sorted(LIBRARY_DIR.glob("*.yaml"))


class RuleEngine:
    def __init__(self, ruleset: RuleSet) -> None:
        self.install(ruleset)
        self.evaluated = 0
        self.fired = 0
        self.errors = 0

    @classmethod
    def load(cls, paths: Iterable[Path] | None = None) -> RuleEngine:
        """Load rule files (None: the default library). Raises RuleError on any bad file."""
        return cls(load_files(list(paths) if paths is not None else default_rule_files()))

    def install(self, ruleset: RuleSet) -> None:
        """Replace the rules with an already loaded set."""
        self.ruleset = ruleset
        index: dict[str, list[CompiledRule]] = defaultdict(list)
        for rule in ruleset.rules:
            if not rule.enabled:
                continue
            for kind in rule.kinds if rule.kinds is not None else KINDS:
                index[kind].append(rule)
        self._index = dict(index)

    def reload(self, paths: Iterable[Path] | None = None) -> None:
        """Replace the rules; on error raise RuleError and keep the current set."""
        self.install(load_files(list(paths) if paths is not None else default_rule_files()))

    def rules(self) -> list[CompiledRule]:
        return list(self.ruleset.rules)

    def rules_for(self, kind: str) -> list[CompiledRule]:
        return self._index.get(kind, [])

    def handle(self, event: Event) -> list[Finding]:
        if event.kind in _SKIP_KINDS:
            return []
        out: list[Finding] = []
        for rule in self._index.get(event.kind, ()):
            self.evaluated += 1
            try:
                hit = rule.match(event)
            except (TypeError, AttributeError, IndexError):
                self.errors += 1  # a field absent for this kind: counted, never raised
                continue
            if hit:
                self.fired += 1
                out.append(self._finding(rule, event))
        return out

    @staticmethod
    def _finding(rule: CompiledRule, event: Event) -> Finding:
        return Finding(kind=RULE, rule=rule.name, priority=rule.priority, output=rule.render(event),
                       event=event, time_ns=event.time_ns, source="rule", tags=rule.tags,
                       explanation={"condition": rule.condition, "desc": rule.desc,
                                    "file": f"{rule.source_file}:{rule.line}", "learnable": rule.learnable})

    def open_prefixes(self, limit: int = 24) -> list[tuple[str, int]]:
        """Sensitive path prefixes for the kernel filter, from the ``sensitive_*`` lists."""
        out: list[tuple[str, int]] = []
        lists = self.ruleset.lists
        for name, mode in (("sensitive_file_names", 0), ("sensitive_dir_prefixes", 0),
                           ("write_protected_prefixes", 1), ("proc_mem_prefixes", 2)):
            for p in lists.get(name, []):
                entry = (str(p), _PREFIX_HINTS.get(str(p), mode))
                if entry not in out:
                    out.append(entry)
        return out[:limit]

    def stats(self) -> dict[str, int]:
        return {"rules_evaluated": self.evaluated, "rules_fired": self.fired,
                "rules_errors": self.errors, "rules_loaded": len(self.ruleset.rules)}
