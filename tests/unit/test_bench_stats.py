"""The overhead benchmark's interval: pairs cancel drift between repetitions."""

from __future__ import annotations

import math

from bench.overhead import paired_ci


def test_paired_interval_cancels_drift_between_repetitions() -> None:
    # the machine got 4x slower across repetitions; the sensor costs 5 % in every one of them
    base = [100.0, 200.0, 300.0, 400.0]
    lo, hi = paired_ci([b * 1.05 for b in base], base)
    assert (lo, hi) == (5.0, 5.0)


def test_paired_interval_brackets_the_median_and_widens_with_spread() -> None:
    base = [100.0] * 9
    tight = paired_ci([101.0, 102.0, 103.0, 102.0, 101.0, 103.0, 102.0, 102.0, 101.0], base)
    loose = paired_ci([95.0, 110.0, 102.0, 90.0, 115.0, 102.0, 99.0, 108.0, 101.0], base)
    assert tight[0] <= 2.0 <= tight[1] and loose[0] <= 2.0 <= loose[1]
    assert loose[1] - loose[0] > tight[1] - tight[0]


def test_one_repetition_has_no_interval() -> None:
    assert all(math.isnan(x) for x in paired_ci([1.0], [1.0]))


def test_readme_tables_are_the_committed_benchmark_results() -> None:
    """The README's numbers are bench/results/summary.md, spliced in by bench/run.py: no
    hand-edited figure can drift from the results it claims to show."""
    from bench.run import README, RESULTS, splice

    readme = README.read_text()
    assert splice(readme, (RESULTS / "summary.md").read_text()) == readme


def test_a_failed_run_drops_its_pair_instead_of_poisoning_the_interval() -> None:
    from bench.overhead import paired_median

    base = [100.0, 100.0, float("nan"), 100.0]
    runs = [105.0, 105.0, 105.0, float("nan")]
    assert paired_ci(runs, base) == (5.0, 5.0) and paired_median(runs, base) == 5.0


def test_attribution_table_lists_each_program_under_its_workloads() -> None:
    from bench.run import _attribution

    def wl(programs: dict[str, float], ci: list[float] | None) -> dict[str, object]:
        progs = {p: {"runs_per_op": 1.0, "ns_per_run": round(us * 1000), "us_per_op": us} for p, us in programs.items()}
        return {"bpf": {"programs": progs, "total_us_per_op": sum(programs.values()), "share_pct": 1.3},
                "pipeline": {"pairs": 16, "processing_slowdown_pct": -1.5, "processing_slowdown_ci95_pct": ci,
                             "sensor_cpu_us_per_op_processing": 51.7, "sensor_cpu_us_per_op_discarding": 13.3}}

    lines = _attribution({"exec": wl({"tracepoint__sched__sched_process_exec": 2.0,
                                      "tracepoint__syscalls__sys_enter_execve": 2.5}, [-4.4, 2.9]),
                          "connect": wl({"tracepoint__syscalls__sys_exit_connect": 0.4}, None)})
    rows = {line.split(" | ")[0]: line for line in lines}
    assert rows["| BPF `syscalls:sys_enter_execve`"].endswith("| 2.50 µs (1.0 × 2500 ns) |  |")
    assert rows["| BPF `syscalls:sys_exit_connect`"].endswith("|  | 0.40 µs (1.0 × 400 ns) |")
    execve, exec_ = rows["| BPF `syscalls:sys_enter_execve`"], rows["| BPF `sched:sched_process_exec`"]
    assert lines.index(execve) < lines.index(exec_)
    slow = next(line for line in lines if "Python pipeline" in line)
    assert "**-1.5%** [-4.4, +2.9]" in slow and slow.endswith("[n/a] |")
    assert _attribution({}) == []
