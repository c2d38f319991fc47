"""The sensor's own process table: pid -> (ppid, exe, args), for ancestry without kernel structs.

Seeded once from procfs at start (``procfs_root`` is injectable, psutil-style, so tests use a
``tmp_path`` tree), then kept current from fork/exec/exit events. Exited processes linger for
``linger`` more exits so late events (an exit racing its children's execs) still resolve.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from sensor.events import Event


@dataclass(slots=True)
class Proc:
    ppid: int
    exe: str
    args: tuple[str, ...] = ()


class ProcessTable:
    def __init__(self, procfs_root: Path = Path("/proc"), max_size: int = 65536,
                 linger: int = 1024, seed: bool = True) -> None:
        self.root = procfs_root
        self.max_size = max_size
        self._procs: OrderedDict[int, Proc] = OrderedDict()
        self._exited: OrderedDict[int, None] = OrderedDict()
        self._linger = linger
        if seed:
            self.seed()

    def seed(self) -> int:
        """Read every ``<root>/<pid>`` (stat for ppid, exe link, cmdline); returns how many."""
        try:
            pids = [int(n) for n in os.listdir(self.root) if n.isdigit()]
        except OSError:
            return 0
        for pid in pids:
            proc = self._read(pid)
            if proc is not None:
                self._procs[pid] = proc
        return len(self._procs)

    def _read(self, pid: int) -> Proc | None:
        base = self.root / str(pid)
        try:
            stat = (base / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            return None  # exited while we looked
        try:
            exe = os.readlink(base / "exe")
        except OSError:
            exe = ""  # kernel threads, or no permission
        try:
            raw = (base / "cmdline").read_bytes()
            args = tuple(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a)
        except OSError:
            args = ()
        return Proc(ppid, exe, args)

    def __len__(self) -> int:
        return len(self._procs)

    def get(self, pid: int) -> Proc | None:
        return self._procs.get(pid)

    def ppid(self, pid: int) -> int:
        proc = self._procs.get(pid)
        return proc.ppid if proc else 0

    def ancestry(self, pid: int, depth: int = 8) -> tuple[str, ...]:
        """Executables of the parent, grandparent, ... nearest first (stops at unknown/pid 0)."""
        out: list[str] = []
        seen = {pid}
        proc = self._procs.get(pid)
        while proc is not None and len(out) < depth and proc.ppid and proc.ppid not in seen:
            seen.add(proc.ppid)
            proc = self._procs.get(proc.ppid)
            if proc is None:
                break
            out.append(proc.exe)
        return tuple(out)

    def update(self, ev: Event) -> None:
        """Apply a fork/exec/exit event."""
        if ev.kind == "fork":
            parent = self._procs.get(ev.pid)
            exe = parent.exe if parent else ""
            args = parent.args if parent else ()
            self._put(ev.child_pid, Proc(ev.pid, exe, args))
        elif ev.kind == "exec":
            proc = self._procs.get(ev.pid)
            if proc is None:
                self._put(ev.pid, Proc(ev.ppid, ev.exe, ev.args))
            else:
                proc.exe, proc.args = ev.exe, ev.args
        elif ev.kind == "exit":
            self._exited[ev.pid] = None
            while len(self._exited) > self._linger:
                gone, _ = self._exited.popitem(last=False)
                self._procs.pop(gone, None)

    def _put(self, pid: int, proc: Proc) -> None:
        self._procs[pid] = proc
        self._exited.pop(pid, None)
        while len(self._procs) > self.max_size:
            self._procs.popitem(last=False)
