"""A sensor given several collectors (a fleet): the flag is checked, the list is kept in order."""

from __future__ import annotations

import pytest

from sensor.agent.cli import build_parser
from sensor.agent.link import CollectorLink, LinkConfig
from sensor.spool import Spool


def test_several_collectors_parse_in_order() -> None:
    args = build_parser().parse_args(["run", "--collector", "a.example:7443, b.example:7443,[::1]:7443"])
    assert args.collector == "a.example:7443,b.example:7443,[::1]:7443"
    assert LinkConfig(args.collector).targets == ["a.example:7443", "b.example:7443", "[::1]:7443"]
    assert LinkConfig("dns:///collectors.example:7443").targets == ["dns:///collectors.example:7443"]


@pytest.mark.parametrize("bad", ["a.example", "a.example:7443,b.example", "a:0", "a:70000", ":7443", "a:7443,"])
def test_a_bad_collector_list_is_one_line_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["run", "--collector", bad])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 64 and "is not HOST:PORT" in err[-1]


def test_sensors_spread_over_the_collectors_by_id(tmp_path: object) -> None:
    from pathlib import Path

    targets = "a:1,b:2,c:3"
    firsts = {CollectorLink(LinkConfig(targets, sensor_id=f"node-{i}"), Spool(Path(str(tmp_path)) / str(i))).target
              for i in range(30)}
    assert firsts == {"a:1", "b:2", "c:3"}
