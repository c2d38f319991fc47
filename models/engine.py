"""The model engine: a :class:`~sensor.pipeline.Sink` that learns per-image baselines and turns
deviations into explained findings.

Hot path per event: one dict lookup for the image, one per touched item; findings only for items
never seen, once per (container, item).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from models import decisions, store
from models.baseline import ImageBaseline, ModelConfig, describe
from models.errors import ModelError
from models.explain import rate_finding
from models.features import Window, add_event, add_syscalls, vector
from models.profile import endpoint_key, item_keys
from sensor.errors import EX_NOINPUT
from sensor.events import (
    HOST,
    NEW_LISTEN_PORT,
    NEW_OUTBOUND,
    NEW_PARENT,
    NEW_PROCESS,
    NEW_SYSCALL,
    Event,
    Finding,
)

log = logging.getLogger(__name__)
_KIND = {"process": NEW_PROCESS, "parent": NEW_PARENT, "args": NEW_PROCESS,
         "listen": NEW_LISTEN_PORT, "inbound": NEW_LISTEN_PORT, "outbound": NEW_OUTBOUND,
         "syscall": NEW_SYSCALL}
_TITLE = {"process": "New Process", "parent": "New Parent Process", "args": "New Process Arguments",
          "listen": "New Listening Port", "inbound": "New Inbound Port",
          "outbound": "New Outbound Endpoint", "syscall": "New Syscall"}
# Kinds whose rates come from kernel counters when ModelEngine.kernel_counts is set (their records
# are filtered or never sent: the events alone would undercount).
_KERNEL_COUNTED = frozenset({"connect", "accept", "fork", "exit"})
_PRIORITY = {"process": "WARNING", "parent": "WARNING", "args": "NOTICE", "listen": "WARNING",
             "inbound": "NOTICE", "outbound": "WARNING", "syscall": "NOTICE"}
_SHELLS = frozenset({"sh", "ash", "bash", "dash", "zsh", "ksh", "busybox"})


class ModelEngine:
    def __init__(self, config: ModelConfig | None = None, store_dir: Path | None = None,
                 node: str = "") -> None:
        self.config = config or ModelConfig()
        self.store_dir = store_dir
        self.node = node
        self.images: dict[str, ImageBaseline] = {}
        self._reported: set[tuple[str, str, tuple[Any, ...]]] = set()
        self._windows: dict[str, tuple[str, Window]] = {}  # container -> (image key, window)
        self._cgroups: dict[int, tuple[str, str]] = {}  # cgroup id -> (image key, container)
        self._last_counts: dict[tuple[int, int], int] = {}
        self.load_errors: list[str] = []
        self.events = 0
        # True when the kernel counts repeated connects/accepts (first-seen filter): their
        # rates then come from observe_kernel_counts, not from events
        self.kernel_counts = False
        self._loss_until_ns = 0  # engine-wide freeze, inherited by images first seen during loss
        self._last_net: dict[tuple[int, int, bool], int] = {}

    @classmethod
    def open(cls, store_dir: Path, config: ModelConfig | None = None, node: str = "",
             owner: bool = True) -> ModelEngine:
        """Load every model in ``store_dir``; each file that cannot be used is listed in
        ``load_errors``, never silently dropped. Only the ``owner`` (the sensor) moves such files
        aside (corrupt or newer, models/store.py) so the image relearns; a reader (the CLI) leaves
        them for whichever sensor can read them. Operators' queued decisions (models/decisions.py)
        are applied; the owner also saves them and empties the inbox, a reader only sees them.

        ModelError (exit 66) if ``store_dir`` is not a readable directory — except that a missing
        one is an empty store to its owner (a sensor's first start creates it)."""
        eng = cls(config, store_dir, node)
        for path in _model_files(store_dir, owner):
            try:
                b = store.load(path, eng.config)
            except store.UnreadableModel as err:
                eng._load_error(store.quarantine(err) if owner else f"{err}; skipped, left in place", owner)
                continue
            except ModelError as err:
                eng._load_error(str(err), owner)
                continue
            eng.images[b.key] = b
        if owner:
            eng.apply_decisions(timeout_s=2.0)
        else:
            eng._apply_pending(owner=False)
        return eng

    def _load_error(self, message: str, owner: bool) -> None:
        """Keep ``message`` in ``load_errors``; the owner (the sensor) also logs it, a reader's
        caller reports it (the CLI: one warning line each)."""
        log.log(logging.ERROR if owner else logging.DEBUG, "%s", message)
        self.load_errors.append(message)

    # -- learning and scoring ----------------------------------------------------------------
    def baseline(self, ev: Event) -> ImageBaseline | None:
        key = ev.image_key
        if key == HOST and not self.config.learn_host:
            return None
        b = self.images.get(key)
        if b is None:
            b = self.images[key] = self._new_baseline(key, ev.image)
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

    def handle(self, event: Event) -> list[Finding]:
        if event.kind in ("syscall",) and event.runtime == HOST:
            return []
        b = self.baseline(event)
        if b is None or not event.container_id:
            return []
        self.events += 1
        b.life.tick(event.time_ns, int(self.config.window_s * 1e9))
        b.profile.containers.add(event.container_id)
        self._cgroups[event.cgroup_id] = (b.key, event.container_id)
        out = self._items(b, event)
        out.extend(self._rate(b, event))
        if b.maybe_promote(event.time_ns):
            log.info("image %s promoted to alert after %.0fs observed", b.key, b.learned_s())
        return out

    def _items(self, b: ImageBaseline, ev: Event) -> list[Finding]:
        out: list[Finding] = []
        learning = b.mode == "learn"
        frozen = b.life.frozen(ev.time_ns)
        new_process = False
        for dim, key in item_keys(ev):
            if b.profile.known(dim, key):
                b.profile.learn(dim, key, ev, self.node)
                continue
            if learning:
                if not frozen and b.profile.learn(dim, key, ev, self.node):
                    b.note_new_item()
                continue
            if dim == "parent" and new_process or dim == "args" and not self._args_stable(b, ev):
                continue
            new_process = new_process or dim == "process"
            seen = (ev.container_id, dim, key)
            if seen not in self._reported:
                self._reported.add(seen)
                out.append(self._finding(b, dim, key, ev, frozen))
        return out

    @staticmethod
    def _args_stable(b: ImageBaseline, ev: Event) -> bool:
        """Argument shapes only count for executables that always ran with few first args."""
        firsts = [s for k, s in b.profile.items["args"].items() if k[0] == ev.exe]
        return 0 < len(firsts) <= 3 and all(s.count >= 5 for s in firsts)

    def _finding(self, b: ImageBaseline, dim: str, key: tuple[Any, ...], ev: Event,
                 during_loss: bool) -> Finding:
        seen = describe(dim, key, ev)
        expected = b.nearest(dim, key)
        ctx = b.context()
        priority = _PRIORITY[dim]
        if dim in ("process", "parent") and ev.comm in _SHELLS and ev.pexe.rsplit("/", 1)[-1] not in _SHELLS \
                and not ev.pexe.startswith("/dev/fd/"):
            priority = "CRITICAL"  # a shell under a non-shell service: the classic RCE shape
        output = (f"{_TITLE[dim].lower()} {seen} in image {b.image or b.key} container "
                  f"{ev.container_name or ev.container_id[:12]}; baseline learned {ctx['learned_s']:.0f}s "
                  f"on {ctx['containers']} container(s) knows {len(b.profile.items[dim])} "
                  f"{dim} item(s)" + (f", nearest: {', '.join(expected[:4])}" if expected else ""))
        return Finding(kind=_KIND[dim], rule=_TITLE[dim], priority=priority, output=output, event=ev,
                       time_ns=ev.time_ns, source="model", tags=("baseline", dim),
                       explanation={"dimension": dim, "seen": seen, "expected": expected, **ctx},
                       mode=b.mode, during_loss=during_loss)

    def _rate(self, b: ImageBaseline, ev: Event) -> list[Finding]:
        cur = self._windows.get(ev.container_id)
        out: list[Finding] = []
        if cur is None or ev.time_ns - cur[1].start_ns >= self.config.window_s * 1e9:
            if cur is not None:
                out.extend(self._close(cur[0], ev.container_id, cur[1], ev))
            cur = (b.key, Window(ev.time_ns))
            self._windows[ev.container_id] = cur
        if not (self.kernel_counts and ev.kind in _KERNEL_COUNTED):
            add_event(cur[1], ev.kind, ev.ret, endpoint_key(ev) if ev.kind == "connect" else None)
        elif ev.kind == "connect":
            cur[1].endpoints.add(endpoint_key(ev))
        if ev.kind == "exec":
            cur[1].note_exec(ev.exe)
        cur[1].last_event = ev
        return out

    def _close(self, key: str, container: str, w: Window, ev: Event | None) -> list[Finding]:
        b = self.images.get(key)
        if b is None:
            return []
        vec = vector(w, self.config.window_s)
        if b.mode == "learn":
            if not b.life.frozen(w.start_ns):
                b.rate.add_window(vec)
            return []
        score = b.rate.score(vec)
        evidence = w.last_event if isinstance(w.last_event, Event) else ev
        if score is None or not score.anomalous or evidence is None:
            return []
        return [rate_finding(b, container, score, w, evidence)]

    def tick(self, now_ns: int) -> list[Finding]:
        """Apply operators' queued decisions (the sensor ticks every second), and close windows of
        containers idle for a whole window (they count as quiet windows)."""
        self.apply_decisions()
        out: list[Finding] = []
        for container, (key, w) in list(self._windows.items()):
            if now_ns - w.start_ns >= 2 * self.config.window_s * 1e9:
                del self._windows[container]
                out.extend(self._close(key, container, w, None))
        return out

    def observe_syscall_counts(self, counts: dict[tuple[int, int], int]) -> None:
        """Kernel per-(cgroup, nr) counters, read in batches: deltas go into the open windows."""
        deltas: dict[int, dict[int, int]] = {}
        for (cg, nr), total in counts.items():
            prev = self._last_counts.get((cg, nr), 0)
            self._last_counts[(cg, nr)] = total
            if total > prev:
                deltas.setdefault(cg, {})[nr] = total - prev
        for cg, d in deltas.items():
            owner = self._cgroups.get(cg)
            cur = self._windows.get(owner[1]) if owner else None
            if cur is not None:
                add_syscalls(cur[1], d)

    def observe_kernel_counts(self, counts: dict[tuple[int, int, bool], int]) -> None:
        """Kernel (cgroup, opcode, ok) -> count totals: deltas become connects, failed connects,
        accepts, forks and exits in the containers' open windows."""
        from sensor.layout import OP_ACCEPT, OP_CONNECT, OP_EXIT, OP_FORK

        plain = {OP_ACCEPT: "accepts", OP_FORK: "forks", OP_EXIT: "exits"}
        for key, total in counts.items():
            delta = total - self._last_net.get(key, 0)
            self._last_net[key] = total
            owner = self._cgroups.get(key[0])
            cur = self._windows.get(owner[1]) if owner else None
            if cur is None or delta <= 0:
                continue
            if key[1] == OP_CONNECT:
                cur[1].add("connects", delta)
                if not key[2]:
                    cur[1].add("connect_failures", delta)
            elif key[1] in plain:
                cur[1].add(plain[key[1]], delta)

    def on_loss(self, dropped: int, now_ns: int, image_key: str | None = None) -> None:
        """Events were lost: freeze learning (all images, or one) for ``loss_freeze_s``."""
        if dropped <= 0:
            return
        until = now_ns + int(self.config.loss_freeze_s * 1e9)
        if image_key is None:
            self._loss_until_ns = max(self._loss_until_ns, until)
        for key, b in self.images.items():
            if image_key is None or key == image_key:
                b.life.frozen_until_ns = max(b.life.frozen_until_ns, until)

    # -- operations --------------------------------------------------------------------------
    def get(self, image_key: str) -> ImageBaseline:
        b = self.images.get(image_key) or next(
            (x for x in self.images.values() if image_key in (x.image, x.key)), None)
        if b is None:
            raise ModelError(f"no model for image {image_key!r} (see `cgsentry-sensor model list`)",
                             exit_code=66)
        return b

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

    def snapshot(self, image_key: str) -> dict[str, Any]:
        return store.to_dict(self.get(image_key))

    def merge_snapshot(self, data: dict[str, Any]) -> ImageBaseline:
        """Merge a fleet baseline into ours: items and rate windows union; a fleet that has
        finished learning lets a still-learning node skip relearning."""
        remote = store.from_dict(data, self.config)
        local = self.images.get(remote.key)
        if local is None:
            self.images[remote.key] = remote
            return remote
        local.profile = local.profile.merge(remote.profile)
        local.rate = local.rate.merged(remote.rate)
        if local.mode == "learn" and remote.mode != "learn":
            local.set_mode(remote.mode, "fleet-baseline", remote.life.promoted_ns)
        elif local.mode != "learn":
            local.rate.fit()
        return local

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

    def stats(self) -> dict[str, int]:
        out = {"model_images": len(self.images), "model_events": self.events}
        for mode in ("learn", "alert", "enforce"):
            out[f"model_images_{mode}"] = sum(1 for b in self.images.values() if b.mode == mode)
        return out


def _model_files(store_dir: Path, owner: bool) -> list[Path]:
    """The store's ``*.model`` files, sorted; see :meth:`ModelEngine.open` for the errors."""
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


def merge_snapshots(a: dict[str, Any], b: dict[str, Any], config: ModelConfig | None = None) -> dict[str, Any]:
    """Associative, commutative merge of two snapshots of the same image (collector fleet view)."""
    cfg = config or ModelConfig()
    x, y = store.from_dict(a, cfg), store.from_dict(b, cfg)
    x.profile = x.profile.merge(y.profile)
    x.rate = x.rate.merged(y.rate)
    order = ("learn", "alert", "enforce")
    lx, ly = x.life, y.life
    lx.mode = max(lx.mode, ly.mode, key=order.index)
    for name in ("observed_ns", "last_active_ns", "last_new_observed_ns", "frozen_until_ns",
                 "promoted_ns"):
        setattr(lx, name, max(getattr(lx, name), getattr(ly, name)))
    lx.seeded_from = max(lx.seeded_from, ly.seeded_from)
    lx.would_enforce = {k: lx.would_enforce.get(k, 0) + ly.would_enforce.get(k, 0)
                        for k in sorted(lx.would_enforce.keys() | ly.would_enforce.keys())}
    lx.audit = sorted(lx.audit + [e for e in ly.audit if e not in lx.audit],
                      key=lambda e: (e.get("time_ns", 0), str(e)))
    return store.to_dict(x)
