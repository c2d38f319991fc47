"""Rules that learn (issue 20 item 1): a learnable rule's finding while its image learns becomes an
expected behaviour of the image, scoped by (rule, executable, parent), quiet once it alerts, kept in
the model file, shown by ``model show`` with provenance and merged across the fleet; rules marked
``learnable: false`` are never learned. And the severity scale as it applies to model findings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.workloads import IMAGE_ID, SEC, container_id, fleet
from models import fleet as fleet_merge
from models import store
from models.baseline import ModelConfig
from models.engine import ModelEngine
from models.fleet import merge_snapshots
from rules.engine import RuleEngine
from rules.errors import RuleError
from rules.loader import load_text
from sensor.events import Event, Finding
from tests.unit.model_cli import model_cli

CFG = ModelConfig(min_learn_s=60, stable_s=30)
SHELL_RULE = "Shell Spawned by Non-Shell Program in Container"
# What no baseline may excuse: these rules fire whatever the image learned
NEVER_LEARNED = ("Reverse Shell in Container", "Crypto Miner Launched", "Read Sensitive File in Container",
                 "Drift Executable Run From Temporary Directory", "Fileless Execution via Memfd",
                 "Package Management Process in Container", "Write Below Binary Dir", "Read Process Memory",
                 "Kernel Module Load", "Contact Container Runtime Socket", "Ptrace Attach",
                 "Setuid to Root by Non-Root Process", "Outbound Connection to Miner Pool Port")


def rotate_exec(t: int, pexe: str = "/usr/sbin/logrotate", i: int = 0) -> Event:
    """logrotate's postrotate: ``sh -c 'nginx -s reopen'`` under logrotate."""
    return Event("exec", t, pid=700 + i, comm="sh", exe="/usr/bin/dash", pexe=pexe,
                 args=("sh", "-c", "nginx -s reopen"), container_id=container_id(i), container_name=f"web-{i}",
                 image="web:1", image_id=IMAGE_ID, runtime="docker", cgroup_id=1000 + i)


def rule_findings(engine: RuleEngine, ev: Event, name: str) -> list[Finding]:
    return [f for f in engine.handle(ev) if f.rule == name]


def learning_engine() -> tuple[ModelEngine, int]:
    eng = ModelEngine(CFG)
    evs = fleet(1, 20)
    for ev in evs:
        eng.handle(ev)
    assert eng.images[IMAGE_ID].mode == "learn"
    return eng, evs[-1].time_ns


def test_loader_reads_learnable_default_true_and_refuses_a_non_boolean() -> None:
    text = "- rule: A\n  desc: d\n  condition: proc.name = a\n  output: o\n  priority: NOTICE\n"
    assert load_text(text).rules[0].learnable is True
    assert load_text(text + "  learnable: false\n").rules[0].learnable is False
    with pytest.raises(RuleError, match=r"rules\[0\].learnable: must be true or false, not the string 'no'"):
        load_text(text + "  learnable: 'no'\n")


def test_library_marks_what_must_never_be_learned() -> None:
    rules = {r.name: r for r in RuleEngine.load().rules()}
    assert all(not rules[n].learnable for n in NEVER_LEARNED)
    assert rules[SHELL_RULE].learnable and rules["Network Tool Launched in Container"].learnable
    # the finding carries it, so the sensor needs no second lookup
    [hit] = rule_findings(RuleEngine.load(), rotate_exec(1), SHELL_RULE)
    assert hit.explanation["learnable"] is True and hit.priority == "ERROR"


def test_a_rule_finding_while_learning_is_expected_once_the_image_alerts() -> None:
    eng, t = learning_engine()
    rules = RuleEngine.load()
    [seen] = rule_findings(rules, rotate_exec(t), SHELL_RULE)
    learned = eng.rule_finding(seen)
    assert learned is not None and learned.explanation["learned"] is True  # still reported while learning
    b = eng.images[IMAGE_ID]
    key = (SHELL_RULE, "/usr/bin/dash", "/usr/sbin/logrotate")
    assert b.profile.known("rule", key) and b.life.last_new_ns == t  # new behaviour: the stability clock restarts
    b.set_mode("alert", "test", t + SEC)
    [again] = rule_findings(rules, rotate_exec(t + 2 * SEC, i=1), SHELL_RULE)  # another replica too
    assert eng.rule_finding(again) is None
    assert b.profile.items["rule"][key].count == 2
    # scoped by parent: the same shell under the web server is not what was learned
    [rce] = rule_findings(rules, rotate_exec(t + 3 * SEC, pexe="/usr/sbin/nginx"), SHELL_RULE)
    assert eng.rule_finding(rce) is rce and "learned" not in rce.explanation
    assert not b.profile.known("rule", (SHELL_RULE, "/usr/bin/dash", "/usr/sbin/nginx"))


