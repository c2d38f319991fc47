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
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from collector.errors import InvalidArgument
from collector.store import AlertRow, SqlStore
from rules.policy import ImagePolicy

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
    not_active: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # sensor id -> parts

    @property
    def mode(self) -> str:
        """The most advanced mode any sensor has (the fleet merge takes the same)."""
        return max(self.modes.values(), key=_MODE_ORDER.index, default="learn")

    def add(self, sensor_id: str, snap: dict[str, Any], not_active: str = "") -> None:
        life = snap.get("life") or {}
        self.keys.add(str(snap.get("key", "")))
        mode = str(life.get("mode", "learn"))
        self.modes[sensor_id] = mode if mode in _MODE_ORDER else "learn"
        self.learned_s = max(self.learned_s, life.get("observed_ns", 0) / 1e9)
        self.containers.update((snap.get("profile") or {}).get("containers", ()))
        for kind, n in (life.get("would_enforce") or {}).items():
            self.would_enforce[kind] = self.would_enforce.get(kind, 0) + int(n)
        parts = _parts(not_active)
        if parts:
            self.not_active[sensor_id] = parts
        for entry in life.get("audit") or ():
            if str(entry.get("action", "")).startswith("mode ") and entry.get("time_ns", 0) >= self.set_ns:
                self.set_ns, self.set_by = entry.get("time_ns", 0), _actor(str(entry.get("actor", "")))

    def summary(self) -> dict[str, Any]:
        return {"mode": self.mode, "sensors": dict(sorted(self.modes.items())), "keys": sorted(self.keys),
                "learned_s": round(self.learned_s, 1), "containers": len(self.containers),
                "would_enforce": dict(sorted(self.would_enforce.items())),
                "not_active": not_active_summary(self.not_active)}


def _parts(text: str) -> list[dict[str, Any]]:
    """A sensor's ModelSnapshot.not_active JSON: the parts as a list of dicts ([] if unreadable)."""
    try:
        parts = json.loads(text) if text else []
    except ValueError:
        return []
    return [p for p in parts if isinstance(p, dict) and p.get("part")] if isinstance(parts, list) else []


