"""What one sensor's link remembers is bounded (issue 16 item 7): all or nothing past a cap, and
keys no runtime makes are not remembered."""

from __future__ import annotations

import pytest

from collector import sensorlink
from collector.errors import ResourceExhausted
from collector.sensorlink import Session


def test_a_cap_refuses_the_whole_message_and_keeps_what_was_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sensorlink, "MAX_CONTAINERS", 3)
    s = Session("s1", "n1")
    s.remember(["a", "b"], ["img"], [("web", "a")])
    s.remember(["a", "b", "c"])  # known ids do not count twice
    with pytest.raises(ResourceExhausted, match="more than 3 containers on one link"):
        s.remember(["d"], ["img2"], [("db", "d")])
    assert s.containers == {"a", "b", "c"} and s.images == {"img"} and s.names == {"web": "a"}


def test_empty_and_overlong_keys_are_not_remembered() -> None:
    s = Session("s1", "n1")
    long = "x" * (sensorlink.MAX_KEY_CHARS + 1)
    s.remember(["", long, "a"], ["", long], [("", "a"), (long, "a"), ("web", long), ("db", "a")])
    assert s.containers == {"a"} and s.images == set() and s.names == {"db": "a"}
