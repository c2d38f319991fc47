"""Keeps the kernel's per-cgroup map in step with what userspace learned about each cgroup.

The first event of a new cgroup id tells us (through enrichment) whether it is the host or a
container; the kernel is then told: host cgroups skip the sensitive-event checks, containers of
images that are learning get their syscalls profiled. Idempotent per (cgroup, flags).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

from sensor.events import HOST, Event

if TYPE_CHECKING:
    from sensor.containers import CgroupIndex


class CgroupMap(Protocol):
    def set_cgroup(self, cgroup_id: int, *, host: bool = False, profile: bool = False,
                   urgent: bool = False) -> None: ...


class CgroupWatcher:
    """``mode(event) -> str`` is the mode of the event's image (the daemon: operator policy, else
    the learning lifecycle). Containers of ``learn`` images get syscall profiling; those of
    ``enforce`` images have every record wake the reader at once, where response latency counts.
    One call per event decides both."""

    def __init__(self, kernel: CgroupMap, mode: Callable[[Event], str] = lambda _e: "",
                 only: int | None = None) -> None:
        self.kernel = kernel
        self.mode = mode
        self.only = only  # trace --container: profile just this cgroup
        self._state: dict[int, tuple[bool, bool, bool]] = {}
        self._forced: dict[int, bool] = {}

    def observe(self, ev: Event) -> None:
        if not ev.cgroup_id or ev.runtime in ("", "unknown"):
            return
        host = ev.runtime == HOST
        mode = "" if host else self.mode(ev)
        forced = self._forced.get(ev.cgroup_id)
        if forced is not None:
            profile = forced
        elif self.only is not None:
            profile = ev.cgroup_id == self.only
        else:
            profile = mode == "learn"
        urgent = mode == "enforce"
        if self._state.get(ev.cgroup_id) != (host, profile, urgent):
            self._state[ev.cgroup_id] = (host, profile, urgent)
            self.kernel.set_cgroup(ev.cgroup_id, host=host, profile=profile, urgent=urgent)

    def set_profile(self, cgroup_id: int, on: bool) -> None:
        """Operator override: profile (or not) this cgroup whatever its image's mode."""
        self._forced[cgroup_id] = on
        self._state.pop(cgroup_id, None)  # urgency is re-derived on the cgroup's next event
        self.kernel.set_cgroup(cgroup_id, profile=on)

    def mark_self_host(self, index: CgroupIndex) -> None:
        """The sensor's own cgroup is host from the start (its bpf() calls are not alerts)."""
        try:
            with open("/proc/self/cgroup", encoding="utf-8") as f:
                rel = next(line.split(":", 2)[2].strip() for line in f if line.startswith("0::"))
            cg = index.id_of(rel)
        except (OSError, StopIteration):
            return
        self._state[cg] = (True, False, False)
        self.kernel.set_cgroup(cg, host=True)

    def refresh(self) -> None:
        """Re-apply flags on the next event of each cgroup (an image changed mode)."""
        self._state.clear()

    def __len__(self) -> int:
        return len(self._state)
