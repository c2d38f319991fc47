"""Enrichment: a decoded event gets its container (id, name, image, digest) and process ancestry.

Per cgroup id the attribution is computed once and cached, so the hot path is a few dict lookups
and one Event construction. Host processes are ``host``; a cgroup whose path cannot be found (it
vanished before we looked) is ``unknown`` and counted — never dropped. Attribution that lacks
runtime metadata (the daemon did not know the container yet) is retried every ``RETRY_NS``.

Host cgroups: anything whose v2 path does not parse as a container — the root ``/`` (kernel
threads, processes of hosts without systemd), ``/init.scope``, ``/system.slice/*.service``,
``/user.slice/...`` — is attributed to ``host``.
"""

from __future__ import annotations

import operator
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Final

from sensor.containers import CONTAINERD_NAMESPACES, CgroupIndex, ContainerRef, parse_cgroup_path
from sensor.errors import EX_NOINPUT, SensorError
from sensor.events import (
    ACCEPT,
    ARGS_FROM_PROC,
    ARGS_UNREAD,
    CONNECT,
    EXEC,
    HOST,
    LISTEN,
    OPEN,
    SYS,
    Event,
)
from sensor.procfacts import ProcFacts
from sensor.proctable import REAL_PROC, ProcessTable
from sensor.runtime import ContainerMeta, NullRuntime, Runtime
from sensor.runtimes import MultiRuntime, Socket

UNKNOWN: Final = "unknown"
RETRY_NS: Final = 250_000_000  # re-ask the runtime about containers it did not know yet
MAX_CACHED: Final = 100_000  # cgroup ids are never reused, so churn alone grows the cache
_WITH_ANCESTRY: Final = frozenset({EXEC, CONNECT, ACCEPT, LISTEN, OPEN, SYS})
# Re-exec of the running binary (busybox's "prefer applets" shells exec /proc/self/exe with the
# applet name in argv[0]); the path the user meant is the applet's, next to the caller's binary.
_SELF_EXE: Final = frozenset({"/proc/self/exe"})
# Exec of an open descriptor (fexecve, execveat AT_EMPTY_PATH): the kernel names it /dev/fd/N.
_FD_EXEC: Final = re.compile(r"/(dev|proc/self|proc/\d+)/fd/\d+")
_RUNTIMES: Final = frozenset({"runc", "crun", "youki", "runsc"})  # OCI runtimes that re-exec themselves

# Building the enriched copy positionally is ~2x faster than dataclasses.replace, which matters at
# 200k events/s: one attrgetter call reads every field, ten slots are overwritten.
_NAMES: Final = tuple(f.name for f in fields(Event))
_ALL_FIELDS: Final = operator.attrgetter(*_NAMES)
_CHANGED_NAMES: Final = ("ppid", "exe", "args", "pexe", "ancestry", "container_id", "container_name", "image",
                         "image_id", "runtime", "pod", "namespace", "labels", "image_digest")
_CHANGED: Final = tuple(_NAMES.index(name) for name in _CHANGED_NAMES)
# New values for _CHANGED_NAMES, in that order.
_Changes = tuple[int, str, tuple[str, ...], str, tuple[str, ...], str, str, str, str, str, str, str,
                 tuple[tuple[str, str], ...], str]


@dataclass(frozen=True, slots=True)
class Attribution:
    """The container fields every event of one cgroup gets."""

    container_id: str
    container_name: str
    image: str
    image_id: str
    runtime: str
    resolved_ns: int = 0  # monotonic time of the lookup (for retries of incomplete entries)
    complete: bool = True  # False: runtime metadata (or the path) missing, retry later
    # What CRI runtimes add: the Kubernetes pod (labels as sorted pairs, hashable); every event of
    # the cgroup carries pod, namespace, labels and image_digest, the annotations stay here.
    pod: str = ""
    namespace: str = ""
    pod_uid: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()  # kept here, not on every event (they can be large)
    image_digest: str = ""
    cgroup_path: str = ""

    @property
    def is_host(self) -> bool:
        return self.runtime == HOST


HOST_ATTR: Final = Attribution(HOST, HOST, HOST, "", HOST)


