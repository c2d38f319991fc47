"""The per-image baselines of one model store: created on first sight, persisted, and moved along
their lifecycle (learn -> alert -> enforce; auto-promotion, operators' mode changes and decisions).

The per-event engine (models/engine.py) asks this registry for an image's baseline and scores
against it; it never loads, saves or changes a mode itself. The CLI uses the registry alone, read-only
(``owner=False``): the sensor owns the store.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from models import decisions, store
from models.baseline import MODES, ImageBaseline, ModelConfig
from models.errors import ModelError
from sensor.errors import EX_NOINPUT

log = logging.getLogger(__name__)


class BaselineRegistry:
    def __init__(self, config: ModelConfig | None = None, store_dir: Path | None = None,
                 node: str = "") -> None:
        self.config = config or ModelConfig()
        self.store_dir = store_dir  # None: in memory only (tests, benchmarks)
        self.node = node
        self.images: dict[str, ImageBaseline] = {}  # by image key; never rebound (the engine holds it)
        self.load_errors: list[str] = []
        self._loss_until_ns = 0  # registry-wide freeze, inherited by images first seen during loss

    @classmethod
    def open(cls, store_dir: Path, config: ModelConfig | None = None, node: str = "",
             owner: bool = True) -> BaselineRegistry:
        """Load every model in ``store_dir``; each file that cannot be used is listed in
        ``load_errors``, never silently dropped. Only the ``owner`` (the sensor) moves such files
        aside (corrupt or newer, models/store.py) so the image relearns; a reader (the CLI) leaves
        them for whichever sensor can read them. Operators' queued decisions (models/decisions.py)
        are applied; the owner also saves them and empties the inbox, a reader only sees them.

        ModelError (exit 66) if ``store_dir`` is not a readable directory — except that a missing
        one is an empty store to its owner (a sensor's first start creates it)."""
        reg = cls(config, store_dir, node)
        for path in _model_files(store_dir, owner):
            try:
                b = store.load(path, reg.config)
            except store.UnreadableModel as err:
                reg._load_error(store.quarantine(err) if owner else f"{err}; skipped, left in place", owner)
                continue
            except ModelError as err:
                reg._load_error(str(err), owner)
                continue
            reg.images[b.key] = b
        if owner:
            reg.apply_decisions(timeout_s=2.0)
        else:
            reg._apply_pending(owner=False)
        return reg

    def _load_error(self, message: str, owner: bool) -> None:
        """Keep ``message`` in ``load_errors``; the owner (the sensor) also logs it, a reader's
        caller reports it (the CLI: one warning line each)."""
        log.log(logging.ERROR if owner else logging.DEBUG, "%s", message)
        self.load_errors.append(message)

    # -- baselines ---------------------------------------------------------------------------
    def for_image(self, key: str, image: str) -> ImageBaseline:
        """The baseline of image ``key`` (``image`` is its name), created, learning, if new."""
        b = self.images.get(key)
        if b is None:
            b = self.images[key] = self._new_baseline(key, image)
        return b

    def _new_baseline(self, key: str, image: str) -> ImageBaseline:
        b = ImageBaseline(key, image, self.config)
        repo = image.rsplit(":", 1)[0] if image else ""
        for other in self.images.values():  # a new digest of a known repository: seed from it
            if repo and other.image.rsplit(":", 1)[0] == repo and other.mode != "learn":
                b.profile = b.profile.merge(other.profile)
                b.life.seeded_from = other.key
                break
        if self.node:
            b.profile.nodes.add(self.node)
        b.life.frozen_until_ns = self._loss_until_ns
        return b

    def get(self, image_key: str) -> ImageBaseline:
        """The baseline by key, image name or digest; ModelError (exit 66) if there is none."""
        b = self.images.get(image_key) or next(
            (x for x in self.images.values() if image_key in (x.image, x.key)), None)
        if b is None:
            raise ModelError(f"no model for image {image_key!r} (see `cgsentry-sensor model list`)",
                             exit_code=66)
        return b

    def snapshot(self, image_key: str) -> dict[str, Any]:
        return store.to_dict(self.get(image_key))

    def freeze(self, until_ns: int, image_key: str | None = None) -> None:
        """Stop learning until ``until_ns``: one image, or all of them and any first seen before then."""
        if image_key is None:
            self._loss_until_ns = max(self._loss_until_ns, until_ns)
        for key, b in self.images.items():
            if image_key is None or key == image_key:
                b.life.frozen_until_ns = max(b.life.frozen_until_ns, until_ns)

    # -- lifecycle ---------------------------------------------------------------------------
    def mode(self, image_key: str) -> str:
        b = self.images.get(image_key)
        return b.mode if b else "learn"

    def set_mode(self, image_key: str, mode: str, actor: str, now_ns: int) -> None:
        try:
            self.get(image_key).set_mode(mode, actor, now_ns)
        except ValueError as err:
            raise ModelError(str(err), exit_code=64) from err

    def record_would_enforce(self, image_key: str, kind: str) -> None:
        b = self.images.get(image_key)
        if b is not None:
            b.life.would_enforce[kind] = b.life.would_enforce.get(kind, 0) + 1

    def stats(self) -> dict[str, int]:
        out = {"model_images": len(self.images)}
        for mode in MODES:
            out[f"model_images_{mode}"] = sum(1 for b in self.images.values() if b.mode == mode)
        return out

    # -- persistence and operators' decisions ---------------------------------------------------
    def save_all(self) -> list[Path]:
        """Save every baseline, with the decisions queued until now applied first (so an operator's
        decision made since the last tick is not written over), then remove them from the inbox."""
        if self.store_dir is None:
            return []
        with decisions.locked(self.store_dir, timeout_s=1.0) as got:
            if not got:
                log.warning("model store %s stayed locked; saving anyway", self.store_dir)
            applied, _ = self._apply_pending(owner=True)
            paths = [store.save(b, self.store_dir) for b in self.images.values()]
            decisions.done(applied)
        return paths

    def apply_decisions(self, timeout_s: float = 0.0) -> int:
        """Apply queued operator decisions, save the baselines they touched, then empty the inbox
        of them. Cheap when none wait; skipped (next tick) while a CLI holds the store lock, and
        on an I/O error (logged; the decisions stay queued). Returns how many were consumed."""
        if self.store_dir is None or not decisions.has_pending(self.store_dir):
            return 0
        try:
            with decisions.locked(self.store_dir, timeout_s) as got:
                if not got:
                    return 0
                applied, touched = self._apply_pending(owner=True)
                for key in touched:
                    store.save(self.images[key], self.store_dir)
                decisions.done(applied)
        except (OSError, ModelError) as err:
            log.error("cannot apply queued model decisions in %s: %s", self.store_dir, err)
            return 0
        return len(applied)

    def _apply_pending(self, owner: bool) -> tuple[list[Path], set[str]]:
        """Apply queued decisions in memory: the paths of those now reflected in the baselines, and
        the keys of the baselines that changed. The owner sets aside (logged) decisions it cannot
        apply: unknown image, invalid."""
        if self.store_dir is None:
            return [], set()
        found, errors = decisions.pending(self.store_dir, owner)
        for err in errors:
            self._load_error(err, owner)
        applied: list[Path] = []
        touched: set[str] = set()
        for path, d in found:
            b = self.images.get(d.image_key)
            try:
                if b is None:
                    raise ValueError(f"no model for image {d.image_key!r}")
                if decisions.apply(d, b):
                    log.info("image %s: %s by %s applied", b.key, d.action, d.actor)
                    touched.add(b.key)
                applied.append(path)
            except Exception as err:  # noqa: BLE001 - one bad decision must not stop the sensor, now or at restart
                if owner:
                    log.error("decision %s: %s; %s", path, err, store.set_aside(path, "failed"))
        return applied, touched


def _model_files(store_dir: Path, owner: bool) -> list[Path]:
    """The store's ``*.model`` files, sorted; see :meth:`BaselineRegistry.open` for the errors."""
    try:
        names = os.listdir(store_dir)
    except FileNotFoundError:
        if owner:
            return []
        raise ModelError(f"no model store at {store_dir}", exit_code=EX_NOINPUT) from None
    except NotADirectoryError:
        raise ModelError(f"no model store at {store_dir} (it is a file, not a directory)",
                         exit_code=EX_NOINPUT) from None
    except OSError as err:
        raise ModelError(f"cannot read model store {store_dir}: {err.strerror}", exit_code=EX_NOINPUT) from err
    return sorted(store_dir / name for name in names if name.endswith(".model"))
