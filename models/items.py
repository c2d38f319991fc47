"""Baseline items as operators see and name them: one spelling for ``model show``, ``model diff``
and ``model accept``/``reject``, and one structured JSON form.

An item key is a tuple per dimension (models/profile.py); :data:`FIELDS` names its parts. The CLI
spelling is the parts separated by spaces, shell-quoted where needed (``process /usr/sbin/httpd 0``,
``listen tcp 8080``, ``syscall ptrace``, ``rule 'Shell Spawned by Non-Shell Program in Container'
/usr/bin/dash /usr/sbin/logrotate``); the JSON form names them
(``{"kind": "process", "exe": "/usr/sbin/httpd", "uid": 0, "count": ..., ...}``).
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import Any, Final

from models.errors import ModelError
from models.profile import ItemStat
from sensor import syscalls
from sensor.errors import EX_USAGE

FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "process": ("exe", "uid"), "parent": ("exe", "parent"), "args": ("exe", "arg"),
    "listen": ("proto", "port"), "inbound": ("proto", "port"), "outbound": ("proto", "port", "address"),
    "syscall": ("nr",), "rule": ("rule", "exe", "parent"),
    # an exec session's item: its process's exact command line, the item's own dimension, and that
    # item as spelled here (``session 'cat /tmp/healthy' process '/bin/cat 0'``)
    "session": ("command", "kind", "item")}
# Numeric parts and their ranges: what the kernel records hold (u32 uid and syscall nr, u16 port)
RANGES: Final[dict[str, tuple[int, int]]] = {"uid": (0, 2**32 - 1), "port": (0, 65535), "nr": (0, 2**32 - 1)}
_SYSCALL_NRS: Final = {name: nr for nr, name in syscalls.NAMES.items()}


def parse_key(dim: str, parts: list[str]) -> tuple[Any, ...]:
    """The key of a ``dim`` item from its CLI spelling; syscalls by name or number."""
    names = FIELDS[dim]
    if len(parts) != len(names):
        raise ModelError(f"a {dim} item is {' '.join(n.upper() for n in names)} ({len(names)} part(s)), "
                         f"got {len(parts)}: {shlex.join(parts)}", exit_code=EX_USAGE)
    return tuple(_part(dim, name, text) for name, text in zip(names, parts, strict=True))


def _part(dim: str, name: str, text: str) -> Any:
    if name not in RANGES:
        return text
    if name == "nr" and text in _SYSCALL_NRS:
        return _SYSCALL_NRS[text]
    try:
        value = int(text)
    except ValueError:
        what = "a number or a syscall name" if name == "nr" else "a number"
        raise ModelError(f"{dim} item: {name} must be {what}, got {text!r}", exit_code=EX_USAGE) from None
    lo, hi = RANGES[name]
    if not lo <= value <= hi:
        raise ModelError(f"{dim} item: {name} must be in {lo}..{hi}, got {text}", exit_code=EX_USAGE)
    return value


def key_error(dim: str, key: Any) -> str | None:
    """Why ``key`` is not a valid ``dim`` item key, or None: a list or tuple of :data:`FIELDS` [dim]'s
    parts, text for named parts, integers in :data:`RANGES` for numeric ones (as models and
    decisions store them)."""
    names = FIELDS[dim]
    if not isinstance(key, (list, tuple)) or len(key) != len(names):
        return f"a {dim} item key is [{', '.join(names)}], got {_brief(key)}"
    for name, part in zip(names, key, strict=True):
        if name not in RANGES:
            if not isinstance(part, str):
                return f"{dim} item: {name} must be text, got {_brief(part)}"
            continue
        lo, hi = RANGES[name]
        if not isinstance(part, int) or isinstance(part, bool) or not lo <= part <= hi:
            return f"{dim} item: {name} must be an integer in {lo}..{hi}, got {_brief(part)}"
    return None


def _brief(value: Any) -> str:
    """A value for a one-line error: its type and a short repr."""
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def spelling(dim: str, key: tuple[Any, ...]) -> str:
    """The key as ``model accept IMAGE DIM ...`` takes it (syscalls by name when known)."""
    if dim == "syscall" and int(key[0]) in syscalls.NAMES:
        return syscalls.NAMES[int(key[0])]
    return shlex.join(str(k) for k in key)


def label(dim: str, key: tuple[Any, ...]) -> str:
    """Human form with every part but the first named: ``/usr/sbin/httpd  uid 0``, ``read (nr 0)``."""
    if dim == "syscall":
        return f"{syscalls.name_of(int(key[0]))} (nr {key[0]})"
    first, *rest = key
    return "  ".join([str(first), *(f"{n} {v}" for n, v in zip(FIELDS[dim][1:], rest, strict=False))])


def sort_key(key: tuple[Any, ...]) -> tuple[tuple[int, int, str], ...]:
    """Numbers in numeric order, before text: syscalls 0, 1, 2, ... 10, not 0, 1, 10."""
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in key)


def to_json(dim: str, key: tuple[Any, ...], s: ItemStat) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": dim, **dict(zip(FIELDS[dim], key, strict=False))}
    if dim == "syscall":
        out["name"] = syscalls.name_of(int(key[0]))
    out.update(count=s.count, containers=len(s.containers), nodes=sorted(s.nodes),
               first_seen=iso_time(s.first_ns), last_seen=iso_time(s.last_ns), provenance=s.provenance)
    return out


def human(dim: str, key: tuple[Any, ...], s: ItemStat) -> str:
    extra = [f"count {s.count}", f"containers {len(s.containers)}"]
    if s.nodes:
        extra.append(f"nodes {','.join(sorted(s.nodes))}")
    extra.append(f"last seen {iso_time(s.last_ns)}")
    if "accepted_by" in s.provenance:
        extra.append(f"accepted by {s.provenance['accepted_by']}")
    elif dim == "rule" and "container" in s.provenance:  # learned: the rule fired while learning
        extra.append(f"learned from rule finding in {s.provenance['container']} at {iso_time(s.first_ns)}")
    return f"{label(dim, key)}  ({', '.join(extra)})"


def iso_time(time_ns: int) -> str:
    return datetime.fromtimestamp(time_ns / 1e9, tz=UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")
