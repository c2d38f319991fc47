"""Record/replay: a msgpack journal of decoded events, replayed through the same pipeline.

Format (version 2): one header map ``{"format": "cgsentry-journal", "version": 2, "fields": [...],
...}`` followed by one msgpack array per event: its field values in the order ``fields`` names,
trailing defaults left off. Arrays, not maps: unpacking a map builds every key string again for
every record, which made reading twice as slow (310k vs 680k records/s). The header's field list
keeps old journals readable when Event gains fields (appended fields: the fast path; anything else:
by name). Version 1 journals (one ``Event.to_dict()`` map per event) are still read. No framing
beyond msgpack's own: a journal cut short by a crash yields every complete record and then a
:class:`DataError` naming the record.
"""

from __future__ import annotations

import dataclasses
import operator
import socket
import time
from itertools import repeat
from pathlib import Path
from typing import Any, BinaryIO, Callable, Final, Iterator

import msgpack

from sensor.errors import EX_NOINPUT, DataError, SensorError
from sensor.events import ACCEPT, CONNECT, EXEC, EXIT, FORK, LISTEN, OPEN, SYS, SYSCALL, Event

FORMAT: Final = "cgsentry-journal"
VERSION: Final = 2
FIELDS: Final = tuple(f.name for f in dataclasses.fields(Event))
_VALUES: Final = operator.attrgetter(*FIELDS)
_DEFAULTS: Final = tuple(f.default for f in dataclasses.fields(Event))
# Each field's type (a record is checked with one C-level map of isinstance), and the element
# type of the tuple fields: a journal is input, and a wrong type would surface as a traceback
# wherever the event is used (a command line joined, a comm sliced).
_TYPES: Final = (str, int) + tuple(type(d) for d in _DEFAULTS[2:])
_STR_TUPLES: Final = tuple(FIELDS.index(name) for name in ("args", "ancestry"))
_INT_TUPLES: Final = (FIELDS.index("sc_args"),)
# Per kind, the field after the last one its decoder fills: a record is cut there when everything
# after it is default (one C-level tuple compare; otherwise the whole record is written).
_END: Final = {kind: FIELDS.index(after) + 1 for kind, after in (
    (EXEC, "ancestor_pid"), (EXIT, "exit_code"), (FORK, "child_pid"), (CONNECT, "ret"),
    (ACCEPT, "ret"), (LISTEN, "ret"), (SYSCALL, "sc_args"), (OPEN, "flags"), (SYS, "flags"))}


class JournalWriter:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self._f: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        except OSError as err:
            raise SensorError(f"cannot write journal {self.path}: {err.strerror}", exit_code=73) from err
        self._packer = msgpack.Packer(use_bin_type=True)
        self.count = 0
        self._f.write(self._packer.pack({"format": FORMAT, "version": VERSION, "fields": FIELDS,
                                         "created_ns": time.time_ns(), "host": socket.gethostname()}))

    def write(self, ev: Event) -> None:
        values = _VALUES(ev)
        end = _END.get(ev.kind, 0)
        if end and values[end:] == _DEFAULTS[end:]:
            values = values[:end]
        self._f.write(self._packer.pack(values))
        self.count += 1

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()


def read_journal(path: Path | str) -> Iterator[Event]:
    """Events of a journal, in order. Raises DataError (one line) at the first bad record."""
    path = Path(path)
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError as err:
        raise SensorError(f"journal {path}: no such file", exit_code=EX_NOINPUT) from err
    except OSError as err:
        raise SensorError(f"journal {path}: {err.strerror}", exit_code=EX_NOINPUT) from err
    with f:
        unpacker = msgpack.Unpacker(f, raw=False, strict_map_key=False, use_list=False,
                                    max_buffer_size=64 << 20)
        decode, width = _decoder(path, _check_header(path, unpacker))
        n, good_end = 0, unpacker.tell()
        try:
            for rec in unpacker:
                n += 1
                good_end = unpacker.tell()
                # The positional fast path inline (a call per record costs 15 % of the read):
                # arrays were read as tuples (use_list=False), so the record is Event's argument list.
                if type(rec) is tuple and 2 <= len(rec) <= width and all(map(isinstance, rec, _TYPES)):
                    _check_elements(path, n, rec)
                    yield Event(*rec)
                else:
                    yield decode(n, rec)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, msgpack.BufferFull) as err:
            raise DataError(f"journal {path}: record {n + 1}: corrupt ({err or type(err).__name__})") from err
        # The unpacker stops at the end of the data or of the last complete record (after which
        # tell() reports what was buffered): anything past the last record's end is a partial one.
        if good_end < path.stat().st_size:
            raise DataError(f"journal {path}: record {n + 1}: truncated (file cut short?)")


