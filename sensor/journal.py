"""Record/replay: a msgpack journal of decoded events, replayed through the same pipeline.

Format: one header map ``{"format": "cgsentry-journal", "version": 1, ...}`` followed by one
``Event.to_dict()`` map per event, streamed (no framing beyond msgpack's own). A journal cut short
by a crash yields every complete record and then a :class:`DataError` naming the record.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import msgpack

from sensor.errors import EX_NOINPUT, DataError, SensorError
from sensor.events import Event

FORMAT = "cgsentry-journal"
VERSION = 1


class JournalWriter:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self._f: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        except OSError as err:
            raise SensorError(f"cannot write journal {self.path}: {err.strerror}", exit_code=73) from err
        self._packer = msgpack.Packer(use_bin_type=True)
        self.count = 0
        self._f.write(self._packer.pack({"format": FORMAT, "version": VERSION,
                                         "created_ns": time.time_ns(), "host": socket.gethostname()}))

    def write(self, ev: Event) -> None:
        self._f.write(self._packer.pack(ev.to_dict()))
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
        _check_header(path, unpacker)
        n, good_end = 0, unpacker.tell()
        while True:
            n += 1
            try:
                rec = unpacker.unpack()
            except msgpack.OutOfData:
                # After OutOfData tell() reports what was buffered, so compare the end of the last
                # complete record with the file size: anything left over is a partial record.
                if good_end < path.stat().st_size:
                    raise DataError(f"journal {path}: record {n}: truncated (file cut short?)") from None
                return
            except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as err:
                raise DataError(f"journal {path}: record {n}: corrupt ({err})") from err
            good_end = unpacker.tell()
            yield _event(path, n, rec)


def _check_header(path: Path, unpacker: msgpack.Unpacker) -> None:
    try:
        head = unpacker.unpack()
    except msgpack.OutOfData:
        raise DataError(f"journal {path}: empty file, not a cgsentry journal") from None
    except Exception as err:  # noqa: BLE001 - any decode failure of the header
        raise DataError(f"journal {path}: not a cgsentry journal ({err})") from err
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise DataError(f"journal {path}: not a cgsentry journal (bad header)")
    version = head.get("version")
    if not isinstance(version, int) or version < 1:
        raise DataError(f"journal {path}: not a cgsentry journal (bad version {version!r})")
    if version > VERSION:
        raise DataError(f"journal {path}: format version {version} is newer than this sensor "
                        f"reads ({VERSION}); upgrade cgsentry")


def _event(path: Path, n: int, rec: Any) -> Event:
    if not isinstance(rec, dict):
        raise DataError(f"journal {path}: record {n}: corrupt (not a map)")
    try:
        return Event(**rec)  # arrays were read as tuples (use_list=False): the hot path, no copy
    except TypeError:
        pass  # a field this version does not know, or kind/time_ns missing
    try:
        return Event.from_dict(rec)
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
