"""Every default rule has must-fire and must-not-fire fixtures, and they behave."""

from __future__ import annotations

import pytest

from rules.engine import RuleEngine
from rules.fixtures import load_fixtures

ENGINE = RuleEngine.load()
FIXTURES = load_fixtures()
RULES = [r.name for r in ENGINE.rules() if r.enabled]


def test_library_size_and_mitre_tags() -> None:
    assert len(RULES) >= 20
    for rule in ENGINE.rules():
        assert any(t.startswith("T1") for t in rule.tags), f"{rule.name}: no MITRE technique id"
        assert any(t.startswith("maturity_") for t in rule.tags), f"{rule.name}: no maturity tag"
        small = {"in", "by", "to", "from", "on", "of", "via", "or", "and", "a"}
        assert all(w[0].isupper() for w in rule.name.split() if w not in small), rule.name


@pytest.mark.parametrize("name", RULES)
def test_rule_has_fixtures_both_ways(name: str) -> None:
    fx = FIXTURES.get(name)
    assert fx is not None, f"rule {name!r} has no fixtures in rules/fixtures/"
    assert fx.fire and fx.no_fire, f"rule {name!r} needs must-fire AND must-not-fire events"
    for ev in fx.fire:
        assert name in [f.rule for f in ENGINE.handle(ev)], f"{name} did not fire on {ev}"
    for ev in fx.no_fire:
        assert name not in [f.rule for f in ENGINE.handle(ev)], f"{name} fired on {ev}"


def test_fixtures_name_only_existing_rules() -> None:
    assert set(FIXTURES) <= set(RULES)
