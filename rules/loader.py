"""Rule files (Falco's YAML shape) -> compiled rules, refused as a whole on the first error.

Every error names the file, the line and the YAML path, e.g.
``rules/library/shells.yaml:42: rules[3].condition: unknown field 'proc.exename' (did you mean
proc.exe?)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from rules.condition import Budget, CondError, Node, compile_condition, resolve_field
from rules.errors import RuleError
from rules.yamlfile import BoundedLoader, read_text
from rules.yamlfile import load as load_yaml
from sensor.events import PRIORITIES, Event

ENGINE_VERSION = 1
RULE_KEYS = {"rule", "desc", "condition", "output", "priority", "tags", "exceptions", "enabled",
             "source", "append", "override", "learnable"}
_PRIORITY_ALIASES = {"INFO": "INFORMATIONAL", "WARN": "WARNING", "ERR": "ERROR", "CRIT": "CRITICAL"}
_LIST_COMPS = ("in", "pmatch", "intersects")
_OUTPUT_FIELD = re.compile(r"%([\w.]+(?:\[\d+\])?)")


class _LineLoader(BoundedLoader):
    """Records the 1-based line of every mapping under the key ``__line__``."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        mapping["__line__"] = node.start_mark.line + 1
        return mapping


# YAML 1.1 gives a lone "=" the special !!value tag; in rule files it is just the string "=".
# The !!value tag only resolves on scalars; the stubs cannot tie the lambda's node to ScalarNode.
_LineLoader.add_constructor("tag:yaml.org,2002:value",
                            lambda loader, node: loader.construct_scalar(node))  # type: ignore[arg-type]


@dataclass
class CompiledRule:
    name: str
    desc: str
    condition: str
    output: str
    priority: str
    tags: tuple[str, ...]
    kinds: frozenset[str] | None
    match: Callable[[Event], bool]
    render: Callable[[Event], str]
    source_file: str = ""
    line: int = 0
    enabled: bool = True
    ast: Node | None = field(default=None, repr=False)
    # A finding while its image learns becomes expected of that image (by rule, executable and
    # parent) and is quiet once it alerts; false for what no baseline may excuse (a miner, a
    # reverse shell): those always fire. Rule field ``learnable``, true when absent.
    learnable: bool = True


@dataclass
class RuleSet:
    rules: list[CompiledRule]
    macros: dict[str, str]
    lists: dict[str, list[Any]]
    files: list[str]


def load_files(paths: list[Path], texts: Mapping[Path, str] | None = None) -> RuleSet:
    """Load files in order (later files may use and append to earlier lists/macros/rules).
    ``texts`` gives the content to use for some of the paths instead of reading them (a file
    about to be written, checked in place first)."""
    docs: list[tuple[str, list[dict[str, Any]]]] = []
    for path in paths:
        docs.append((str(path), _parse(texts[path], str(path)) if texts and path in texts else _read(path)))
    return _build(docs)


def load_text(text: str, name: str = "<text>") -> RuleSet:
    return _build([(name, _parse(text, name))])


def load_sources(sources: list[tuple[str, str]]) -> RuleSet:
    """(name, YAML text) pairs, in order, as :func:`load_files` would load files of those names."""
    return _build([(name, _parse(text, name)) for name, text in sources])


def _read(path: Path) -> list[dict[str, Any]]:
    return _parse(read_text(path, "rules file"), str(path))


def _parse(text: str, name: str) -> list[dict[str, Any]]:
    data = load_yaml(text, name, _LineLoader)
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise RuleError(f"{name}: a rules file is a YAML list of rule/macro/list objects")
    return data


def _where(name: str, item: dict[str, Any], path: str) -> str:
    return f"{name}:{item.get('__line__', 0)}: {path}"


def _build(docs: list[tuple[str, list[dict[str, Any]]]]) -> RuleSet:
    lists: dict[str, list[Any]] = {}
    macros: dict[str, str] = {}
    raw_rules: list[tuple[str, int, dict[str, Any]]] = []
    for name, items in docs:
        counters = {"rules": 0, "macros": 0, "lists": 0}
        for item in items:
            _collect(name, item, counters, lists, macros, raw_rules)
    budget = Budget()  # one for the whole set: its total expansion is bounded, not each condition's
    _check_macros(macros, lists, docs, budget)
    compiled = [_compile_rule(name, idx, item, macros, lists, budget) for name, idx, item in raw_rules]
    return RuleSet(compiled, macros, lists, [n for n, _ in docs])


