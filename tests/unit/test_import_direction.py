"""Imports flow down the layers (DESIGN.md §3), never up: checked on the source with ``ast``.

- ``sensor/agent/`` (and the ``python -m sensor`` entry script) is the composition root: the only
  code that imports sensing, models, rules and the wire format together.
- ``collector`` imports the collector, the models, the rules and the sensor's vocabulary.
- ``models`` and ``rules`` import themselves and the sensor's vocabulary.
- the rest of ``sensor`` imports the rest of ``sensor``; the vocabulary imports only itself.

The vocabulary is what every layer shares, stdlib (and msgpack) only: the package itself
(``__version__``), ``events`` (the one schema), ``errors`` (exit codes, the exception base, the CLI
error handling), ``syscalls`` (syscall names), ``layout`` (the opcodes the kernel's counters are
keyed by: models read those counts), ``journal`` (the schema's msgpack file form:
``rules test`` reads recorded events), ``files`` (the one atomic write every persisted file uses)
and ``gate`` (one action per target per burst: the sensor's response and the collector's enforce
preview).

Dynamic imports (``importlib.import_module("...")``, ``__import__("...")``) count as imports; one
whose name is not a string literal is refused, since no reader of the code can tell what it imports.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sensor", "models", "rules", "collector")
FIRST_PARTY = frozenset(PACKAGES) | {"bench", "scripts", "tests"}
UNREADABLE = "a name computed at run time"
VOCABULARY = frozenset({"sensor", "sensor.events", "sensor.errors", "sensor.syscalls", "sensor.layout",
                        "sensor.journal", "sensor.files", "sensor.text", "sensor.gate"})
ALLOWED = {
    "agent": {"agent", "sensing", "vocabulary", "models", "rules", "collector"},
    "collector": {"collector", "models", "rules", "vocabulary"},
    "models": {"models", "vocabulary"},
    "rules": {"rules", "vocabulary"},
    "sensing": {"sensing", "vocabulary"},
    "vocabulary": {"vocabulary"},
}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    statement: str
    source_layer: str
    target: str

    def __str__(self) -> str:
        if self.target == UNREADABLE:
            return f"{self.path}:{self.line}: {self.statement}  (a dynamic import of {UNREADABLE}: import it plainly)"
        allowed = ", ".join(sorted(ALLOWED[self.source_layer]))
        return (f"{self.path}:{self.line}: {self.statement}  ({self.source_layer} may import only "
                f"{allowed}; {self.target} is {layer_of_module(self.target)})")


def module_of(relpath: str) -> str:
    """``sensor/agent/cli.py`` -> ``sensor.agent.cli``; a package's ``__init__.py`` -> the package."""
    parts = relpath.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of_file(relpath: str) -> str:
    if relpath.startswith("sensor/agent/") or relpath == "sensor/__main__.py":  # the entry script
        return "agent"
    return layer_of_module(module_of(relpath))


def layer_of_module(name: str) -> str:
    top = name.split(".")[0]
    if top != "sensor":
        return top
    if name == "sensor.agent" or name.startswith("sensor.agent."):
        return "agent"
    return "vocabulary" if name in VOCABULARY else "sensing"


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _resolve_from(node: ast.ImportFrom, relpath: str) -> list[str]:
    """The modules a ``from X import a, b`` names: X.a where that is a module, else X."""
    base = node.module or ""
    if node.level:
        package = module_of(relpath).split(".")
        if not relpath.endswith("__init__.py"):
            package = package[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base for a in node.names]


def _dynamic_import(node: ast.Call) -> str | None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else UNREADABLE


