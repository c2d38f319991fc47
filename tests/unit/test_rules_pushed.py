"""Rule sets pushed by the collector, as the sensor keeps them: validated with everything loaded
before them, stored atomically, removed by an empty push, quarantined if they stop loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.engine import RuleEngine, default_rule_files
from rules.errors import RuleError
from rules.pushed import PushedRules
from sensor.events import Event

MARKER = """
- list: marker_binaries
  items: [cgs-marker]
- macro: marker_exec
  condition: spawned_process and proc.name in (marker_binaries)
- rule: Marker Binary Run
  desc: a pushed rule using the library's spawned_process macro
  condition: spawned_process and proc.name in (marker_binaries)
  output: marker %proc.name
  priority: WARNING
"""
USES_MARKER_LIST = """
- rule: Marker Again
  desc: uses a macro another pushed set defines
  condition: marker_exec and proc.pname = sh
  output: again
  priority: NOTICE
"""
EXEC = Event("exec", 1, pid=9, comm="cgs-marker", exe="/usr/local/bin/cgs-marker", args=("cgs-marker",), pexe="/bin/sh",
             ancestry=("/bin/sh",))


def pushed(tmp_path: Path) -> PushedRules:
    return PushedRules(tmp_path / "rules.d", default_rule_files())


def test_a_push_is_stored_and_the_engine_fires_it(tmp_path: Path) -> None:
    store = pushed(tmp_path)
    base = len(store.load().rules)
    assert len(store.apply("team", MARKER).rules) == base + 1
    engine = RuleEngine(store.load())
    assert [f.rule for f in engine.handle(EXEC)] == ["Marker Binary Run"]
    assert (tmp_path / "rules.d" / "team.yaml").read_text() == MARKER
    assert len(store.apply("team", "").rules) == base  # removed
    assert not (tmp_path / "rules.d" / "team.yaml").exists()
    assert RuleEngine(store.load()).handle(EXEC) == []


def test_a_bad_push_changes_nothing(tmp_path: Path) -> None:
    store = pushed(tmp_path)
    store.apply("team", MARKER)
    for bad, message in (("- rule: [unclosed", "invalid YAML"),
                         ("- rule: X\n  condition: proc.nam = x\n  output: o\n  priority: WARNING\n  desc: d",
                          "proc.nam")):
        with pytest.raises(RuleError, match=message) as info:
            store.apply("team", bad)
        assert "pushed rule set team" in str(info.value) and ".tmp" not in str(info.value)
    assert (tmp_path / "rules.d" / "team.yaml").read_text() == MARKER
    assert sorted(p.name for p in (tmp_path / "rules.d").iterdir()) == ["team.yaml"]  # no temp left
    for name in ("../etc/x", ".hidden", "a/b", "", "x" * 65):
        with pytest.raises(RuleError, match="name"):
            store.apply(name, MARKER)


def test_sets_are_validated_in_the_order_they_load(tmp_path: Path) -> None:
    """'b-again' uses a macro from 'a-marker' (loaded before it); removing 'a-marker' would break it."""
    store = pushed(tmp_path)
    with pytest.raises(RuleError, match="marker_exec"):
        store.apply("b-again", USES_MARKER_LIST)
    store.apply("a-marker", MARKER)
    store.apply("b-again", USES_MARKER_LIST)
    with pytest.raises(RuleError, match="marker_exec"):
        store.apply("a-marker", "")
    fired = sorted(f.rule for f in RuleEngine(store.load()).handle(EXEC))
    assert fired == ["Marker Again", "Marker Binary Run"]


def test_a_stored_set_that_stopped_loading_is_quarantined(tmp_path: Path) -> None:
    store = pushed(tmp_path)
    store.apply("good", MARKER)
    (tmp_path / "rules.d" / "broken.yaml").write_text("- rule: [unclosed")  # disk damage, hand edit
    ruleset = store.load()
    assert "Marker Binary Run" in {r.name for r in ruleset.rules}
    assert [p.name for p in store.quarantined] == ["broken.bad"]
    assert (tmp_path / "rules.d" / "broken.bad").exists()
    bad_base = PushedRules(tmp_path / "none", [tmp_path / "rules.d" / "broken.bad"])
    with pytest.raises(RuleError):  # the operator's own files are not quarantined: they must load
        bad_base.load()