def _check_header(path: Path, unpacker: msgpack.Unpacker) -> dict[str, Any]:
    try:
        head = unpacker.unpack()
    except msgpack.OutOfData:
        raise DataError(f"journal {path}: empty file, not a cgsentry journal") from None
    except Exception as err:  # any decode failure of the header
        raise DataError(f"journal {path}: not a cgsentry journal ({err})") from err
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise DataError(f"journal {path}: not a cgsentry journal (bad header)")
    version = head.get("version")
    if not isinstance(version, int) or version < 1:
        raise DataError(f"journal {path}: not a cgsentry journal (bad version {version!r})")
    if version > VERSION:
        raise DataError(f"journal {path}: format version {version} is newer than this sensor "
                        f"reads ({VERSION}); upgrade cgsentry")
    return head


def _decoder(path: Path, head: dict[str, Any]) -> tuple[Callable[[int, Any], Event], int]:
    """This journal's decoder for records off the fast path, and the widest record that can be
    passed to Event positionally (0: none, version 1 maps and foreign field lists)."""
    if head["version"] == 1:
        return (lambda n, rec: _from_map(path, n, rec)), 0
    names = head.get("fields")
    if not isinstance(names, tuple) or not all(isinstance(name, str) for name in names) or len(names) < 2:
        raise DataError(f"journal {path}: not a cgsentry journal (bad field list in the header)")
    width = len(names)
    if names == FIELDS[:width]:  # this version's fields, or the first of them (an older writer)
        return (lambda n, rec: _from_map(path, n, dict(zip(FIELDS, rec, strict=False)) if _fits(rec, width)
                                         else None)), width
    # renamed, reordered or unknown fields: match them by name (trailing defaults were left off)
    def by_name(n: int, rec: Any) -> Event:
        return _from_map(path, n, dict(zip(names, rec, strict=False)) if _fits(rec, width) else rec)
    return by_name, 0


def _check_elements(path: Path, n: int, rec: tuple[Any, ...]) -> None:
    width = len(rec)
    for i in _STR_TUPLES:
        if i < width:
            try:
                "".join(rec[i])  # a C-level check that every element is a str, 4x cheaper than isinstance
            except TypeError:
                raise DataError(f"journal {path}: record {n}: corrupt ({FIELDS[i]} holds a non-string)") from None
    for i in _INT_TUPLES:
        if i < width and rec[i] and not all(map(isinstance, rec[i], repeat(int))):
            raise DataError(f"journal {path}: record {n}: corrupt ({FIELDS[i]} holds a non-integer)")


def _checked(path: Path, n: int, ev: Event) -> Event:
    """``ev`` if every field has its type, else DataError naming the first field that does not."""
    values = _VALUES(ev)
    if not all(map(isinstance, values, _TYPES)):
        name, value = next((f, v) for f, v, t in zip(FIELDS, values, _TYPES, strict=True) if not isinstance(v, t))
        raise DataError(f"journal {path}: record {n}: corrupt ({name} is a {type(value).__name__})")
    _check_elements(path, n, values)
    return ev


def _fits(rec: Any, width: int) -> bool:
    return type(rec) is tuple and 2 <= len(rec) <= width and type(rec[0]) is str and type(rec[1]) is int


def _from_map(path: Path, n: int, rec: Any) -> Event:
    if not isinstance(rec, dict):  # None: a version-2 record that is not an event's array
        raise DataError(f"journal {path}: record {n}: corrupt (not an event record)")
    try:
        return _checked(path, n, Event(**rec))  # arrays were read as tuples (use_list=False): no copy
    except TypeError:
        pass  # a field this version does not know, or kind/time_ns missing
    try:
        return _checked(path, n, Event.from_dict(rec))
    except (TypeError, ValueError) as err:
        raise DataError(f"journal {path}: record {n}: corrupt ({err})") from err


class ReplaySource:
    """:class:`~sensor.pipeline.EventSource` over a journal; ``speed`` 0 = as fast as possible."""

    def __init__(self, path: Path | str, speed: float = 0.0) -> None:
        self.path = Path(path)
        self.speed = speed
        self._stopped = False
        self.delivered = 0

    def events(self) -> Iterator[Event]:
        first_ev = first_wall = 0
        for ev in read_journal(self.path):
            if self._stopped:
                return
            if self.speed > 0:
                if not first_ev:
                    first_ev, first_wall = ev.time_ns, time.monotonic_ns()
                due = first_wall + (ev.time_ns - first_ev) / self.speed
                delay = (due - time.monotonic_ns()) / 1e9
                if delay > 0:
                    time.sleep(delay)
            self.delivered += 1
            yield ev

    def stop(self) -> None:
        self._stopped = True

    def stats(self) -> dict[str, int]:
        return {"delivered": self.delivered}
