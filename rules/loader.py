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

from rules.condition import CondError, Node, compile_condition, resolve_field
from rules.errors import RuleError
from sensor.events import PRIORITIES, Event

ENGINE_VERSION = 1
RULE_KEYS = {"rule", "desc", "condition", "output", "priority", "tags", "exceptions", "enabled",
             "source", "append", "override"}
_PRIORITY_ALIASES = {"INFO": "INFORMATIONAL", "WARN": "WARNING", "ERR": "ERROR", "CRIT": "CRITICAL"}
_OUTPUT_FIELD = re.compile(r"%([\w.]+(?:\[\d+\])?)")


class _LineLoader(yaml.SafeLoader):
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
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RuleError(f"{path}: cannot read rules file: {err.strerror}", exit_code=66) from err
    return _parse(text, str(path))


def _parse(text: str, name: str) -> list[dict[str, Any]]:
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise RuleError(f"{name}{line}: invalid YAML: {getattr(err, 'problem', err)}") from None
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
    _check_macros(macros, lists, docs)
    compiled = [_compile_rule(name, idx, item, macros, lists) for name, idx, item in raw_rules]
    return RuleSet(compiled, macros, lists, [n for n, _ in docs])


def _collect(name: str, item: dict[str, Any], counters: dict[str, int], lists: dict[str, list[Any]],
             macros: dict[str, str], raw_rules: list[tuple[str, int, dict[str, Any]]]) -> None:
    if "required_engine_version" in item:
        want = item["required_engine_version"]
        if not isinstance(want, int) or want > ENGINE_VERSION:
            raise RuleError(f"{_where(name, item, 'required_engine_version')}: needs engine "
                            f"version {want}, this is {ENGINE_VERSION}")
        return
    if "list" in item:
        i = counters["lists"]
        counters["lists"] += 1
        items = item.get("items")
        if not isinstance(items, list):
            raise RuleError(f"{_where(name, item, f'lists[{i}].items')}: must be a YAML list")
        if item.get("append") and item["list"] in lists:
            lists[item["list"]].extend(items)
        else:
            lists[str(item["list"])] = list(items)
        return
    if "macro" in item:
        i = counters["macros"]
        counters["macros"] += 1
        cond = item.get("condition")
        if not isinstance(cond, str) or not cond.strip():
            raise RuleError(f"{_where(name, item, f'macros[{i}].condition')}: missing or empty")
        prev = macros.get(item["macro"])
        macros[str(item["macro"])] = f"({prev}) {cond}" if item.get("append") and prev else cond
        item["__file__"] = name
        return
    if "rule" in item:
        raw_rules.append((name, counters["rules"], item))
        counters["rules"] += 1
        return
    raise RuleError(f"{name}:{item.get('__line__', 0)}: object is none of rule, macro, list, "
                    "required_engine_version")


def _check_macros(macros: dict[str, str], lists: dict[str, list[Any]],
                  docs: list[tuple[str, list[dict[str, Any]]]]) -> None:
    """Compile every macro on its own so errors point at the macro, not at a rule using it."""
    index = {item["macro"]: (name, item) for name, items in docs for item in items if "macro" in item}
    for mname, (fname, item) in index.items():
        try:
            compile_condition(macros[mname], macros, lists, (mname,))
        except CondError as err:
            raise RuleError(f"{fname}:{item.get('__line__', 0)}: macro {mname}: {err}") from None


def _compile_rule(name: str, idx: int, item: dict[str, Any], macros: dict[str, str],
                  lists: dict[str, list[Any]]) -> CompiledRule:
    where: Callable[[str], str] = lambda key: _where(name, item, f"rules[{idx}].{key}")  # noqa: E731
    unknown = set(item) - RULE_KEYS - {"__line__"}
    if unknown:
        raise RuleError(f"{where(sorted(unknown)[0])}: unknown key (keys: {', '.join(sorted(RULE_KEYS))})")
    for key in ("condition", "output", "priority"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise RuleError(f"{where(key)}: missing or empty")
    priority = _priority(item["priority"], where("priority"))
    condition = item["condition"]
    exc = _exceptions(item.get("exceptions") or [], lists, where)
    full = f"({condition}) and not ({exc})" if exc else condition
    try:
        match, kinds, ast = compile_condition(full, macros, lists)
    except CondError as err:
        raise RuleError(f"{where('condition')}: {err}") from None
    render = _renderer(item["output"], where("output"))
    tags = item.get("tags") or []
    if not isinstance(tags, list):
        raise RuleError(f"{where('tags')}: must be a list")
    return CompiledRule(str(item["rule"]), str(item.get("desc", "")), condition, item["output"],
                        priority, tuple(str(t) for t in tags), kinds, match, render, name,
                        int(item.get("__line__", 0)), bool(item.get("enabled", True)), ast)


def _priority(value: str, where: str) -> str:
    p = value.strip().upper()
    p = _PRIORITY_ALIASES.get(p, p)
    if p not in PRIORITIES:
        raise RuleError(f"{where}: unknown priority {value!r} (one of {', '.join(PRIORITIES)})")
    return p


def _exceptions(excs: list[Any], lists: dict[str, list[Any]], where: Callable[[str], str]) -> str:
    """Falco's structured exceptions -> one condition string ORing every exception value."""
    parts: list[str] = []
    for i, exc in enumerate(excs):
        if not isinstance(exc, dict) or "name" not in exc or "fields" not in exc:
            raise RuleError(f"{where(f'exceptions[{i}]')}: needs name and fields")
        fields = exc["fields"] if isinstance(exc["fields"], list) else [exc["fields"]]
        comps = exc.get("comps") or ["="] * len(fields)
        comps = comps if isinstance(comps, list) else [comps]
        if len(comps) != len(fields):
            raise RuleError(f"{where(f'exceptions[{i}].comps')}: {len(comps)} comps for "
                            f"{len(fields)} fields")
        for v, values in enumerate(exc.get("values") or []):
            values = values if isinstance(values, list) else [values]
            if len(fields) == 1 and comps[0] == "in":
                values = [values]
            if len(values) != len(fields):
                raise RuleError(f"{where(f'exceptions[{i}].values[{v}]')}: {len(values)} values "
                                f"for {len(fields)} fields")
            terms = zip(fields, comps, values, strict=True)
            parts.append(" and ".join(_exc_term(f, c, val) for f, c, val in terms))
    return " or ".join(f"({p})" for p in parts)


def _exc_term(field_name: str, comp: str, value: Any) -> str:
    if comp in ("in", "pmatch", "intersects"):
        items = value if isinstance(value, list) else [value]
        return f"{field_name} {comp} ({', '.join(_quote(x) for x in items)})"
    return f"{field_name} {comp} {_quote(value)}"


def _quote(value: Any) -> str:
    text = str(value)
    return text if re.fullmatch(r"[\w./:*-]+", text) else '"' + text.replace('"', '\\"') + '"'


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
            text = text.replace(token, " ".join(value) if isinstance(value, tuple) else
                                (str(value) if value not in ("", None) else "<NA>"))
        return text.strip()

    return render
