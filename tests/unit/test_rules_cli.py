"""`cgsentry-sensor rules check|test|list` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.workloads import deviation, fleet
from sensor.agent.cli import main
from sensor.journal import JournalWriter


def test_check_default_library_and_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check"]) == 0
    assert capsys.readouterr().out.startswith("ok: 26 rules")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- rule: R\n  condition: proc.nmae = x\n  output: o\n  priority: INFO\n")
    assert main(["rules", "check", str(bad)]) == 65
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.yaml:1: rules[0].condition: unknown field or macro 'proc.nmae'" in err


def test_rules_test_dry_runs_a_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / "j.msgpack"
    with JournalWriter(journal) as w:
        for ev in fleet(1, 5) + deviation("shell_from_server", 2 * 10**18):
            w.write(ev)
    assert main(["rules", "test", "--events", str(journal), "--json"]) == 0
    out = capsys.readouterr()
    fired = [json.loads(line)["rule"] for line in out.out.splitlines()]
    # the benign web workload fires nothing; the shell under httpd fires exactly one rule
    assert fired == ["Shell Spawned by Non-Shell Program in Container"]
    assert "would fire" in out.err
    assert main(["rules", "list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 26  # with Drift Executable Not Part of Image (issue 21 item 1)
