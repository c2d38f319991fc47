"""Per-image policy: mode, banned processes, port lists, and which findings trigger which action.

YAML shape (also what the collector pushes, via :meth:`PolicySet.from_dict`)::

    default: {mode: alert, default_action: alert}
    images:
      - match: "cgsentry/busybox:*"        # repo:tag glob, or an image digest; or a workload:
                                            # {image: GLOB, namespace: GLOB, labels: {app: web}}
        mode: enforce                       # learn | alert | enforce (omit: models decide)
        banned_processes: [nc, wget]        # killed in the kernel at exec in enforce mode
        allowed_listen_ports: [8080]        # any other listen is a finding
        denied_outbound_ports: [4444]
        default_action: alert
        actions:                            # first match wins, in enforce mode only
          - {when: "priority>=CRITICAL", action: kill-container}
          - {when: "rule:Network Tool Launched in Container", action: pause-container}
          - {when: "tag:T1059", action: pause-container}
          - {when: "kind:new_process", action: pause-container}
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from rules.errors import RuleError
from rules.yamlfile import load as load_yaml
from rules.yamlfile import read_text
from sensor.events import (
    ACTIONS,
    BANNED_PROCESS,
    NEW_LISTEN_PORT,
    NEW_OUTBOUND,
    PRIORITIES,
    RULE,
    Event,
    Finding,
)

MODES = ("learn", "alert", "enforce")


@dataclass(frozen=True)
class ActionRule:
    when: str
    action: str

    def matches(self, f: Finding) -> bool:
        key, _, value = self.when.partition(":")
        if self.when.startswith("priority>="):
            want = self.when.split(">=", 1)[1].strip().upper()
            return PRIORITIES.index(f.priority) <= PRIORITIES.index(want)
        if key == "rule":
            return f.rule == value
        if key == "tag":
            return value in f.tags
        if key == "kind":
            return f.kind == value
        return self.when == "*"


@dataclass(frozen=True)
class ImagePolicy:
    match: str = "*"  # the image: repo:tag glob or digest
    mode: str = ""  # "" = the model lifecycle decides
    banned_processes: tuple[str, ...] = ()
    allowed_listen_ports: tuple[int, ...] | None = None
    denied_outbound_ports: tuple[int, ...] = ()
    default_action: str = "alert"
    actions: tuple[ActionRule, ...] = ()
    namespace: str = ""  # Kubernetes namespace glob ("": any)
    labels: tuple[tuple[str, str], ...] = ()  # pod labels that must all be present with these values

    @property
    def selector(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """What the policy applies to: (image, namespace, labels); one policy per selector."""
        return self.match, self.namespace, self.labels

    def applies(self, image: str, image_id: str, namespace: str = "",
                labels: tuple[tuple[str, str], ...] = ()) -> bool:
        if not (self.match in (image_id, image) or fnmatch.fnmatchcase(image, self.match)):
            return False
        if self.namespace and not fnmatch.fnmatchcase(namespace, self.namespace):
            return False
        have = dict(labels)
        return all(have.get(k) == v for k, v in self.labels)

    @property
    def specificity(self) -> tuple[int, int, int]:
        """Most specific wins: more labels, then a namespace, then an exact image over a glob."""
        exact = 2 if not any(c in self.match for c in "*?[") else (0 if self.match == "*" else 1)
        return len(self.labels), int(bool(self.namespace)), exact

    def describe(self) -> str:
        """The selector as people read it: image, then namespace and labels when set."""
        parts = [self.match]
        if self.namespace:
            parts.append(f"namespace={self.namespace}")
        parts += [f"{k}={v}" for k, v in self.labels]
        return " ".join(parts)

    def decide(self, finding: Finding, mode: str | None = None) -> str:
        """The action for a finding under ``mode`` (default: the policy's own mode)."""
        mode = mode or self.mode or "alert"
        if mode == "learn":
            return "alert" if finding.source in ("rule", "policy") else "none"
        if mode == "alert":
            return "alert"
        for rule in self.actions:
            if rule.matches(finding):
                return rule.action
        return self.default_action

    def respond(self, finding: Finding, mode: str | None = None) -> tuple[str, str]:
        """What the sensor does about a finding under ``mode``, and why: :meth:`decide`, except
        that a banned process in enforce mode is always killed (the kernel's kill at exec, or the
        sensor's if the kernel missed it). Sensor and enforce preview both ask this."""
        mode = mode or self.mode or "alert"
        action = self.decide(finding, mode)
        if mode != "enforce":
            return action, f"{mode} mode"
        if finding.kind == BANNED_PROCESS and ACTIONS.index(action) < ACTIONS.index("kill-process"):
            return "kill-process", "banned process"
        rule = next((r for r in self.actions if r.matches(finding)), None)
        return action, f"actions: when {rule.when}" if rule else f"default action {self.default_action}"

    def would_enforce(self, finding: Finding) -> str:
        """What enforce mode would do (alert mode counts these for ops)."""
        return self.decide(finding, "enforce")

    def banned_comms(self) -> list[str]:
        """Kernel comm keys (15 chars max) of banned processes."""
        return sorted({p.rsplit("/", 1)[-1][:15] for p in self.banned_processes})

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"match": self.match, "mode": self.mode,
                             "banned_processes": list(self.banned_processes),
                             "denied_outbound_ports": list(self.denied_outbound_ports),
                             "default_action": self.default_action,
                             "actions": [{"when": a.when, "action": a.action} for a in self.actions]}
        if self.allowed_listen_ports is not None:
            d["allowed_listen_ports"] = list(self.allowed_listen_ports)
        if self.namespace or self.labels:
            d["match"] = {"image": self.match, "namespace": self.namespace, "labels": dict(self.labels)}
        return d


