"""The watcher keeps the kernel's per-cgroup flags in step with each image's mode."""

from __future__ import annotations

from sensor.events import Event
from sensor.watch import CgroupWatcher


class FakeKernel:
    def __init__(self) -> None:
        self.calls: list[tuple[int, bool, bool, bool]] = []

    def set_cgroup(self, cgroup_id: int, *, host: bool = False, profile: bool = False,
                   urgent: bool = False) -> None:
        self.calls.append((cgroup_id, host, profile, urgent))


def ev(cg: int, runtime: str = "docker", image: str = "web:1") -> Event:
    return Event("exec", 1, cgroup_id=cg, runtime=runtime, image=image)


def test_enforced_images_are_urgent_learning_ones_profiled_host_neither() -> None:
    kernel = FakeKernel()
    modes = {"web:1": "enforce", "db:1": "learn"}
    w = CgroupWatcher(kernel, mode=lambda e: modes[e.image])
    w.observe(ev(10))
    w.observe(ev(20, image="db:1"))
    w.observe(ev(30, runtime="host", image="web:1"))  # host cgroups are never urgent
    w.observe(ev(10))  # unchanged: not written again
    assert kernel.calls == [(10, False, False, True), (20, False, True, False), (30, True, False, False)]


def test_a_mode_change_is_applied_on_the_next_event_and_refresh_rewrites() -> None:
    kernel = FakeKernel()
    mode = {"now": "alert"}
    w = CgroupWatcher(kernel, mode=lambda e: mode["now"])
    w.observe(ev(10))
    mode["now"] = "enforce"
    w.observe(ev(10))
    w.observe(ev(10))
    assert kernel.calls == [(10, False, False, False), (10, False, False, True)]
    w.refresh()  # the daemon's periodic re-apply (e.g. after a sensor restart of the maps)
    w.observe(ev(10))
    assert kernel.calls[-1] == (10, False, False, True) and len(kernel.calls) == 3
