"""What an n-gram novelty model maintained in the kernel would cost (issue 3: "consider an n-gram
novelty model that the kernel can maintain ... and measure its overhead").

Not part of the sensor: three stand-alone variants of a raw ``sys_enter`` program, loaded one at
a time and restricted to one container's cgroup, the way the sensor's learning mode is:

- ``filter``: the cgroup test only (what every syscall pays once any such hook is attached);
- ``profile``: + a per-(cgroup, syscall) counter, which is the sensor's syscall profile;
- ``ngram``: + the task's last 6 syscall numbers packed 10 bits each into a u64 in task-local
  storage (an exact 6-gram, no hashing), looked up in a per-(cgroup, 6-gram) LRU map and inserted
  when new. That is STIDE-6 kept by the kernel: a learning image fills the map, an alerting one
  would report misses. On ADFA-LD, STIDE-6 scores 0.827 AUC (bench/adfa.py).

Each variant is timed against no program on the container workloads of bench/overhead.py, in
alternating order, with the same paired intervals. ``python -m bench.ngram_kernel [--smoke]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.overhead import IMAGE, build_workload, summarize
from sensor.bpf_loader import import_bcc
from sensor.containers import CgroupIndex

NAME = "cgsentry-ngram"
MODES = {"filter": 0, "profile": 1, "ngram": 2}
FULL = {"getppid": 2_000_000, "open": 300_000, "exec": 2000}
SMOKE = {"getppid": 100_000, "open": 10_000, "exec": 40}

PROGRAM = r"""
struct sc_key { u64 cg; u64 nr; };
struct ng_key { u64 cg; u64 gram; };
BPF_HASH(counts, struct sc_key, u64, 65536);
BPF_TABLE("lru_hash", struct ng_key, u64, grams, 262144);
BPF_TASK_STORAGE(last6, u64);
BPF_ARRAY(new_grams, u64, 1);

RAW_TRACEPOINT_PROBE(sys_enter)
{
    u64 cg = bpf_get_current_cgroup_id();
    if (cg != TARGET_CG)
        return 0;
    u64 nr = ctx->args[1];
#if MODE >= 1
    struct sc_key k = {.cg = cg, .nr = nr};
    u64 *n = counts.lookup(&k);
    if (n) {
        __sync_fetch_and_add(n, 1);
    } else {
        u64 one = 1;
        counts.insert(&k, &one);
    }
#endif
#if MODE >= 2
    u64 *h = last6.task_storage_get(bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!h)
        return 0;
    u64 gram = ((*h << 10) | (nr & 0x3ff)) & ((1ULL << 60) - 1);
    *h = gram;
    struct ng_key g = {.cg = cg, .gram = gram};
    u64 *c = grams.lookup(&g);
    if (c) {
        __sync_fetch_and_add(c, 1);
    } else {
        u64 one = 1;
        grams.update(&g, &one);
        u32 z = 0;
        u64 *fresh = new_grams.lookup(&z);
        if (fresh)
            __sync_fetch_and_add(fresh, 1);
    }
#endif
    return 0;
}
"""


def _time(workload: str, n: int) -> float:
    out = subprocess.run(["docker", "exec", NAME, "/bench/workload", workload, str(n)], capture_output=True,
                         text=True, timeout=600)
    return int(out.stdout.strip()) / n if out.returncode == 0 else float("nan")


def run(smoke: bool = False, reps: int = 8) -> dict[str, Any]:
    bcc = import_bcc()
    sizes = SMOKE if smoke else FULL
    reps = 1 if smoke else reps
    tmp = Path(tempfile.mkdtemp(prefix="cgsentry-ngram-"))
    build_workload(tmp)
    subprocess.run(["docker", "rm", "-f", NAME], capture_output=True)
    cid = subprocess.run(["docker", "run", "-d", "--name", NAME, "--network", "none", "-v", f"{tmp}:/bench:ro",
                          IMAGE, "sleep", "100000"], check=True, capture_output=True, text=True).stdout.strip()
    samples: dict[str, dict[str, list[float]]] = {c: {w: [] for w in sizes} for c in ["none", *MODES]}
    distinct = {}
    try:
        found = CgroupIndex().find_container(cid)
        if found is None:
            raise SystemExit(f"cgroup of container {cid[:12]} not found")
        cg = found[0]
        order = ["none", *MODES]
        for rep in range(reps):
            for cfg in order if rep % 2 == 0 else order[::-1]:
                prog = None
                if cfg != "none":
                    prog = bcc.BPF(text=PROGRAM.encode(), cflags=[f"-DTARGET_CG={cg}ULL", f"-DMODE={MODES[cfg]}"])
                try:
                    for wl, n in sizes.items():
                        samples[cfg][wl].append(_time(wl, n))
                    if cfg == "ngram":
                        distinct[rep] = len(prog[b"grams"])  # type: ignore[index]
                finally:
                    if prog is not None:
                        prog.cleanup()
    finally:
        subprocess.run(["docker", "rm", "-f", NAME], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    out = summarize(samples, {}, sizes, reps, smoke)  # the overhead bench's medians, pairs and intervals
    out.update(benchmark="ngram_kernel", distinct_6grams_in_the_container_per_run=sorted(set(distinct.values())))
    return out

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--reps", type=int, default=8)
    a = ap.parse_args()
    print(json.dumps(run(a.smoke, a.reps), indent=2))
