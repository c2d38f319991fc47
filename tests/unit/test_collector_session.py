"""What one sensor's link remembers is bounded (issue 16 item 7): all or nothing past a cap, and
keys no runtime makes are not remembered."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector import sensorlink
from collector.errors import ResourceExhausted
from collector.sensorlink import Hub, Session
from collector.store import SqlStore


def _remember(hub: Hub, s: Session, containers: list[str], images: list[str] = [],  # noqa: B006 - read only
              names: list[tuple[str, str]] = []) -> None:  # noqa: B006 - read only
    """What the link does with a batch: check the room, then claim each container and its name."""
    with hub.lock:
        s.check_room(containers, images, names)
        for i, cid in enumerate(containers):
            hub.claim(s, cid, images[i] if i < len(images) else "", True)
        for name, cid in names:
            if sensorlink.fits(name) and cid in s.containers:
                s.names[name] = cid


def test_a_cap_refuses_the_whole_message_and_keeps_what_was_remembered(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    monkeypatch.setattr(sensorlink, "MAX_CONTAINERS", 3)
    hub, s = Hub(SqlStore.open(str(tmp_path / "h.db"))), Session("s1", "n1")
    hub.sessions["s1"] = s
    _remember(hub, s, ["a", "b"], ["img"], [("web", "a")])
    _remember(hub, s, ["a", "b", "c"])  # known ids do not count twice
    with pytest.raises(ResourceExhausted, match="more than 3 containers on one link"):
        _remember(hub, s, ["d"], ["img2"], [("db", "d")])
    assert s.containers == {"a", "b", "c"} and s.images == {"img"} and s.names == {"web": "a"}


def test_empty_and_overlong_keys_are_not_remembered(tmp_path: Path) -> None:
    hub, s = Hub(SqlStore.open(str(tmp_path / "h.db"))), Session("s1", "n1")
    hub.sessions["s1"] = s
    long = "x" * (sensorlink.MAX_KEY_CHARS + 1)
    _remember(hub, s, ["", long, "a"], ["", long, ""], [("", "a"), (long, "a"), ("web", long), ("db", "a")])
    assert s.containers == {"a"} and s.images == set() and s.names == {"db": "a"}
    assert set(hub.owners) == {"a"}
