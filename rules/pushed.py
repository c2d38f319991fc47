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
from sensor.errors import EX_IOERR
from sensor.files import atomic_write

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
        """Everything that loads; a stored set that does not is quarantined (logged), not fatal.
        Any exception counts, not only RuleError: a stored set is untrusted input, and a loader bug
        it triggers must not keep the sensor from starting."""
        while True:
            try:
                return load_files(self.paths())
            except Exception as err:  # see the docstring
                bad = self._culprit(err)
                if bad is None:  # a base file: the operator's own rules must load
                    if isinstance(err, RuleError):
                        raise
                    raise RuleError(f"rule files do not load: {_one_line(err)}") from err
                gone = bad.with_suffix(".bad")
                os.replace(bad, gone)
                self.quarantined.append(gone)
                log.error("pushed rule set %s does not load, moved to %s: %s", bad.stem, gone, _one_line(err))

    def _culprit(self, err: Exception) -> Path | None:
        """The stored set that makes loading fail: the one the error names, else the first whose
        addition (in load order) fails -- a set can break a base rule, e.g. by appending to its
        list; None if the base files fail on their own."""
        files = self.files()
        named = next((f for f in files if str(err).startswith(str(f))), None)
        if named is not None:
            return named
        for k in range(len(files) + 1):
            try:
                load_files(self.base + files[:k])
            except Exception:  # noqa: BLE001 - the same untrusted input as in load()
                return files[k - 1] if k else None
        return files[-1] if files else None  # loads one by one: blame the last (not expected)

    def apply(self, name: str, text: str) -> RuleSet:
        """Store (or, for empty text, remove) one set; returns the rules as they now load, for the
        engine to install. Raises RuleError, changing nothing, if the name is unsafe, the result
        would not load (for any reason: the text is untrusted) or the set cannot be stored."""
        if not NAME.fullmatch(name):
            raise RuleError(f"pushed rule set name {name!r}: use letters, digits, '.', '_' and '-' "
                            "(at most 64, no leading punctuation)")
        target = self.dir / f"{name}.yaml"
        try:
            if not text.strip():
                ruleset = load_files([f for f in self.paths() if f != target])
                target.unlink(missing_ok=True)
                return ruleset
            # checked in the order it will load in (sets may use each other's macros and lists)
            ruleset = load_files(self.base + sorted({*self.files(), target}), texts={target: text})
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write(target, text.encode("utf-8"))
        except RuleError as err:
            raise RuleError(str(err).replace(str(target), f"pushed rule set {name}")) from None
        except OSError as err:
            raise RuleError(f"pushed rule set {name}: cannot store in {self.dir}: {err.strerror or err}",
                            exit_code=EX_IOERR) from err
        except Exception as err:  # untrusted text must never crash the sensor
            raise RuleError(f"pushed rule set {name}: does not load: {_one_line(err)}") from err
        return ruleset


def _one_line(err: BaseException, limit: int = 300) -> str:
    """An exception as one bounded log/error line (its type when it is not one of ours)."""
    text = " ".join(str(err).split())
    text = text if isinstance(err, RuleError) else f"{type(err).__name__}: {text}"
    return text if len(text) <= limit else text[:limit] + "..."
