"""Malformed rule files: the loader gives a RuleSet or one RuleError line; a rule that loads can be
matched and rendered against any event without raising; ``rules check`` exits 0 or prints one line.

Conditions are made from the language's own tokens in random order, so the parser sees input that
is almost a rule far more often than random text would give it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from rules.engine import default_rule_files
from rules.errors import RuleError
from rules.fields import FIELDS
from rules.loader import load_files
from rules.policy import PolicySet
from tests.fuzz.inputs import VALUES, events, fuzz, mutated, one_line, replaced, write

LIBRARY = [p.read_bytes() for p in default_rule_files()]
DOC: list[Any] = yaml.safe_load(LIBRARY[1])
_FIELD = st.sampled_from(sorted(FIELDS))
_OP = st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "in", "intersects", "pmatch", "contains", "icontains",
                       "startswith", "endswith", "glob"])
_VALUE = st.one_of(st.sampled_from(['"sh"', "sh", "1", "-1", "0", "99999999999999999999", "(a, b)", "(l)", "()",
                                    '""', "/bin/*", "(1, 2)", "'it''s'"]), st.text(max_size=6))
_CMP = st.one_of(st.builds("{} {} {}".format, _FIELD, _OP, _VALUE), _FIELD.map("{} exists".format),
                 st.sampled_from(["m", "container", "spawned_process", "proc.aexe[2] = sh", "proc.args[99] = x"]))
# well-formed expressions (which may still be refused: wrong types, unknown macros) and token soup
_EXPR = st.recursive(_CMP, lambda e: st.one_of(st.builds("{} and {}".format, e, e), st.builds("{} or {}".format, e, e),
                                                e.map("not {}".format), e.map("({})".format)), max_leaves=6)
_TOKEN = st.one_of(_FIELD, _OP, _VALUE, st.sampled_from(["and", "or", "not", "(", ")", ",", "[", "]", "%", "\\"]))
CONDITIONS = st.one_of(_EXPR, _EXPR, _EXPR, st.lists(_TOKEN, max_size=10).map(" ".join))
OUTPUTS = st.lists(st.one_of(st.sampled_from([f"%{f}" for f in sorted(FIELDS)] + ["%proc.aexe[99]", "%", "%%"]),
                             st.text(max_size=5)), max_size=6).map(lambda parts: " ".join(["o", *parts]))


def _rule_file(condition: str, output: str, extra: Any) -> bytes:
    doc = [{"list": "l", "items": ["a", "b"]}, {"macro": "m", "condition": "proc.name in (l)"},
           {"rule": "R", "desc": "d", "condition": condition, "output": output, "priority": "WARNING", **extra}]
    return yaml.safe_dump(doc).encode()


RULE_FILES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.sampled_from(LIBRARY).flatmap(mutated),
    replaced(DOC, ["rule", "macro", "list", "condition", "exceptions", "append", "items"]).map(
        lambda doc: yaml.safe_dump(doc).encode()),
    st.builds(_rule_file, CONDITIONS, OUTPUTS,
              st.dictionaries(st.sampled_from(["exceptions", "tags", "enabled", "append", "override"]), VALUES,
                              max_size=2)))


def check_loads(path: Path) -> None:
    try:
        ruleset = load_files([path])
    except RuleError as err:
        one_line(err)
        return
    for rule in ruleset.rules:
        for ev in events():
            if rule.match(ev):
                assert isinstance(rule.render(ev), str)


@fuzz(300)
@given(data=RULE_FILES)
def test_a_malformed_rules_file_loads_or_is_one_rule_error(tmp_path: Path, data: bytes) -> None:
    check_loads(write(tmp_path / "r.yaml", data))


@fuzz(300)
@given(condition=CONDITIONS, output=OUTPUTS)
def test_a_loaded_rule_matches_and_renders_any_event(tmp_path: Path, condition: str, output: str) -> None:
    """Conditions that compile are evaluated against events of every kind, output rendered."""
    check_loads(write(tmp_path / "r.yaml", _rule_file(condition, output, {})))


@fuzz(100)
@given(data=st.one_of(st.binary(max_size=200), VALUES.map(lambda v: yaml.safe_dump(v).encode()),
                      replaced({"default": {"mode": "alert", "action": "pause"},
                                "images": [{"image": "nginx:*", "mode": "enforce", "namespace": "x"}]},
                               ["image", "mode", "action", "labels"]).map(lambda v: yaml.safe_dump(v).encode())))
def test_a_malformed_policy_file_loads_or_is_one_rule_error(tmp_path: Path, data: bytes) -> None:
    try:
        PolicySet.load(write(tmp_path / "p.yaml", data))
    except RuleError as err:
        one_line(err)


@fuzz(60)
@given(data=RULE_FILES)
def test_rules_check_on_a_malformed_file_is_one_line_or_success(tmp_path: Path, capsys: Any, data: bytes) -> None:
    from sensor.agent.cli import main

    path = write(tmp_path / "r.yaml", data)
    capsys.readouterr()
    rc = main(["rules", "check", str(path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (rc == 0 and not err) or (rc != 0 and err.count("\n") == 1), (rc, err)


def test_the_strategies_reach_rules_that_load(tmp_path: Path) -> None:
    """The generated conditions are not all refused: the fuzzing reaches the matcher."""
    assert load_files([write(tmp_path / "r.yaml", _rule_file("proc.name in (l) and m", "%proc.name x", {}))]).rules
