"""The model engine: a :class:`~sensor.pipeline.Sink` that learns per-image baselines and turns
deviations into explained findings.

Hot path per event: one dict lookup for the image, one per touched item; findings only for items
never seen, once per (container, item). The baselines themselves, their files and their lifecycle
belong to models/registry.py; merging baselines across a fleet to models/fleet.py.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any, Iterator

from models import fleet
from models.baseline import ImageBaseline, ModelConfig, describe
from models.explain import rate_finding
from models.features import Window, add_event, add_syscalls, vector
from models.fleet import merge_snapshots
from models.items import spelling
from models.profile import endpoint_key, item_keys
from models.ratemodel import Z_LIMIT
from models.registry import BaselineRegistry
from models.scan import Burst, ScanTracker, scan_summary
from sensor.events import (
    EXEC_SESSION,
    HOST,
    NEW_LISTEN_PORT,
    NEW_OUTBOUND,
    NEW_PARENT,
    NEW_PROCESS,
    NEW_SYSCALL,
    Event,
    Finding,
)

# merge_snapshots lives in models/fleet.py; it is also offered here, where the collector imports it
__all__ = ["ModelEngine", "merge_snapshots"]
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
EARLY_CHECK_NS = 250_000_000  # a running window is scored at most this often per container
_SHELLS = frozenset({"sh", "ash", "bash", "dash", "zsh", "ksh", "busybox"})
# The runtime starting a process in the container: an entrypoint or an operator's exec session.
_RUNTIME = frozenset({"runc", "crun", "containerd-shim", "containerd-shim-runc-v2", "conmon", "docker-init",
                      "tini", "dumb-init"})
_TEMP_DIRS = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/", "/dev/mqueue/")  # noqa: S108 - paths matched, not used
RUNTIME_PARENT = "[runtime]"  # a session item's parent when the runtime started it (runc, its shim, conmon)
# (stored dimension, key, the item's own dimension, its own key)
_Item = tuple[str, tuple[Any, ...], str, tuple[Any, ...]]


def runtime_parent(ev: Event) -> bool:
    """Whether the event's parent is the container runtime (or the process has no known parent)."""
    parent = ev.pexe.rsplit("/", 1)[-1]
    return not ev.pexe or ev.pexe.startswith("/dev/fd/") or parent in _RUNTIME or parent.startswith("runc:")


def in_session(ev: Event) -> bool:
    """An event of an exec session (sensor/sessions.py); open events carry open(2)'s flags instead."""
    return bool(ev.flags & EXEC_SESSION) and ev.kind != "open"


def session_command(ev: Event) -> str:
    """The exact command line a session item is scoped by: the process's argv, shell-quoted."""
    return shlex.join(ev.args) if ev.args else f"[{ev.comm}]"


def session_item(ev: Event, dim: str, key: tuple[Any, ...]) -> tuple[str, str, str]:
    """A ``dim`` item of an exec session as the ``session`` dimension keeps it: (command line,
    dimension, item). What a probe learns this way covers only the same command line in a session:
    not another argv, nor the same command in the container's own tree. A parent that is the
    runtime is one name (``[runtime]``): runc, its shim or conmon, whichever the process had."""
    if dim == "parent" and runtime_parent(ev):
        key = (key[0], RUNTIME_PARENT)
    return (session_command(ev), dim, spelling(dim, key))


def scoped_items(ev: Event) -> Iterator[_Item]:
    """The items an event touches: its own, or in an exec session those scoped by session_item
    (argument shapes are left out there: the whole command line is in the key). Syscalls stay the
    container's: the kernel reports each once per container, for whichever process makes it first,
    so a probe that came first would otherwise leave the container's own use of it unlearned."""
    session = in_session(ev)
    for dim, key in item_keys(ev):
        if not session or dim == "syscall":
            yield dim, key, dim, key
        elif dim != "args":
            yield "session", session_item(ev, dim, key), dim, key


def severity(dim: str, ev: Event) -> str:
    """A baseline deviation's priority on the scale the rules use (README, "Severity"): a new
    process or parent is WARNING; one the runtime started (``docker exec``, an entrypoint) is
    NOTICE context; a binary run from a temporary directory (drift) or a shell under a non-shell
    service (the RCE shape) is ERROR. No deviation alone is CRITICAL: that is for rules whose
    behaviour only an attack has (a shell on a socket, a miner)."""
    if dim not in ("process", "parent"):
        return _PRIORITY[dim]
    if ev.exe.startswith(_TEMP_DIRS):
        return "ERROR"
    parent = ev.pexe.rsplit("/", 1)[-1]
    if runtime_parent(ev):
        return "NOTICE"
    if ev.comm in _SHELLS and parent not in _SHELLS:
        return "ERROR"
    return _PRIORITY[dim]


