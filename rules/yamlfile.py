"""Rule and policy YAML, read defensively: UTF-8 text only, one-line parse errors, bounded size
(:data:`MAX_FILE_BYTES` on disk, checked before reading).

YAML aliases let a kilobyte expand into gigabytes once anything walks the data ("billion laughs":
anchors of lists of anchors). PyYAML's constructor shares aliased objects, so loading is cheap, but
the first ``str()`` or list expansion is not; :class:`BoundedLoader` therefore counts the nodes the
document holds *with every alias expanded* (memoised over the node graph, so counting is linear
in the file) and refuses the file above :data:`MAX_EXPANDED_NODES`, before constructing anything.
Deep nesting (``[[[[...`` thousands deep) would overflow PyYAML's recursive composer; that is
refused too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

import yaml

from rules.errors import RuleError

MAX_EXPANDED_NODES: Final = 1_000_000  # the whole library is ~10k; a real file never nears this
MAX_FILE_BYTES: Final = 4 << 20  # the whole library is ~16 KB; a rules or policy file past 4 MiB is a mistake


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses documents whose aliases expand past :data:`MAX_EXPANDED_NODES`
    nodes, or that contain a recursive alias."""

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node


def _check_expansion(root: yaml.Node) -> None:
    """Count nodes with aliases expanded, iteratively (no recursion limit), each distinct node once."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        kids = _children(node)
        if children_done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            if size[key] > MAX_EXPANDED_NODES:
                raise yaml.YAMLError(f"aliases expand to more than {MAX_EXPANDED_NODES} YAML nodes "
                                     "(a 'billion laughs' document?)")
            continue
        if key in size:
            continue
        if key in on_path:
            raise yaml.YAMLError("recursive YAML alias (a node that contains itself)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def read_text(path: Path, what: str) -> str:
    """The file's text; RuleError (exit 66) if it cannot be read, (exit 65) if it is not UTF-8 or
    is larger than :data:`MAX_FILE_BYTES` (refused before reading it: a 50 MB file costs a stat,
    not a parse; a device or FIFO that never ends is cut off at the limit, not read forever)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = b"" if size > MAX_FILE_BYTES else f.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise RuleError(f"{path}: cannot read {what}: {err.strerror or err}", exit_code=66) from err
    if size > MAX_FILE_BYTES or len(data) > MAX_FILE_BYTES:
        shown = f"{size:,} bytes" if size > MAX_FILE_BYTES else f"over {MAX_FILE_BYTES:,} bytes"
        raise RuleError(f"{path}: {what} too large ({shown}; the limit is {MAX_FILE_BYTES >> 20} MiB)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RuleError(f"{path}: not a UTF-8 text file (a {what} is YAML text)") from None


def load(text: str, name: str, loader: type[BoundedLoader] = BoundedLoader) -> Any:
    """Parse ``text``; any failure is one RuleError line ``NAME[:LINE]: invalid YAML: problem``."""
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        line = f":{mark.line + 1}" if mark else ""
        raise RuleError(f"{name}{line}: invalid YAML: {err.problem or err.context}") from None
    except yaml.reader.ReaderError as err:  # a control character: its str() spans two lines
        raise RuleError(f"{name}: invalid YAML: unacceptable character #x{err.character:04x} "
                        f"at offset {err.position}") from None
    except yaml.YAMLError as err:
        raise RuleError(f"{name}: invalid YAML: {err}") from None
    except RecursionError:
        raise RuleError(f"{name}: invalid YAML: nested too deeply") from None
