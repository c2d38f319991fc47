"""The collector's view of images: what operators set (policies) joined with what sensors report
(model snapshots: lifecycle mode, who changed it, learning progress, "would have enforced"
counts) and what alerts name.

Sensors send each image's baseline as a msgpack snapshot (``models.store.to_dict``) every
``--snapshot-s``; the collector keeps the latest per (image key, sensor). Those are the only
source for images that are still learning or were auto-promoted on a sensor.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
from dataclasses import dataclass, field
from typing import Any

import msgpack

from collector.errors import InvalidArgument
from collector.store import SqlStore

log = logging.getLogger(__name__)
_MODE_ORDER = ("learn", "alert", "enforce")
# Actors the sensor's model lifecycle writes into its audit (models.baseline / sensor.agent.daemon).
_ACTORS = {"auto-promotion": "sensor auto-promotion", "fleet-baseline": "fleet baseline",
           "collector": "operator"}


@dataclass
class ModelState:
    """One image as its sensors' snapshots describe it (merged over sensors)."""

    image: str
    keys: set[str] = field(default_factory=set)
    modes: dict[str, str] = field(default_factory=dict)  # sensor id -> mode
    set_by: str = ""
    set_ns: int = 0
    learned_s: float = 0.0
    containers: set[str] = field(default_factory=set)
    would_enforce: dict[str, int] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        """The most advanced mode any sensor has (the fleet merge takes the same)."""
        return max(self.modes.values(), key=_MODE_ORDER.index, default="learn")

    def add(self, sensor_id: str, snap: dict[str, Any]) -> None:
        life = snap.get("life") or {}
        self.keys.add(str(snap.get("key", "")))
        mode = str(life.get("mode", "learn"))
        self.modes[sensor_id] = mode if mode in _MODE_ORDER else "learn"
        self.learned_s = max(self.learned_s, life.get("observed_ns", 0) / 1e9)
        self.containers.update((snap.get("profile") or {}).get("containers", ()))
        for kind, n in (life.get("would_enforce") or {}).items():
            self.would_enforce[kind] = self.would_enforce.get(kind, 0) + int(n)
        for entry in life.get("audit") or ():
            if str(entry.get("action", "")).startswith("mode ") and entry.get("time_ns", 0) >= self.set_ns:
                self.set_ns, self.set_by = entry.get("time_ns", 0), _actor(str(entry.get("actor", "")))

    def summary(self) -> dict[str, Any]:
        return {"mode": self.mode, "sensors": dict(sorted(self.modes.items())), "keys": sorted(self.keys),
                "learned_s": round(self.learned_s, 1), "containers": len(self.containers),
                "would_enforce": dict(sorted(self.would_enforce.items()))}


def _actor(actor: str) -> str:
    return _ACTORS.get(actor) or f"sensor {actor}"


def model_states(store: SqlStore) -> dict[str, ModelState]:
    """Image name (or key, when a snapshot names none) -> its merged model state."""
    out: dict[str, ModelState] = {}
    for key, sensor_id, payload in store.all_snapshots():
        try:
            snap = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        except Exception as err:  # noqa: BLE001 - one bad snapshot must not hide the others
            log.warning("cannot read snapshot of %s from %s: %s", key, sensor_id, err)
            continue
        if not isinstance(snap, dict):
            continue
        name = str(snap.get("image") or key)
        out.setdefault(name, ModelState(name)).add(sensor_id, snap)
    return out


def image_view(store: SqlStore) -> list[dict[str, Any]]:
    """Every image the collector knows of: operator policy (mode, action, bans, set_by) over the
    sensors' lifecycle; ``source`` says which one decides the mode."""
    states = model_states(store)
    rows = {i["image"]: i for i in store.images()}
    out = []
    for name in sorted(rows.keys() | states.keys()):
        row, state = rows.get(name), states.get(name)
        policy = row["policy"] if row else {}
        operator = bool(row and row["mode"])
        out.append({"image": name, "mode": row["mode"] if row and operator else state.mode if state else "",
                    "set_by": (f"operator {row['set_by']}".strip() if row and operator
                               else state.set_by if state and state.set_by else ""),
                    "source": "operator" if operator else "sensor" if state else "",
                    "action": policy.get("default_action", ""), "bans": list(policy.get("banned_processes", [])),
                    "policy": policy, "model": state.summary() if state else {}})
    return out


def known_images(store: SqlStore) -> set[str]:
    """Names and keys (digests) of every image a sensor reported, or an operator already set."""
    known = {i["image"] for i in store.images()}
    for name, state in model_states(store).items():
        known |= {name, *state.keys}
    return {k for k in known if k}


def check_seen(image: str, known: set[str]) -> None:
    """InvalidArgument unless ``image`` (a name, digest or glob) names an image in ``known``,
    with the nearest known names as a hint."""
    if image in known or (any(c in image for c in "*?[") and any(fnmatch.fnmatchcase(k, image) for k in known)):
        return
    near = difflib.get_close_matches(image, sorted(known), n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(near)}?)" if near else ""
    raise InvalidArgument(f"image {image!r} has not been seen by any sensor{hint}; "
                          "use --force to set a mode for an image before it runs")
