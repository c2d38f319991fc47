"""Falco condition language: tokenizer, recursive-descent parser, compiler to Python functions.

Grammar::

    expr    := and ('or' and)*
    and     := unary ('and' unary)*
    unary   := 'not' unary | '(' expr ')' | MACRO | FIELD 'exists' | FIELD OP VALUE | FIELD 'in' LIST
    LIST    := '(' VALUE (',' VALUE)* ')'     -- a VALUE naming a list expands to its items

A condition compiles once to a ``Callable[[Event], bool]``: one generated Python function whose
body is the condition as a Python expression. Macros are expanded (with cycle detection) and
lists inlined at compile time, so evaluation never looks anything up by name.
Errors are :class:`CondError` with a message naming the offending token.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Callable, Final, Mapping, Sequence

from rules.fields import BOOL, EVT_TYPE_KINDS, FIELDS, INT, STRS, Field
from sensor.events import Event

Pred = Callable[[Event], bool]
CMP_OPS = ("=", "!=", "<", "<=", ">", ">=", "contains", "icontains", "startswith", "endswith",
           "glob", "pmatch", "in", "intersects")
_TOKEN = re.compile(r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<punct>[(),])|"""
                    r"""(?P<op><=|>=|!=|=|<|>)|(?P<word>[^\s(),=<>!"']+))""")


# Limits that keep a small rules file from costing unbounded time, memory or stack. The generated
# Python nests one parenthesis per AST level and CPython refuses more than 200, so MAX_DEPTH counts
# each '(' , 'not' and macro expansion and leaves room for the and/or levels between them.
MAX_DEPTH: Final = 64
MAX_LIST_ITEMS: Final = 1_000_000  # list items inlined, all conditions of a rule set together
MAX_TESTS: Final = 100_000  # field tests after macro expansion, all conditions together


class CondError(ValueError):
    """A condition that cannot compile; the message names the token and the fix."""


@dataclass
class Budget:
    """What compiling may still expand. One is shared by every condition of a rule set, so a
    kilobyte of nested lists or doubling macros is refused instead of expanded for minutes."""

    list_items: int = MAX_LIST_ITEMS
    tests: int = MAX_TESTS


@dataclass(frozen=True)
class Tok:
    kind: str  # str | punct | op | word
    text: str


def tokenize(text: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise CondError(f"unexpected character {text[pos]!r} at offset {pos}")
        kind = m.lastgroup or "word"
        value = m.group(kind)
        if kind == "str":
            value = unescape(value)
        out.append(Tok(kind, value))
        pos = m.end()
    return out


_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "\\": "\\", "/": "/"}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def unescape(literal: str) -> str:
    """A quoted token's text, unescaped as Falco does (libsinsp filter/escaping.cpp): \\b \\f \\n
    \\r \\t \\\\ \\/ and the literal's own quote; any other escape is a CondError. Text is never
    re-encoded, so non-ASCII characters stay as written."""
    quote = literal[0]

    def one(m: re.Match[str]) -> str:
        c = m.group(1)
        if c == quote:
            return c
        if c in _ESCAPES:
            return _ESCAPES[c]
        shown = f"\\{c}" if c.isprintable() else f"\\ before {c!r}"
        raise CondError(f"unsupported escape {shown} in a quoted string "
                        f"(supported: \\b \\f \\n \\r \\t \\\\ \\/ \\{quote})")
    return _ESCAPE.sub(one, literal[1:-1])


@dataclass
class Node:
    """AST node: op in and/or/not/cmp/exists/true; kinds = event kinds it can match (None: any)."""

    op: str
    children: tuple[Node, ...] = ()
    field: Field | None = None
    index: int | str | None = None  # [N] of an indexed field, [KEY] of a keyed one
    cmp: str = ""
    values: tuple[Any, ...] = ()


