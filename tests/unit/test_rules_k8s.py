"""Kubernetes fields in rule conditions and outputs (Falco's names), and keyed labels."""

from __future__ import annotations

import pytest

from rules.condition import CondError, compile_condition
from rules.engine import RuleEngine
from rules.loader import load_sources
from sensor.events import Event

POD = dict(namespace="payments", pod="web-7d9f", labels=(("app.kubernetes.io/name", "web"), ("tier", "front")),
           image_digest="cgsentry/web@sha256:" + "a" * 64, image_id="sha256:" + "b" * 64)


def test_conditions_select_by_namespace_pod_and_label() -> None:
    match, kinds, _ = compile_condition(
        'evt.type = execve and k8s.ns.name = payments and k8s.pod.name startswith web- and '
        'k8s.pod.label[app.kubernetes.io/name] = web and k8s.pod.labels contains "tier:front"', {}, {})
    assert kinds == frozenset({"exec"})
    assert match(Event("exec", 1, **POD))  # type: ignore[arg-type]
    assert not match(Event("exec", 1, **{**POD, "namespace": "default"}))  # type: ignore[arg-type]
    assert not match(Event("exec", 1, **{**POD, "labels": (("tier", "front"),)}))  # type: ignore[arg-type]
    exists, _, _ = compile_condition("k8s.pod.label[team] exists", {}, {})
    assert not exists(Event("exec", 1, **POD))  # type: ignore[arg-type]


def test_image_digest_is_the_repository_digest_when_known() -> None:
    match, _, _ = compile_condition(f"container.image.digest = sha256:{'a' * 64}", {}, {})
    assert match(Event("exec", 1, **POD))  # type: ignore[arg-type]
    fallback, _, _ = compile_condition(f"container.image.digest = sha256:{'b' * 64}", {}, {})
    assert fallback(Event("exec", 1, image_id="sha256:" + "b" * 64))


@pytest.mark.parametrize("text, why", [
    ("k8s.pod.label = web", "needs a key"),
    ("proc.aname[web] = x", "takes a number in [N]"),
    ("k8s.ns.name[1] = x", "takes no [1]"),
])
def test_wrong_brackets_are_one_line_errors(text: str, why: str) -> None:
    with pytest.raises(CondError, match=why.replace("[", r"\[").replace("]", r"\]")):
        compile_condition(text, {}, {})


def test_outputs_name_the_pod() -> None:
    engine = RuleEngine(load_sources([("k.yaml", "- rule: Pod Exec\n  desc: d\n  condition: evt.type = execve\n"
                                       "  output: exec in %k8s.ns.name/%k8s.pod.name (%k8s.pod.labels)\n"
                                       "  priority: NOTICE\n")]))
    [f] = engine.handle(Event("exec", 1, **POD))  # type: ignore[arg-type]
    assert f.output == "exec in payments/web-7d9f (app.kubernetes.io/name:web, tier:front)"
