"""Per-image policy: matching, decisions per mode, banned processes, ports, validation."""

from __future__ import annotations

import pytest

from rules.errors import RuleError
from rules.policy import PolicyChecker, PolicySet
from sensor.events import Event, Finding

POLICY = {
    "default": {"default_action": "alert"},
    "images": [{
        "match": "cgsentry/busybox:*", "mode": "enforce", "banned_processes": ["nc", "/usr/bin/wget"],
        "allowed_listen_ports": [8080], "denied_outbound_ports": [4444],
        "default_action": "alert",
        "actions": [{"when": "priority>=CRITICAL", "action": "kill-container"},
                    {"when": "tag:T1059", "action": "pause-container"},
                    {"when": "kind:new_process", "action": "pause-container"}],
    }],
}
EV = Event("exec", 1, pid=5, comm="nc", exe="/usr/bin/nc", args=("nc",), container_id="c" * 64,
           container_name="web", image="cgsentry/busybox:latest", runtime="docker")


def finding(kind: str = "rule", priority: str = "WARNING", tags: tuple[str, ...] = (),
            source: str = "rule") -> Finding:
    return Finding(kind, "R", priority, "o", EV, tags=tags, source=source)


def test_decisions_by_mode_and_action_order() -> None:
    pol = PolicySet.from_dict(POLICY).for_image("cgsentry/busybox:latest")
    assert pol.decide(finding(priority="CRITICAL")) == "kill-container"
    assert pol.decide(finding(tags=("T1059",))) == "pause-container"
    assert pol.decide(finding("new_process", source="model")) == "pause-container"
    assert pol.decide(finding()) == "alert"
    assert pol.decide(finding(priority="CRITICAL"), "alert") == "alert"
    assert pol.would_enforce(finding(priority="CRITICAL")) == "kill-container"
    assert pol.decide(finding("new_process", source="model"), "learn") == "none"
    assert pol.decide(finding(), "learn") == "alert"  # rule hits still alert while learning


def test_other_images_get_the_default() -> None:
    ps = PolicySet.from_dict(POLICY)
    assert ps.for_image("nginx:1").match == "*"
    assert ps.for_image("x", "cgsentry/busybox:*").mode == "enforce"


def test_checker_banned_and_ports() -> None:
    chk = PolicyChecker(PolicySet.from_dict(POLICY))
    assert [f.kind for f in chk.handle(EV)] == ["banned_process"]
    assert chk.handle(EV.replace(comm="ls", exe="/bin/ls")) == []
    listen = EV.replace(kind="listen", sport=9000, comm="httpd", exe="/usr/sbin/httpd")
    assert [f.kind for f in chk.handle(listen)] == ["new_listen_port"]
    assert chk.handle(listen.replace(sport=8080)) == []
    conn = EV.replace(kind="connect", dport=4444, daddr="127.0.0.1", comm="sh", exe="/bin/sh")
    assert [f.kind for f in chk.handle(conn)] == ["new_outbound"]
    assert chk.handle(EV.replace(runtime="host", container_id="host")) == []
    pol = PolicySet.from_dict(POLICY).for_image("cgsentry/busybox:latest")
    assert pol.banned_comms() == ["nc", "wget"]


@pytest.mark.parametrize("bad, message", [
    ({"images": [{"mode": "panic"}]}, r"images\[0\].mode: 'panic' is not one of"),
    ({"images": [{"actions": [{"when": "rule:X", "action": "nuke"}]}]}, r"actions\[0\].action: 'nuke'"),
    ({"images": [{"actions": [{"when": "colour:red", "action": "alert"}]}]}, r"actions\[0\].when"),
    ({"images": [{"allowed_listen_ports": [70000]}]}, r"70000 is not a port"),
    ({"images": [{"bogus": 1}]}, r"images\[0\].bogus: unknown key"),
])
def test_policy_errors(bad: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(RuleError, match=message):
        PolicySet.from_dict(bad)


def test_round_trip() -> None:
    """to_dict keeps every field given (defaults filled in), and reading it back changes nothing."""
    ps = PolicySet.from_dict(POLICY)
    assert ps.to_dict() == {
        "default": {"match": "*", "mode": "", "banned_processes": [], "denied_outbound_ports": [],
                    "default_action": "alert", "actions": []},
        "images": [{"match": "cgsentry/busybox:*", "mode": "enforce", "banned_processes": ["nc", "/usr/bin/wget"],
                    "denied_outbound_ports": [4444], "default_action": "alert",
                    "actions": [{"when": "priority>=CRITICAL", "action": "kill-container"},
                                {"when": "tag:T1059", "action": "pause-container"},
                                {"when": "kind:new_process", "action": "pause-container"}],
                    "allowed_listen_ports": [8080]}],
    }
    assert PolicySet.from_dict(ps.to_dict()) == ps


def test_cached_answers_follow_policy_changes() -> None:
    from rules.policy import ImagePolicy

    ps = PolicySet.from_dict(POLICY)
    assert ps.for_image("cgsentry/busybox:latest").mode == "enforce"
    assert ps.for_image("other:1") is ps.default
    ps.upsert(ImagePolicy(match="other:*", mode="alert"))  # pushed by the collector
    assert ps.for_image("other:1").mode == "alert"
    ps.images = []
    assert ps.for_image("cgsentry/busybox:latest") is ps.default
    ps.default = ImagePolicy(mode="learn")
    assert ps.for_image("x:1").mode == "learn"


def test_workload_selectors_most_specific_wins() -> None:
    """Policies by namespace and pod labels beside the image one; the most specific that applies
    wins (labels, then namespace, then an exact image over a glob), whatever the order."""
    from rules.policy import PolicySet
    from sensor.events import Event

    ps = PolicySet.from_dict({"images": [
        {"match": "shop/*", "mode": "alert"},
        {"match": {"image": "shop/*", "namespace": "payments", "labels": {"app": "web", "tier": "front"}},
         "mode": "enforce", "default_action": "kill-container"},
        {"match": {"image": "shop/*", "namespace": "pay*"}, "mode": "enforce"},
        {"match": "shop/web:1.4", "mode": "learn"},
    ]})

    def mode(**kw: object) -> str:
        return ps.for_event(Event("exec", 1, **kw)).mode  # type: ignore[arg-type]

    web = (("app", "web"), ("tier", "front"))
    assert mode(image="shop/web:1.4", namespace="payments", labels=web) == "enforce"
    assert ps.for_event(Event("exec", 1, image="shop/web:1.4", namespace="payments", labels=web)).default_action \
        == "kill-container"
    assert mode(image="shop/web:1.4", namespace="payments", labels=(("app", "web"),)) == "enforce"  # ns rule
    assert mode(image="shop/web:1.4", namespace="default") == "learn"  # the exact image beats the glob
    assert mode(image="shop/db:2", namespace="default") == "alert"
    assert mode(image="other:1", namespace="payments") == ""  # no image match: the default policy
    back = PolicySet.from_dict(ps.to_dict())
    assert [p.selector for p in back.images] == [p.selector for p in ps.images]
    assert ps.images[1].describe() == "shop/* namespace=payments app=web tier=front"


def test_workload_selector_errors_name_the_key() -> None:
    import pytest

    from rules.errors import RuleError
    from rules.policy import PolicySet

    with pytest.raises(RuleError, match=r"images\[0\]\.match\.pods: unknown key"):
        PolicySet.from_dict({"images": [{"match": {"image": "x", "pods": "y"}}]})
    with pytest.raises(RuleError, match=r"labels: must be a mapping"):
        PolicySet.from_dict({"images": [{"match": {"labels": ["app=web"]}}]})
