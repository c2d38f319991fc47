"""A rules or policy file larger than the limit is refused for its size, before it is read or parsed
(issue 16, item 11: a 50 MB rules file was parsed and refused for whatever it held, or loaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import rules.yamlfile
from rules.errors import RuleError
from rules.loader import load_files
from rules.policy import PolicySet
from rules.yamlfile import MAX_FILE_BYTES

TOO_LARGE_RE = r"too large \(52,428,800 bytes; the limit is 4 MiB\)"


@pytest.fixture
def huge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """50 MB of valid YAML (comment lines, so it would load as an empty file), and a parser that
    fails the test if it is ever reached."""
    path = tmp_path / "huge.yaml"
    line = b"# a comment line that is valid YAML and means nothing at all ...\n"
    path.write_bytes(line * (50 * 1024 * 1024 // len(line)) + b"#" * (50 * 1024 * 1024 % len(line)))
    assert path.stat().st_size == 50 * 1024 * 1024

    def no_parse(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a file over the size limit was parsed")

    monkeypatch.setattr(rules.yamlfile.yaml, "load", no_parse)
    return path


def test_a_50mb_rules_file_is_refused_for_its_size_before_parsing(huge: Path) -> None:
    with pytest.raises(RuleError, match=TOO_LARGE_RE) as info:
        load_files([huge])
    assert str(info.value).startswith(f"{huge}: rules file too large")
    assert "\n" not in str(info.value) and info.value.exit_code == 65


def test_a_50mb_policy_file_is_refused_for_its_size(huge: Path) -> None:
    with pytest.raises(RuleError, match=f"policy {TOO_LARGE_RE}"):
        PolicySet.load(huge)


def test_the_cli_says_so_in_one_line(huge: Path, capsys: Any) -> None:
    from sensor.agent.cli import main

    assert main(["rules", "check", str(huge)]) == 65
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rules file too large" in err and "4 MiB" in err, err


def test_a_file_at_the_limit_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (MAX_FILE_BYTES - 1) + b"\n")
    assert load_files([path]).rules == []


def test_an_endless_file_is_cut_off_at_the_limit(tmp_path: Path) -> None:
    """/dev/zero reports size 0; it is read up to the limit and refused, not read forever."""
    with pytest.raises(RuleError, match=r"/dev/zero: rules file too large \(over 4,194,304 bytes"):
        load_files([Path("/dev/zero")])