class Parser:
    def __init__(self, text: str, macros: Mapping[str, str], lists: Mapping[str, Sequence[Any]],
                 stack: tuple[str, ...] = (), budget: Budget | None = None, depth: int = 0) -> None:
        self.toks = tokenize(text)
        self.i = 0
        self.macros, self.lists, self.stack = macros, lists, stack
        self.budget = budget if budget is not None else Budget()
        self.depth = depth

    def _deeper(self) -> int:
        """The depth one level down ('(', 'not' or a macro), refused past MAX_DEPTH before recursing."""
        if self.depth >= MAX_DEPTH:
            raise CondError(f"condition nests too deeply (limit {MAX_DEPTH} levels of parentheses, "
                            "'not' and macros)")
        return self.depth + 1

    def parse(self) -> Node:
        if not self.toks:
            raise CondError("empty condition")
        node = self._or()
        if self.i < len(self.toks):
            raise CondError(f"unexpected {self.toks[self.i].text!r} after a complete condition")
        return node

    def _peek(self) -> Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _next(self, what: str) -> Tok:
        tok = self._peek()
        if tok is None:
            raise CondError(f"condition ends where {what} was expected")
        self.i += 1
        return tok

    def _word(self, word: str) -> bool:
        tok = self._peek()
        if tok is not None and tok.kind == "word" and tok.text == word:
            self.i += 1
            return True
        return False

    def _or(self) -> Node:
        items = [self._and()]
        while self._word("or"):
            items.append(self._and())
        return items[0] if len(items) == 1 else Node("or", tuple(items))

    def _and(self) -> Node:
        items = [self._unary()]
        while self._word("and"):
            items.append(self._unary())
        return items[0] if len(items) == 1 else Node("and", tuple(items))

    def _unary(self) -> Node:
        if self._word("not"):
            self.depth = self._deeper()
            node = Node("not", (self._unary(),))
            self.depth -= 1
            return node
        tok = self._next("a field, macro or '('")
        if tok.kind == "punct" and tok.text == "(":
            self.depth = self._deeper()
            node = self._or()
            close = self._next("')'")
            if close.text != ")":
                raise CondError(f"expected ')' but found {close.text!r}")
            self.depth -= 1
            return node
        if tok.kind != "word":
            raise CondError(f"expected a field or macro, found {tok.text!r}")
        if tok.text in self.macros:
            return self._macro(tok.text)
        return self._comparison(tok.text)

    def _macro(self, name: str) -> Node:
        if name in self.stack:
            raise CondError(f"macro cycle: {' -> '.join((*self.stack, name))}")
        try:
            return Parser(self.macros[name], self.macros, self.lists, (*self.stack, name), self.budget,
                          self._deeper()).parse()
        except CondError as err:
            if str(err).startswith(("macro cycle", "in macro", "condition nests", "condition expands")):
                raise
            raise CondError(f"in macro {name!r}: {err}") from None

    def _comparison(self, name: str) -> Node:
        self.budget.tests -= 1
        if self.budget.tests < 0:
            raise CondError(f"condition expands to more than {MAX_TESTS} field tests (macros using "
                            "macros?); the limit counts all conditions of the rule set")
        field, index = resolve_field(name, self.macros)
        tok = self._next(f"an operator after {name}")
        op = tok.text
        if op == "exists":
            return Node("exists", field=field, index=index)
        if op not in CMP_OPS:
            raise CondError(f"unknown operator {op!r} after {name} "
                            f"(operators: {', '.join(CMP_OPS)}, exists)")
        if op in ("in", "intersects", "pmatch"):
            values = self._list()
        else:
            value = self._next(f"a value after {name} {op}")
            if value.kind == "punct":
                raise CondError(f"expected a value after {name} {op}, found {value.text!r}")
            values = (value.text,)
        return Node("cmp", field=field, index=index, cmp=op, values=check_values(field, op, values))

    def _list(self) -> tuple[str, ...]:
        tok = self._next("'('")
        if tok.text != "(":
            if tok.kind == "word" and tok.text in self.lists:
                return tuple(self._expand(tok.text))
            raise CondError(f"expected '(' to start a list, found {tok.text!r}")
        items: list[str] = []
        while True:
            tok = self._next("a list item or ')'")
            if tok.text == ")" and tok.kind == "punct":
                break
            if tok.text == ",":
                continue
            if tok.kind == "word" and tok.text in self.lists:
                items.extend(self._expand(tok.text))
            else:
                items.append(tok.text)
        return tuple(items)

    def _expand(self, name: str) -> list[str]:
        """Items of a list, with items that name other lists expanded (cycles refused). Charged
        to the budget as it grows, so a list of lists of lists is refused before it is built."""
        out: list[str] = []
        # (list name, next item index, lists being expanded): iterative, however deep lists nest
        stack: list[tuple[str, int, tuple[str, ...]]] = [(name, 0, (name,))]
        while stack:
            current, pos, seen = stack.pop()
            items = self.lists[current]
            while pos < len(items):
                text = str(items[pos])
                pos += 1
                if text not in self.lists:
                    self.budget.list_items -= 1
                    if self.budget.list_items < 0:
                        raise CondError(f"list {name} expands to more than {MAX_LIST_ITEMS} items "
                                        "(the limit counts all conditions of the rule set)")
                    out.append(text)
                    continue
                if text in seen:
                    raise CondError(f"list cycle: {' -> '.join((*seen, text))}")
                stack.append((current, pos, seen))
                stack.append((text, 0, (*seen, text)))
                break
        return out


