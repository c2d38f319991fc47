"""Rule engine: operators, macros and lists, exceptions, output, indexing, and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.condition import Node
from rules.engine import RuleEngine
from rules.errors import RuleError
from rules.loader import load_files, load_text
from sensor.events import Event

EXEC = Event("exec", 1, pid=7, ppid=1, comm="nc", exe="/usr/bin/nc", args=("nc", "-l", "-p", "80"),
             uid=1000, container_id="f" * 64, container_name="web", image="repo/app:1.2",
             pexe="/usr/sbin/httpd", ancestry=("/usr/sbin/httpd", "/bin/sh", "/dev/fd/5"))


def fires(cond: str, ev: Event = EXEC, prefix: str = "") -> bool:
    text = prefix + f"- rule: R\n  desc: d\n  condition: '{cond}'\n  output: o\n  priority: INFO\n"
    return bool(RuleEngine(load_text(text)).handle(ev))


@pytest.mark.parametrize("cond, expected", [
    ("proc.name = nc", True), ("proc.name != nc", False),
    ("proc.pid < 8", True), ("proc.pid <= 6", False), ("proc.pid > 6", True), ("proc.pid >= 8", False),
    ("user.uid = 1000", True),
    ("proc.cmdline contains \"-p 80\"", True), ("proc.exe icontains BIN/NC", True),
    ("proc.exe startswith /usr/", True), ("proc.exe endswith /nc", True),
    ("proc.exe glob \"/usr/*/n?\"", True), ("proc.exe glob \"/bin/*\"", False),
    ("proc.exe pmatch (/usr/bin, /opt)", True), ("proc.exe pmatch (/usr/b)", False),
    ("proc.name in (sh, nc)", True), ("proc.name in (sh, bash)", False),
    ("proc.args intersects (-l, -x)", True),
    ("proc.pname = httpd", True), ("proc.aname[2] = sh", True), ("proc.aname = sh", True),
    ("proc.aname = zsh", False), ("proc.aexe[3] startswith /dev/fd/", True),
    ("container.image.repository = repo/app and container.image.tag = \"1.2\"", True),
    ("container.id = ffffffffffff", True),
    ("fd.name exists", False), ("proc.pexe exists", True),
    ("not proc.name = nc", False), ("(proc.name = sh or proc.name = nc) and user.uid != 0", True),
    ("evt.type = execve", True), ("evt.type in (connect, accept)", False),
])
def test_operators(cond: str, expected: bool) -> None:
    assert fires(cond) is expected


def test_macros_lists_nested_and_appended() -> None:
    prefix = ("- list: tools\n  items: [nc]\n- list: more\n  items: [tools, socat]\n"
              "- list: more\n  items: [nmap]\n  append: true\n"
              "- macro: is_tool\n  condition: proc.name in (more)\n"
              "- macro: risky\n  condition: is_tool and user.uid != 0\n")
    assert fires("risky", prefix=prefix)
    assert not fires("risky", EXEC.replace(comm="ls"), prefix=prefix)


def test_exceptions_suppress_only_matching_tuples() -> None:
    text = """
- rule: Tool
  desc: d
  condition: proc.name in (nc, socat)
  output: "%proc.name by %proc.pname in %container.name"
  priority: WARNING
  exceptions:
    - name: httpd_nc
      fields: [proc.name, proc.pname]
      comps: [=, =]
      values:
        - [nc, httpd]