def proc_args(root: Path, pid: int) -> tuple[str, ...]:
    """argv of a process from ``<root>/<pid>/cmdline``; () when it is gone (or has none)."""
    try:
        raw = (root / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ()
    return tuple(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a)


def _in_container(attr: Attribution) -> bool:
    return not attr.is_host and attr.runtime != UNKNOWN


class Enricher:
    """Fills container and process-ancestry fields; keeps the process table current."""

    def __init__(self, index: CgroupIndex, runtime: Runtime, procs: ProcessTable,
                 facts: ProcFacts | None = None) -> None:
        self.index = index
        self.runtime = runtime
        self.procs = procs
        self.facts = facts or ProcFacts(procs.root)  # argv, exe identity, socket stdio, connect sources
        self.facts.members_of = self.cgroup_members
        self._cache: dict[int, Attribution] = {}
        self._unknown_ids: set[int] = set()
        # called with a cgroup id that was unknown and now resolves: what the kernel reports only
        # once (first-seen endpoints) went out unattributed, and should be reported again
        self.on_resolved: Callable[[int], object] | None = None
        # called with a live accept whose local port the kernel did not know (its listener was
        # bound by another process, or before the sensor started)
        self.on_portless_accept: Callable[[Event], object] | None = None
        self.unknown_cgroups = 0  # distinct ids that were unknown when first seen
        self.unknown_events = 0
        self.cache_hits = 0
        self.resolutions = 0

    @classmethod
    def create(cls, docker: bool = True, procfs_root: Path = REAL_PROC,
               cgroupfs_root: Path | None = None, cri_sockets: list[Socket] | None = None,
               runtimes: bool = True) -> Enricher:
        """The live wiring: v2 cgroup index, the runtimes (Docker unless ``docker`` is False; the
        CRI sockets given, else those found when Docker is asked for too), process table seeded
        from procfs. ``runtimes`` False, or neither Docker nor a CRI socket: cgroup-only."""
        use = runtimes and (docker or bool(cri_sockets))  # --no-docker alone: cgroup-only, as before
        runtime: Runtime = MultiRuntime.create(docker, cri_sockets) if use else NullRuntime()
        return cls(CgroupIndex(cgroupfs_root), runtime, ProcessTable(procfs_root))

    def attribution(self, cgroup_id: int) -> Attribution:
        """Container attribution for a cgroup id (cached; incomplete entries retried)."""
        attr = self._cache.get(cgroup_id)
        # Unknown ids go back to the index every time (it rate-limits its own rescans); missing
        # runtime metadata is re-asked every RETRY_NS.
        if attr is not None and (attr.complete or (
                attr.runtime != UNKNOWN and time.monotonic_ns() - attr.resolved_ns < RETRY_NS)):
            self.cache_hits += 1
            return attr
        attr = self._resolve(cgroup_id)
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
            self._unknown_ids.clear()
        self._cache[cgroup_id] = attr
        return attr

    def _resolve(self, cgroup_id: int) -> Attribution:
        self.resolutions += 1
        path = self.index.path_of(cgroup_id)
        if path is None:
            if cgroup_id not in self._unknown_ids:
                self.unknown_cgroups += 1
                self._unknown_ids.add(cgroup_id)
            return Attribution("", "", "", "", UNKNOWN, time.monotonic_ns(), complete=False)
        if cgroup_id in self._unknown_ids:
            self._unknown_ids.discard(cgroup_id)
            if self.on_resolved is not None:
                self.on_resolved(cgroup_id)
        # containerd's namespaces (when its API is there) say which /<namespace>/<name> are containers
        ref = parse_cgroup_path(path, getattr(self.runtime, "containerd_namespaces", CONTAINERD_NAMESPACES))
        if ref is None:
            return HOST_ATTR
        meta = self._inspect(ref)
        if meta is None:
            # Gone mid-lookup or no runtime API: what the cgroup path says is still the truth.
            return Attribution(ref.container_id, ref.container_id[:12], "", "", ref.runtime,
                               time.monotonic_ns(), complete=isinstance(self.runtime, NullRuntime),
                               pod_uid=ref.pod_uid, cgroup_path=path)
        return Attribution(ref.container_id, meta.name, meta.image, meta.image_id, ref.runtime,
                           pod=meta.pod, namespace=meta.namespace, pod_uid=meta.pod_uid or ref.pod_uid,
                           labels=tuple(sorted(meta.labels.items())) if meta.pod_uid or meta.pod else (),
                           annotations=tuple(sorted(meta.annotations.items())),
                           image_digest=meta.image_digest, cgroup_path=path)

    def _inspect(self, ref: ContainerRef) -> ContainerMeta | None:
        """The runtime the path names, when the runtime routes (MultiRuntime); else by id."""
        by_ref = getattr(self.runtime, "inspect_ref", None)
        if by_ref is not None:
            meta: ContainerMeta | None = by_ref(ref)
            return meta
        return self.runtime.inspect(ref.container_id)

    def enrich(self, ev: Event) -> Event:
        """A copy of the event with container fields, ppid, exe, args, parent exe and ancestry filled in.

        fork/exec/exit events also update the process table (before the lookup, so an exec's
        ancestry already includes the fork that preceded it).
        """
        ev, changes = self._changes(ev)
        vals = list(_ALL_FIELDS(ev))
        for i, value in zip(_CHANGED, changes, strict=True):
            vals[i] = value
        return Event(*vals)

    def enrich_owned(self, ev: Event) -> Event:
        """:meth:`enrich` without the copy, for a freshly decoded event nothing else references yet.

        Writes the same fields into the instance and returns it. Building another Event costs
        about as much as everything else here together, so the live reader — which owns each
        event between decode and enrich — should call this one. Live, an exec without argv (the
        lean profile reads none in the kernel) takes it from /proc at once, while the process runs.
        """
        if ev.kind == EXEC and not ev.args and not ev.flags & ARGS_UNREAD:
            ev.args = proc_args(self.procs.root, ev.pid)
            ev.flags |= ARGS_FROM_PROC if ev.args else ARGS_UNREAD
        ev, changes = self._changes(ev)
        (ev.ppid, ev.exe, ev.args, ev.pexe, ev.ancestry, ev.container_id, ev.container_name, ev.image,
         ev.image_id, ev.runtime, ev.pod, ev.namespace, ev.labels, ev.image_digest) = changes  # _CHANGED_NAMES
        if ev.kind == ACCEPT and not ev.sport and self.on_portless_accept is not None:
            self.on_portless_accept(ev)  # may fill in sport: the event is still ours
        return ev

    def _changes(self, ev: Event) -> tuple[Event, _Changes]:
        """The (possibly applet-renamed) event and its new values for the fields in _CHANGED."""
        attr = self._cache.get(ev.cgroup_id)
        if attr is not None and attr.complete:
            self.cache_hits += 1
        else:
            attr = self.attribution(ev.cgroup_id)
        if attr.runtime == UNKNOWN:
            self.unknown_events += 1
        if ev.kind == EXEC:
            if ev.exe in _SELF_EXE:
                self.procs.admit(ev)  # the caller's binary names the applet
                ev = self._applet(ev)
            elif attr.is_host and ev.exe.startswith(("/dev/fd/", "/proc/")) and _FD_EXEC.fullmatch(ev.exe):
                self.procs.admit(ev)
                ev = self._self_copy(ev)
            ev = self.facts.exec_event(ev, attr.image_id or attr.image or attr.container_id, _in_container(attr),
                                       ev.ppid or self.procs.ppid(ev.pid))
        elif ev.kind == CONNECT and _in_container(attr):
            ev = self.facts.connect_event(ev)
        ppid, exe, args, pexe, ancestry = self.procs.observe(ev, ev.kind in _WITH_ANCESTRY)
        ev = self._session(ev, attr, pexe)
        return ev, (ppid, exe, args, pexe, ancestry, attr.container_id, attr.container_name, attr.image,
                    attr.image_id, attr.runtime, attr.pod, attr.namespace, attr.labels, attr.image_digest)

    __call__ = enrich

    def _session(self, ev: Event, attr: Attribution, pexe: str) -> Event:
        """The event with its process's exec-session mark (sensor/sessions.py), decided at a
        container's exec; open events keep their open(2) flags unmarked."""
        if ev.kind == EXEC and _in_container(attr):
            root = getattr(self.index, "root", None)  # a test's fake index may have none
            where = root / attr.cgroup_path.lstrip("/") if root is not None and attr.cgroup_path else None
            mark = self.procs.exec_session(ev.pid, pexe, where)
        else:
            mark = self.procs.session(ev.pid)
        if not mark or ev.kind == OPEN or ev.flags & mark == mark:
            return ev
        return ev.replace(flags=ev.flags | mark)

    def _applet(self, ev: Event) -> Event:
        caller = self.procs.get(ev.pid)
        base = (ev.args[0] if ev.args else ev.comm).rsplit("/", 1)[-1]
        if caller is None or not caller.exe or not base:
            return ev
        exe = caller.exe.rsplit("/", 1)[0] + "/" + base
        return ev.replace(exe=exe, comm=base[:15] if ev.comm == "exe" else ev.comm)

    def _self_copy(self, ev: Event) -> Event:
        """A container runtime re-exec'ing a sealed copy of its own binary from a descriptor (runc
        and crun do, against CVE-2019-5736) keeps its binary's name: otherwise every process
        ``docker exec`` starts would have a parent named after a descriptor number that differs
        between ``run`` and ``exec``. Only on the host (the runtime does this before it joins the
        container's cgroup), only for a runtime binary, and only when comm agrees: since Linux 6.x
        a descriptor exec takes comm from the file's own name, which a fileless payload chooses, so
        inside a container a descriptor exec always keeps its descriptor path."""
        caller = self.procs.get(ev.pid)
        if caller is None or not caller.exe:
            return ev
        name = caller.exe.rsplit("/", 1)[-1]
        if name not in _RUNTIMES or name[:15] != ev.comm:
            return ev
        return ev.replace(exe=caller.exe)

    def cgroup_members(self, cgroup_id: int) -> list[int]:
        """The pids in a cgroup now (its cgroup.procs; [] if it cannot be read)."""
        path = self.index.path_of(cgroup_id)
        if not path:
            return []
        try:
            text = (self.index.root / path.lstrip("/") / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(line) for line in text.split() if line.isdigit()][:16]

    def seen_containers(self) -> list[str]:
        """Ids of the containers whose events were attributed (the cache's, so at most
        ``MAX_CACHED`` cgroups ago), sorted; host and unknown cgroups are left out."""
        return sorted({a.container_id for a in self._cache.values()
                       if a.container_id and a.runtime not in (HOST, UNKNOWN)})

    def seen_images(self) -> dict[str, str]:
        """Container id -> image key (digest, else repo:tag) of the containers in the cache."""
        return {a.container_id: a.image_id or a.image for a in self._cache.values()
                if a.container_id and a.runtime not in (HOST, UNKNOWN) and (a.image_id or a.image)}

    def cgroup_path(self, container_id: str) -> str:
        """The cgroup path of a live container given an id prefix; "" when none matches."""
        found = self.index.find_container(container_id)
        return found[1] if found else ""

    def container_cgroup_id(self, id_or_name: str) -> int:
        """v2 cgroup id of a running container given an id prefix or a name; SensorError if unknown."""
        meta = self.runtime.find(id_or_name)
        found = self.index.find_container(meta.id if meta is not None else id_or_name)
        if found is None:
            hint = "" if getattr(self.runtime, "available", False) else (
                "; without a runtime API only container id prefixes resolve")
            raise SensorError(f"container {id_or_name!r} not found under {self.index.root} "
                              f"(is it running? see `docker ps`{hint})", exit_code=EX_NOINPUT)
        return found[0]

    def close(self) -> None:
        """Stop the runtime's background event follower, if any."""
        close = getattr(self.runtime, "close", None)
        if close is not None:
            close()

    def stats(self) -> dict[str, int]:
        """Counters: unknown cgroups/events, cache hits, runtime errors and availability, table size."""
        out = {"unknown_cgroups": self.unknown_cgroups, "unknown_events": self.unknown_events,
               "cache_hits": self.cache_hits, "cgroup_resolutions": self.resolutions,
               "cgroup_misses": self.index.misses, "cgroup_scans": self.index.scans,
               "processes": len(self.procs), "runtime_errors": 0}
        out.update(self.runtime.stats())
        out.update(self.facts.stats())
        return out