def _pair_value(pairs: tuple[tuple[str, str], ...], key: str) -> str:
    return next((v for k, v in pairs if k == key), "")


def resolve_field(name: str, macros: Mapping[str, str] = {}) -> tuple[Field, int | str | None]:
    base, index = name, None
    m = re.fullmatch(r"([\w.]+)\[([^\]]+)\]", name)
    key = ""
    if m:
        base, key = m.group(1), m.group(2)
    field = FIELDS.get(base)
    if field is None:
        known = [*FIELDS, *macros]
        prefixed = [k for k in known if base.startswith(k) or k.startswith(base)]
        hint = sorted(prefixed, key=len, reverse=True)[:1] or difflib.get_close_matches(base, known, n=1)
        suffix = f" (did you mean {hint[0]}?)" if hint else ""
        raise CondError(f"unknown field or macro '{base}'{suffix}")
    if m and field.keyed:
        return field, key
    if m and not (field.indexed and key.isdigit()):
        raise CondError(f"field {base} takes no [{key}]" if not field.indexed else
                        f"field {base} takes a number in [N], not [{key}]")
    if m:
        index = int(key)
    elif field.keyed:
        raise CondError(f"field {base} needs a key: {base}[KEY]")
    return field, index


def check_values(field: Field, op: str, values: tuple[str, ...]) -> tuple[Any, ...]:
    ftype = INT if field.name == "evt.arg" else field.type
    if ftype == INT:
        if op in ("contains", "icontains", "startswith", "endswith", "glob", "pmatch"):
            raise CondError(f"operator {op} needs a string field, {field.name} is a number")
        try:
            return tuple(int(v, 0) for v in values)
        except ValueError:
            raise CondError(f"{field.name} is a number, {values[0]!r} is not") from None
    if ftype == BOOL:
        if op not in ("=", "!="):
            raise CondError(f"{field.name} is a boolean: only = and != apply")
        bad = [v for v in values if v.lower() not in ("true", "false")]
        if bad:
            raise CondError(f"{field.name} is a boolean, {bad[0]!r} is not true/false")
        return tuple(v.lower() == "true" for v in values)
    if op in ("<", "<=", ">", ">="):
        raise CondError(f"operator {op} needs a number field, {field.name} is a string")
    return values


def kinds_of(node: Node) -> frozenset[str] | None:
    """Event kinds a condition can match (from its evt.type tests), None if any kind."""
    if node.op == "cmp" and node.field is not None and node.field.name == "evt.type":
        if node.cmp in ("=", "in"):
            return frozenset(EVT_TYPE_KINDS.get(v, "sys") for v in node.values)
        return None
    if node.op == "and":
        sets = [k for k in map(kinds_of, node.children) if k is not None]
        return frozenset.intersection(*sets) if sets else None
    if node.op == "or":
        # sets holds None for a child that matches any kind (checked before the union); the name's
        # type, list[frozenset[str]], comes from the "and" branch above.
        sets = list(map(kinds_of, node.children))  # type: ignore[arg-type]
        return None if any(s is None for s in sets) else frozenset().union(*sets)
    return None


def compile_node(node: Node, name: str = "condition") -> Pred:
    """One Python function per condition, generated from the AST: and/or/not become Python's own
    short-circuit operators and each test reads its field inline (``ev.comm in _k0``). Closure
    chains cost three calls per test and were the rule engine's time on the exec path."""
    gen = _Codegen()
    src = f"def match(ev):\n    return bool({gen.expr(node)})\n"
    scope = dict(gen.consts)
    exec(compile(src, f"<{name}>", "exec"), scope)  # noqa: S102 - source built from the AST above
    fn: Pred = scope["match"]
    fn.__doc__ = src
    return fn


