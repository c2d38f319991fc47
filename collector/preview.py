"""Enforce preview: what a proposed policy would have done to the alerts an image already had.

Each stored alert (its first occurrence, in time order) goes through what the sensor runs on a
live finding: the policy's own findings for the event (``rules.policy.PolicyChecker``: a proposed
ban turns an exec into a banned-process finding), the action and its reason
(``ImagePolicy.respond``), and the one-action-per-target gate (``sensor.response.ActionGate``). A
paused or killed container stays so in the preview (nobody resumes it), so its later alerts are
shown as not reached rather than acted on again; a killed process is a new target each time.

Alerts are stored aggregated (one row per fingerprint, with a count and first/last time), so the
preview is per alert, not per occurrence: "when" is the alert's first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collector.store import AlertRow
from rules.policy import ImagePolicy, PolicyChecker, PolicySet
from sensor.events import Finding
from sensor.gate import ActionGate

CONTAINER_ACTIONS = ("pause-container", "kill-container")


@dataclass(frozen=True)
class Outcome:
    alert_id: int
    time_ns: int
    rule: str
    priority: str
    container: str
    count: int
    action: str  # what the sensor would do: alert | kill-process | pause-container | kill-container
    why: str  # which part of the policy decided it
    effect: str  # acted, coalesced (the gate held it), not reached (container stopped before), alert only

    def row(self) -> dict[str, Any]:
        from sensor.events import rfc3339

        return {"alert": self.alert_id, "time": rfc3339(self.time_ns), "rule": self.rule, "priority": self.priority,
                "container": self.container, "count": self.count, "action": self.action, "why": self.why,
                "effect": self.effect}


def preview(policy: ImagePolicy, mode: str, alerts: list[AlertRow]) -> list[Outcome]:
    """What ``policy`` in ``mode`` would have done to ``alerts``, oldest first."""
    gate = ActionGate(holds=lambda cid, action, pid: action in CONTAINER_ACTIONS)
    checker = PolicyChecker(PolicySet(images=[policy]))
    stopped: dict[str, tuple[int, str, int]] = {}  # container id -> (time, "paused"/"killed", by alert)
    out = []
    for a in sorted(alerts, key=lambda r: (r.first_seen_ns, r.id)):
        f = _strongest(policy, mode, [a.finding, *checker.handle(a.finding.event)])
        action, why = policy.respond(f, mode)
        cid = f.event.container_id
        if cid in stopped and stopped[cid][0] < a.first_seen_ns:
            effect, why = "not reached", f"{why}; container {stopped[cid][1]} earlier by alert {stopped[cid][2]}"
        elif action in CONTAINER_ACTIONS or action == "kill-process":
            effect = "acted" if gate.admit(cid, action, f.event.pid) else "coalesced"
            if action in CONTAINER_ACTIONS and effect == "acted":
                stopped[cid] = (a.first_seen_ns, "paused" if action == "pause-container" else "killed", a.id)
        else:
            effect = "alert only" if action == "alert" else "nothing"
        out.append(Outcome(a.id, a.first_seen_ns, f.rule, f.priority,
                           f.event.container_name or f.event.container_id[:12], a.count, action, why, effect))
    return out


def _strongest(policy: ImagePolicy, mode: str, findings: list[Finding]) -> Finding:
    """Of an event's findings (the stored one, the policy's), the one the sensor acts on most
    strongly (it answers each; the strongest is what happens to the container)."""
    from sensor.events import ACTIONS

    return max(findings, key=lambda f: ACTIONS.index(policy.respond(f, mode)[0]))


def summary(outcomes: list[Outcome]) -> dict[str, int]:
    """Counts of what would have happened: action -> alerts acted on."""
    counts: dict[str, int] = {}
    for o in outcomes:
        if o.effect == "acted":
            counts[o.action] = counts.get(o.action, 0) + 1
    return counts
