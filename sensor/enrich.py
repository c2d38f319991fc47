"""Enrichment: a decoded event gets its container (id, name, image, digest) and process ancestry.

Per cgroup id the attribution is computed once and cached, so the hot path is two dict lookups
and one dataclass copy. Host processes are ``host``; a cgroup whose path cannot be found (it
vanished before we looked) is ``unknown`` and counted — never dropped.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sensor.containers import CgroupIndex, parse_cgroup_path
from sensor.errors import SensorError
from sensor.events import HOST, Event
from sensor.proctable import ProcessTable
from sensor.runtime import DockerRuntime, NullRuntime, Runtime

UNKNOWN: Final = "unknown"
_RETRY_NS: Final = 250_000_000  # re-ask the runtime about containers it did not know yet
# Re-exec of the running binary (busybox's "prefer applets" shells exec /proc/self/exe with the
# applet name in argv[0]); the path the user meant is the applet's, next to the caller's binary.
_SELF_EXE: Final = ("/proc/self/exe",)


@dataclass(frozen=True, slots=True)
class Attribution:
    container_id: str
    container_name: str
    image: str
    image_id: str
    runtime: str
    resolved_ns: int = 0
    complete: bool = True  # False: runtime metadata missing, retry later

    @property
    def is_host(self) -> bool:
        return self.runtime == HOST


HOST_ATTR: Final = Attribution(HOST, HOST, HOST, "", HOST)


class Enricher:
    def __init__(self, index: CgroupIndex, runtime: Runtime, procs: ProcessTable) -> None:
        self.index = index
        self.runtime = runtime
        self.procs = procs
        self._cache: dict[int, Attribution] = {}
        self.unknown_cgroups = 0
        self.cache_hits = 0

    @classmethod
    def create(cls, docker: bool = True, procfs_root: Path = Path("/proc"),
               cgroupfs_root: Path | None = None) -> Enricher:
        runtime: Runtime = DockerRuntime() if docker else NullRuntime()
        return cls(CgroupIndex(cgroupfs_root), runtime, ProcessTable(procfs_root))

    def attribution(self, cgroup_id: int) -> Attribution:
        """Container attribution for a cgroup id (cached; incomplete entries retried)."""
        attr = self._cache.get(cgroup_id)
        if attr is not None and (attr.complete or (attr.runtime != UNKNOWN and
                                 time.monotonic_ns() - attr.resolved_ns < _RETRY_NS)):
            self.cache_hits += 1
            return attr
        attr = self._resolve(cgroup_id)
        self._cache[cgroup_id] = attr
        return attr

    def _resolve(self, cgroup_id: int) -> Attribution:
        path = self.index.path_of(cgroup_id)
        if path is None:
            self.unknown_cgroups += 1
            return Attribution("", "", "", "", UNKNOWN, time.monotonic_ns(), complete=False)
        ref = parse_cgroup_path(path)
        if ref is None:
            return HOST_ATTR
        meta = self.runtime.inspect(ref.container_id)
        if meta is None:
            return Attribution(ref.container_id, ref.container_id[:12], "", "", ref.runtime,
                               time.monotonic_ns(), complete=isinstance(self.runtime, NullRuntime))
        return Attribution(ref.container_id, meta.name, meta.image, meta.image_id, ref.runtime)

    def enrich(self, ev: Event) -> Event:
        """The event with container fields, ppid, parent exe and ancestry filled in."""
        attr = self.attribution(ev.cgroup_id)
        if ev.kind == "exec" and ev.exe in _SELF_EXE:
            ev = self._applet(ev)
        self.procs.update(ev)
        ppid = ev.ppid if ev.kind == "fork" else (ev.ppid or self.procs.ppid(ev.pid))
        ancestry = self.procs.ancestry(ev.pid) if ev.kind in ("exec", "connect", "accept", "listen",
                                                               "open", "sys") else ()
        exe = ev.exe
        if not exe:
            proc = self.procs.get(ev.pid)
            exe = proc.exe if proc else ""
        return dataclasses.replace(
            ev, container_id=attr.container_id, container_name=attr.container_name,
            image=attr.image, image_id=attr.image_id, runtime=attr.runtime, ppid=ppid, exe=exe,
            pexe=ancestry[0] if ancestry else "", ancestry=ancestry)

    __call__ = enrich

    def _applet(self, ev: Event) -> Event:
        caller = self.procs.get(ev.pid)
        base = (ev.args[0] if ev.args else ev.comm).rsplit("/", 1)[-1]
        if caller is None or not caller.exe or not base:
            return ev
        exe = caller.exe.rsplit("/", 1)[0] + "/" + base
        return dataclasses.replace(ev, exe=exe, comm=base[:15] if ev.comm == "exe" else ev.comm)

    def container_cgroup_id(self, id_or_name: str) -> int:
        """cgroup id of a running container given an id prefix or a name."""
        meta = self.runtime.find(id_or_name) if isinstance(self.runtime, DockerRuntime) else None
        found = self.index.find_container(meta.id if meta else id_or_name)
        if found is None:
            raise SensorError(f"container {id_or_name!r} not found (is it running? `docker ps`)",
                              exit_code=66)
        return found[0]

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"unknown_cgroups": self.unknown_cgroups, "cache_hits": self.cache_hits,
                               "cgroup_misses": self.index.misses, "processes": len(self.procs)}
        out.update(self.runtime.stats())
        return out