def _collect(name: str, item: dict[str, Any], counters: dict[str, int], lists: dict[str, list[Any]],
             macros: dict[str, str], raw_rules: list[tuple[str, int, dict[str, Any]]]) -> None:
    if "required_engine_version" in item:
        want = item["required_engine_version"]
        if not isinstance(want, int) or isinstance(want, bool) or want > ENGINE_VERSION:
            raise RuleError(f"{_where(name, item, 'required_engine_version')}: needs engine "
                            f"version {want!r}, this is {ENGINE_VERSION}")
        return
    kind = next((k for k in ("list", "macro", "rule") if k in item), None)
    if kind is not None:
        i = counters[f"{kind}s"]
        counters[f"{kind}s"] += 1
        where: Callable[[str], str] = lambda key: _where(name, item, f"{kind}s[{i}].{key}")  # noqa: E731
        _text(item[kind], where(kind), "a name")
        _optional(item, "append", bool, where)
        if kind == "list":
            _collect_list(item, lists, where)
        elif kind == "macro":
            _collect_macro(name, item, macros, where)
        else:
            raw_rules.append((name, i, item))
        return
    raise RuleError(f"{name}:{item.get('__line__', 0)}: object is none of rule, macro, list, "
                    "required_engine_version")


def _collect_list(item: dict[str, Any], lists: dict[str, list[Any]], where: Callable[[str], str]) -> None:
    items = item.get("items")
    if not isinstance(items, list):
        raise RuleError(f"{where('items')}: must be a YAML list")
    for j, value in enumerate(items):
        _scalar(value, where(f"items[{j}]"))
    if item.get("append") and item["list"] in lists:
        lists[item["list"]].extend(items)
    else:
        lists[item["list"]] = list(items)


def _collect_macro(name: str, item: dict[str, Any], macros: dict[str, str], where: Callable[[str], str]) -> None:
    cond = _text(item.get("condition"), where("condition"))
    prev = macros.get(item["macro"])
    macros[item["macro"]] = f"({prev}) {cond}" if item.get("append") and prev else cond
    item["__file__"] = name


def _text(value: Any, where: str, what: str = "") -> str:
    """``value`` if it is a non-blank string, else a RuleError naming ``where``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RuleError(f"{where}: missing or empty")
    if not isinstance(value, str):
        raise RuleError(f"{where}: must be {what or 'a string'}, not {_type(value)}")
    return value


def _scalar(value: Any, where: str) -> str:
    """A list item, tag or exception value: a string or number, as the string the condition sees."""
    if isinstance(value, (str, int, float)):
        return str(value)
    raise RuleError(f"{where}: must be a string or number, not {_type(value)}")


def _optional(item: dict[str, Any], key: str, want: type, where: Callable[[str], str]) -> None:
    if key in item and not isinstance(item[key], want):
        raise RuleError(f"{where(key)}: must be {_TYPE_NAMES[want]}, not {_type(item[key])}")


_TYPE_NAMES: dict[type, str] = {bool: "true or false", str: "a string", list: "a list", dict: "a mapping"}


def _type(value: Any) -> str:
    """YAML's name for a value's type, for error messages (quoted strings show their quotes)."""
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    names = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "a mapping"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _check_macros(macros: dict[str, str], lists: dict[str, list[Any]],
                  docs: list[tuple[str, list[dict[str, Any]]]], budget: Budget) -> None:
    """Compile every macro on its own so errors point at the macro, not at a rule using it."""
    index = {item["macro"]: (name, item) for name, items in docs for item in items if "macro" in item}
    for mname, (fname, item) in index.items():
        try:
            compile_condition(macros[mname], macros, lists, (mname,), budget)
        except CondError as err:
            raise RuleError(f"{fname}:{item.get('__line__', 0)}: macro {mname}: {err}") from None


def _compile_rule(name: str, idx: int, item: dict[str, Any], macros: dict[str, str],
                  lists: dict[str, list[Any]], budget: Budget) -> CompiledRule:
    where: Callable[[str], str] = lambda key: _where(name, item, f"rules[{idx}].{key}")  # noqa: E731
    unknown = set(item) - RULE_KEYS - {"__line__"}
    if unknown:
        raise RuleError(f"{where(sorted(unknown, key=str)[0])}: unknown key (keys: {', '.join(sorted(RULE_KEYS))})")
    for key in ("condition", "output", "priority"):
        _text(item.get(key), where(key))
    if "desc" in item:
        _text(item["desc"], where("desc"))
    _optional(item, "enabled", bool, where)
    _optional(item, "learnable", bool, where)
    _optional(item, "source", str, where)
    _optional(item, "override", dict, where)
    priority = _priority(item["priority"], where("priority"))
    condition = item["condition"]
    exc = _exceptions(item.get("exceptions", []), where)
    full = f"({condition}) and not ({exc})" if exc else condition
    try:
        match, kinds, ast = compile_condition(full, macros, lists, budget=budget)
    except CondError as err:
        raise RuleError(f"{where('condition')}: {err}") from None
    render = _renderer(item["output"], where("output"))
    tags = item.get("tags", [])
    if not isinstance(tags, list):
        raise RuleError(f"{where('tags')}: must be a list, not {_type(tags)}")
    return CompiledRule(item["rule"], item.get("desc", ""), condition, item["output"], priority,
                        tuple(_scalar(t, where(f"tags[{j}]")) for j, t in enumerate(tags)), kinds, match,
                        render, name, int(item.get("__line__", 0)), item.get("enabled", True), ast,
                        item.get("learnable", True))


def _priority(value: str, where: str) -> str:
    p = value.strip().upper()
    p = _PRIORITY_ALIASES.get(p, p)
    if p not in PRIORITIES:
        raise RuleError(f"{where}: unknown priority {value!r} (one of {', '.join(PRIORITIES)})")
    return p


def _exceptions(excs: Any, where: Callable[[str], str]) -> str:
    """Falco's structured exceptions -> one condition string ORing every exception value."""
    if not isinstance(excs, list):
        raise RuleError(f"{where('exceptions')}: must be a list, not {_type(excs)}")
    parts: list[str] = []
    for i, exc in enumerate(excs):
        at = f"exceptions[{i}]"
        if not isinstance(exc, dict) or "name" not in exc or "fields" not in exc:
            raise RuleError(f"{where(at)}: needs name and fields")
        _text(exc["name"], where(f"{at}.name"))
        fields = _names(exc["fields"], where(f"{at}.fields"))
        comps = _names(exc.get("comps") or ["="] * len(fields), where(f"{at}.comps"))
        if len(comps) != len(fields):
            raise RuleError(f"{where(f'{at}.comps')}: {len(comps)} comps for {len(fields)} fields")
        values = exc.get("values") or []
        if not isinstance(values, list):
            raise RuleError(f"{where(f'{at}.values')}: must be a list, not {_type(values)}")
        for v, row in enumerate(values):
            terms = _exc_row(row, fields, comps, where(f"{at}.values[{v}]"))
            parts.append(" and ".join(_exc_term(f, c, val) for f, c, val in terms))
    return " or ".join(f"({p})" for p in parts)


