"""Scans: many new outbound endpoints from one container in a short time are one finding.

A connect to an endpoint the baseline does not know is a finding whatever its outcome (refused and
timed-out connects are what scanning and a dead command-and-control server look like). A scan
would make one such finding per port and host, so per container the new endpoints are gathered
while they keep coming (no gap longer than ``window_s``): from the ``threshold``-th distinct one
on, they make one scan finding listing hosts, ports, count and failures, repeated only when the
count has doubled, and no finding per endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from sensor.events import Event

WINDOW_S: Final = 10.0
THRESHOLD: Final = 8
MAX_BURSTS: Final = 4096


@dataclass
class Burst:
    """New endpoints of one container, one after another with no gap over the window."""

    start_ns: int
    last_ns: int
    endpoints: dict[tuple[str, str, int], int] = field(default_factory=dict)  # (proto, host, port) -> ret
    reported: int = 0  # endpoints at the last scan finding (0: none yet)

    @property
    def failed(self) -> int:
        return sum(1 for ret in self.endpoints.values() if ret < 0 and ret != -115)

    def hosts(self) -> list[str]:
        return sorted({h for _, h, _ in self.endpoints})

    def ports(self) -> list[int]:
        return sorted({p for _, _, p in self.endpoints})


class ScanTracker:
    """Groups new outbound endpoints per container (see the module doc)."""

    def __init__(self, window_s: float = WINDOW_S, threshold: int = THRESHOLD) -> None:
        self.window_ns = int(window_s * 1e9)
        self.threshold = threshold
        self._bursts: dict[str, Burst] = {}

    def note(self, container: str, ev: Event) -> tuple[bool, Burst | None]:
        """One connect to an endpoint the baseline does not know: whether it is part of a scan
        (its own finding is then left out), and the burst when a scan finding is due."""
        b = self._bursts.get(container)
        if b is None or ev.time_ns - b.last_ns > self.window_ns:
            if len(self._bursts) >= MAX_BURSTS:
                self._bursts = {c: x for c, x in self._bursts.items() if ev.time_ns - x.last_ns <= self.window_ns}
            b = self._bursts[container] = Burst(ev.time_ns, ev.time_ns)
        b.last_ns = max(b.last_ns, ev.time_ns)
        b.endpoints.setdefault((ev.proto or ev.family, ev.daddr or ev.path, ev.dport), ev.ret)
        n = len(b.endpoints)
        if n < self.threshold:
            return False, None
        if n >= 2 * b.reported:
            b.reported = n
            return True, b
        return True, None


def scan_summary(b: Burst, limit: int = 16) -> str:
    """``12 new endpoints in 1.2s (9 failed), hosts 10.0.0.5, ports 21, 22, 23, ...``"""
    hosts, ports = b.hosts(), b.ports()

    def cut(items: list[str]) -> str:
        return ", ".join(items[:limit]) + (f", ... ({len(items)})" if len(items) > limit else "")

    return (f"{len(b.endpoints)} new endpoints in {(b.last_ns - b.start_ns) / 1e9:.1f}s ({b.failed} failed), "
            f"hosts {cut(hosts)}, ports {cut([str(p) for p in ports])}")
