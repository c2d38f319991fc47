"""Hostile or broken rule and policy input: every case is one RuleError line (file:line: path: reason,
exit 65), never a traceback, a hang or a memory blow-up; pushed sets that fail any way are refused
or quarantined, never fatal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

import rules.loader
from rules.engine import default_rule_files
from rules.errors import RuleError
from rules.loader import load_files, load_text
from rules.policy import PolicySet
from rules.pushed import PushedRules
from sensor.events import Event

BINARY = b"\x7fELF\x02\x01\x01\x00\xff\xfe\xc3\x28 not text"


def rule(condition: str, extra: str = "", name: str = "R") -> str:
    """A one-rule file; ``condition`` is put in single quotes (YAML doubles any ' in it)."""
    cond = condition.replace("'", "''")
    return f"- rule: {name}\n  desc: d\n  condition: '{cond}'\n  output: o\n  priority: WARNING\n{extra}"


def refused(text: str, match: str) -> str:
    with pytest.raises(RuleError, match=match) as info:
        load_text(text, "t.yaml")
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == 65
    return message


def fires(text: str, **event: Any) -> bool:
    [compiled] = load_text(text).rules
    return compiled.match(Event("exec", 1, **{"pid": 2, **event}))


# 1. binary files


def test_binary_rules_and_policy_files_are_data_errors(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(BINARY)
    for load in (lambda: load_files([path]), lambda: PolicySet.load(path)):
        with pytest.raises(RuleError, match=r"rules.yaml: not a UTF-8 text file") as info:
            load()
        assert info.value.exit_code == 65
    with pytest.raises(RuleError, match="cannot read") as missing:
        PolicySet.load(tmp_path / "absent.yaml")
    assert missing.value.exit_code == 66


def test_the_cli_prints_one_line_and_exits_65_for_a_binary_file(tmp_path: Path, capsys: Any) -> None:
    from sensor.agent.cli import main

    (tmp_path / "ls").write_bytes(BINARY)
    assert main(["rules", "check", str(tmp_path / "ls")]) == 65
    assert capsys.readouterr().err.strip().endswith("not a UTF-8 text file (a rules file is YAML text)")


# 2. string literals


def test_string_escapes_follow_falco_and_non_ascii_matches() -> None:
    assert fires(rule('proc.name = "é"'), comm="é")
    assert fires(rule("proc.name = 'naïve-日本'"), comm="naïve-日本")
    assert fires(rule(r'proc.exe = "a\\b\"c\td"'), exe='a\\b"c\td')
    assert fires(rule(r"proc.exe = 'it\'s\/x'"), exe="it's/x")
    assert not fires(rule(r'proc.exe = "a\\nb"'), exe="a\nb")  # \\ then n: a backslash and an n


@pytest.mark.parametrize("literal", [r'"\x"', r'"\x41"', r'"\u00e9"', r'"\'"', r"'\"'", r'"\q"'])
def test_unsupported_escapes_are_rule_errors(literal: str) -> None:
    message = refused(rule(f"proc.name = {literal}"), "unsupported escape")
    assert message.startswith("t.yaml:1: rules[0].condition: ")


def test_exception_values_with_quotes_and_backslashes_round_trip() -> None:
    text = rule("proc.name = sh", "  exceptions:\n  - name: odd\n    fields: proc.exe\n"
                "    values: ['C:\\dir\\x\"y', 'é é']\n")
    assert fires(text, comm="sh", exe="/bin/sh")
    assert not fires(text, comm="sh", exe='C:\\dir\\x"y') and not fires(text, comm="sh", exe="é é")


# 3. nesting


@pytest.mark.parametrize("condition", ["(" * 3000 + "proc.name = a" + ")" * 3000, "not " * 5000 + "proc.name = a",
                                       "(proc.name = a or proc.pid = 1 and " * 500 + "proc.name = b" + ")" * 500])
def test_deep_nesting_is_a_rule_error(condition: str) -> None:
    refused(rule(condition), r"nests too deeply \(limit \d+")


def test_deep_macro_chains_are_a_rule_error() -> None:
    macros = "- macro: m0\n  condition: proc.name = a\n" + "".join(
        f"- macro: m{i}\n  condition: proc.pid = 1 or (proc.name = b and m{i - 1})\n" for i in range(1, 300))
    assert "macro m" in refused(macros + rule("m299"), "nests too deeply")


def test_nesting_up_to_the_limit_compiles_and_runs() -> None:
    """The worst shape allowed (or + and levels between every '(') stays inside CPython's limits."""
    depth = 64
    inner = "proc.name = a or proc.pid = 7 and (" * (depth - 1) + "proc.name = b" + ")" * (depth - 1)
    assert fires(rule(inner, "  exceptions:\n  - {name: e, fields: proc.exe, values: [x]}\n"),
                 comm="b", pid=7)
    assert fires(rule("not " * depth + "proc.name = a"), comm="a")


# 4. types of every field


@pytest.mark.parametrize(("text", "match"), [
    (rule("proc.name = a", "  exceptions: 5\n"), r"t.yaml:1: rules\[0\].exceptions: must be a list, not a number"),
    (rule("proc.name = a", "  exceptions: [{name: e, fields: [proc.name], values: [[[x]]]}]\n"),
     r"exceptions\[0\].values\[0\]\[0\]: a list of values needs comp in"),
    (rule("proc.name = a", "  exceptions: [{name: [e], fields: proc.name}]\n"), r"exceptions\[0\].name: must be"),
    (rule("proc.name = a", "  exceptions: [{name: e, fields: [{a: 1}]}]\n"), r"exceptions\[0\].fields\[0\]: must be"),
    (rule("proc.name = a", "  exceptions: [{name: e, fields: proc.name, values: {a: 1}}]\n"), r"values: must be"),
    (rule("proc.name = a", '  enabled: "false"\n'), r"rules\[0\].enabled: must be true or false, not the string"),
    (rule("proc.name = a", "  enabled: 0\n"), r"enabled: must be true or false"),
    (rule("proc.name = a", "  desc: [a]\n").replace("  desc: d\n", ""), r"rules\[0\].desc: must be a string"),
    (rule("proc.name = a", "  tags: [T1059, [a]]\n"), r"rules\[0\].tags\[1\]: must be a string or number"),
    (rule("proc.name = a", "  tags: T1059\n"), r"rules\[0\].tags: must be a list"),
    (rule("proc.name = a", "  source: [syscall]\n"), r"rules\[0\].source: must be a string"),
    (rule("proc.name = a").replace("- rule: R", "- rule:"), r"t.yaml:1: rules\[0\].rule: missing or empty"),
    (rule("proc.name = a").replace("- rule: R", "- rule: [R]"), r"rules\[0\].rule: must be a name, not a list"),
    (rule("proc.name = a").replace("output: o", "output: [o]"), r"rules\[0\].output: must be a string"),
    ("- list: [a]\n  items: [x]\n  append: true\n", r"t.yaml:1: lists\[0\].list: must be a name, not a list"),
    ("- list: l\n  items: [x, [y]]\n", r"lists\[0\].items\[1\]: must be a string or number, not a list"),
    ("- list: l\n  items: [x, ~]\n", r"lists\[0\].items\[1\]: must be a string or number, not null"),
    ("- list: l\n  items: [x]\n  append: yes please\n", r"lists\[0\].append: must be true or false"),
    ("- macro: {a: 1}\n  condition: proc.name = a\n", r"t.yaml:1: macros\[0\].macro: must be a name, not a mapping"),
    ("- macro: m\n  condition: [proc.name = a]\n", r"macros\[0\].condition: must be a string, not a list"),
    ("- required_engine_version: true\n", r"required_engine_version: needs engine version True"),
])
def test_wrong_yaml_types_are_rule_errors(text: str, match: str) -> None:
    refused(text, match)


def test_policy_values_of_the_wrong_type_are_rule_errors(tmp_path: Path) -> None:
    for body, match in (("images: [{match: x, banned_processes: [[nc]]}]", r"banned_processes\[0\]: must be a string"),
                        ("images: [{match: [x]}]", r"images\[0\].match: must be a string"),
                        ("images: [{match: x, actions: {when: '*'}}]", r"actions: must be a list"),
                        ("images: [{match: x, denied_outbound_ports: [[1]]}]", "list of integers"),
                        ("images: [\x07]", "unacceptable character #x0007")):
        (tmp_path / "p.yaml").write_text(body)
        with pytest.raises(RuleError, match=match) as info:
            PolicySet.load(tmp_path / "p.yaml")
        assert "\n" not in str(info.value)


# 5. expansion bombs


def laughs(levels: int = 8, fan: int = 10) -> str:
    """~1 KB of YAML whose list, aliases inlined, holds fan**levels items."""
    out = ["- list: l0\n  items: &a0 [" + ", ".join(["x"] * fan) + "]\n"]
    out += [f"- list: l{i}\n  items: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]\n" for i in range(1, levels + 1)]
    return "".join(out)


# The caps are the behaviour: each bomb is refused by the message naming its cap, so nothing was
# expanded past it. How long a refusal takes is measured in bench/throughput.py (rules_bomb_refusal_ms).


def test_a_billion_laughs_of_yaml_aliases_is_refused() -> None:
    refused(laughs() + rule("proc.name in (l8)"), "aliases expand to more than 1000000 YAML nodes")
    refused("- list: r\n  items: &r [a, *r]\n", "recursive YAML alias")
    refused("- " + "[" * 20000 + "]" * 20000 + "\n", "invalid YAML: nested too deeply")
    shared = "- list: a\n  items: &x [p, q]\n- list: b\n  items: *x\n"
    assert load_text(shared).lists["b"] == ["p", "q"]  # aliases themselves are fine


def test_lists_of_lists_expanding_past_the_cap_are_refused() -> None:
    def names(levels: int) -> str:  # list n<levels> names lists ... of 10**levels items in all
        return "- list: n0\n  items: [a, b, c, d, e, f, g, h, i, j]\n" + "".join(
            f"- list: n{i}\n  items: [{', '.join([f'n{i - 1}'] * 10)}]\n" for i in range(1, levels + 1))

    message = refused(names(8) + rule("proc.name in (n8)"), r"list n8 expands to more than 1000000 items")
    assert message.startswith("t.yaml:19: rules[0].condition: ")
    assert len(load_text(names(5) + rule("proc.name in (n5)")).rules) == 1  # 100,000 items: fine
    many_rules = names(5) + "".join(rule("proc.name in (n5)", name=f"R{i}") for i in range(20))
    refused(many_rules, "expands to more than")  # the budget is the whole set's, not each rule's


def test_doubling_macros_are_refused() -> None:
    macros = "- macro: m0\n  condition: proc.name = a\n" + "".join(
        f"- macro: m{i}\n  condition: m{i - 1} or m{i - 1}\n" for i in range(1, 40))
    refused(macros + rule("m39"), "expands to more than 100000 field tests")


# 6. pushed sets: any failure quarantines (at start) or refuses (on push)


def pushed(tmp_path: Path) -> PushedRules:
    return PushedRules(tmp_path / "rules.d", default_rule_files())


GOOD = rule("spawned_process and proc.name = cgs-good", name="Good Pushed")


def test_stored_hostile_sets_are_quarantined_and_the_rest_loads(tmp_path: Path) -> None:
    store = pushed(tmp_path)
    store.apply("good", GOOD)
    d = tmp_path / "rules.d"
    (d / "a-binary.yaml").write_bytes(BINARY)
    (d / "b-laughs.yaml").write_text(laughs())
    (d / "c-types.yaml").write_text(rule("proc.name = a", "  exceptions: 5\n"))
    (d / "d-deep.yaml").write_text(rule("not " * 5000 + "proc.name = a"))
    names = {r.name for r in store.load().rules}
    assert "Good Pushed" in names
    assert sorted(p.name for p in store.quarantined) == ["a-binary.bad", "b-laughs.bad", "c-types.bad", "d-deep.bad"]
    assert sorted(p.name for p in d.glob("*.yaml")) == ["good.yaml"]


def test_a_loader_bug_quarantines_the_set_that_triggers_it(tmp_path: Path, monkeypatch: Any,
                                                             caplog: Any) -> None:
    """Not a RuleError (a bug in the loader, say): the set whose addition fails is the culprit."""
    store = pushed(tmp_path)
    store.apply("good", GOOD)
    store.apply("trigger", rule("proc.name = trigger", name="Trigger"))
    real = rules.loader._build

    def buggy(docs: list[tuple[str, list[dict[str, Any]]]]) -> Any:
        if any(name.endswith("trigger.yaml") for name, _ in docs):
            raise KeyError("bug\nwith two lines")
        return real(docs)

    monkeypatch.setattr(rules.loader, "_build", buggy)
    assert "Good Pushed" in {r.name for r in store.load().rules}
    assert [p.name for p in store.quarantined] == ["trigger.bad"]
    [record] = [r for r in caplog.records if "trigger" in r.getMessage()]
    assert "\n" not in record.getMessage() and "KeyError" in record.getMessage()
    with pytest.raises(RuleError, match="pushed rule set trigger: does not load: KeyError") as info:
        store.apply("trigger", rule("proc.name = x"))  # a push the daemon applies: refused, not raised
    assert "\n" not in str(info.value)
    monkeypatch.setattr(rules.loader, "_build", lambda docs: (_ for _ in ()).throw(KeyError("base")))
    with pytest.raises(RuleError, match="rule files do not load: KeyError"):
        PushedRules(tmp_path / "none", default_rule_files()).load()


def test_hostile_pushes_are_refused_and_change_nothing(tmp_path: Path) -> None:
    store = pushed(tmp_path)
    store.apply("team", GOOD)
    for text in (laughs(), rule("proc.name = a", "  exceptions: 5\n"), rule('proc.name = "\\x"')):
        with pytest.raises(RuleError, match="pushed rule set team"):
            store.apply("team", text)
    assert (tmp_path / "rules.d" / "team.yaml").read_text() == GOOD


# 7. the collector's PushRules: any validation failure is INVALID_ARGUMENT


def test_collector_refuses_hostile_pushes_with_invalid_argument(tmp_path: Path, monkeypatch: Any) -> None:
    from collector.auth import AuthConfig, TokenStore
    from collector.convert import pb, rpc
    from collector.server import create_server
    from collector.store import SqlStore

    server, port = create_server("127.0.0.1:0", SqlStore.open(str(tmp_path / "c.db")),
                                 AuthConfig(TokenStore(None), insecure=True))
    try:
        stub = rpc.AnalystStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        cases = [(laughs(), "aliases expand"), (rule("proc.name = a", "  exceptions: 5\n"), "must be a list"),
                 (rule("(" * 3000 + "proc.name = a" + ")" * 3000), "nests too deeply")]
        for text, match in cases:
            with pytest.raises(grpc.RpcError) as info:
                stub.PushRules(pb.RuleSet(name="team", yaml=text), timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
            assert match in (info.value.details() or "")
        monkeypatch.setattr(rules.loader, "load_sources", lambda sources: 1 / 0)  # a loader bug
        with pytest.raises(grpc.RpcError) as info:
            stub.PushRules(pb.RuleSet(name="team", yaml=GOOD), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == "pushed rule set team: does not load: ZeroDivisionError: division by zero"
        assert stub.ListRuleSets(pb.Empty(), timeout=10).sets == []  # nothing stored
    finally:
        server.stop(0)
