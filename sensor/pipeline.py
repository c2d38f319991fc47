"""The seam between sensing and detection: every event goes to each sink, which returns findings.

The sinks are the model engine, the rule engine and the policy checker; the daemon
(``sensor.agent.daemon``) holds them as a tuple of :class:`Sink` and knows nothing else of them
per event. Tests plug fakes in at the seam.
"""

from __future__ import annotations

from typing import Iterable, Protocol

from sensor.events import Event, Finding


class Sink(Protocol):
    """Consumes one event; returns the findings it produced (possibly none)."""

    def handle(self, event: Event, /) -> Iterable[Finding]: ...
