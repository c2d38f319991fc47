"""One image's baseline: profile + rate model + lifecycle (learn -> alert -> enforce).

"Learned" time is *observed* time in learning mode only (time during which any container of the
image produced events, gaps longer than ``window_s`` not counted): what the baseline was built
from, so it stops growing once the image alerts. Auto-promotion to ``alert`` follows NeuVector's
rule instead, on wall time: once the image has been learning for ``min_learn_s`` and nothing new
was seen for the last ``stable_s`` (the engine checks on every event and every tick, so an idle
image is promoted too). A share of observed time was a poor clock: a quiet service that runs for
hours is observed for minutes. While the sensor is losing events the baseline is frozen: nothing
is learned, nothing is promoted, and findings carry ``during_loss``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from models.profile import ImageProfile
from models.ratemodel import RateModel
from sensor.events import Event, failure_text

MODES = ("learn", "alert", "enforce")


@dataclass(frozen=True)
class ModelConfig:
    window_s: float = 10.0
    min_learn_s: float = 60.0
    stable_s: float = 30.0
    seed: int = 7
    auto_promote: bool = True
    learn_host: bool = False
    loss_freeze_s: float = 10.0


@dataclass
class Lifecycle:
    mode: str = "learn"
    observed_ns: int = 0
    last_active_ns: int = 0
    last_new_observed_ns: int = 0
    frozen_until_ns: int = 0
    seeded_from: str = ""
    promoted_ns: int = 0
    audit: list[dict[str, Any]] = field(default_factory=list)
    would_enforce: dict[str, int] = field(default_factory=dict)
    learn_started_ns: int = 0  # wall time learning (re)started: first event, relearn, mode -> learn
    last_new_ns: int = 0  # wall time the last new item was learned

    def tick(self, time_ns: int, gap_ns: int) -> None:
        """An event at ``time_ns``: observed time grows only while learning."""
        if self.mode == "learn":
            if not self.learn_started_ns:
                self.learn_started_ns = time_ns
            if self.last_active_ns and 0 < time_ns - self.last_active_ns <= gap_ns:
                self.observed_ns += time_ns - self.last_active_ns
        self.last_active_ns = max(self.last_active_ns, time_ns)

    def frozen(self, time_ns: int) -> bool:
        return time_ns < self.frozen_until_ns


class ImageBaseline:
    def __init__(self, key: str, image: str, config: ModelConfig) -> None:
        self.key, self.image, self.config = key, image, config
        self.profile = ImageProfile()
        self.rate = RateModel(seed=config.seed)
        self.life = Lifecycle()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.life.mode

    def set_mode(self, mode: str, actor: str, time_ns: int, reason: str = "") -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        if mode != "learn" and not self.rate.fitted:
            self.rate.fit()
        self.life.audit.append({"time_ns": time_ns, "actor": actor, "action": f"mode {self.mode} -> {mode}",
                                "reason": reason})
        if mode != "learn" and self.life.mode == "learn":
            self.life.promoted_ns = time_ns
        if mode == "learn" and self.life.mode != "learn":
            self.life.learn_started_ns = time_ns
        self.life.mode = mode

    def inactive_parts(self, mode: str = "") -> list[dict[str, Any]]:
        """Model parts that cannot judge yet, each with what it has, what it needs and how much
        more learning that is: today the rate model, which needs MIN_WINDOWS windows. The item
        profile is always active (everything not learned is new). Empty when all are ready."""
        from models.ratemodel import MIN_WINDOWS

        have = int(len(self.rate.windows))
        if have >= MIN_WINDOWS:
            return []
        more_s = (MIN_WINDOWS - have) * self.config.window_s
        when = (f"after about {more_s:.0f}s more of learning" if (mode or self.mode) == "learn" else
                f"only after about {more_s:.0f}s of learning again (windows are learned in learn mode)")
        # ``mode``: the mode being switched to, when it differs from the model's own yet
        return [{"part": "rate", "windows": have, "needs": MIN_WINDOWS, "more_learning_s": more_s,
                 "text": f"rate model not active: {have} of {MIN_WINDOWS} windows learned; active {when}"}]

    def learned_s(self) -> float:
        return self.life.observed_ns / 1e9

    def stable_s(self, now_ns: int = 0) -> float:
        """Wall seconds since learning last saw something new (or began), as of ``now_ns``
        (default: the image's latest event); negative while an extension holds it back."""
        life = self.life
        return ((now_ns or life.last_active_ns) - max(life.last_new_ns, life.learn_started_ns)) / 1e9

    def learning_s(self, now_ns: int = 0) -> float:
        """Wall seconds since learning (re)started, as of ``now_ns`` (default: the latest event)."""
        start = self.life.learn_started_ns
        return ((now_ns or self.life.last_active_ns) - start) / 1e9 if start else 0.0

    def maybe_promote(self, time_ns: int) -> bool:
        """learn -> alert once learning has run ``min_learn_s`` and nothing was new for ``stable_s``
        (both wall time, as of ``time_ns``)."""
        cfg = self.config
        if (self.mode == "learn" and cfg.auto_promote and self.life.learn_started_ns
                and self.learning_s(time_ns) >= cfg.min_learn_s and self.stable_s(time_ns) >= cfg.stable_s
                and not self.life.frozen(time_ns)):
            self.set_mode("alert", "auto-promotion", time_ns,
                          f"nothing new for {self.stable_s(time_ns):.0f}s of {self.learning_s(time_ns):.0f}s "
                          f"learning ({self.learned_s():.0f}s observed)")
            return True
        return False

    def note_new_item(self, time_ns: int) -> None:
        self.life.last_new_observed_ns = self.life.observed_ns
        self.life.last_new_ns = max(self.life.last_new_ns, time_ns)

    def relearn(self, actor: str, time_ns: int) -> None:
        audit = self.life.audit
        self.profile, self.rate, self.life = ImageProfile(), RateModel(seed=self.config.seed), Lifecycle()
        self.life.audit = audit + [{"time_ns": time_ns, "actor": actor, "action": "relearn", "reason": ""}]

    def extend(self, actor: str, time_ns: int, extra_s: float) -> None:
        """Back to learning for at least ``extra_s`` more observed seconds."""
        if self.life.mode != "learn":
            self.life.learn_started_ns = time_ns
        self.life.mode = "learn"
        self.life.last_new_observed_ns = self.life.observed_ns + int(extra_s * 1e9) - int(
            self.config.stable_s * 1e9)
        # promotion needs stable_s without news: that point is moved extra_s ahead
        self.life.last_new_ns = max(time_ns, self.life.last_active_ns) + int((extra_s - self.config.stable_s) * 1e9)
        self.life.audit.append({"time_ns": time_ns, "actor": actor, "action": f"extend {extra_s:.0f}s",
                                "reason": ""})

    def accept(self, dim: str, key: tuple[Any, ...], actor: str, time_ns: int, reason: str = "") -> None:
        """Add one item to the baseline by decision (suppressed alert, operator), with provenance."""
        from models.items import spelling
        from models.profile import ItemStat

        if dim not in self.profile.items:
            raise ValueError(f"dimension {dim!r} is not one of {', '.join(self.profile.items)}")
        self.profile.items[dim].setdefault(key, ItemStat(time_ns, time_ns, 0, set(), {"accepted_by": actor}))
        self.life.audit.append({"time_ns": time_ns, "actor": actor, "action": f"accept {dim} {spelling(dim, key)}",
                                "reason": reason})

    def reject(self, dim: str, key: tuple[Any, ...], actor: str, time_ns: int, reason: str = "") -> bool:
        """Remove one item by decision (audited even if it was already gone); True if it was there."""
        from models.items import spelling

        if dim not in self.profile.items:
            raise ValueError(f"dimension {dim!r} is not one of {', '.join(self.profile.items)}")
        found = self.profile.items[dim].pop(key, None) is not None
        self.life.audit.append({"time_ns": time_ns, "actor": actor, "action": f"reject {dim} {spelling(dim, key)}"
                                + ("" if found else " (was not in the baseline)"), "reason": reason})
        return found

    # -- explanations ----------------------------------------------------------------------
    def nearest(self, dim: str, key: tuple[Any, ...]) -> list[str]:
        """Known items most like ``key``: same parent first for processes, else by text."""
        items = self.profile.items[dim]
        if dim == "parent":
            parents = sorted({f"parent {k[1]}" for k in items if k[0] == key[0]})
            if parents:
                return parents[:5]  # the exe is known: under which parents it ran
        if dim in ("process", "parent"):
            known = sorted({k[0] for k in self.profile.items["process"]})
            return difflib.get_close_matches(str(key[0]), known, n=3, cutoff=0.0)[:3] or known[:5]
        return [fmt_item(dim, k) for k in sorted(items, key=repr)[:8]]

    def context(self) -> dict[str, Any]:
        return {"learned_s": round(self.learned_s(), 1), "containers": len(self.profile.containers),
                "nodes": max(1, len(self.profile.nodes)), "items": self.profile.size(),
                "seeded_from": self.life.seeded_from}


def fmt_item(dim: str, key: tuple[Any, ...]) -> str:
    if dim in ("listen", "inbound"):
        return f"{key[0]}/{key[1]}"
    if dim == "outbound":
        return f"{key[0]} {key[2]}:{key[1]}"
    if dim == "syscall":
        from sensor.syscalls import name_of

        return name_of(int(key[0]))
    return " ".join(str(k) for k in key)


def describe(dim: str, key: tuple[Any, ...], ev: Event) -> str:
    if dim in ("process", "parent"):
        return f"{ev.exe} (parent {ev.pexe or '?'}, uid {ev.uid})"
    if dim == "outbound":
        failed = f" failed: {failure_text(ev.ret)}" if ev.ret < 0 and ev.ret != -115 else ""
        if ev.saddr:  # the source is the socket's (sensor/procfacts.py)
            return f"{fmt_item(dim, key)} ({ev.saddr}:{ev.sport}->{ev.daddr}:{ev.dport}{failed})"
        return f"{fmt_item(dim, key)}" + (f" ({failed.strip()})" if failed else "")
    return fmt_item(dim, key)
