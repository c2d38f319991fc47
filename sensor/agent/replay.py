"""``cgsentry-sensor replay``: a recorded journal through the detectors, offline.

Each event goes to the sensor's sinks in the daemon's order (baselines, rules, the policy's own
checks); a learnable rule's finding is judged against its image's baseline as the daemon does, and
every finding gets the action the policy would take (``ImagePolicy.respond``). Nothing is enforced
and nothing is saved: baselines come from ``--models DIR`` (read, never written) or start empty and
learn from the journal, ticked once a second of journal time.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from models.baseline import ModelConfig
from models.engine import ModelEngine
from rules.engine import RuleEngine, default_rule_files
from rules.policy import PolicyChecker, PolicySet
from sensor.events import Event, Finding

TICK_NS = 1_000_000_000


class Replay:
    def __init__(self, rules: list[Path] | None = None, policy: Path | None = None, models: Path | None = None,
                 config: ModelConfig | None = None) -> None:
        self.models = (ModelEngine.open(models, config, owner=False) if models is not None
                       else ModelEngine(config or ModelConfig()))
        self.models.store_dir = None  # read once, never written: no decisions applied, nothing saved
        self.rules = RuleEngine.load(rules or default_rule_files())
        self.policies = PolicySet.load(policy) if policy is not None else PolicySet()
        self.sinks = (self.models, self.rules, PolicyChecker(self.policies))
        self.events = 0
        self._last_tick = 0

    def run(self, events: Iterator[Event]) -> Iterator[Finding]:
        """The findings of ``events``, in order, each with the mode and action the sensor would give."""
        for ev in events:
            self.events += 1
            if ev.time_ns - self._last_tick >= TICK_NS:
                if self._last_tick:
                    yield from map(self.decide, self.models.tick(ev.time_ns))
                self._last_tick = ev.time_ns
            found: list[Finding] = []
            for sink in self.sinks:
                found += sink.handle(ev)
            for f in self.models.to_act_on(found, self.mode):
                decided = self.decide(f)
                if decided.action != "none":
                    yield decided

    def mode(self, ev: Event) -> str:
        return self.policies.for_event(ev).mode or self.models.mode(ev.image_key)

    def decide(self, f: Finding) -> Finding:
        mode = self.mode(f.event)
        action, _ = self.policies.for_event(f.event).respond(f, mode)
        return f.replace(action=action, mode=mode)


def add_options(r: argparse.ArgumentParser) -> None:
    r.add_argument("--events", action="store_true", help="print the recorded events instead of the findings")
    r.add_argument("--rules", type=Path, action="append", help="rule file (repeat; default: the built-in library)")
    r.add_argument("--policy", type=Path, help="per-image policy YAML (modes and actions)")
    r.add_argument("--models", type=Path, metavar="DIR",
                   help="score against this model store, read only (default: learn from the journal)")
