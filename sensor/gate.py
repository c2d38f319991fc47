"""The one-action-per-target gate the sensor's response runs findings through (stdlib only, so
the collector's enforce preview replays stored alerts through the very same gate)."""

from __future__ import annotations

import time
from typing import Callable


class ActionGate:
    """One action per target per burst: a burst of findings from one container (or one process)
    triggers a single pause or kill.

    With ``holds`` (``holds(container_id, action, pid) -> bool``: the last such action still holds,
    the container still frozen or gone, the process gone), a target acted on before is acted on
    again as soon as that is no longer so, however soon: a container someone unpaused outside the
    sensor that offends again is paused again. Without it, a finding ``quiet_s`` or more after the
    target was last acted on is acted on again (a timer, for callers that cannot look)."""

    def __init__(self, quiet_s: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 holds: Callable[[str, str, int], bool] | None = None) -> None:
        self.quiet_s, self.clock, self.holds = quiet_s, clock, holds
        self.last: dict[tuple[str, str, int], float] = {}
        self.coalesced = 0

    def admit(self, container_id: str, action: str, pid: int = 0) -> bool:
        key = (container_id, action, pid if action == "kill-process" else 0)
        now = self.clock()
        if key in self.last and (self.holds(container_id, action, key[2]) if self.holds is not None
                                 else now - self.last[key] < self.quiet_s):
            self.coalesced += 1
            return False
        self.last[key] = now
        if len(self.last) > 4096:  # forget targets long quiet, so the map stays small
            self.last = {k: t for k, t in self.last.items() if now - t < self.quiet_s}
        return True

    def forget(self, container_id: str) -> None:
        """Act on this container's next finding at once (an operator released it, or a benchmark
        measures one action per round)."""
        self.last = {k: t for k, t in self.last.items() if k[0] != container_id}