"""
    engine = RuleEngine(load_text(text))
    assert engine.handle(EXEC) == []
    hit = engine.handle(EXEC.replace(pexe="/usr/bin/python3"))
    assert hit and hit[0].output == "nc by python3 in web" and hit[0].priority == "WARNING"


def test_rules_indexed_by_kind() -> None:
    engine = RuleEngine.load()
    exec_rules = {r.name for r in engine.rules_for("exec")}
    assert "Network Tool Launched in Container" in exec_rules
    assert "Ptrace Attach" not in exec_rules
    assert {r.name for r in engine.rules_for("sys")} >= {"Ptrace Attach", "Mount in Container"}


@pytest.mark.parametrize("body, message", [
    ("  condition: proc.exename = x",
     r"x.yaml:1: rules\[0\].condition: unknown field or macro 'proc.exename' \(did you mean proc.exe\?"),
    ("  condition: proc.name like x", r"unknown operator 'like'"),
    ("  condition: proc.pid startswith 1", r"operator startswith needs a string field"),
    ("  condition: proc.pid = abc", r"proc.pid is a number, 'abc' is not"),
    ("  condition: proc.name in (a, b", r"condition ends where"),
    ("  condition: undefined_macro and proc.name = x", r"unknown field or macro 'undefined_macro'"),
    ("  condition: proc.name = x)", r"unexpected '\)'"),
])
def test_error_messages_name_file_line_and_path(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(f"- rule: R\n  desc: d\n{body}\n  output: o\n  priority: INFO\n")
    with pytest.raises(RuleError, match=message):
        load_files([path])


def test_other_errors(tmp_path: Path) -> None:
    cycle = "- macro: a\n  condition: b\n- macro: b\n  condition: a\n"
    with pytest.raises(RuleError, match="macro cycle: a -> b -> a"):
        load_text(cycle, "c.yaml")
    with pytest.raises(RuleError, match=r"rules\[0\].priority: unknown priority 'LOUD'"):
        load_text("- rule: R\n  condition: proc.name = x\n  output: o\n  priority: LOUD\n")
    with pytest.raises(RuleError, match=r"rules\[0\].output: missing"):
        load_text("- rule: R\n  condition: proc.name = x\n  priority: INFO\n")
    with pytest.raises(RuleError, match="invalid YAML"):
        load_text("- rule: [unclosed\n")
    with pytest.raises(RuleError, match="needs engine version 99"):
        load_text("- required_engine_version: 99\n")
    with pytest.raises(RuleError, match=r"%proc.nmae: unknown field"):
        load_text("- rule: R\n  condition: proc.name = x\n  output: '%proc.nmae'\n  priority: INFO\n")


def test_failed_reload_keeps_last_good_rules(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("- rule: R\n  condition: proc.name = nc\n  output: o\n  priority: INFO\n")
    bad.write_text("- rule: R\n  condition: proc.nme = nc\n  output: o\n  priority: INFO\n")
    engine = RuleEngine.load([good])
    with pytest.raises(RuleError):
        engine.reload([bad])
    assert [f.rule for f in engine.handle(EXEC)] == ["R"]


def test_open_prefixes_follow_the_library() -> None:
    prefixes = dict(RuleEngine.load().open_prefixes())
    assert prefixes["/etc/shadow"] == 0 and prefixes["/etc/"] == 1 and prefixes["/proc/"] == 2
    assert len(prefixes) <= 24


def _reference(node: Node, ev: Event) -> bool:
    """The condition semantics, written plainly over the AST: what generated code must agree with."""
    import fnmatch

    if node.op in ("and", "or"):
        results = (_reference(c, ev) for c in node.children)
        return all(results) if node.op == "and" else any(results)
    if node.op == "not":
        return not _reference(node.children[0], ev)
    assert node.field is not None
    value = node.field.get(ev)
    if node.index is not None:
        pos = node.index - 1 if node.field.name.startswith("proc.a") else node.index
        value = value[pos] if 0 <= pos < len(value) else (0 if node.field.name == "evt.arg" else "")
    if node.op == "exists":
        return value not in ("", 0, (), None)
    items = value if node.field.type == "strs" and node.index is None else (value,)
    v, op = node.values[0], node.cmp
    tests = {"=": lambda x: x == v, "!=": lambda x: x != v, "<": lambda x: x < v, "<=": lambda x: x <= v,
             ">": lambda x: x > v, ">=": lambda x: x >= v, "contains": lambda x: v in x,
             "icontains": lambda x: v.lower() in x.lower(), "startswith": lambda x: x.startswith(v),
             "endswith": lambda x: x.endswith(v), "glob": lambda x: fnmatch.fnmatchcase(x, v),
             "in": lambda x: x in node.values,
             "pmatch": lambda x: any(x == p or x.startswith(p.rstrip("/") + "/") for p in node.values),
             "intersects": lambda x: bool(set(node.values) & set(str(x).split()))}
    return any(tests[op](x) for x in items)


def test_generated_conditions_agree_with_the_reference_semantics() -> None:
    """2,000 random conditions over string, number, indexed and several-valued fields, on random
    events: the compiled function and a plain AST walk give the same answer (or both raise)."""
    import random

    from rules.condition import compile_condition

    rng = random.Random(5)
    words = ["sh", "nc", "/bin/sh", "/usr/bin/nc", "/usr/bin", "-l", "80", "web", "/dev/fd/5", "", "NC", "/Usr/Bin"]
    strs = ["proc.name", "proc.exe", "proc.pexe", "proc.cmdline", "proc.args", "container.name",
            "proc.aname", "proc.aname[1]", "proc.aexe[2]", "proc.aname[0]", "container.id"]
    nums = ["proc.pid", "user.uid", "evt.arg[1]", "fd.dport"]
    str_ops = ["=", "!=", "contains", "icontains", "startswith", "endswith", "glob", "in", "pmatch",
               "intersects"]

    def leaf() -> str:
        if rng.random() < 0.1:
            return f"{rng.choice(strs + nums)} exists"
        if rng.random() < 0.3:
            op = rng.choice(["=", "!=", "<", "<=", ">", ">=", "in"])
            value = f"({rng.randint(0, 9)}, {rng.randint(0, 9)})" if op == "in" else str(rng.randint(0, 9))
            return f"{rng.choice(nums)} {op} {value}"
        op = rng.choice(str_ops)
        quoted = [f'"{w}"' for w in rng.sample(words, 2)]
        if op in ("in", "pmatch", "intersects"):
            return f"{rng.choice(strs)} {op} ({', '.join(quoted)})"
        pattern = rng.choice(['"/usr/*"', '"*n?"', '"[a-s]*"']) if op == "glob" else quoted[0]
        return f"{rng.choice(strs)} {op} {pattern}"

    def cond(depth: int = 0) -> str:
        r = rng.random()
        if depth > 2 or r < 0.4:
            return leaf()
        if r < 0.55:
            return f"not {cond(depth + 1)}"
        joiner = rng.choice([" and ", " or "])
        return "(" + joiner.join(cond(depth + 1) for _ in range(rng.randint(2, 3))) + ")"

    events = [EXEC.replace(comm=rng.choice(words[:2]), exe=rng.choice(words[2:4]), pid=rng.randint(0, 9),
                           uid=rng.randint(0, 9), args=tuple(rng.sample(words, rng.randint(0, 4))),
                           ancestry=tuple(rng.sample(words, rng.randint(0, 3))), sc_args=(1, rng.randint(0, 9)),
                           dport=rng.randint(0, 9)) for _ in range(20)]
    checked = 0
    for _ in range(2000):
        match, _kinds, node = compile_condition(cond(), {}, {})
        for ev in events:
            try:
                expected: bool | type[Exception] = _reference(node, ev)
            except (TypeError, AttributeError, IndexError) as err:
                expected = type(err)
            try:
                got: bool | type[Exception] = match(ev)
            except (TypeError, AttributeError, IndexError) as err:
                got = type(err)
            assert got == expected, (node, ev)
            checked += 1
    assert checked == 40_000