class _Codegen:
    """Python source for a condition AST; values too complex for a literal become named consts."""

    def __init__(self) -> None:
        self.consts: dict[str, Any] = {}
        self.temps = 0

    def const(self, value: Any) -> str:
        """Source naming ``value``. Rule text reaches the generated source only here, as the
        ``repr`` of a str, int or bool (always a plain literal); anything else is a name bound
        in the function's globals, and field names come from rules/fields.py."""
        if type(value) in (str, int, bool):
            return repr(value)
        name = f"_k{len(self.consts)}"
        self.consts[name] = value
        return name

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    def expr(self, node: Node) -> str:
        if node.op in ("and", "or"):
            return "(" + f" {node.op} ".join(self.expr(c) for c in node.children) + ")"
        if node.op == "not":
            return f"(not {self.expr(node.children[0])})"
        assert node.field is not None  # noqa: S101 - type narrowing: the parser sets field on every field node
        if node.field.type == STRS and node.index is None and node.op == "cmp":
            return f"{self.const(_any_item(node))}(ev)"  # a test over each item: rare, a call
        x = self.getter(node)
        if node.op == "exists":
            return f"({x} not in ('', 0, (), None))"
        return self.test(node.cmp, node.values, x)

    def getter(self, node: Node) -> str:
        assert node.field is not None  # noqa: S101 - type narrowing: the parser sets field on every field node
        field, index = node.field, node.index
        x = f"ev.{field.attr}" if field.attr else f"{self.const(field.get)}(ev)"
        if index is None:
            return x
        if isinstance(index, str):  # k8s.pod.label[app]: the pairs, searched for the key
            return f"{self.const(_pair_value)}({x}, {self.const(index)})"
        # proc.aname[1] is the parent (ancestry[0]); evt.arg[0] is the first argument
        pos = index - 1 if field.name.startswith("proc.a") else index
        default = self.const(0 if field.name == "evt.arg" else "")
        if pos < 0:
            return default
        t = self.temp()
        return f"({t}[{pos}] if len({t} := {x}) > {pos} else {default})"

    def test(self, op: str, values: tuple[Any, ...], x: str) -> str:
        c = self.const(values[0]) if values else ""
        simple = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
        if op in simple:
            return f"({x} {simple[op]} {c})"
        if op == "contains":
            return f"({c} in {x})"
        if op == "icontains":
            return f"({self.const(str(values[0]).lower())} in {x}.lower())"
        if op in ("startswith", "endswith"):
            return f"{x}.{op}({c})"
        if op == "glob":  # compiled once here, not looked up in fnmatch's cache per call
            return f"({self.const(re.compile(fnmatch.translate(str(values[0]))))}.match({x}) is not None)"
        members = self.const(frozenset(values))
        if op == "pmatch":
            prefixes = self.const(tuple(str(p).rstrip("/") + "/" for p in values))
            t = self.temp()
            return f"(({t} := {x}) in {members} or {t}.startswith({prefixes}))"
        if op == "intersects":
            return f"(not {members}.isdisjoint(str({x}).split()))"
        return f"({x} in {members})"


def _any_item(node: Node) -> Pred:
    """A test on a several-valued field (proc.aname ...) that holds if any one item passes it."""
    assert node.field is not None  # noqa: S101 - type narrowing: the parser sets field on every field node
    get = node.field.get
    gen = _Codegen()
    body = gen.test(node.cmp, node.values, "x")
    scope = dict(gen.consts)
    exec(compile(f"def test(x):\n    return {body}\n", "<item test>", "exec"), scope)  # noqa: S102
    test: Callable[[Any], bool] = scope["test"]

    def any_item(ev: Event) -> bool:
        for item in get(ev):  # noqa: SIM110 - any() over a generator costs more, per event
            if test(item):
                return True
        return False
    return any_item


def _getter(node: Node) -> Callable[[Event], Any]:
    """A field's value for one event (rule output templates use it)."""
    gen = _Codegen()
    x = gen.getter(node)
    scope = dict(gen.consts)
    exec(compile(f"def get(ev):\n    return {x}\n", "<field>", "exec"), scope)  # noqa: S102
    get: Callable[[Event], Any] = scope["get"]
    return get


def compile_condition(text: str, macros: Mapping[str, str], lists: Mapping[str, Sequence[Any]],
                      stack: tuple[str, ...] = (), budget: Budget | None = None
                      ) -> tuple[Pred, frozenset[str] | None, Node]:
    """Compile ``text``: (predicate, event kinds it can match or None, AST). ``stack`` names the
    macros being expanded (for cycle detection when compiling a macro on its own); ``budget``
    (default: a fresh one) bounds the expansion, shared across calls to bound a whole rule set."""
    node = Parser(text, macros, lists, stack, budget, len(stack)).parse()
    return compile_node(node, stack[-1] if stack else "condition"), kinds_of(node), node