def not_active_summary(by_sensor: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One entry per part not active on some sensor: the sensors that say so and the longest
    learning any of them still needs (a part is active fleet-wide only once it is on each)."""
    out: dict[str, dict[str, Any]] = {}
    for sensor_id, parts in sorted(by_sensor.items()):
        for p in parts:
            cur = out.setdefault(str(p["part"]), {"part": str(p["part"]), "sensors": [], "more_learning_s": 0.0,
                                                  "text": str(p.get("text", ""))})
            cur["sensors"].append(sensor_id)
            if float(p.get("more_learning_s", 0) or 0) >= cur["more_learning_s"]:
                cur["more_learning_s"], cur["text"] = float(p.get("more_learning_s", 0) or 0), str(p.get("text", ""))
    return list(out.values())


def _actor(actor: str) -> str:
    return _ACTORS.get(actor) or f"sensor {actor}"


def model_states(store: SqlStore) -> dict[str, ModelState]:
    """Image name (or key, when a snapshot names none) -> its merged model state."""
    out: dict[str, ModelState] = {}
    notes = store.not_active()
    for key, sensor_id, payload in store.all_snapshots():
        try:
            snap = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        except Exception as err:  # noqa: BLE001 - one bad snapshot must not hide the others
            log.warning("cannot read snapshot of %s from %s: %s", key, sensor_id, err)
            continue
        if not isinstance(snap, dict):
            continue
        name = str(snap.get("image") or key)
        out.setdefault(name, ModelState(name)).add(sensor_id, snap, notes.get((key, sensor_id), ""))
    return out


def image_view(store: SqlStore) -> list[dict[str, Any]]:
    """Every image the collector knows of: operator policy (mode, action, bans, set_by) over the
    sensors' lifecycle; ``source`` says which one decides the mode. Workload policies (a selector
    with a namespace or labels) are not images: each image lists those that can apply to it
    (``workloads``, most specific first). ``would_enforce`` counts what enforce mode would have
    done under the image's policy, from the sensors' counts and from the alerts stored in alert
    mode (so it is right from the first finding, before a snapshot comes)."""
    states = model_states(store)
    stored = store.images()
    rows = {i["image"]: i for i in stored if not isinstance(i["policy"].get("match"), dict)}
    selectors = [i for i in stored if i["mode"] or i["policy"]]
    out = []
    for name in sorted(rows.keys() | states.keys()):
        row, state = rows.get(name), states.get(name)
        policy = row["policy"] if row else {}
        operator = bool(row and row["mode"])
        mode = row["mode"] if row and operator else state.mode if state else ""
        model = state.summary() if state else {}
        if mode == "alert":  # what enforcing would do matters while alerting (and costs a read of its alerts)
            model["would_enforce"] = _merge_counts(model.get("would_enforce", {}),
                                                   would_enforce(store, name, image_policy(name, mode, policy)))
        out.append({"image": name, "mode": mode,
                    "set_by": (f"operator {row['set_by']}".strip() if row and operator
                               else state.set_by if state and state.set_by else ""),
                    "source": "operator" if operator else "sensor" if state else "",
                    "action": policy.get("default_action", ""), "bans": list(policy.get("banned_processes", [])),
                    "policy": policy, "model": model,
                    "workloads": applicable(selectors, name, state.keys if state else set())})
    return out


def image_policy(image: str, mode: str, policy: dict[str, Any]) -> ImagePolicy:
    """A stored policy row as the sensor reads it (rules.policy), matching ``image``."""
    from rules.errors import RuleError
    from rules.policy import PolicySet

    try:
        return PolicySet.from_dict({"images": [{"match": image, **policy, "mode": mode}]}).images[0]
    except RuleError:  # stored before a check existed: the default, as a sensor would fall back
        return PolicySet().default


def applicable(stored: list[dict[str, Any]], image: str, keys: set[str]) -> list[dict[str, Any]]:
    """The stored policies whose selector can match ``image`` (by name or a digest in ``keys``),
    most specific first (labels, then namespace, then an exact image: what a sensor picks)."""
    out = []
    for row in stored:
        pol = image_policy(row["image"], row["mode"], row["policy"])
        if not any(pol.match == k for k in keys) and not (pol.match == image or fnmatch.fnmatchcase(image, pol.match)):
            continue
        out.append({"selector": pol.describe(), "key": row["image"], "mode": row["mode"],
                    "default_action": pol.default_action, "banned_processes": list(pol.banned_processes),
                    "specificity": list(pol.specificity)})
    out.sort(key=lambda w: tuple(w["specificity"]), reverse=True)  # stable: equals keep their order
    return out


def would_enforce(store: SqlStore, image: str, pol: ImagePolicy) -> dict[str, int]:
    """``kind:action`` -> occurrences of the image's alerts found in alert mode that enforce
    mode would have acted on under ``pol`` (the sensor's own decision, rules.policy.respond)."""
    counts: dict[str, int] = {}
    for row in image_alerts(store, image):
        f = row.finding
        if f.mode != "alert":
            continue
        action, _ = pol.respond(f, "enforce")
        if action not in ("alert", "none"):
            counts[f"{f.kind}:{action}"] = counts.get(f"{f.kind}:{action}", 0) + row.count
    return counts


def image_alerts(store: SqlStore, image: str, since_ns: int = 0) -> list[AlertRow]:
    """Every stored alert of ``image`` last seen at or after ``since_ns``, page by page."""
    rows: list[AlertRow] = []
    cursor = ""
    while True:
        page = store.list_page(image=image, since_ns=since_ns, limit=10_000, cursor=cursor)
        rows += page.rows
        if not page.cursor or not page.rows:
            return rows
        cursor = page.cursor


def _merge_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    """Two counts of the same findings (sensor snapshot, stored alerts): the larger of each."""
    return dict(sorted({k: max(a.get(k, 0), b.get(k, 0)) for k in a.keys() | b.keys()}.items()))


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


def merged_policy(store: SqlStore, image: str, mode: str, action: str, banned: list[str] | None,
                  clear_bans: bool, namespace: str = "", labels: Sequence[str] = ()) -> tuple[str, str, dict[str, Any]]:
    """(stored key, mode, policy) for ``images mode``: the stored policy of the same selector with
    only what is given changed. The key is the image for an image's policy, the selector as
    people read it (``IMAGE namespace=NS k=v``) for a workload's. InvalidArgument for a mode,
    action, ban or label the sensor's policy reader refuses."""
    from rules.errors import RuleError
    from rules.policy import PolicySet

    if mode and mode not in _MODE_ORDER:
        raise InvalidArgument(f"mode {mode!r}: use learn, alert or enforce")
    pairs = {}
    for label in labels:
        k, eq, v = label.partition("=")
        if not eq or not k:
            raise InvalidArgument(f"label {label!r}: give KEY=VALUE")
        pairs[k] = v
    match: Any = {"image": image, "namespace": namespace, "labels": pairs} if namespace or pairs else image
    try:
        key = PolicySet.from_dict({"images": [{"match": match}]}).images[0].describe()
        stored = store.image_policy(key) or {"mode": "", "policy": {}}
        old = stored["policy"]
        policy = {"match": match, "default_action": action or old.get("default_action") or "alert",
                  "banned_processes": list(banned) if banned else [] if clear_bans
                  else list(old.get("banned_processes", []))}
        mode = mode or stored["mode"]
        PolicySet.from_dict({"images": [{**policy, "mode": mode}]})
    except RuleError as err:
        raise InvalidArgument(str(err)) from err
    return key, mode, policy