def _names(value: Any, where: str) -> list[str]:
    """Exception fields or comps: one string or a list of strings."""
    items = value if isinstance(value, list) else [value]
    return [_text(x, f"{where}[{k}]" if isinstance(value, list) else where) for k, x in enumerate(items)]


def _exc_row(row: Any, fields: list[str], comps: list[str], where: str) -> list[tuple[str, str, Any]]:
    """One exception value row -> (field, comp, value) terms; a value is a string/number, or a
    list of them for in/pmatch/intersects."""
    values = row if isinstance(row, list) else [row]
    if len(fields) == 1 and comps[0] == "in":
        values = [values]
    if len(values) != len(fields):
        raise RuleError(f"{where}: {len(values)} values for {len(fields)} fields")
    for k, (comp, value) in enumerate(zip(comps, values, strict=True)):
        if isinstance(value, list) and comp not in _LIST_COMPS:
            raise RuleError(f"{where}[{k}]: a list of values needs comp in, pmatch or intersects, not {comp}")
        for x in value if isinstance(value, list) else [value]:
            _scalar(x, f"{where}[{k}]")
    return list(zip(fields, comps, values, strict=True))


def _exc_term(field_name: str, comp: str, value: Any) -> str:
    if comp in _LIST_COMPS:
        items = value if isinstance(value, list) else [value]
        return f"{field_name} {comp} ({', '.join(_quote(x) for x in items)})"
    return f"{field_name} {comp} {_quote(value)}"


def _quote(value: Any) -> str:
    """``value`` as a condition token: bare if it is one word, else quoted with \\ and \" escaped."""
    text = str(value)
    if re.fullmatch(r"[\w./:*-]+", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _renderer(output: str, where: str) -> Callable[[Event], str]:
    names = _OUTPUT_FIELD.findall(output)
    getters = []
    for n in names:
        try:
            field, index = resolve_field(n)
        except CondError as err:
            raise RuleError(f"{where}: %{n}: {err}") from None
        getters.append((n, field, index))
    from rules.condition import Node, _getter

    compiled = [(f"%{n}", _getter(Node("cmp", field=f, index=i))) for n, f, i in getters]
    compiled.sort(key=lambda pair: -len(pair[0]))  # %proc.pname before %proc.p...

    def render(ev: Event) -> str:
        text = output
        for token, get in compiled:
            value = get(ev)
            # map(str): a tuple field may hold numbers (%evt.arg is a syscall's integer arguments)
            text = text.replace(token, " ".join(map(str, value)) if isinstance(value, tuple) else
                                (str(value) if value not in ("", None) else "<NA>"))
        return text.strip()

    return render
