"""Rule fixtures: must-fire and must-not-fire events for every rule, checked by the suite."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rules.errors import RuleError
from sensor.events import Event

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"
DEFAULTS: dict[str, Any] = {
    "time_ns": 1_700_000_000_000_000_000, "pid": 100, "ppid": 1, "container_id": "c0ffee" * 10 + "abcd",
    "container_name": "web", "image": "cgsentry/busybox:latest", "image_id": "sha256:fixture",
    "runtime": "docker",
}


@dataclass(frozen=True)
class Fixture:
    rule: str
    fire: tuple[Event, ...]
    no_fire: tuple[Event, ...]


def fixture_event(data: dict[str, Any]) -> Event:
    merged = {**DEFAULTS, **data}
    if merged["container_id"] == "host":
        merged.update(container_name="host", image="host", image_id="", runtime="host")
    return Event.from_dict(merged)


def load_fixtures(directory: Path = FIXTURE_DIR) -> dict[str, Fixture]:
    out: dict[str, Fixture] = {}
    for path in sorted(directory.glob("*.yaml")):
        for i, item in enumerate(yaml.safe_load(path.read_text()) or []):
            try:
                out[item["rule"]] = Fixture(
                    item["rule"], tuple(fixture_event(e) for e in item.get("fire") or []),
                    tuple(fixture_event(e) for e in item.get("no_fire") or []))
            except (KeyError, TypeError, ValueError) as err:
                raise RuleError(f"{path}: fixtures[{i}]: {err}") from err
    return out