@dataclass
class PolicySet:
    default: ImagePolicy = field(default_factory=ImagePolicy)
    images: list[ImagePolicy] = field(default_factory=list)
    _cache: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], ImagePolicy] = field(
        default_factory=dict, init=False, repr=False, compare=False)
    _cached_for: tuple[Any, ...] = field(default=(), init=False, repr=False, compare=False)

    @classmethod
    def load(cls, path: Path) -> PolicySet:
        data = load_yaml(read_text(path, "policy"), str(path))
        return cls.from_dict(data or {}, str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: str = "<policy>") -> PolicySet:
        if not isinstance(data, Mapping):
            raise RuleError(f"{name}: a policy is a mapping with 'default' and 'images'")
        default = _image(data.get("default") or {}, f"{name}: default")
        images = data.get("images") or []
        if not isinstance(images, list):
            raise RuleError(f"{name}: images: must be a list")
        return cls(default, [_image(d, f"{name}: images[{i}]") for i, d in enumerate(images)])

    def to_dict(self) -> dict[str, Any]:
        return {"default": self.default.to_dict(), "images": [p.to_dict() for p in self.images]}

    def for_image(self, image: str, image_id: str = "", namespace: str = "",
                  labels: tuple[tuple[str, str], ...] = ()) -> ImagePolicy:
        # Asked for every event: the answer is cached per workload until the policies change
        # (upsert, or `images`/`default` assigned anew; nothing mutates the list in place).
        images, default = self._cached_for or (None, None)
        if images is not self.images or default is not self.default:
            self._cache, self._cached_for = {}, (self.images, self.default)
        key = (image, image_id, namespace, labels)
        pol = self._cache.get(key)
        if pol is None:
            if len(self._cache) > 65536:  # pods come and go: labels would grow it for ever
                self._cache.clear()
            pol = self._cache[key] = self._lookup(image, image_id, namespace, labels)
        return pol

    def for_event(self, ev: Event) -> ImagePolicy:
        """The policy of the event's workload: its image, namespace and pod labels."""
        return self.for_image(ev.image, ev.image_id, ev.namespace, ev.labels)

    def _lookup(self, image: str, image_id: str, namespace: str,
                labels: tuple[tuple[str, str], ...]) -> ImagePolicy:
        """The most specific policy that applies (labels, then namespace, then an exact image);
        among equals, the first listed (an upsert puts the newest first)."""
        best: ImagePolicy | None = None
        for pol in self.images:
            if pol.applies(image, image_id, namespace, labels) and (
                    best is None or pol.specificity > best.specificity):
                best = pol
        return best or self.default

    def upsert(self, policy: ImagePolicy) -> None:
        """Replace the policy with the same selector (or add it first, to take precedence)."""
        self.images = [policy] + [p for p in self.images if p.selector != policy.selector]


def _image(d: Any, where: str) -> ImagePolicy:
    if not isinstance(d, Mapping):
        raise RuleError(f"{where}: must be a mapping")
    unknown = set(d) - {"match", "mode", "banned_processes", "allowed_listen_ports",
                        "denied_outbound_ports", "default_action", "actions"}
    if unknown:
        raise RuleError(f"{where}.{sorted(unknown, key=str)[0]}: unknown key")
    image, namespace, labels = _selector(d.get("match", "*"), f"{where}.match")
    mode = _word(d.get("mode") or "", f"{where}.mode")
    if mode and mode not in MODES:
        raise RuleError(f"{where}.mode: {mode!r} is not one of {', '.join(MODES)}")
    actions = tuple(_action(a, f"{where}.actions[{i}]") for i, a in enumerate(_list(d, "actions", where)))
    allowed = d.get("allowed_listen_ports")
    banned = _list(d, "banned_processes", where)
    return ImagePolicy(
        match=image, namespace=namespace, labels=labels, mode=mode,
        banned_processes=tuple(_word(p, f"{where}.banned_processes[{i}]") for i, p in enumerate(banned)),
        allowed_listen_ports=None if allowed is None else _ports(allowed, f"{where}.allowed_listen_ports"),
        denied_outbound_ports=_ports(d.get("denied_outbound_ports") or [], f"{where}.denied_outbound_ports"),
        default_action=_check_action(_word(d.get("default_action", "alert"), f"{where}.default_action"),
                                     f"{where}.default_action"),
        actions=actions)