def test_an_operators_mode_wins_over_the_baselines() -> None:
    """A policy that alerts on an image still learning: its rule findings are not learned."""
    eng, t = learning_engine()
    [seen] = rule_findings(RuleEngine.load(), rotate_exec(t), SHELL_RULE)
    assert eng.rule_finding(seen, "enforce") is seen and not eng.images[IMAGE_ID].profile.items["rule"]
    assert eng.rule_finding(seen, "learn") is not None and eng.images[IMAGE_ID].profile.items["rule"]
    assert eng.rule_finding(seen, "alert") is None


def test_nothing_is_learned_while_events_are_lost_or_for_the_host() -> None:
    eng, t = learning_engine()
    [seen] = rule_findings(RuleEngine.load(), rotate_exec(t), SHELL_RULE)
    eng.on_loss(5, t)
    assert eng.rule_finding(seen) is seen and not eng.images[IMAGE_ID].profile.items["rule"]
    host = seen.replace(event=seen.event.replace(container_id="host", runtime="host", image_id="", image=""))
    assert eng.rule_finding(host) is host


def test_rule_items_survive_the_file_the_fleet_merge_and_model_show(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    eng, t = learning_engine()
    [seen] = rule_findings(RuleEngine.load(), rotate_exec(t), SHELL_RULE)
    eng.rule_finding(seen)
    key = (SHELL_RULE, "/usr/bin/dash", "/usr/sbin/logrotate")
    b = eng.images[IMAGE_ID]
    again = store.from_dict(store.to_dict(b), CFG)
    assert again.profile.items["rule"][key].provenance["container"] == "web-0"
    # fleet: a node that never saw the rotation gets it from the merged baseline
    other = ModelEngine(CFG)
    for ev in fleet(1, 20, seed=2):
        other.handle(ev)
    merged = merge_snapshots(store.to_dict(other.images[IMAGE_ID]), store.to_dict(b))
    assert store.from_dict(merged, CFG).profile.known("rule", key)
    assert fleet_merge.adopt(other.registry, merged).profile.known("rule", key)
    run = model_cli(eng, tmp_path / "models")
    assert run("show", IMAGE_ID) == 0
    out = capsys.readouterr().out
    assert "rule (1):" in out and f"{SHELL_RULE}  exe /usr/bin/dash  parent /usr/sbin/logrotate" in out
    assert "learned from rule finding in web-0" in out
    assert run("show", IMAGE_ID, "--json") == 0
    [item] = json.loads(capsys.readouterr().out)["items"]["rule"]
    assert (item["rule"], item["exe"], item["parent"], item["provenance"]["container"]) == (*key, "web-0")


def test_model_severity_exec_session_is_notice_shell_under_service_is_error() -> None:
    eng = ModelEngine(CFG)
    evs = fleet(1, 240)
    for ev in evs:
        eng.handle(ev)
    assert eng.images[IMAGE_ID].mode == "alert"
    t = evs[-1].time_ns + SEC
    base = dict(container_id=container_id(0), container_name="web-0", image_id=IMAGE_ID, runtime="docker",
                cgroup_id=1000)
    [session] = eng.handle(Event("exec", t, pid=1, comm="bash", exe="/usr/bin/bash", pexe="/dev/fd/5", **base))
    [shell] = eng.handle(Event("exec", t, pid=2, comm="dash", exe="/usr/bin/dash", pexe="/usr/sbin/httpd", **base))
    [tool] = eng.handle(Event("exec", t, pid=3, comm="curl", exe="/usr/bin/curl", pexe="/bin/sh", **base))
    assert (session.priority, shell.priority, tool.priority) == ("NOTICE", "ERROR", "WARNING")
