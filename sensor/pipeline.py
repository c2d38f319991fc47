"""The seams of the event pipeline: sources produce events, sinks consume them.

A source is the live BPF reader or a journal replayer; sinks are the models, the rule engine, the
recorder and the exporter. Both are small Protocols so tests can plug fakes in at the seam.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol, runtime_checkable

from sensor.events import Event, Finding


@runtime_checkable
class EventSource(Protocol):
    """Yields events until exhausted or stopped; ``stats`` exposes drop/decode counters."""

    def events(self) -> Iterator[Event]: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, int]: ...


@runtime_checkable
class Sink(Protocol):
    """Consumes one event; returns the findings it produced (possibly none)."""

    def handle(self, event: Event) -> Iterable[Finding]: ...


def run_sinks(events: Iterable[Event], sinks: Iterable[Sink]) -> Iterator[Finding]:
    """Feed every event to every sink in order, yielding their findings as they appear."""
    sink_list = list(sinks)
    for event in events:
        for sink in sink_list:
            yield from sink.handle(event)
