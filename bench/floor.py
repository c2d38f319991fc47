"""The floor: empty BPF programs on exactly the tracepoints cgsentry attaches.

Attaching any program to a syscall tracepoint puts every task of the machine on the kernel's
slow syscall path (entry and exit work for tracing), whatever the program does. This runs that
configuration alone so bench/overhead.py can tell the part of cgsentry's overhead that any
syscall-tracepoint sensor pays from the part its own programs add.
``python -m bench.floor`` prints "running" once attached and holds until killed.
"""

from __future__ import annotations

import re
import signal
import sys
import time

from sensor.bpf_loader import SOURCE, has_tracepoint, import_bcc

_PROBE = re.compile(r"^TRACEPOINT_PROBE\((\w+), (\w+)\)", re.MULTILINE)


def tracepoints() -> list[tuple[str, str]]:
    """(category, name) of every tracepoint sensor.c attaches that this kernel has."""
    found = dict.fromkeys(_PROBE.findall(SOURCE.read_text()))
    return [(c, n) for c, n in found if has_tracepoint(c, n)]


def program_text(points: list[tuple[str, str]]) -> str:
    return "\n".join(f"TRACEPOINT_PROBE({c}, {n}) {{ return 0; }}" for c, n in points)


def main() -> int:
    bcc = import_bcc()
    points = tracepoints()
    bpf = bcc.BPF(text=program_text(points).encode())  # noqa: F841 - held until exit; BCC detaches at exit
    print(f"running: {len(points)} empty tracepoint programs", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