def imports_of(tree: ast.AST, relpath: str) -> list[tuple[ast.stmt | ast.expr, str]]:
    """Every (node, module) the source imports, dynamic ones included."""
    found: list[tuple[ast.stmt | ast.expr, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found += [(node, name) for name in dict.fromkeys(_resolve_from(node, relpath))]
        elif isinstance(node, ast.Call) and (name := _dynamic_import(node)) is not None:
            found.append((node, name))
    return found


def check_source(relpath: str, source: str) -> list[Violation]:
    """The imports of one file (path relative to the repository) its layer may not make."""
    layer = layer_of_file(relpath)
    out: list[Violation] = []
    for node, name in imports_of(ast.parse(source, relpath), relpath):
        if name != UNREADABLE and name.split(".")[0] not in FIRST_PARTY:
            continue  # stdlib and third party: not this test's business (bcc has its own)
        if name == UNREADABLE or layer_of_module(name) not in ALLOWED[layer]:
            statement = ast.get_source_segment(source, node) or ast.unparse(node)
            out.append(Violation(relpath, node.lineno, " ".join(statement.split()), layer, name))
    return sorted(out, key=lambda v: v.line)


def source_files() -> list[str]:
    return sorted(p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                  if "_pb2" not in p.name)


def test_every_import_flows_down() -> None:
    violations = [v for rel in source_files() for v in check_source(rel, (ROOT / rel).read_text())]
    assert not violations, "imports against the layering (DESIGN.md §3):\n" + "\n".join(map(str, violations))


def test_the_layers_are_really_wired() -> None:
    """The check reads real imports: the composition root reaches every layer, the others the vocabulary."""
    edges = {(layer_of_file(rel), layer_of_module(name))
             for rel in source_files()
             for _node, name in imports_of(ast.parse((ROOT / rel).read_text()), rel)
             if name.split(".")[0] in FIRST_PARTY}
    for target in ("sensing", "vocabulary", "models", "rules", "collector"):
        assert ("agent", target) in edges
    for source in ("collector", "models", "rules", "sensing"):
        assert (source, "vocabulary") in edges


def test_the_checker_flags_bad_imports() -> None:
    bad = """
import models.engine
from collector.convert import finding_to_pb
from sensor.agent import daemon
from .agent.link import CollectorLink
importlib.import_module("rules.cli")
__import__("collector.server")
"""
    found = check_source("sensor/tracer.py", bad)
    assert [(v.line, v.target) for v in found] == [
        (2, "models.engine"), (3, "collector.convert"), (4, "sensor.agent.daemon"), (5, "sensor.agent.link"),
        (6, "rules.cli"), (7, "collector.server")]
    assert str(found[0]) == ("sensor/tracer.py:2: import models.engine  (sensing may import only sensing, "
                             "vocabulary; models.engine is models)")
    assert [v.target for v in check_source("models/engine.py", bad)] == [  # .agent.link is models.agent.link
        "collector.convert", "sensor.agent.daemon", "rules.cli", "collector.server"]
    assert [v.target for v in check_source("collector/store.py", "from sensor.tracer import Tracer\n"
                                           "from sensor import agent\n")] == ["sensor.tracer", "sensor.agent"]
    assert [v.target for v in check_source("sensor/events.py", "from sensor.tracer import Tracer\n")] == [
        "sensor.tracer"]  # the vocabulary may not pull sensing in
    computed = check_source("sensor/agent/cli.py", "for name in EXTENSIONS:\n    importlib.import_module(name)\n")
    assert [(v.line, v.target) for v in computed] == [(2, UNREADABLE)]  # even where anything may be imported
    assert str(computed[0]).endswith("import it plainly)")


def test_the_checker_lets_allowed_imports_pass() -> None:
    good = """
import json
from sensor import syscalls
from sensor.events import Event
from . import errors
importlib.import_module("numpy")
"""
    assert check_source("models/features.py", good) == []
    assert check_source("sensor/agent/daemon.py", good + "import collector.convert\nfrom models import store\n") == []
    assert check_source("sensor/__main__.py", "from sensor.agent.cli import main\n") == []
    assert check_source("collector/server.py", "from rules.policy import PolicySet\nfrom models import engine\n") == []


def test_no_test_module_imports_another() -> None:
    """Shared test helpers live in helper modules (tests/waiting.py, tests/*/helpers.py) or
    conftest fixtures: a test module imported by another runs its tests' imports twice and hides
    what is shared (STYLE.md)."""
    bad = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) and node.module
                else [])
            bad += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names
                    if n.startswith("tests.") and any(part.startswith("test_") for part in n.split("."))]
    assert not bad, "\n".join(bad)
