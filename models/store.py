"""Baselines on disk: versioned msgpack per image, atomic writes, unreadable files reported.

:func:`load` never moves a file: it raises :class:`UnreadableModel` for a file that is not a
model, is corrupt (msgpack or any field of the wrong type, shape or range, see models/schema.py)
or is of a newer format version. Only the sensor that owns the store calls :func:`quarantine` on
it (``*.corrupt-<ts>``, or ``*.newer-<ts>`` so a newer sensor's baseline is kept for it); read-only
commands report the file and leave it where it is.

No pickle: the rate model is stored as its training windows (raw float64 bytes + shape) and
refit on load with its seed, which reproduces identical scores.

Format history: 1 — first; 2 — the rate model names the features it fits (``rate.scored``: the
syscall-profiler features are recorded but not fitted, they read 0 once an image stops learning),
items carry the nodes that saw them. A version-1 file is migrated on load (its rate model then
fits on :data:`~models.features.SCORED_FEATURES`, from the same stored windows).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import msgpack

from models import schema
from models.baseline import ImageBaseline, Lifecycle, ModelConfig
from models.errors import ModelError
from models.features import SCORED_FEATURES
from models.profile import ImageProfile
from models.ratemodel import RateModel
from sensor.files import atomic_write

FORMAT = "cgsentry-model"
VERSION = 2


def file_name(key: str) -> str:
    """Stable, filesystem-safe name for an image key (digests and repo:tag alike)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:80]
    return f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.model"


def to_dict(b: ImageBaseline) -> dict[str, Any]:
    life = b.life.__dict__.copy()
    return {"format": FORMAT, "version": VERSION, "key": b.key, "image": b.image,
            "profile": b.profile.to_dict(), "rate": b.rate.to_dict(), "life": life}


class NewerModel(ModelError):
    """A model of a format version newer than this code reads."""


class UnreadableModel(ModelError):
    """A model file this sensor cannot use; ``newer`` when it is a newer format, not a corrupt one."""

    def __init__(self, path: Path, reason: str, newer: bool = False) -> None:
        super().__init__(f"model {path}: {reason}")
        self.path, self.newer = path, newer


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """An older format's dict as the current one (a copy; a current dict is returned as is)."""
    version = data.get("version", VERSION)
    if version == 1 and isinstance(data.get("rate"), dict):
        # items' 5-field rows read as "no nodes" (ItemStat.from_list); the rate model scored every
        # feature, including those that read 0 after learning: fit it on the scored set instead
        data = {**data, "version": 2, "rate": {**data["rate"], "scored": list(SCORED_FEATURES)}}
    return data


def from_dict(data: Any, config: ModelConfig) -> ImageBaseline:
    """A baseline from its stored form (any version up to :data:`VERSION`, migrated). ModelError
    for anything else: not a model, a newer version (:class:`NewerModel`), or any field of the
    wrong type, shape or range (checked before anything is built, models/schema.py)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError("not a cgsentry model")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelError(f"corrupt (version: expected an integer >= 1, got {version!r:.40})")
    if version > VERSION:
        raise NewerModel(f"format version {version} is newer than this cgsentry reads ({VERSION}); "
                         "upgrade cgsentry")
    data = migrate(data)
    try:
        schema.check(data)
    except schema.Invalid as err:
        raise ModelError(f"corrupt ({err})") from err
    b = ImageBaseline(data["key"], data.get("image", ""), config)
    b.profile = ImageProfile.from_dict(data["profile"])
    b.rate = RateModel.from_dict(data["rate"])
    b.life = Lifecycle(**data["life"])
    if b.mode != "learn":
        b.rate.fit()
    return b


def save(b: ImageBaseline, directory: Path) -> Path:
    """Write atomically (sensor/files.py: a crash leaves the old or the new file; a CLI and the
    sensor saving at once cannot interleave)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(b.key)
    atomic_write(path, msgpack.packb(to_dict(b), use_bin_type=True))
    return path


def load(path: Path, config: ModelConfig) -> ImageBaseline:
    """Load one model file. Moves nothing: :class:`UnreadableModel` for a corrupt, foreign or
    newer file (the owner then calls :func:`quarantine`), ModelError (exit 66) if it cannot be read."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ModelError(f"model {path}: cannot read: {err.strerror}", exit_code=66) from err
    try:
        data = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as err:  # any msgpack failure means a corrupt file
        raise UnreadableModel(path, f"corrupt ({type(err).__name__})") from err
    try:
        return from_dict(data, config)
    except ModelError as err:
        raise UnreadableModel(path, str(err), newer=isinstance(err, NewerModel)) from err


def quarantine(err: UnreadableModel) -> str:
    """Move an unreadable model aside (``*.newer-<ts>`` or ``*.corrupt-<ts>``) so the owner can
    relearn the image without writing over it; the one line to report, saying where it went or
    that it could not be moved (then it is left in place)."""
    return f"{err}; {set_aside(err.path, 'newer' if err.newer else 'corrupt')}"


def set_aside(path: Path, why: str) -> str:
    """Rename ``path`` to ``*.<why>-<ts>``; says where it went, or that it could not be moved."""
    dest = path.with_name(f"{path.name}.{why}-{int(time.time())}")
    try:
        os.replace(path, dest)
    except OSError as err:
        return f"could not move it to {dest.name} ({err.strerror}), left in place"
    return f"moved to {dest.name}"
