"""Exec sessions: a process the container runtime starts in a running container that is not its init.

``docker exec``, ``podman exec`` and CRI ``Exec``/``ExecSync`` (``kubectl exec``, ``crictl exec`` and
the kubelet's exec probes) all have the runtime (runc, crun, their shim or conmon) start a process
in a container that already runs. Its exec looks like the container's own start: the parent is the
runtime either way. What tells them apart is the container: the init is the first process of its
cgroup (pid 1 of its own pid namespace, unless the pod shares one or the container uses the host's),
while an exec session joins a cgroup that already holds the init's tree.

Read from procfs and cgroupfs in user space at exec time (roots injectable, so unit tests use
``tmp_path`` trees). A probe that exited before it is looked at (``cat /tmp/healthy``) still finds
the init in its cgroup; a container whose init is gone too is not told apart (not marked).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

# What starts a process in a container: the OCI runtimes (runc's own stages show as runc:[N:...]),
# containerd's shims and podman's conmon. docker-init, tini and dumb-init run *inside* it: a child
# of theirs belongs to the container's own tree.
STARTERS: Final = ("runc", "crun", "youki", "runsc", "containerd-shim", "conmon")
_MAX_DEPTH: Final = 64  # parent links followed from a cgroup member towards the exec'd process
_TTY_PREFIXES: Final = ("/dev/pts/", "/dev/tty", "/dev/console")


def started_by_runtime(pexe: str) -> bool:
    """Whether a parent executable is the container runtime's: runc, crun, youki, runsc (and runc's
    ``runc:[...]`` stages), a containerd shim, conmon, or a runtime's sealed copy of itself exec'd
    from a descriptor (``/dev/fd/N``)."""
    if pexe.startswith("/dev/fd/"):
        return True
    name = pexe.rsplit("/", 1)[-1]
    return name.startswith(STARTERS) or name in ("[runc]", "[exe]")


def nspid(procfs: Path, pid: int) -> tuple[int, ...]:
    """The process's pid in each pid namespace it is in, outermost first (``NSpid`` of its
    status); () when it is gone or the kernel does not say."""
    try:
        text = (procfs / str(pid) / "status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ()
    for line in text.splitlines():
        if line.startswith("NSpid:"):
            try:
                return tuple(int(p) for p in line.split()[1:])
            except ValueError:
                return ()
    return ()


def parent_of(procfs: Path, pid: int) -> int:
    """ppid from ``<procfs>/<pid>/stat``; -1 when the process is gone."""
    try:
        stat = (procfs / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
        return int(stat[stat.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def descends(procfs: Path, pid: int, ancestor: int) -> bool | None:
    """Whether ``pid`` is ``ancestor`` or one of its descendants; None when a link is gone."""
    for _ in range(_MAX_DEPTH):
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
        pid = parent_of(procfs, pid)
        if pid < 0:
            return None
    return False


def cgroup_members(cgroup_dir: Path) -> list[int] | None:
    """Pids in a cgroup (``cgroup.procs``); None when it cannot be read (gone)."""
    try:
        text = (cgroup_dir / "cgroup.procs").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return [int(p) for p in text.split() if p.isdigit()]


def is_container_init(procfs: Path, pid: int, cgroup_dir: Path | None) -> bool | None:
    """Whether a process the runtime started is its container's init: pid 1 of its own pid
    namespace, or alone in its cgroup with only its own descendants. False: some other process
    (the init's tree) was in the cgroup before it: an exec session. None: cannot be told (the
    process and its cgroup are both gone)."""
    ns = nspid(procfs, pid)
    if ns and len(ns) > 1 and ns[-1] == 1:
        return True
    members = cgroup_members(cgroup_dir) if cgroup_dir is not None else None
    if members is None:
        return False if len(ns) > 1 else None  # in its own pid namespace and not pid 1 there
    # a member that is gone by now (descends: None) says nothing either way
    return not any(other != pid and descends(procfs, other, pid) is False for other in members)


def stdin_is_tty(procfs: Path, pid: int) -> bool:
    """Whether fd 0 of the process is a terminal (``/dev/pts/N``, ``/dev/tty*``, ``/dev/console``,
    as the process's own mount namespace names it)."""
    try:
        target = os.readlink(procfs / str(pid) / "fd" / "0")
    except OSError:
        return False
    return target.startswith(_TTY_PREFIXES)
