"""The live source as one object: probe + reader + enricher + cgroup watcher (+ recorder).

Used by ``trace`` and by the daemon, so both see exactly the same events. What the daemon needs
of the parts (counters, kernel maps, container lookups) it asks the tracer for, here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterator

from sensor.bpf_loader import ProbeOptions, check_privileges
from sensor.enrich import Enricher
from sensor.events import Event
from sensor.journal import JournalWriter
from sensor.reader import RingReader
from sensor.runtimes import MultiRuntime, Socket
from sensor.sockseed import process_listeners
from sensor.watch import CgroupWatcher

DEFAULT_SENSITIVE_PREFIXES = [
    ("/etc/shadow", 0), ("/etc/gshadow", 0), ("/etc/sudoers", 0), ("/root/.ssh/", 0),
    ("/etc/ssh/ssh_host_", 0), ("/proc/", 2), ("/etc/", 1), ("/bin/", 1), ("/sbin/", 1),
    ("/usr/bin/", 1), ("/usr/sbin/", 1), ("/usr/lib/", 1), ("/lib/", 1),
]


class Tracer:
    """Live events, enriched; ``container`` limits output to one container (id prefix or name)."""

    def __init__(self, options: ProbeOptions | None = None, *, container: str | None = None,
                 docker: bool = True, record: Path | None = None, cri_sockets: list[Socket] | None = None,
                 prefixes: list[tuple[str, int]] | None = None,
                 mode: Callable[[Event], str] | None = None) -> None:
        check_privileges()  # before anything else can warn: a non-root user gets one line
        self.enricher = Enricher.create(docker=docker, cri_sockets=cri_sockets)
        self._listener_scans: set[tuple[int, str]] = set()
        # the reader owns each freshly decoded event until it is enriched: fill it in, no copy
        self.reader = RingReader(options, enrich=self.enricher.enrich_owned)
        self.only_cgroup = self.enricher.container_cgroup_id(container) if container else None
        self.reader.start()
        self.probe = self.reader.probe
        self.enricher.on_resolved = self.probe.forget_net_seen
        self.enricher.on_portless_accept = self._adopt_listeners
        self.probe.set_open_prefixes(prefixes if prefixes is not None else DEFAULT_SENSITIVE_PREFIXES)
        self.watcher = CgroupWatcher(self.probe, only=self.only_cgroup)
        if mode is not None:
            self.watcher.mode = mode  # the daemon's: learn is profiled, enforce is urgent
        self.watcher.mark_self_host(self.enricher.index)
        self.recorder = JournalWriter(record) if record else None

    def _adopt_listeners(self, ev: Event) -> None:
        """An accept without its local port: the listener was bound by another process (a server
        that forks its workers or daemonizes after bind) or before the sensor started. The
        process's listeners are read from /proc once and given to the kernel's bind map, so its
        later accepts carry the port; this one gets it too when the process has one listener."""
        scanned = (ev.pid, ev.exe)  # a reused pid runs another binary, most likely: scanned again
        if ev.family not in ("ipv4", "ipv6") or scanned in self._listener_scans:
            return
        if len(self._listener_scans) > 65536:
            self._listener_scans.clear()
        self._listener_scans.add(scanned)
        listeners = process_listeners(ev.pid)
        if listeners:
            self.probe.seed_listeners(listeners)
        ports = {sock.port for sock in listeners}
        if len(ports) == 1:
            ev.sport = ports.pop()

    def poll(self) -> Iterator[Event]:
        """One drain of the ring buffer, never waiting; nothing waiting, nothing yielded."""
        return self._follow(self.reader.poll_events())

    def events(self, duration_s: float | None = None) -> Iterator[Event]:
        """Batches of :meth:`poll` until ``duration_s`` has passed (None: for ever), 20 ms apart
        while the ring is empty."""
        deadline = time.monotonic() + duration_s if duration_s else None
        while deadline is None or time.monotonic() < deadline:
            batch = self.reader.poll_events()
            if not batch:
                time.sleep(0.02)
                continue
            yield from self._follow(batch)

    def _follow(self, batch: list[Event]) -> Iterator[Event]:
        """Each event is shown to the cgroup watcher and written to the journal just before it is
        yielded (so what the consumer makes of one event, an image's mode, holds for the next);
        with ``container``, only its events are yielded."""
        for ev in batch:
            self.watcher.observe(ev)
            if self.recorder is not None:
                self.recorder.write(ev)
            if self.only_cgroup is None or ev.cgroup_id == self.only_cgroup:
                yield ev

    # -- what the daemon asks of the parts -------------------------------------------------------
    def counters(self) -> dict[str, int]:
        """The reader's counters: delivered, kernel and queue drops, queue depth, decode errors."""
        return self.reader.stats()

    def syscall_counts(self) -> dict[tuple[int, int], int]:
        """(cgroup id, syscall nr) -> count, from the kernel's profiler map."""
        return self.probe.read_syscall_counts()

    def kernel_counts(self) -> dict[tuple[int, int, bool], int]:
        """(cgroup id, opcode, ok) -> totals the kernel counts instead of sending records."""
        return self.probe.read_kernel_counts()

    def program_stats(self) -> dict[str, tuple[int, int]]:
        """Per BPF program, (run_time_ns, run_cnt) while kernel.bpf_stats_enabled is 1."""
        return self.probe.program_stats()

    def ban_exec(self, cgroup_id: int, comm: str) -> None:
        """The kernel kills ``comm`` at exec in this cgroup."""
        self.probe.ban_exec(cgroup_id, comm)

    def unban_exec(self, cgroup_id: int, comm: str) -> None:
        self.probe.unban_exec(cgroup_id, comm)

    def set_open_prefixes(self, prefixes: list[tuple[str, int]]) -> None:
        """The sensitive path prefixes the kernel reports opens under (replacing the last set)."""
        self.probe.set_open_prefixes(prefixes)

    def refresh_modes(self) -> None:
        """Ask the mode of each cgroup's image again on its next event (a mode changed)."""
        self.watcher.refresh()

    def containers(self) -> list[str]:
        """Ids of the containers seen (attributed), sorted."""
        return self.enricher.seen_containers()

    def container_images(self) -> dict[str, str]:
        """Container id -> image key (the baseline it learns into) of the containers seen."""
        return self.enricher.seen_images()

    def resolve(self, target: str) -> str:
        """The full id of the container a runtime knows by this name (Docker name, CRI
        ``namespace/pod/container``, id prefix); "" when none does."""
        meta = self.enricher.runtime.find(target) if target else None
        return meta.id if meta is not None else ""

    def cri_for(self, container_id: str) -> object:
        """The CRI client that knows a container (the responder stops CRI containers with it)."""
        runtime = self.enricher.runtime
        return runtime.cri_for(container_id) if isinstance(runtime, MultiRuntime) else None

    def cgroup_path(self, container_id: str) -> str:
        """The cgroup path of a live container (id prefix); "" if there is none."""
        return self.enricher.cgroup_path(container_id)

    def close(self) -> dict[str, object]:
        """Detach everything; returns the final counters."""
        self.reader.stop()
        if self.recorder is not None:
            self.recorder.close()
        stats: dict[str, object] = dict(self.reader.stats())
        stats.update(self.enricher.stats())
        return stats
