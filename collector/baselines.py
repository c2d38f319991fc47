"""Fleet baselines as the console shows them: each image's items (with provenance), the versions
the collector kept, and what changed between two of them.

The collector merges every sensor's snapshot of an image into one fleet baseline
(:mod:`collector.sensorlink`); :func:`record_version` keeps it as a new version whenever its items
or its mode changed (counts and times alone do not make a version). A version holds the profile
(items with their stats and provenance) and the mode, not the rate model's windows.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import msgpack

from collector.errors import InvalidArgument, NotFound
from collector.store import SqlStore
from models import items as model_items
from models.profile import DIMENSIONS, ImageProfile
from sensor.events import rfc3339

log = logging.getLogger(__name__)
_MODE_ORDER = ("learn", "alert", "enforce")


def _unpack(payload: bytes) -> dict[str, Any]:
    data = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    if not isinstance(data, dict):
        raise ValueError("a baseline is a map")
    return data


def version_form(merged: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """(digest of the items and mode, number of items, what a version stores) of a fleet baseline."""
    profile = merged.get("profile") or {}
    mode = str((merged.get("life") or {}).get("mode", "learn"))
    keys = {str(d): sorted(json.dumps(k, sort_keys=True) for k, _ in rows)
            for d, rows in (profile.get("items") or {}).items()}
    digest = hashlib.sha256(json.dumps({"mode": mode, "items": keys}, sort_keys=True).encode()).hexdigest()
    stored = {"key": merged.get("key", ""), "image": merged.get("image", ""), "mode": mode,
              "observed_ns": int((merged.get("life") or {}).get("observed_ns", 0) or 0), "profile": profile}
    return digest, sum(len(v) for v in keys.values()), stored


def record_version(store: SqlStore, image_key: str, merged: dict[str, Any]) -> int:
    """Keep ``merged`` as the image's next baseline version if its items or mode changed; returns
    the version stored, 0 if none. Never raises: a failure here must not break a sensor's link."""
    try:
        digest, n, stored = version_form(merged)
        return store.add_baseline_version(image_key, str(merged.get("image") or ""), digest, n,
                                          msgpack.packb(stored, use_bin_type=True))
    except Exception as err:  # noqa: BLE001 - history is secondary to the link that reported it
        log.warning("cannot keep a baseline version of %s: %s", image_key[:200], err)
        return 0


def current(store: SqlStore, image_key: str) -> dict[str, Any]:
    """The image's fleet baseline now: every sensor's latest snapshot, profiles merged (the most
    advanced mode of any sensor). NotFound if no sensor reported the image."""
    profile: ImageProfile | None = None
    image, mode, observed = "", "learn", 0
    for _, payload in store.snapshots(image_key):
        try:
            snap = _unpack(payload)
            part = ImageProfile.from_dict(snap.get("profile") or {})
        except Exception as err:  # noqa: BLE001 - one bad snapshot must not hide the others
            log.warning("cannot read a snapshot of %s: %s", image_key[:200], err)
            continue
        profile = part if profile is None else profile.merge(part)
        life = snap.get("life") or {}
        image = image or str(snap.get("image") or "")
        if str(life.get("mode")) in _MODE_ORDER:
            mode = max(mode, str(life["mode"]), key=_MODE_ORDER.index)
        observed = max(observed, int(life.get("observed_ns", 0) or 0))
    if profile is None:
        raise NotFound(f"no sensor has reported a baseline of {image_key[:200]!r}")
    return {"key": image_key, "image": image, "mode": mode, "observed_ns": observed, "profile": profile.to_dict()}


def version(store: SqlStore, image_key: str, number: int) -> dict[str, Any]:
    """Stored version ``number`` of the image's baseline (0: the current one)."""
    if number == 0:
        return current(store, image_key)
    payload = store.baseline_version(image_key, number)
    if payload is None:
        raise NotFound(f"baseline of {image_key[:200]!r} has no version {number} (it may have been pruned)")
    return _unpack(payload)


def item_rows(baseline: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The baseline's items per dimension, each as ``model show --json`` gives it plus ``label``
    (how people read it) and ``spelling`` (how ``model accept`` takes it)."""
    profile = ImageProfile.from_dict(baseline.get("profile") or {})
    out: dict[str, list[dict[str, Any]]] = {}
    for dim in DIMENSIONS:
        table = profile.items[dim]
        out[dim] = [_row(dim, k, table[k]) for k in sorted(table, key=model_items.sort_key)]
    return out


def _row(dim: str, key: tuple[Any, ...], stat: Any) -> dict[str, Any]:
    return {**model_items.to_json(dim, key, stat), "label": model_items.label(dim, key),
            "spelling": model_items.spelling(dim, key)}


def diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per dimension, the items only in ``b`` (added) and only in ``a`` (removed)."""
    pa = ImageProfile.from_dict(a.get("profile") or {})
    pb = ImageProfile.from_dict(b.get("profile") or {})
    out = {}
    for dim in DIMENSIONS:
        ta, tb = pa.items[dim], pb.items[dim]
        out[dim] = {"added": [_row(dim, k, tb[k]) for k in sorted(tb.keys() - ta.keys(), key=model_items.sort_key)],
                    "removed": [_row(dim, k, ta[k]) for k in sorted(ta.keys() - tb.keys(), key=model_items.sort_key)]}
    return out


def versions(store: SqlStore, image_key: str) -> list[dict[str, Any]]:
    return [{**v, "time": rfc3339(v["time_ns"])} for v in store.baseline_versions(image_key)]


def view(store: SqlStore, image_key: str, number: int) -> dict[str, Any]:
    """The baseline page: version ``number`` (0: now) of ``image_key``'s items, and its versions."""
    data = version(store, _key(image_key), number)
    rows = item_rows(data)
    return {"key": image_key, "versions": versions(store, image_key), "v": number, "image": data.get("image", ""),
            "mode": data.get("mode", ""), "learned_s": round(int(data.get("observed_ns") or 0) / 1e9, 1),
            "items": rows, "total": sum(len(r) for r in rows.values())}


def diff_view(store: SqlStore, image_key: str, a: int, b: int) -> dict[str, Any]:
    """The baseline page comparing version ``a`` with version ``b`` (0: now)."""
    base, new = version(store, _key(image_key), a), version(store, image_key, b)
    changes = diff(base, new)
    return {"key": image_key, "versions": versions(store, image_key), "a": a, "b": b,
            "image": new.get("image") or base.get("image") or "", "diff": changes,
            "modes": [base.get("mode", ""), new.get("mode", "")],
            "changed": sum(len(c["added"]) + len(c["removed"]) for c in changes.values())}


def _key(image_key: str) -> str:
    if not image_key:
        raise InvalidArgument("key (the image key a baseline is stored under) is required")
    return image_key
