"""Rate features over fixed windows per container — ONE module for training and scoring.

A window accumulates event counts and syscall-counter deltas; :func:`vector` turns it into
per-second rates in the fixed order of :data:`FEATURES`. The ``sc_*`` features come from the
kernel's per-cgroup syscall profiler, which the sensor runs only for containers of images that are
learning (sensor/watch.py): they are recorded in training windows but read 0 in alert and enforce
mode, so the rate model fits and scores only :data:`SCORED_FEATURES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from sensor import syscalls

FEATURES: Final = ("execs", "forks", "exits", "connects", "connect_failures", "accepts", "listens",
                   "opens", "sensitive", "distinct_endpoints", "sc_file", "sc_network", "sc_process",
                   "sc_memory", "sc_ipc", "sc_other")

# Fed by the syscall profiler: on while an image learns, off once it alerts or enforces.
PROFILER_FEATURES: Final = tuple(f for f in FEATURES if f.startswith("sc_"))
# Available in every mode: what the rate model is trained and scored on.
SCORED_FEATURES: Final = tuple(f for f in FEATURES if f not in PROFILER_FEATURES)
MAX_EXES_PER_WINDOW: Final = 256  # distinct executables counted per window (memory bound)
MAX_PROCS_PER_WINDOW: Final = 256  # distinct processes counted per window (memory bound)

_CLASSES: Final = {
    "file": ("open", "read", "write", "close", "stat", "fstat", "lstat", "lseek", "pread", "pwrite",
             "readv", "writev", "access", "getdents", "rename", "unlink", "mkdir", "rmdir", "chmod",
             "chown", "fcntl", "fsync", "truncate", "ftruncate", "newfstatat", "statx", "readlink",
             "faccessat", "openat", "dup", "ioctl", "sendfile", "splice", "getcwd", "chdir"),
    "network": ("socket", "connect", "accept", "bind", "listen", "send", "recv", "shutdown",
                "getsockname", "getpeername", "setsockopt", "getsockopt", "socketpair", "poll",
                "select", "epoll", "pselect", "ppoll"),
    "process": ("clone", "fork", "vfork", "execve", "exit", "wait", "kill", "tgkill", "getpid",
                "getppid", "gettid", "setuid", "setgid", "prctl", "arch_prctl", "rt_sig", "sched_",
                "set_tid_address", "getuid", "geteuid", "getgid", "getegid", "setpgid", "setsid"),
    "memory": ("mmap", "munmap", "mprotect", "brk", "mremap", "madvise", "mlock", "munlock",
               "membarrier", "memfd"),
    "ipc": ("pipe", "futex", "eventfd", "msg", "sem", "shm", "mq_", "signalfd", "timerfd"),
}
SYSCALL_CLASS: Final[dict[int, str]] = {}
for _nr, _name in syscalls.NAMES.items():
    SYSCALL_CLASS[_nr] = next((c for c, prefixes in _CLASSES.items()
                               if _name.startswith(prefixes)), "other")


@dataclass
class Window:
    start_ns: int
    counts: dict[str, float] = field(default_factory=dict)
    endpoints: set[tuple[object, ...]] = field(default_factory=set)
    last_event: object = None  # the window's latest event: a finding's evidence
    exes: dict[str, int] = field(default_factory=dict)  # executables run in the window: count
    # (pid, exe) -> [events, its latest event]: who the window's events came from. Repeats the
    # kernel only counts (connects to a known endpoint, forks) are not in it: their first record is.
    procs: dict[tuple[int, str], list[Any]] = field(default_factory=dict)

    def add(self, name: str, n: float = 1.0) -> None:
        self.counts[name] = self.counts.get(name, 0.0) + n

    def note_exec(self, exe: str) -> None:
        if exe in self.exes or len(self.exes) < MAX_EXES_PER_WINDOW:
            self.exes[exe] = self.exes.get(exe, 0) + 1

    def top_exes(self, n: int = 3) -> list[tuple[str, int]]:
        return sorted(self.exes.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def note_process(self, pid: int, exe: str, event: object) -> None:
        """One event of process ``pid`` running ``exe``; ``event`` is kept as its latest."""
        entry = self.procs.get((pid, exe))
        if entry is not None:
            entry[0] += 1
            entry[1] = event
        elif len(self.procs) < MAX_PROCS_PER_WINDOW:
            self.procs[(pid, exe)] = [1, event]

    def top_processes(self, n: int = 3) -> list[tuple[int, str, int, Any]]:
        """The ``n`` processes with the most events in the window: (pid, exe, events, latest event)."""
        ranked = sorted(self.procs.items(), key=lambda kv: (-kv[1][0], kv[0]))[:n]
        return [(pid, exe, count, ev) for (pid, exe), (count, ev) in ranked]


_KIND_FEATURE: Final = {"exec": "execs", "fork": "forks", "exit": "exits", "accept": "accepts",
                        "listen": "listens", "open": "opens", "sys": "sensitive"}


def add_event(w: Window, kind: str, ret: int, endpoint: tuple[object, ...] | None) -> None:
    if kind == "connect":
        w.add("connects")
        if ret < 0 and ret != -115:
            w.add("connect_failures")
        if endpoint is not None:
            w.endpoints.add(endpoint)
        return
    name = _KIND_FEATURE.get(kind)
    if name is not None:
        w.add(name)


def add_syscalls(w: Window, deltas: dict[int, int]) -> None:
    for nr, n in deltas.items():
        w.add("sc_" + SYSCALL_CLASS.get(nr, "other"), float(n))


def vector(w: Window, window_s: float) -> np.ndarray:
    """Per-second rates in FEATURES order (float64)."""
    w.counts["distinct_endpoints"] = float(len(w.endpoints))
    return np.array([w.counts.get(f, 0.0) / window_s for f in FEATURES], dtype=np.float64)
