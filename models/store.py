"""Baselines on disk: versioned msgpack per image, atomic writes, corrupt files quarantined.

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
import threading
import time
from pathlib import Path
from typing import Any

import msgpack

from models.baseline import ImageBaseline, Lifecycle, ModelConfig
from models.errors import ModelError
from models.features import SCORED_FEATURES
from models.profile import ImageProfile
from models.ratemodel import RateModel

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


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """An older format's dict as the current one (a copy; a current dict is returned as is)."""
    version = data.get("version", VERSION)
    if version == 1:
        # items' 5-field rows read as "no nodes" (ItemStat.from_list); the rate model scored every
        # feature, including those that read 0 after learning: fit it on the scored set instead
        data = {**data, "version": 2, "rate": {**data["rate"], "scored": list(SCORED_FEATURES)}}
    return data


def from_dict(data: dict[str, Any], config: ModelConfig) -> ImageBaseline:
    """A baseline from its stored form (any version up to :data:`VERSION`, migrated)."""
    data = migrate(data)
    b = ImageBaseline(data["key"], data.get("image", ""), config)
    b.profile = ImageProfile.from_dict(data["profile"])
    b.rate = RateModel.from_dict(data["rate"])
    b.life = Lifecycle(**data["life"])
    if b.mode != "learn":
        b.rate.fit()
    return b


def save(b: ImageBaseline, directory: Path) -> Path:
    """Write atomically: temp file, fsync, rename (a crash leaves the old or the new file). The
    temp file is this writer's own, so a CLI and the sensor saving at once cannot interleave."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(b.key)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    payload = msgpack.packb(to_dict(b), use_bin_type=True)
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load(path: Path, config: ModelConfig) -> ImageBaseline:
    """Load one model file; a corrupt or newer file is renamed *.corrupt-<ts> and ModelError raised."""
    try:
        data = msgpack.unpackb(path.read_bytes(), raw=False, strict_map_key=False)
    except OSError as err:
        raise ModelError(f"model {path}: cannot read: {err.strerror}", exit_code=66) from err
    except Exception as err:  # noqa: BLE001 - any msgpack failure means a corrupt file
        raise ModelError(f"model {path}: corrupt ({type(err).__name__}); moved to "
                         f"{quarantine(path).name}") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"model {path}: not a cgsentry model; moved to {quarantine(path).name}")
    if not isinstance(data.get("version"), int) or data["version"] > VERSION:
        raise ModelError(f"model {path}: format version {data.get('version')} is newer than this "
                         f"sensor reads ({VERSION}); moved to {quarantine(path).name} — upgrade cgsentry")
    try:
        return from_dict(data, config)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"model {path}: corrupt ({err}); moved to {quarantine(path).name}") from err


def quarantine(path: Path) -> Path:
    dest = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    try:
        os.replace(path, dest)
    except OSError:
        pass
    return dest
