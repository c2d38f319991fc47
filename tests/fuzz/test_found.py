"""Crashes the fuzz tier found, kept as plain regression tests (each failed before its fix)."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from collector.convert import finding_from_pb, finding_to_pb, pb
from rules.errors import RuleError
from rules.loader import load_text
from rules.policy import PolicySet
from sensor.events import SYSCALL, Event
from sensor.spool import Spool
from tests.fuzz.inputs import findings


def test_an_output_naming_a_numeric_list_field_renders() -> None:
    """%evt.arg is a syscall's integer arguments: rendering joined them as strings (TypeError)."""
    text = ("- rule: R\n  desc: d\n  condition: not container.full_id exists\n  output: o %evt.arg\n"
            "  priority: WARNING\n")
    [rule] = load_text(text).rules
    assert rule.render(Event(SYSCALL, 1, syscall_nr=59, sc_args=(1, 2, 3))) == "o 1 2 3"


def test_unknown_keys_of_mixed_types_are_one_rule_error(tmp_path: Path) -> None:
    """Sorting the unknown keys to name the first compared an int with a str (TypeError)."""
    rule = "- rule: R\n  desc: d\n  condition: proc.name = sh\n  output: o\n  priority: WARNING\n  1: x\n  zz: y\n"
    with pytest.raises(RuleError, match=r"rules\[0\]\.1: unknown key"):
        load_text(rule, "t.yaml")
    (tmp_path / "p.yaml").write_text("default:\n  ? ''\n  0:\n")
    with pytest.raises(RuleError, match=r"p.yaml: default\.\S*: unknown key"):
        PolicySet.load(tmp_path / "p.yaml")


@pytest.mark.parametrize("change", [{"kind": []}, {"explanation": {b"k": 1}}, {"time_ns": 2**63},
                                    {"event": {"kind": [None], "time_ns": 1}}, {"tags": [1]},
                                    {"event": {"kind": "exec", "time_ns": 1, "sc_args": [-1]}}])
def test_a_spooled_batch_that_cannot_be_sent_is_skipped_and_counted(tmp_path: Path, change: dict[str, object]) -> None:
    """Such a batch reached the collector link, whose conversion to protobuf raised and ended it."""
    spool = Spool(tmp_path)
    spool.append(findings()[:1])
    bad = {**findings()[0].to_dict(), **change}
    with open(next(tmp_path.glob("seg-*.msgpack")), "ab") as f:
        f.write(msgpack.packb({"seq": 2, "findings": [bad]}, use_bin_type=True))
    spool = Spool(tmp_path)
    spool.append(findings()[1:2])
    batches = list(spool.pending())
    assert [seq for seq, _ in batches] == [1, 3] and spool.corrupt_records == 1
    for _, batch in batches:
        [finding_to_pb(f) for f in batch]


@pytest.mark.parametrize("text", ["[0,0]", '" "', "3", "null", "[" * 100_000 + "]" * 100_000])
def test_an_explanation_that_is_not_a_json_object_is_kept_as_text(text: str) -> None:
    """It became a Finding whose explanation was a list or a string, which raised wherever it was
    read as a mapping (Finding.to_dict); one nested too deeply raised RecursionError."""
    f = finding_from_pb(pb.Finding(kind="k", event=pb.Event(kind="exec"), explanation_json=text))
    assert f.explanation == {"raw": text} and f.to_dict()["explanation"] == {"raw": text}