def _session_nearest(b: ImageBaseline, key: tuple[Any, ...]) -> list[str]:
    """Session items known for the same command line, else of the same kind: what an exec session's
    finding expected instead."""
    items = b.profile.items["session"]
    same = sorted(f"{k[1]} {k[2]}" for k in items if k[0] == key[0])
    return same[:8] or sorted(f"{k[0]}: {k[1]} {k[2]}" for k in items if k[1] == key[1])[:8]


def rule_key(f: Finding) -> tuple[str, str, str]:
    """The baseline item a learnable rule's finding is: (rule, executable, parent executable)."""
    return (f.rule, f.event.exe, f.event.pexe)


class ModelEngine:
    """Scores each event against its image's baseline (kept by a :class:`BaselineRegistry`) and
    learns from it while the image learns: categorical items per event, rates per window of
    ``config.window_s`` per container. The registry and fleet operations the sensor needs are
    passed through (:meth:`get`, :meth:`mode`, :meth:`save_all`, :meth:`merge_snapshot`, ...)."""

    def __init__(self, config: ModelConfig | None = None, store_dir: Path | None = None,
                 node: str = "", registry: BaselineRegistry | None = None) -> None:
        """A fresh in-memory registry from ``config``, ``store_dir`` and ``node``, unless
        ``registry`` is given (then those three are its own)."""
        self.registry = registry or BaselineRegistry(config, store_dir, node)
        self.config = self.registry.config
        self.node = self.registry.node
        self._images = self.registry.images  # the same dict (never rebound), read on every event
        self._reported: set[tuple[str, str, tuple[Any, ...]]] = set()
        self._windows: dict[str, tuple[str, Window]] = {}  # container -> (image key, window)
        self._cgroups: dict[int, tuple[str, str]] = {}  # cgroup id -> (image key, container)
        self._last_counts: dict[tuple[int, int], int] = {}
        self.events = 0
        # True when the kernel counts repeated connects/accepts (first-seen filter): their
        # rates then come from observe_kernel_counts, not from events
        self.kernel_counts = False
        self._last_net: dict[tuple[int, int, bool], int] = {}
        self.scans = ScanTracker()  # many new endpoints at once: one finding (models/scan.py)
        # True: a burst is reported while its window runs (_running), as the sensor does; False:
        # at the window's close only, with the whole window's counts (replays, tests, benchmarks)
        self.early_rates = False
        # container -> [start of its window already reported before closing, last early check]
        self._early: dict[str, list[int]] = {}

    @classmethod
    def open(cls, store_dir: Path, config: ModelConfig | None = None, node: str = "",
             owner: bool = True) -> ModelEngine:
        """An engine on the model store ``store_dir``: see :meth:`BaselineRegistry.open`."""
        return cls(registry=BaselineRegistry.open(store_dir, config, node, owner))

    @property
    def images(self) -> dict[str, ImageBaseline]:
        """The registry's baselines by image key (the same dict)."""
        return self.registry.images

    @property
    def store_dir(self) -> Path | None:
        """The registry's model store; None keeps the baselines in memory only."""
        return self.registry.store_dir

    @store_dir.setter
    def store_dir(self, path: Path | None) -> None:
        self.registry.store_dir = path

    @property
    def load_errors(self) -> list[str]:
        return self.registry.load_errors

    # -- learning and scoring ----------------------------------------------------------------
    def baseline(self, ev: Event) -> ImageBaseline | None:
        key = ev.image_key
        if key == HOST and not self.config.learn_host:
            return None
        b = self._images.get(key)
        return b if b is not None else self.registry.for_image(key, ev.image)

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
        if b.maybe_promote(event.time_ns):  # auto-promotion, learn -> alert (models/baseline.py)
            log.info("image %s promoted to alert after %.0fs observed", b.key, b.learned_s())
        return out

    def _items(self, b: ImageBaseline, ev: Event) -> list[Finding]:
        out: list[Finding] = []
        learning = b.mode == "learn"
        frozen = b.life.frozen(ev.time_ns)
        new_process = False
        for dim, key, own, own_key in scoped_items(ev):
            if b.profile.known(dim, key):
                b.profile.learn(dim, key, ev, self.node)
                continue
            if learning:
                if not frozen and b.profile.learn(dim, key, ev, self.node):
                    b.note_new_item(ev.time_ns)
                continue
            if own == "parent" and new_process or own == "args" and not self._args_stable(b, ev):
                continue
            if own == "outbound":
                in_scan, burst = self.scans.note(ev.container_id, ev)
                if burst is not None:
                    out.append(self._scan_finding(b, burst, ev, frozen))
                if in_scan:
                    continue
            new_process = new_process or own == "process"
            seen = (ev.container_id, dim, key)
            if seen not in self._reported:
                self._reported.add(seen)
                out.append(self._finding(b, (dim, key, own, own_key), ev, frozen))
        return out

    @staticmethod
    def _args_stable(b: ImageBaseline, ev: Event) -> bool:
        """Argument shapes only count for executables that always ran with few first args."""
        firsts = [s for k, s in b.profile.items["args"].items() if k[0] == ev.exe]
        return 0 < len(firsts) <= 3 and all(s.count >= 5 for s in firsts)

    def _finding(self, b: ImageBaseline, item: _Item, ev: Event, during_loss: bool) -> Finding:
        """A new item's finding; one of an exec session names the session's command line, and its
        expected items are the sessions' (those of the same command line first)."""
        dim, key, own, own_key = item
        seen = describe(own, own_key, ev)
        session = dim == "session"
        expected = _session_nearest(b, key) if session else b.nearest(dim, key)
        ctx = b.context()
        where = f" in exec session {key[0]}" if session else ""
        output = (f"{_TITLE[own].lower()} {seen}{where} in image {b.image or b.key} container "
                  f"{ev.container_name or ev.container_id[:12]}; baseline learned {ctx['learned_s']:.0f}s "
                  f"on {ctx['containers']} container(s) knows {len(b.profile.items[dim])} "
                  f"{dim} item(s)" + (f", nearest: {', '.join(expected[:4])}" if expected else ""))
        extra = {"session": key[0]} if session else {}
        tags = ("baseline", own, "exec_session") if session else ("baseline", own)
        return Finding(kind=_KIND[own], rule=_TITLE[own], priority=severity(own, ev), output=output, event=ev,
                       time_ns=ev.time_ns, source="model", tags=tags,
                       explanation={"dimension": dim, "seen": seen, "expected": expected, **extra, **ctx},
                       mode=b.mode, during_loss=during_loss)

    def rule_finding(self, f: Finding, mode: str = "") -> Finding | None:
        """A learnable rule's finding against its image's baseline, scoped by (rule, executable,
        parent). While the image learns (``mode``, the sensor's effective mode for the image: an
        operator's policy wins; default the baseline's own) the item is learned (provenance: the
        container and time) and the finding is still reported, marked ``learned``; in alert or
        enforce mode a finding its baseline expects is dropped (None). Host events and images
        without a baseline pass unchanged; so do findings while learning is frozen by event loss."""
        ev = f.event
        b = self.baseline(ev)
        if b is None or not ev.container_id:
            return f
        learning = (mode or b.mode) == "learn"
        dim, key = ("session", session_item(ev, "rule", rule_key(f))) if in_session(ev) else ("rule", rule_key(f))
        if b.profile.known(dim, key):
            b.profile.learn(dim, key, ev, self.node)  # counts and last seen, in any mode
            return f.replace(explanation={**f.explanation, "learned": True}) if learning else None
        if not learning or b.life.frozen(ev.time_ns):
            return f
        b.profile.learn(dim, key, ev, self.node)
        b.note_new_item(ev.time_ns)
        return f.replace(explanation={**f.explanation, "learned": True})

    def to_act_on(self, found: list[Finding], mode: Callable[[Event], str]) -> list[Finding]:
        """Of one event's findings (every sink's), those to act on: a learnable rule's goes through
        :meth:`rule_finding` with its image's effective ``mode`` (dropped when expected), the
        others pass. The daemon and ``replay`` both decide this way."""
        out = []
        for f in found:
            if f.source == "rule" and f.explanation.get("learnable"):
                learned = self.rule_finding(f, mode(f.event))
                if learned is None:
                    continue
                f = learned
            out.append(f)
        return out

    def _scan_finding(self, b: ImageBaseline, burst: Burst, ev: Event, during_loss: bool) -> Finding:
        ctx = b.context()
        summary = scan_summary(burst)
        output = (f"outbound scan from {ev.exe or ev.comm} (pid {ev.pid}) in image {b.image or b.key} container "
                  f"{ev.container_name or ev.container_id[:12]}: {summary}; baseline learned "
                  f"{ctx['learned_s']:.0f}s knows {len(b.profile.items['outbound'])} outbound item(s)")
        return Finding(kind=NEW_OUTBOUND, rule="Outbound Scan", priority="ERROR", output=output, event=ev,
                       time_ns=ev.time_ns, source="model", tags=("baseline", "outbound", "scan", "T1046"),
                       explanation={"dimension": "outbound", "seen": summary, "count": len(burst.endpoints),
                                    "failed": burst.failed, "hosts": burst.hosts()[:64],
                                    "ports": burst.ports()[:256],
                                    "window_s": round((burst.last_ns - burst.start_ns) / 1e9, 3), **ctx},
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
        cur[1].note_process(ev.pid, ev.exe, ev)
        cur[1].last_event = ev
        out.extend(self._running(cur[0], ev.container_id, cur[1], ev.time_ns))
        return out

    def _running(self, key: str, container: str, w: Window, now_ns: int) -> list[Finding]:
        """A burst reported while its window still runs: as soon as a counter's count so far, over
        the whole window, is already more than Z_LIMIT deviations above what was learned (counts
        only grow, so the closed window would say so too). Checked at most every EARLY_CHECK_NS
        per container, on its events and on every tick; the window then reports nothing more
        when it closes. Bursts the forest alone sees (or quiet windows) still wait for the close."""
        if not self.early_rates:
            return []
        mark = self._early.get(container)
        if mark is not None and (mark[0] == w.start_ns or now_ns - mark[1] < EARLY_CHECK_NS):
            return []
        b = self._images.get(key)
        if b is None or b.mode == "learn" or not isinstance(w.last_event, Event):
            return []
        self._early[container] = [mark[0] if mark else 0, now_ns]
        score = b.rate.score(vector(w, self.config.window_s))
        if score is None:
            return []
        crossed = [(name, value, mean, z) for name, value, mean, z in score.top if z > Z_LIMIT]
        if not crossed:
            return []
        self._early[container] = [w.start_ns, now_ns]
        f = rate_finding(b, container, score, w, w.last_event)
        after_s = round((now_ns - w.start_ns) / 1e9, 3)
        above = [{"feature": n, "per_s": round(v, 2), "learned_per_s": round(m, 2), "times": round(v / m, 1)
                  if m > 0 else None, "deviations": round(z, 1)} for n, v, m, z in crossed]
        what = ", ".join(f"{a['feature']} {a['per_s']}/s vs {a['learned_per_s']}/s learned" for a in above)
        return [f.replace(output=f"{f.output}; reported {after_s}s into the window, crossed: {what}",
                          explanation={**f.explanation, "early": True, "after_s": after_s, "crossed": above})]

    def _close(self, key: str, container: str, w: Window, ev: Event | None) -> list[Finding]:
        b = self._images.get(key)
        if b is None:
            return []
        mark = self._early.get(container)
        if mark is not None and mark[0] == w.start_ns:
            return []  # reported while it ran
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
        self.registry.apply_decisions()
        for b in list(self._images.values()):  # an idle learning image is promoted too (wall time)
            if b.mode == "learn" and b.maybe_promote(now_ns):
                log.info("image %s promoted to alert while idle after %.0fs observed", b.key, b.learned_s())
        out: list[Finding] = []
        for container, (key, w) in list(self._windows.items()):
            if now_ns - w.start_ns >= 2 * self.config.window_s * 1e9:
                del self._windows[container]
                out.extend(self._close(key, container, w, None))
                self._early.pop(container, None)
            else:
                out.extend(self._running(key, container, w, now_ns))
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
        self.registry.freeze(now_ns + int(self.config.loss_freeze_s * 1e9), image_key)

    def open_window(self, container_id: str) -> Window | None:
        """The rate window ``container_id`` is filling now, None if it has none open."""
        cur = self._windows.get(container_id)
        return cur[1] if cur else None

    def stats(self) -> dict[str, int]:
        images = self.registry.stats()
        return {"model_images": images.pop("model_images"), "model_events": self.events, **images}

    # -- the registry's and the fleet's operations, for the sensor ------------------------------
    def get(self, image_key: str) -> ImageBaseline:
        return self.registry.get(image_key)

    def mode(self, image_key: str) -> str:
        return self.registry.mode(image_key)

    def set_mode(self, image_key: str, mode: str, actor: str, now_ns: int) -> None:
        self.registry.set_mode(image_key, mode, actor, now_ns)

    def record_would_enforce(self, image_key: str, kind: str) -> None:
        self.registry.record_would_enforce(image_key, kind)

    def save_all(self) -> list[Path]:
        return self.registry.save_all()

    def merge_snapshot(self, data: dict[str, Any]) -> ImageBaseline:
        return fleet.adopt(self.registry, data)
