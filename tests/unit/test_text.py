"""Hostile text in human output: every control, format and separator character is shown as an escape,
in the helper and in each human formatter that prints what a container chose (trace/replay lines,
rules test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.workloads import deviation
from sensor.agent.cli import event_line, main
from sensor.journal import JournalWriter
from sensor.text import visible

HOSTILE = "\x1b[2J\x1b]8;;http://evil\x07x\n FAKE ROW\r\u202etxt.exe\x9b"


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain text, with a \\ backslash", "plain text, with a \\ backslash"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("a\nb\tc\rd\x00e\x7f", "a\\x0ab\\x09c\\x0dd\\x00e\\x7f"),
    ("\x9b2J", "\\x9b2J"),  # C1 CSI
    ("\u202eabc\u2066\u200e", "\\u202eabc\\u2066\\u200e"),  # bidi override, isolate, mark
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("ünïcødé 日本", "ünïcødé 日本"),
])
def test_visible_escapes_every_character_that_is_not_printable(raw: str, shown: str) -> None:
    assert visible(raw) == shown


def _no_terminal_control(text: str) -> None:
    assert not any(c in text for c in "\x1b\x07\x9b\r\u202e"), repr(text)


def test_a_trace_or_replay_line_is_one_line_with_no_control_bytes() -> None:
    ev = deviation("new_binary", 2 * 10**18).pop()
    ev = ev.replace(exe="/tmp/" + HOSTILE, args=("x", HOSTILE), comm=HOSTILE[:15], container_name=HOSTILE)
    line = event_line(ev)
    _no_terminal_control(line)
    assert "\n" not in line and "FAKE ROW" in line and "\\x1b]8;;http://evil\\x07" in line


def test_rules_test_prints_hostile_output_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / "j.msgpack"
    with JournalWriter(journal) as w:
        for ev in deviation("shell_from_server", 2 * 10**18):
            w.write(ev.replace(args=(*ev.args, HOSTILE)))
    assert main(["rules", "test", "--events", str(journal)]) == 0
    out = capsys.readouterr().out
    _no_terminal_control(out)
    assert len(out.splitlines()) == 1 and "FAKE ROW" in out, out
    assert main(["rules", "test", "--events", str(journal), "--json"]) == 0  # JSON escapes by itself
    assert HOSTILE in json.loads(capsys.readouterr().out.splitlines()[0])["output"]


def test_an_error_line_quoting_hostile_text_stays_one_harmless_line(capsys: pytest.CaptureFixture[str]) -> None:
    from sensor.errors import CgsentryError, run_command

    def fail(_args: object) -> int:
        raise CgsentryError("container said: " + HOSTILE)

    assert run_command("cgsentry", fail, None) != 0
    err = capsys.readouterr().err
    _no_terminal_control(err)
    assert err.count("\n") == 1 and "FAKE ROW" in err