def _selector(value: Any, where: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """``match``: an image glob, or {image, namespace, labels} for a workload."""
    if not isinstance(value, Mapping):
        return _word(value, where), "", ()
    unknown = set(value) - {"image", "namespace", "labels"}
    if unknown:
        raise RuleError(f"{where}.{sorted(unknown, key=str)[0]}: unknown key (image, namespace, labels)")
    labels = value.get("labels") or {}
    if not isinstance(labels, Mapping):
        raise RuleError(f"{where}.labels: must be a mapping of label to value")
    pairs = tuple(sorted((_word(k, f"{where}.labels"), _word(v, f"{where}.labels.{k}")) for k, v in labels.items()))
    return (_word(value.get("image", "*"), f"{where}.image"), _word(value.get("namespace") or "", f"{where}.namespace"),
            pairs)


def _word(value: Any, where: str) -> str:
    """A string (or number) setting; lists and mappings are refused, never str()-ed."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise RuleError(f"{where}: must be a string, not {type(value).__name__}")


def _list(d: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = d.get(key) or []
    if not isinstance(value, list):
        raise RuleError(f"{where}.{key}: must be a list, not {type(value).__name__}")
    return value


def _ports(values: Any, where: str) -> tuple[int, ...]:
    if not isinstance(values, (list, tuple)) or not all(isinstance(p, (int, str)) for p in values):
        raise RuleError(f"{where}: ports must be a list of integers")
    try:
        ports = tuple(int(p) for p in values)
    except ValueError:
        raise RuleError(f"{where}: ports must be a list of integers") from None
    bad = [p for p in ports if not 0 <= p <= 65535]
    if bad:
        raise RuleError(f"{where}: {bad[0]} is not a port (0-65535)")
    return ports


def _check_action(action: str, where: str) -> str:
    if action not in ACTIONS:
        raise RuleError(f"{where}: {action!r} is not one of {', '.join(ACTIONS)}")
    return action


def _action(a: Any, where: str) -> ActionRule:
    if not isinstance(a, Mapping) or "when" not in a or "action" not in a:
        raise RuleError(f"{where}: needs 'when' and 'action'")
    when = _word(a["when"], f"{where}.when")
    key = when.split(":", 1)[0]
    if not (when == "*" or when.startswith("priority>=") or key in ("rule", "tag", "kind")):
        raise RuleError(f"{where}.when: {when!r} (use rule:NAME, tag:TAG, kind:KIND, "
                        "priority>=LEVEL or *)")
    if when.startswith("priority>=") and when.split(">=", 1)[1].strip().upper() not in PRIORITIES:
        raise RuleError(f"{where}.when: unknown priority in {when!r}")
    return ActionRule(when, _check_action(_word(a["action"], f"{where}.action"), f"{where}.action"))


class PolicyChecker:
    """Sink: findings from the policy itself (banned processes, denied ports)."""

    def __init__(self, policies: PolicySet) -> None:
        self.policies = policies

    def handle(self, ev: Event) -> list[Finding]:
        if ev.runtime == "host" or not ev.container_id:
            return []
        pol = self.policies.for_event(ev)
        if ev.kind == "exec" and pol.banned_processes:
            name = ev.exe.rsplit("/", 1)[-1]
            banned = pol.banned_processes
            if name in banned or ev.exe in banned or ev.comm in pol.banned_comms():
                return [_finding(ev, BANNED_PROCESS, "CRITICAL", f"banned process {ev.exe} "
                                 f"({' '.join(ev.args)}) in container {ev.container_name} image {ev.image}"
                                 + (" — killed at exec by the kernel" if ev.killed else ""))]
        allowed = pol.allowed_listen_ports
        if ev.kind == "listen" and allowed is not None and ev.sport not in allowed:
            return [_finding(ev, NEW_LISTEN_PORT, "WARNING", f"listen on {ev.proto}/{ev.sport} not in "
                             f"allowed ports {list(allowed)} (image {ev.image})")]
        if ev.kind == "connect" and ev.dport in pol.denied_outbound_ports:
            return [_finding(ev, NEW_OUTBOUND, "WARNING", f"connect to denied port {ev.daddr}:{ev.dport} "
                             f"(image {ev.image})")]
        return []


def _finding(ev: Event, kind: str, priority: str, output: str) -> Finding:
    return Finding(kind=kind, rule=f"Policy: {kind.replace('_', ' ')}", priority=priority,
                   output=output, event=ev, time_ns=ev.time_ns, source="policy",
                   tags=("policy",), explanation={"policy": "image policy"})


__all__ = ["PolicySet", "ImagePolicy", "PolicyChecker", "ActionRule", "MODES", "RULE"]
