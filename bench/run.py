"""Run every benchmark: ``python -m bench.run [--smoke] [--only NAME ...]``.

Writes bench/results/<name>.json, bench/results/summary.md (the README tables) and
bench/results/overhead.png. ``--smoke`` is the seconds-long CI version that keeps them from rotting.
Kernel benchmarks need root, BCC and Docker; without them they are reported as skipped.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- bench:begin", "<!-- bench:end -->"
BENCHES = ("throughput", "pipeline_bench", "scenarios", "adfa", "ingest", "streams", "console", "latency", "overhead",
           "exec_ab",
           "attribution", "drops", "scale", "ngram_kernel", "runtime_attribution", "depth")
KERNEL = {"latency", "overhead", "exec_ab", "attribution", "drops", "scale", "ngram_kernel", "runtime_attribution",
          "depth"}


def run_one(name: str, smoke: bool) -> dict[str, Any]:
    if name in KERNEL and os.geteuid() != 0:
        return {"benchmark": name, "skipped": "needs root, BCC and Docker"}
    mod = importlib.import_module(f"bench.{name}")
    t0 = time.perf_counter()
    out = mod.run(20_000 if smoke else 200_000) if name == "pipeline_bench" else mod.run(smoke=smoke)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    from bench.overhead import machine

    out.setdefault("machine", machine())  # every result says where it was measured
    out.setdefault("date", time.strftime("%Y-%m-%d"))  # ... and when, so prose can cite it
    return out


def _console(co: dict[str, Any]) -> list[str]:
    """The web console's table (bench/console.py): page latency over a year of stored findings."""
    rows = {k: v for k, v in co.get("results", {}).items() if "incidents_page" in v}
    if not rows:
        return []
    pages = ("incidents_page", "incidents_page_text", "incidents_page_deep", "incident_page", "incident_page_biggest",
             "dashboard")
    lines = [f"| web console ({co['findings']:,} stored findings, {co['requests']} requests per page) | incidents | "
             + " | ".join(f"{p.replace('_', ' ')} p50/p95 ms" for p in pages) + " |",
             "|---" * (len(pages) + 2) + "|"]
    for backend, r in rows.items():
        cells = [f"{r[p]['p50_ms']}/{r[p]['p95_ms']}" if r.get(p) else "-" for p in pages]
        lines.append(f"| {backend} | {r['incidents']:,} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def summary(results: dict[str, dict[str, Any]]) -> str:
    dates = sorted({str(r.get("date", "undated")) for r in results.values()})
    lines = [f"From bench/results/*.json, measured {', '.join(dates)}.", ""]
    ov = results.get("overhead", {})
    if "results" in ov:
        m = ov["machine"]
        lines += [f"Machine: {m['cores']} cores, {m['cpu']}, kernel {m['kernel']}, virtualised: {m['virtualised']}; "
                  f"{ov['reps']} repetitions, medians.", "",
                  "| configuration | exec storm | connect storm | getppid (container) | open/close | "
                  "getppid (host, unwatched) | sensor CPU s | sensor RSS MB |", "|---|---|---|---|---|---|---|---|"]
        for cfg, row in ov["results"].items():
            proc = row.get("process", {})
            cells = [f"{row[w]['overhead_pct']:+.1f}% ({row[w]['ns_per_op_median']/1000:.1f} µs)"
                     for w in ("exec", "connect", "getppid", "open", "host_getppid")]
            lines.append(f"| {cfg} | " + " | ".join(cells) + f" | {proc.get('cpu_s_median', '-')} | "
                         f"{proc.get('rss_mb_peak', '-')} |")
        lines += _bcc_notes(ov)
        lines.append("")
        lines += _ci_table(ov, "the same run: median slowdown over pairs of one repetition, 95 % bootstrap interval",
                           ["exec", "connect"], " storm")
    ab = results.get("exec_ab", {})
    if "results" in ab:
        lines += _ci_table(ab, f"exec storm alone, {ab['reps']} pairs of {ab['sizes']['exec']:,} execs "
                               "(bench/exec_ab.py)", ["exec"], " storm")
    lines += _attribution(results.get("attribution", {}))
    ng = results.get("ngram_kernel", {})
    if "results" in ng:
        lines += _ci_table(ng, f"raw sys_enter program on one container ({ng['reps']} alternating pairs; "
                               "bench/ngram_kernel.py)", list(ng["sizes"]))
    lat = results.get("latency", {})
    if "exec_to_rule_finding" in lat:
        lines += ["| latency | n | p50 ms | p99 ms |", "|---|---|---|---|"]
        for key in ("exec_to_rule_finding", "exec_to_rule_finding_urgent_cgroup",
                    "exec_to_finding_stored_by_collector", "in_kernel_kill_exec_to_exit", "pause_docker_api",
                    "pause_cgroup_freeze", "kill_container_docker_api"):
            v = lat.get(key, {})
            lines.append(f"| {key.replace('_', ' ')} | {v.get('n')} | {v.get('p50_ms')} | {v.get('p99_ms')} |")
        for mode, loop in lat.get("collector_loop", {}).items():
            for key in ("exec_to_alert_stored", "exec_to_paused"):
                v = loop.get(key, {}) if isinstance(loop, dict) else {}
                if v:
                    lines.append(f"| collector loop, {mode.replace('_', ' ')}: {key.replace('_', ' ')} | "
                                 f"{v.get('n')} | {v.get('p50_ms')} | {v.get('p99_ms')} |")
        lines.append("")
    dr = results.get("drops", {})
    if "runs" in dr:
        lines += ["| storm in a container, full pipeline (workers) | ring pages | offered ops/s | seconds | "
                  "events handled | events per op | kernel drops (ring not full) | queue drops |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in dr["runs"]:
            lines.append(f"| {r['workload']} ({r.get('parallel', 2)}) | {r['ring_pages']} | "
                         f"{r['offered_ops_per_s']:,} | {r['seconds']} | {r['events_handled']:,} | "
                         f"{r.get('events_per_op', '-')} | "
                         f"{r['kernel_drops']} ({_with_room(r)}) | {r['queue_drops']} |")
        lines.append("")
    sc_ = results.get("scale", {})
    if "scale" in sc_:
        lines += ["| running containers (images), profile | sensor CPU, % of one core | sensor RSS MB | start-up s |",
                  "|---|---|---|---|"]
        for r in sc_["scale"]:
            cpu, rss = r["sensor_cpu_pct_of_one_core"], r["sensor_rss_mb_peak"]
            profile = r.get("profile", "full").replace("auto", "full (auto)")
            lines.append(f"| {r['containers']} ({r['images']}), {profile} | {cpu} | {rss} | {r.get('start_s', '-')} |")
        srv = sc_["server"]
        lines += ["", f"| realistic server: {srv['workload']} | requests/s (median) | overhead |", "|---|---|---|"]
        over = srv["overhead_pct"] if isinstance(srv["overhead_pct"], dict) else {"cgsentry": srv["overhead_pct"]}
        med = srv.get("median_requests_per_s", {})
        lines += [f"| {cfg} | {med[cfg]:,} | {pct:+.1f}% |" if cfg in med else f"| {cfg} | - | {pct:+.1f}% |"
                  for cfg, pct in over.items()]
        lines += [f"\nDropped row {cfg}: {why}" for cfg, why in srv.get("dropped", {}).items()]
        lines.append("")
    ing = results.get("ingest", {})
    if "backends" in ing:
        lines += [f"| collector ingest ({ing['per_stream']:,} findings per sensor stream, batches of {ing['batch']}) | "
                  "concurrent streams | findings/s | batch ack p50/p99 ms, paced | batch ack p50/p99 ms, burst | "
                  "stored exactly once |", "|---|---|---|---|---|---|"]
        for backend, runs in ing["backends"].items():
            if isinstance(runs, dict):
                lines.append(f"| {backend} | skipped: {runs.get('skipped')} | | | | |")
            for r in runs if isinstance(runs, list) else []:
                lines.append(f"| {backend} | {r['streams']} | {r['findings_per_s']:,} | "
                             f"{r.get('batch_ack_paced_p50_ms')}/{r.get('batch_ack_paced_p99_ms')} | "
                             f"{r.get('batch_ack_burst_p50_ms')}/{r.get('batch_ack_burst_p99_ms')} | "
                             f"{r['lossless'] and r.get('alert_rows') == r.get('alert_rows_expected')} |")
        lines.append("")
    st = results.get("streams", {})
    if st.get("levels"):
        lines += [f"| collector with idle sensor streams (one TCP connection each; {st['stored_alerts']:,} alerts "
                  f"stored; {st['calls']} calls per kind) | sensors listed as connected | ListAlerts p50/p99 ms | "
                  "ListSensors p50/p99 ms | collector RSS MB | collector threads |", "|---|---|---|---|---|---|"]
        for lv in st["levels"]:
            la, ls = lv["list_alerts"], lv["list_sensors"]
            lines.append(f"| {lv['idle_streams']:,} | {lv['connected_seen']:,} | {la['p50_ms']}/{la['p99_ms']} | "
                         f"{ls['p50_ms']}/{ls['p99_ms']} | {lv['collector_rss_mb']} | {lv['collector_threads']} |")
        lines.append("")
    lines += _console(results.get("console", {}))
    tp = results.get("throughput", {})
    pb = results.get("pipeline_bench", {})
    if "events_per_s" in tp:
        lines += ["| userspace stage (one core) | events/s |", "|---|---|"]
        lines += [f"| {k.replace('_', ' ')} | {v:,} |" for k, v in tp["events_per_s"].items()]
        names = {"journal_read_eps": "journal replay (read + build events)",
                 "read_enrich_owned_eps": "journal replay + enrich (the decode + enrich target)",
                 "enrich_only_eps": "enrich alone"}
        lines += [f"| {label} | {int(pb[k]):,} |" for k, label in names.items() if k in pb]
        lines.append(f"| rate-window score (per container per window) | {tp['rate_window_score_ms']} ms |")
        lines += [f"| rule loader refuses {k.replace('_', ' ')} bomb | {v} ms |"
                  for k, v in tp.get("rules_bomb_refusal_ms", {}).items()]
        lines.append("")
    ad = results.get("adfa", {})
    sc = results.get("scenarios", {})
    if "results" in ad:
        lines += ["| detection | ROC AUC | detection at 1% false alarms |", "|---|---|---|"]
        for k, v in ad["results"].items():
            lines.append(f"| ADFA-LD {k.replace('_', ' ')} | {v['auc']} | {v['detection_at_1pct_fa']:.1%} |")
    if "deviations" in sc:
        lines.append(f"| container scenarios: deviations found | {sc['found']}/{sc['injected']} | false findings on "
                     f"benign replay: {sc['false_findings_models']} (models), {sc['false_findings_rules']} (rules) |")
    return "\n".join(lines) + "\n"


def _attribution(at: dict[str, Any]) -> list[str]:
    """Per-program BPF cost and the Python pipeline's paired A/B, exec and connect side by side."""
    wls = [w for w in ("exec", "connect") if isinstance(at.get(w), dict)]
    if not wls:
        return []
    storms = at[wls[0]]["bpf"].get("storms", 1)
    lines = [f"| inside one running sensor (bench/attribution.py; BPF: median of {storms} storm(s)) | "
             + " | ".join(f"{w} storm" for w in wls) + " |",
             "|---|" + "---|" * len(wls)]
    names = sorted({p for w in wls for p in at[w]["bpf"]["programs"]},
                   key=lambda p: (-max(at[w]["bpf"]["programs"].get(p, {}).get("us_per_op", 0) for w in wls), p))
    for p in names:
        cells = []
        for w in wls:
            c = at[w]["bpf"]["programs"].get(p)
            cells.append(f"{c['us_per_op']:.2f} µs ({c['runs_per_op']} × {c['ns_per_run']} ns)" if c else "")
        lines.append(f"| BPF `{p.replace('tracepoint__', '').replace('__', ':', 1)}` | " + " | ".join(cells) + " |")
    lines.append("| **all BPF programs, per operation (share of its wall time)** | " + " | ".join(
        f"**{at[w]['bpf']['total_us_per_op']:.2f} µs ({at[w]['bpf']['share_pct']:.1f} %)**" for w in wls) + " |")
    pl = {w: at[w]["pipeline"] for w in wls}
    cpu = [f"{pl[w]['sensor_cpu_us_per_op_processing']} / {pl[w]['sensor_cpu_us_per_op_discarding']} µs" for w in wls]
    lines.append("| sensor CPU per operation: pipeline on / records discarded | " + " | ".join(cpu) + " |")
    lines.append(f"| **workload slowdown from the Python pipeline** ({pl[wls[0]]['pairs']} alternating pairs, "
                 "95 % interval; on connect the pipeline gets a handful of records, so it is an A/A test) | "
                 + " | ".join(
                     f"**{pl[w]['processing_slowdown_pct']:+.1f}%** "
                     f"[{_fmt_ci(pl[w]['processing_slowdown_ci95_pct'])}]" for w in wls) + " |")
    return lines + [""]


def _bcc_notes(ov: dict[str, Any]) -> list[str]:
    """What happened to each BCC tool tried, and how much of the workload the BCC row traced."""
    lines = [f"\nBCC tools: {tool} {what}." for tool, what in ov.get("bcc_peers", {}).items()]
    for cfg, row in ov["results"].items():
        for i, rep in enumerate(row.get("process", {}).get("per_rep", [])):
            traced = ", ".join(f"{rep[f'traced_{wl}']:,} of {ov['sizes'][wl]:,} {wl}s"
                               for wl in ("exec", "connect") if f"traced_{wl}" in rep)
            lines.append(f"{cfg}, repetition {i + 1}: traced {traced}; ran throughout: {rep['ran_throughout']}; "
                         f"lost samples: {rep['lost_samples']}.")
    for cfg, why in ov.get("dropped", {}).items():
        lines.append(f"\nDropped row {cfg}: {why}")
    return lines


def _fmt_ci(ci: Any) -> str:
    return f"{ci[0]:+.1f}, {ci[1]:+.1f}" if ci else "n/a"


def _with_room(run: dict[str, Any]) -> str:
    """Drops with the ring under half full; the split means nothing on rings under 1 MiB, where
    one drain can free more than half the ring (see count_drop in sensor/bpf/sensor.c)."""
    return str(run.get("kernel_drops_with_room", "-")) if run["ring_pages"] >= 256 else "n/a"


def splice(readme: str, tables: str) -> str:
    """The README with its results block replaced by ``tables`` (the block's markers stay);
    unchanged if the markers are missing."""
    start = readme.find(BEGIN)
    end = readme.find(END, start)
    if start < 0 or end < 0:
        print(f"[bench] {README} has no {BEGIN} ... {END} block: left as it is", file=sys.stderr)
        return readme
    head = readme[start:readme.index("\n", start) + 1]
    return readme[:start] + head + tables.rstrip() + "\n" + readme[end:]


def _ci_table(ov: dict[str, Any], title: str, workloads: list[str], label: str = "") -> list[str]:
    """Paired median slowdown and its interval per configuration, for the workloads measured."""
    cols = [w for w in workloads if w in ov["results"]["none"]]
    rows = []
    for cfg, row in ov["results"].items():
        if cfg == "none" or "overhead_ci95_pct" not in row[cols[0]]:
            continue
        cells = [f"{row[w]['overhead_paired_pct']:+.1f}% "
                 + (f"[{_fmt_ci(row[w]['overhead_ci95_pct'])}]" if row[w]["overhead_ci95_pct"]
                    else "(too few pairs for an interval)") for w in cols]
        rows.append(f"| {cfg} | " + " | ".join(cells) + " |")
    if not rows:  # results from before the intervals were computed
        return []
    return [f"| {title} | " + " | ".join(f"{w}{label}" for w in cols) + " |", "|---" * (len(cols) + 1) + "|",
            *rows, ""]


def plot(results: dict[str, dict[str, Any]]) -> None:
    ov = results.get("overhead", {})
    if "results" not in ov:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = ["exec", "connect", "getppid", "open", "host_getppid"]
    cfgs = [c for c in ov["results"] if c != "none"]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(1, len(cfgs))
    for i, cfg in enumerate(cfgs):
        row = ov["results"][cfg]
        if "overhead_paired_pct" in row[workloads[0]]:  # paired medians with their intervals
            vals = [row[w]["overhead_paired_pct"] for w in workloads]
            cis = [row[w]["overhead_ci95_pct"] or (v, v) for w, v in zip(workloads, vals, strict=True)]
        else:  # results from before the pairs were kept
            vals = [row[w]["overhead_pct"] for w in workloads]
            cis = [(v, v) for v in vals]
        err = [[v - lo for v, (lo, _) in zip(vals, cis, strict=True)],
               [hi - v for v, (_, hi) in zip(vals, cis, strict=True)]]
        ax.bar([x + i * width for x in range(len(workloads))], vals, width, label=cfg, yerr=err, capsize=2)
    ax.axhline(5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xticks([x + width * (len(cfgs) - 1) / 2 for x in range(len(workloads))], workloads)
    ax.set_ylabel("slowdown vs. no sensor (%)")
    ax.set_title("Overhead per workload (median of paired repetitions, 95 % interval; dashed: 5 % target)",
                 fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "overhead.png", dpi=110)


def stored(results_dir: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """The full-run results on disk by benchmark name (``name.json``; smoke runs are ``name.smoke.json``)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json")) if "." not in p.stem}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", nargs="*", choices=BENCHES)
    ap.add_argument("--summary", action="store_true",
                    help="run nothing: rebuild summary.md, the README block and the plot from the stored results")
    args = ap.parse_args(argv)
    names = [] if args.summary else list(args.only or BENCHES)
    RESULTS.mkdir(exist_ok=True)
    suffix = ".smoke" if args.smoke else ""
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"[bench] {name}{' (smoke)' if args.smoke else ''} ...", flush=True)
        result = run_one(name, args.smoke)
        if "skipped" in result and not args.smoke:  # keep the stored results of an earlier run
            print(f"[bench] {name} skipped: {result['skipped']}", flush=True)
            continue
        results[name] = result
        (RESULTS / f"{name}{suffix}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    if not args.smoke:
        results = {**stored(), **results}  # earlier full runs of benchmarks not rerun now
        (RESULTS / "summary.md").write_text(summary(results))
        README.write_text(splice(README.read_text(), summary(results)))
        plot(results)
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
