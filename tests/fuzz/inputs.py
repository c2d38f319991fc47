"""Shared pieces of the fuzz tier: one hypothesis profile (derandomized: the same cases every run,
so a failure reproduces and CI is not flaky; no example database on disk), valid seeds of each
file format, and strategies that turn them into malformed input.

Malformed input comes three ways: random bytes; a valid file mutated (bytes flipped, cut, spliced,
inserted, deleted: what a bad disk or a crash does); and well-formed msgpack or YAML holding the
wrong things (what a hostile writer does, and what gets past the framing into the checks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from sensor.events import CONNECT, EXEC, Event, Finding

# Each test sets max_examples to fit its cost; the tier as a whole stays well under a minute.
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


def fuzz(max_examples: int) -> settings:
    """The tier's settings with this test's number of cases (fit to what one case costs)."""
    return settings(FUZZ, max_examples=max_examples)


def events() -> list[Event]:
    start = 1_700_000_000_000_000_000
    return [Event(EXEC, start, pid=10, ppid=1, comm="sh", exe="/bin/sh", args=("sh", "-c", "id"),
                  container_id="c" * 64, image="nginx:1.25", ancestry=("runc",)),
            Event(CONNECT, start + 1, pid=11, comm="curl", exe="/usr/bin/curl", proto="tcp", family="ipv4",
                  daddr="10.0.0.1", dport=443, container_id="c" * 64),
            Event("syscall", start + 2, pid=12, syscall_nr=59, sc_args=(1, 2, 3))]


def findings() -> list[Finding]:
    return [Finding("rule", "Shell in Container", "WARNING", "a shell", ev, time_ns=ev.time_ns, source="rule",
                    tags=("T1059",), explanation={"expected": ["nginx"], "score": 0.5}) for ev in events()]


# -- strategies --------------------------------------------------------------------------------
def mutated(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` with one to four edits: a byte changed, the tail cut, bytes inserted or deleted,
    a stretch repeated."""
    n = len(valid)
    edit = st.one_of(st.tuples(st.just("set"), st.integers(0, n - 1), st.integers(0, 255)),
                     st.tuples(st.just("cut"), st.integers(0, n), st.just(0)),
                     st.tuples(st.just("insert"), st.integers(0, n), st.binary(min_size=1, max_size=12)),
                     st.tuples(st.just("delete"), st.integers(0, n), st.integers(1, 16)),
                     st.tuples(st.just("repeat"), st.integers(0, n), st.integers(1, 64)))
    return st.lists(edit, min_size=1, max_size=4).map(lambda edits: _apply(valid, edits))


def _apply(data: bytes, edits: list[tuple[str, int, Any]]) -> bytes:
    buf = bytearray(data)
    for op, at, arg in edits:
        at = min(at, len(buf))
        if op == "set" and at < len(buf):
            buf[at] = arg
        elif op == "cut":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = arg
        elif op == "delete":
            del buf[at:at + arg]
        elif op == "repeat":
            buf[at:at] = buf[at:at + arg]
    return bytes(buf)


# msgpack values of every kind, ints at and past every width edge, nested a little
_EDGE_INTS = st.sampled_from([0, 1, -1, 2**31, 2**32, 2**63 - 1, 2**63, -(2**63), 2**64 - 1])
_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), _EDGE_INTS,
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.binary(max_size=12))
_KEYS = st.one_of(st.text(max_size=8), st.integers(-(2**63), 2**64 - 1), st.binary(max_size=4))
VALUES: st.SearchStrategy[Any] = st.recursive(
    _LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=12)


def replaced(obj: Any, keys: list[str]) -> st.SearchStrategy[Any]:
    """``obj`` (a nested dict/list) with one to three values at its paths replaced by any msgpack
    value, or removed: well-formed input that holds the wrong thing somewhere."""
    paths = _paths(obj)
    # an index into paths, not sampled_from(paths): hypothesis would print every path in a failure
    path = st.integers(0, len(paths) - 1).map(paths.__getitem__)
    edit = st.tuples(path, st.one_of(VALUES, st.just(_REMOVE), st.sampled_from(keys)))
    return st.lists(edit, min_size=1, max_size=3).map(lambda edits: _replace_all(obj, edits))


_REMOVE = object()


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for k, v in items:
        out += _paths(v, (*prefix, k))
    return out


def _replace_all(obj: Any, edits: list[tuple[tuple[Any, ...], Any]]) -> Any:
    obj = msgpack.unpackb(msgpack.packb(obj, use_bin_type=True), raw=False, strict_map_key=False)  # a deep copy
    for path, value in edits:
        parent = obj
        try:
            for k in path[:-1]:
                parent = parent[k]
            if value is _REMOVE:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit changed what this path went through
    return obj


def one_line(err: BaseException) -> None:
    """The package's error contract: a non-empty message on one line."""
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text, repr(text)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
