"""The sensor's own process table: pid -> (ppid, exe, args), for ancestry without kernel structs.

Seeded once at start — through psutil when the root is the real ``/proc``, else by reading
``<root>/<pid>/{stat,exe,cmdline}`` directly (``procfs_root`` is injectable, psutil-style, so tests
use a ``tmp_path`` tree) — then kept current from fork/exec/exit events. An exited process lingers
until ``linger`` further processes have exited, so events that race its exit (a child's exec read
from the ring buffer after the parent's exit) still resolve its ancestry. The table is bounded:
beyond ``max_size`` the oldest exited processes go first, then the oldest entries.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sensor.events import EXEC, EXIT, FORK, Event

REAL_PROC: Final = Path("/proc")


@dataclass(slots=True)
class Proc:
    ppid: int
    exe: str
    args: tuple[str, ...] = ()


class ProcessTable:
    def __init__(self, procfs_root: Path = REAL_PROC, max_size: int = 65536, linger: int = 1024,
                 seed: bool = True) -> None:
        self.root = procfs_root
        self.max_size = max_size
        self._procs: OrderedDict[int, Proc] = OrderedDict()
        self._exited: OrderedDict[int, None] = OrderedDict()
        self._linger = linger
        self.evicted = 0
        if seed:
            self.seed()

    def seed(self) -> int:
        """Load every process visible under the root now; returns how many the table holds."""
        procs = _seed_psutil() if self.root == REAL_PROC else _seed_files(self.root)
        for pid, proc in sorted(procs.items()):
            self._put(pid, proc)
        return len(self._procs)

    def __len__(self) -> int:
        return len(self._procs)

    def __contains__(self, pid: int) -> bool:
        return pid in self._procs

    def get(self, pid: int) -> Proc | None:
        return self._procs.get(pid)

    def ppid(self, pid: int) -> int:
        """Parent pid, 0 if the process is unknown."""
        proc = self._procs.get(pid)
        return proc.ppid if proc is not None else 0

    def exe(self, pid: int) -> str:
        proc = self._procs.get(pid)
        return proc.exe if proc is not None else ""

    def ancestry(self, pid: int, depth: int = 8) -> tuple[str, ...]:
        """Executables of the parent, grandparent, ... nearest first.

        Stops at pid 0, at an unknown parent, after ``depth`` entries, or at a cycle (pids are
        reused, so a stale entry can point back into its own descendants).
        """
        out: list[str] = []
        procs = self._procs
        proc = procs.get(pid)
        seen = {pid}
        while proc is not None and len(out) < depth:
            parent = proc.ppid
            if not parent or parent in seen:
                break
            seen.add(parent)
            proc = procs.get(parent)
            if proc is not None:
                out.append(proc.exe)
        return tuple(out)

    def update(self, ev: Event) -> None:
        """Apply a fork, exec or exit event; other kinds are ignored."""
        kind = ev.kind
        if kind == FORK:
            self._fork(ev)
        elif kind == EXEC:
            proc = self._procs.get(ev.pid)
            if proc is None:
                self._put(ev.pid, Proc(ev.ppid, ev.exe, ev.args))
            else:
                proc.exe, proc.args = ev.exe, ev.args
                if ev.ppid and not proc.ppid:
                    proc.ppid = ev.ppid
        elif kind == EXIT:
            self._exit(ev.pid)

    def _fork(self, ev: Event) -> None:
        # ev.pid is the forking process (tgid); ev.ppid is the forking *thread*, which differs
        # when a non-main thread forks — getppid() in the child returns the tgid.
        self.adopt(ev.child_pid, ev.pid or ev.ppid, ev.exe)

    def adopt(self, pid: int, ppid: int, exe: str = "") -> None:
        """A child first seen in a later record (forks stay in the kernel, which puts the parent in
        every record's header): until it execs it runs its parent's image."""
        parent = self._procs.get(ppid)
        if parent is None:
            self._put(pid, Proc(ppid, exe))
        else:
            self._put(pid, Proc(ppid, parent.exe, parent.args))

    def _exit(self, pid: int) -> None:
        if pid not in self._procs:
            return
        self._exited[pid] = None
        while len(self._exited) > self._linger:
            gone, _ = self._exited.popitem(last=False)
            self._procs.pop(gone, None)

    def _put(self, pid: int, proc: Proc) -> None:
        if pid in self._exited:  # pid reused after its linger began: the new process owns it
            del self._exited[pid]
        self._procs[pid] = proc
        self._procs.move_to_end(pid)
        while len(self._procs) > self.max_size:
            if self._exited:
                gone, _ = self._exited.popitem(last=False)
                self._procs.pop(gone, None)
            else:
                self._procs.popitem(last=False)
            self.evicted += 1


def _seed_psutil() -> dict[int, Proc]:
    import psutil

    out: dict[int, Proc] = {}
    for p in psutil.process_iter(["ppid", "exe", "cmdline"], ad_value=None):
        info = p.info
        if info.get("ppid") is None:
            continue  # exited while we looked
        out[p.pid] = Proc(int(info["ppid"]), info.get("exe") or "", tuple(info.get("cmdline") or ()))
    return out


def _seed_files(root: Path) -> dict[int, Proc]:
    try:
        pids = [int(n) for n in os.listdir(root) if n.isdigit()]
    except OSError:
        return {}
    out: dict[int, Proc] = {}
    for pid in pids:
        proc = read_proc(root, pid)
        if proc is not None:
            out[pid] = proc
    return out


def read_proc(root: Path, pid: int) -> Proc | None:
    """One process from ``<root>/<pid>``; None if it is gone. exe "" for kernel threads/no access."""
    base = root / str(pid)
    try:
        stat = (base / "stat").read_text(encoding="utf-8", errors="replace")
        # comm may contain spaces and parentheses: the fields after the LAST ')' are fixed.
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None
    try:
        exe = os.readlink(base / "exe")
    except OSError:
        exe = ""
    try:
        raw = (base / "cmdline").read_bytes()
        args = tuple(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a)
    except OSError:
        args = ()
    return Proc(ppid, exe, args)
