"""One answer per rule file, and replay that finds: `cgsentry-sensor rules check FILE` and
`cgsentry rules push NAME FILE` (against a live collector) judge the same files the same way,
with the default library's macros and lists available to both; `cgsentry-sensor replay` runs a
recording through the detectors and prints the findings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.workloads import deviation, fleet
from collector.store import SqlStore
from sensor.agent.cli import main as sensor_main
from sensor.journal import JournalWriter
from tests.integration.helpers import run

Live = tuple[str, dict[str, str], SqlStore]
USES_LIBRARY = ("- rule: Team Shell\n  desc: a shell from our web server\n"
                "  condition: spawned_process and proc.name in (shell_binaries) and proc.pname = httpd\n"
                "  output: shell %proc.cmdline\n  priority: WARNING\n  tags: [T1059]\n")
BAD_MACRO = ("- rule: Team Typo\n  desc: d\n  condition: spawned_proces and proc.name = sh\n"
             "  output: o\n  priority: WARNING\n")
DUPLICATE_OF_LIBRARY = ("- list: shell_binaries\n  items: 5\n")


def _sensor(capsys: Any, *argv: str) -> tuple[int, str, str]:
    rc = sensor_main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_rules_check_and_rules_push_give_one_answer(live: Live, capsys: Any, tmp_path: Path) -> None:
    admin = ["--server", live[0], "--token", live[1]["admin"]]
    for i, text in enumerate((USES_LIBRARY, BAD_MACRO, DUPLICATE_OF_LIBRARY)):
        path = tmp_path / f"team{i}.yaml"
        path.write_text(text)
        rc_check, out, err_check = _sensor(capsys, "rules", "check", str(path))
        rc_push, _, err_push = run(capsys, *admin, "rules", "push", f"team{i}", str(path))
        assert (rc_check == 0) == (rc_push == 0), (text, err_check, err_push)
        if rc_check == 0:
            assert out.startswith("ok: 1 rules in 1 file(s); ") and "with the default library" in out
            continue
        assert rc_check == rc_push == 65 and err_check.count("\n") == err_push.count("\n") == 1
        # the same reason, named by each side's source (the file, or the pushed set)
        assert err_check.split(f"{path}", 1)[1].split(":", 2)[-1] == err_push.split(f"team{i}", 1)[1].split(":", 2)[-1]
    assert [r["name"] for r in live[2].rulesets()] == ["team0"]


def test_replay_prints_the_findings_of_a_recording(tmp_path: Path, capsys: Any) -> None:
    journal = tmp_path / "j.msgpack"
    with JournalWriter(journal) as w:
        for ev in fleet(1, 5) + deviation("shell_from_server", 2 * 10**18):
            w.write(ev)
    rc, out, err = _sensor(capsys, "replay", str(journal), "--json")
    found = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and err == ""
    assert [f["rule"] for f in found if f["source"] == "rule"] == ["Shell Spawned by Non-Shell Program in Container"]
    shell = next(f for f in found if f["source"] == "rule")
    # promoted by journal time: learning began at 1.7e18 ns, the shell comes at 2e18
    assert (shell["mode"], shell["action"], shell["container_name"]) == ("alert", "alert", "web-0")
    rc, out, _ = _sensor(capsys, "replay", str(journal))
    lines = out.splitlines()
    assert rc == 0 and lines[-1] == f"# {len(fleet(1, 5)) + 1} events, {len(found)} findings"
    assert any("Shell Spawned by Non-Shell Program in Container: " in line for line in lines)
    rc, out, _ = _sensor(capsys, "replay", str(journal), "--events", "--json")
    assert rc == 0 and len(out.splitlines()) == len(fleet(1, 5)) + 1 and json.loads(out.splitlines()[0])["kind"]
    policy = tmp_path / "p.yaml"
    policy.write_text("images:\n- match: 'cgsentry/busybox:*'\n  mode: enforce\n  default_action: pause-container\n")
    rc, out, _ = _sensor(capsys, "replay", str(journal), "--json", "--policy", str(policy))
    shell = next(json.loads(line) for line in out.splitlines() if json.loads(line)["source"] == "rule")
    assert rc == 0 and (shell["mode"], shell["action"]) == ("enforce", "pause-container")


def test_replay_scores_against_a_model_store_and_leaves_it_as_it_was(tmp_path: Path, capsys: Any) -> None:
    from tests.integration.helpers import learned

    eng = learned(range(0, 3))
    eng.store_dir = tmp_path / "models"
    eng.save_all()
    before = {p.name: p.read_bytes() for p in (tmp_path / "models").iterdir()}
    journal = tmp_path / "j.msgpack"
    with JournalWriter(journal) as w:
        for ev in deviation("new_binary", 1_700_000_500 * 10**9):
            w.write(ev)
    rc, out, _ = _sensor(capsys, "replay", str(journal), "--json", "--models", str(tmp_path / "models"))
    found = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and [(f["kind"], f["exe"], f["mode"]) for f in found if f["source"] == "model"] == [
        ("new_process", "/tmp/xmrig", "alert")]  # the learned baseline knows no /tmp/xmrig
    assert {p.name: p.read_bytes() for p in (tmp_path / "models").iterdir()} == before
