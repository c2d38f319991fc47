"""Userspace pipeline throughput: journal read + enrichment, one core, no kernel and no Docker.

A synthetic journal of realistic *decoded* events (the fleet of busybox web containers from
bench/workloads.py, 20 containers, plus host noise, syscall-profile and sensitive-open records) is
written to a temp dir, then replayed: journal read alone, read + :meth:`Enricher.enrich` (copying),
and read + :meth:`Enricher.enrich_owned` (in place, what the live reader can use). Container
resolution runs against a tmp cgroup tree and a fake runtime, so the numbers isolate Python cost.
The journal's pids are not live (its procfs is a tmp tree without them): every exec pays what a
process gone before it was read costs the process facts (sensor/procfacts.py), and enrichment
alone is also measured without them, to show that cost.

    .venv/bin/python -m bench.pipeline_bench [N_EVENTS]   # JSON on stdout
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from bench.workloads import IMAGE, IMAGE_ID, fleet
from sensor.containers import CgroupIndex
from sensor.enrich import Enricher
from sensor.events import Event
from sensor.journal import JournalWriter, read_journal
from sensor.procfacts import ProcFacts
from sensor.proctable import ProcessTable
from sensor.runtime import ContainerMeta

N_CONTAINERS = 20
_ENRICHED = ("container_id", "container_name", "image", "image_id", "runtime", "pexe", "ancestry")


class _BenchRuntime:
    """Answers like the Docker runtime with a warm cache (the steady state of a live sensor)."""

    def inspect(self, container_id: str) -> ContainerMeta | None:
        return ContainerMeta(container_id, f"web-{container_id[:2]}", IMAGE, IMAGE_ID)

    def find(self, id_or_name: str) -> ContainerMeta | None:
        return None

    def stats(self) -> dict[str, int]:
        return {}


class _NoFacts(ProcFacts):
    """Process facts left out: events pass unchanged."""

    def exec_event(self, ev: Event, image_key: str, container: bool, parent: int = 0) -> Event:
        return ev

    def connect_event(self, ev: Event) -> Event:
        return ev


def decoded_events(n_events: int, cgroup_ids: list[int], host_cgroup: int, seed: int = 7) -> list[Event]:
    """About ``n_events`` events as the decoder emits them: no container fields, no ancestry, no
    forks (they stay in the kernel; every record's header carries the parent pid instead)."""
    per_second = N_CONTAINERS * 8
    base = fleet(N_CONTAINERS, max(1, int(n_events * 1.1) // per_second + 1), seed=seed)  # forks dropped below
    rng = random.Random(seed)
    out: list[Event] = []
    for ev in base:
        if ev.kind == "fork":
            continue
        i = ev.cgroup_id - 1000
        fields: dict[str, Any] = {k: v for k, v in ev.to_dict().items() if k not in _ENRICHED}
        fields["cgroup_id"] = cgroup_ids[i]
        out.append(Event.from_dict(fields))
        roll = rng.random()
        if roll < 0.08:
            out.append(Event("syscall", ev.time_ns + 1, pid=ev.pid, comm=ev.comm, cgroup_id=cgroup_ids[i],
                             syscall="openat", syscall_nr=257, count=1))
        elif roll < 0.12:
            out.append(Event("open", ev.time_ns + 1, pid=ev.pid, comm=ev.comm, cgroup_id=cgroup_ids[i],
                             path="/etc/passwd", syscall="openat", ret=3))
        elif roll < 0.18:
            out.append(Event("connect", ev.time_ns + 1, pid=1, comm="systemd", cgroup_id=host_cgroup,
                             proto="tcp", family="ipv4", daddr="127.0.0.1", dport=53))
    return out[:n_events]


def _host(tmp: Path) -> tuple[list[int], int, Path]:
    cg = tmp / "cgroup"
    ids = []
    for i in range(N_CONTAINERS):
        d = cg / "system.slice" / f"docker-{i:02d}{'0' * 62}.scope"
        d.mkdir(parents=True)
        ids.append(os.stat(d).st_ino)
    (cg / "init.scope").mkdir()
    proc = tmp / "proc"
    for pid, ppid, exe in ((1, 0, "/sbin/init"), (10, 1, "/usr/bin/containerd-shim-runc-v2"),
                           (11, 10, "/usr/sbin/httpd")):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "stat").write_text(f"{pid} (x) S {ppid} 0 0")
        (proc / str(pid) / "cmdline").write_bytes(b"x\0")
        os.symlink(exe, proc / str(pid) / "exe")
    return ids, os.stat(cg / "init.scope").st_ino, tmp


def _rate(n: int, fn: Callable[[], Iterable[Any]]) -> float:
    start = time.perf_counter()
    count = sum(1 for _ in fn())
    elapsed = time.perf_counter() - start
    assert count == n, (count, n)
    return round(n / elapsed)


def run(n_events: int = 200_000) -> dict[str, Any]:
    """Write a synthetic journal of ``n_events`` and measure replay rates (events/s)."""
    with tempfile.TemporaryDirectory(prefix="cgsentry-bench-") as tmp_s:
        ids, host_cg, tmp = _host(Path(tmp_s))
        events = decoded_events(n_events, ids, host_cg)
        n = len(events)
        journal = tmp / "bench.msgpack"
        t0 = time.perf_counter()
        with JournalWriter(journal) as w:
            for ev in events:
                w.write(ev)
        write_rate = round(n / (time.perf_counter() - t0))

        def make() -> Enricher:
            return Enricher(CgroupIndex(tmp / "cgroup"), _BenchRuntime(), ProcessTable(tmp / "proc"))

        enr, owned = make(), make()
        bare = Enricher(CgroupIndex(tmp / "cgroup"), _BenchRuntime(), ProcessTable(tmp / "proc"),
                        _NoFacts(tmp / "proc"))
        results = {
            "events": n, "containers": N_CONTAINERS, "journal_bytes": journal.stat().st_size,
            "journal_write_eps": write_rate,
            "journal_read_eps": _rate(n, lambda: read_journal(journal)),
            "read_enrich_eps": _rate(n, lambda: (enr.enrich(ev) for ev in read_journal(journal))),
            "read_enrich_owned_eps": _rate(n, lambda: (owned.enrich_owned(ev) for ev in read_journal(journal))),
            "enrich_only_eps": _rate(n, lambda: (enr.enrich(ev) for ev in events)),
            "enrich_only_without_procfacts_eps": _rate(n, lambda: (bare.enrich(ev) for ev in events)),
            "python": sys.version.split()[0],
        }
        stats = enr.stats()
        results["unknown_events"] = stats["unknown_events"]
        results["cache_hit_ratio"] = round(stats["cache_hits"] / max(1, 2 * n), 4)  # two passes
        return results


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(json.dumps(run(int(args[0]) if args else 200_000), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
