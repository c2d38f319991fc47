"""Fleet baselines: one image's baselines from several replicas and nodes, merged.

The collector folds every sensor's snapshot of an image into one (:func:`merge_snapshots`,
associative and commutative, so the order sensors report in does not matter) and sends it back;
a sensor folds that into its own baseline (:func:`adopt`).
"""

from __future__ import annotations

from typing import Any

from models import store
from models.baseline import MODES, ImageBaseline, ModelConfig
from models.registry import BaselineRegistry

_LATEST = ("observed_ns", "last_active_ns", "last_new_observed_ns", "frozen_until_ns", "promoted_ns", "last_new_ns")


def adopt(registry: BaselineRegistry, snapshot: dict[str, Any]) -> ImageBaseline:
    """Merge a fleet baseline into ``registry``'s: items and rate windows union; a fleet that has
    finished learning lets a still-learning node skip relearning. An image the registry does not
    know is taken as it is. Returns the registry's baseline of that image."""
    remote = store.from_dict(snapshot, registry.config)
    local = registry.images.get(remote.key)
    if local is None:
        registry.images[remote.key] = remote
        return remote
    local.profile = local.profile.merge(remote.profile)
    local.rate = local.rate.merged(remote.rate)
    if local.mode == "learn" and remote.mode != "learn":
        local.set_mode(remote.mode, "fleet-baseline", remote.life.promoted_ns)
    elif local.mode != "learn":
        local.rate.fit()
    return local


def merge_snapshots(a: dict[str, Any], b: dict[str, Any], config: ModelConfig | None = None) -> dict[str, Any]:
    """Associative, commutative merge of two snapshots of the same image (collector fleet view)."""
    cfg = config or ModelConfig()
    x, y = store.from_dict(a, cfg), store.from_dict(b, cfg)
    x.profile = x.profile.merge(y.profile)
    x.rate = x.rate.merged(y.rate)
    lx, ly = x.life, y.life
    lx.mode = max(lx.mode, ly.mode, key=MODES.index)
    for name in _LATEST:
        setattr(lx, name, max(getattr(lx, name), getattr(ly, name)))
    lx.learn_started_ns = min((t for t in (lx.learn_started_ns, ly.learn_started_ns) if t), default=0)
    lx.seeded_from = max(lx.seeded_from, ly.seeded_from)
    lx.would_enforce = {k: lx.would_enforce.get(k, 0) + ly.would_enforce.get(k, 0)
                        for k in sorted(lx.would_enforce.keys() | ly.would_enforce.keys())}
    lx.audit = sorted(lx.audit + [e for e in ly.audit if e not in lx.audit],
                      key=lambda e: (e.get("time_ns", 0), str(e)))
    return store.to_dict(x)
