"""Shared helpers of the kernel tier (imported by its test modules, never one test module from another)."""

from __future__ import annotations

import time
from typing import Callable

from models.engine import ModelEngine
from sensor.events import Event
from sensor.tracer import Tracer


def collect_until(tracer: Tracer, pred: Callable[[Event], bool], timeout_s: float = 15.0) -> list[Event]:
    """Read events until ``pred(event)`` is true for one (the sentinel); return all read."""
    out: list[Event] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = tracer.reader.poll_events()
        for ev in batch:
            tracer.watcher.observe(ev)
            out.append(ev)
            if pred(ev):
                return out
        if not batch:
            time.sleep(0.02)
    raise AssertionError(f"sentinel not seen within {timeout_s}s ({len(out)} events read)")


def sentinel(tag: str) -> Callable[[Event], bool]:
    return lambda ev: ev.kind == "exec" and tag in ev.args


def learn(tracer: Tracer, eng: ModelEngine, container_id: str, seconds: float,
          done: Callable[[], bool] = lambda: False) -> None:
    """Feed one container's live events to ``eng`` for ``seconds``, or until ``done()``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not done():
        for ev in tracer.reader.poll_events():
            tracer.watcher.observe(ev)
            if ev.container_id == container_id:
                eng.handle(ev)
        time.sleep(0.05)
