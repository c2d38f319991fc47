"""Operator decisions (accept, reject, mode) on a model store that a running sensor may own.

The sensor keeps its baselines in memory and saves them every 30 s, so a CLI that only rewrote a
model file was overwritten. Instead ``cgsentry-sensor model accept|reject|mode`` posts each decision
(actor, reason, time, a unique id) as one file in ``<store>/decisions/``, written atomically, and
also applies it to the model file so the store is right with no sensor running.

The engine that owns the store (the sensor's) applies pending decisions when it opens the store, on
every tick (about once a second) and before every save; it saves the baselines they touched and
only then removes them from the inbox. The decision's id goes into the baseline's audit entry, so
applying it twice (by the CLI and by the sensor, or again after a crash between save and removal)
changes nothing the second time. An advisory lock (``<store>/.lock``) serialises the CLI's
read-modify-write of a model file with the sensor's apply-and-save, so neither writes over the
other's fresh file; the inbox, not the lock, is what keeps a decision from being lost.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import msgpack

from models.baseline import MODES, ImageBaseline
from models.errors import ModelError
from models.items import key_error
from models.profile import DIMENSIONS
from models.store import set_aside
from sensor.errors import EX_DATAERR, EX_IOERR
from sensor.files import atomic_write

FORMAT = "cgsentry-decision"
VERSION = 1
ACTIONS = ("accept", "reject", "mode")
INBOX = "decisions"
LOCK = ".lock"
SUFFIX = ".decision"


@dataclass(frozen=True)
class Decision:
    action: str  # accept | reject | mode
    image_key: str
    actor: str
    reason: str = ""
    dimension: str = ""  # accept, reject
    key: tuple[Any, ...] = ()  # accept, reject
    mode: str = ""  # mode
    time_ns: int = field(default_factory=time.time_ns)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "id": self.id, "time_ns": self.time_ns,
                "action": self.action, "image_key": self.image_key, "actor": self.actor,
                "reason": self.reason, "dimension": self.dimension, "key": list(self.key), "mode": self.mode}

    @classmethod
    def from_dict(cls, data: Any) -> Decision:
        """ValueError for anything but a valid decision of a version this code reads."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a cgsentry decision")
        if not isinstance(data.get("version"), int) or data["version"] > VERSION:
            raise ValueError(f"format version {data.get('version')} is newer than this sensor reads ({VERSION})")
        d = cls(str(data["action"]), str(data["image_key"]), str(data["actor"]), str(data["reason"]),
                str(data["dimension"]), tuple(data["key"]), str(data["mode"]), int(data["time_ns"]),
                str(data["id"]))
        if d.action not in ACTIONS or (d.action == "mode") != (d.mode in MODES) \
                or (d.action != "mode") != (d.dimension in DIMENSIONS):
            raise ValueError(f"invalid {d.action!r} decision")
        problem = key_error(d.dimension, d.key) if d.action != "mode" else None
        if problem is not None:
            raise ValueError(f"invalid item: {problem}")
        return d


def inbox(store_dir: Path) -> Path:
    return store_dir / INBOX


def post(store_dir: Path, d: Decision) -> Path:
    """Queue ``d``, written atomically (sensor/files.py): a reader sees the whole decision or none,
    and on any failure nothing of it stays in the inbox."""
    path = inbox(store_dir) / f"{d.time_ns:020d}-{d.id}{SUFFIX}"
    try:
        payload = msgpack.packb(d.to_dict(), use_bin_type=True)
    except (OverflowError, TypeError, ValueError) as err:
        raise ModelError(f"cannot queue decision: {err} (item {list(d.key)!r:.60})", exit_code=EX_DATAERR) from err
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, payload)
    except OSError as err:
        raise ModelError(f"cannot queue decision in {path.parent}: {err.strerror} (run as the sensor's "
                         "user, or root)", exit_code=EX_IOERR) from err
    return path


def has_pending(store_dir: Path) -> bool:
    """Cheap (one directory listing): whether any decision waits; runs on every tick."""
    try:
        return any(name.endswith(SUFFIX) for name in os.listdir(inbox(store_dir)))
    except OSError:
        return False


def pending(store_dir: Path, owner: bool = True) -> tuple[list[tuple[Path, Decision]], list[str]]:
    """Queued decisions, oldest first, and one error per unreadable file: the ``owner`` (the
    sensor) moves it to *.corrupt-<ts>, a reader (the CLI) leaves it in place."""
    try:
        paths = sorted(p for p in inbox(store_dir).iterdir() if p.name.endswith(SUFFIX))
    except OSError:
        return [], []
    found: list[tuple[Path, Decision]] = []
    errors: list[str] = []
    for path in paths:
        try:
            found.append((path, Decision.from_dict(msgpack.unpackb(path.read_bytes(), raw=False))))
        except FileNotFoundError:
            continue  # consumed by another reader meanwhile
        except Exception as err:  # noqa: BLE001 - any unpack/validation failure: set it aside
            errors.append(f"decision {path}: {err}; " + (set_aside(path, "corrupt") if owner else
                                                           "skipped, left in place"))
    return found, errors


def done(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def apply(d: Decision, b: ImageBaseline) -> bool:
    """Apply ``d`` to ``b`` once: False if ``b``'s audit already records it. ValueError if invalid."""
    if any(entry.get("decision") == d.id for entry in b.life.audit):
        return False
    if d.action == "mode":
        b.set_mode(d.mode, d.actor, d.time_ns, d.reason)
    elif d.action == "accept":
        b.accept(d.dimension, d.key, d.actor, d.time_ns, d.reason)
    else:
        b.reject(d.dimension, d.key, d.actor, d.time_ns, d.reason)
    b.life.audit[-1]["decision"] = d.id
    return True


@contextmanager
def locked(store_dir: Path, timeout_s: float) -> Iterator[bool]:
    """Hold the store's advisory lock; yields False if another process held it for ``timeout_s``
    (the caller decides: the sensor's tick tries again next time, a save goes ahead)."""
    try:
        store_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(store_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise ModelError(f"cannot lock model store {store_dir}: {err.strerror} (run as the sensor's user, "
                         "or root)", exit_code=EX_IOERR) from err
    try:
        got = _flock(fd, time.monotonic() + timeout_s)
        try:
            yield got
        finally:
            if got:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _flock(fd: int, deadline: float) -> bool:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
