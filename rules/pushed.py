"""Rule sets pushed by the collector: kept on disk next to the models, loaded after the base files.

Each set is one file ``<state>/rules.d/<name>.yaml``. A push is validated together with everything
already loaded before it replaces anything (atomically), so a bad push leaves the running set and
the files as they were. An empty push removes the set. A stored file that no longer loads (hand
edit, disk damage) is renamed ``*.bad`` at start and the sensor runs without it.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Final

from rules.errors import RuleError
from rules.loader import RuleSet, load_files

log = logging.getLogger(__name__)
NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # a file name in every shell


class PushedRules:
    def __init__(self, directory: Path, base: list[Path]) -> None:
        self.dir = directory
        self.base = base
        self.quarantined: list[Path] = []

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("*.yaml")) if self.dir.is_dir() else []

    def paths(self) -> list[Path]:
        """Base files, then the pushed sets in name order: what the engine loads."""
        return self.base + self.files()

    def load(self) -> RuleSet:
        """Everything that loads; a stored set that does not is quarantined (logged), not fatal."""
        while True:
            try:
                return load_files(self.paths())
            except RuleError as err:
                bad = next((f for f in self.files() if str(err).startswith(str(f))), None)
                if bad is None:
                    raise  # a base file: the operator's own rules must load
                gone = bad.with_suffix(".bad")
                os.replace(bad, gone)
                self.quarantined.append(gone)
                log.error("pushed rule set %s does not load, moved to %s: %s", bad.stem, gone, err)

    def apply(self, name: str, text: str) -> RuleSet:
        """Store (or, for empty text, remove) one set; returns the rules as they now load, for the
        engine to install. Raises RuleError, changing nothing, if the name is unsafe or the result
        would not load."""
        if not NAME.fullmatch(name):
            raise RuleError(f"pushed rule set name {name!r}: use letters, digits, '.', '_' and '-' "
                            "(at most 64, no leading punctuation)")
        target = self.dir / f"{name}.yaml"
        if not text.strip():
            ruleset = load_files([f for f in self.paths() if f != target])
            target.unlink(missing_ok=True)
            return ruleset
        # checked in the order it will load in (sets may use each other's macros and lists)
        try:
            ruleset = load_files(self.base + sorted({*self.files(), target}), texts={target: text})
        except RuleError as err:
            raise RuleError(str(err).replace(str(target), f"pushed rule set {name}")) from None
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
        return ruleset
