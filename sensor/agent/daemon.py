"""``cgsentry-sensor run``: trace -> models + rules + policy -> local response -> collector.

The read loop never waits on the collector: findings go to the spool and the link thread sends
them. Learning, detection and enforcement go on while the collector is away. Policies pushed by
the collector (image mode, action, banned processes) apply at once, including the in-kernel
kill-at-exec map.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import msgpack

from models import store as model_store
from models.baseline import ModelConfig
from models.engine import ModelEngine
from rules.engine import RuleEngine, default_rule_files
from rules.errors import RuleError
from rules.policy import ImagePolicy, PolicyChecker, PolicySet
from rules.pushed import PushedRules
from sensor.agent.link import CollectorLink, LinkCallbacks, LinkConfig
from sensor.bpf_loader import DETECTIONS, PROFILES, ProbeOptions, check_privileges
from sensor.errors import EX_CANTCREAT, SensorError
from sensor.events import Event, Finding
from sensor.pipeline import Sink
from sensor.response import ActionGate, Responder
from sensor.runtimes import add_cri_socket_option
from sensor.spool import Spool
from sensor.tracer import Tracer

log = logging.getLogger(__name__)
CONTAINER_ACTIONS = ("pause-container", "kill-container")
BPF_STATS_KNOB = Path("/proc/sys/kernel/bpf_stats_enabled")


class Daemon:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        check_privileges()  # first: a non-root user gets one line, not a Docker warning before it
        state = Path(args.state_dir)
        try:
            (state / "spool").mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SensorError(f"state directory {state}: {err.strerror} (give --state-dir a writable directory)",
                              exit_code=EX_CANTCREAT) from None
        self.models = ModelEngine.open(state / "models", ModelConfig(
            window_s=args.window_s, min_learn_s=args.learn_s, stable_s=args.stable_s), node=args.node)
        # the operator's files (or the library), then the sets the collector pushed, kept in state
        self.pushed = PushedRules(state / "rules.d", list(args.rules) if args.rules else default_rule_files())
        self.rules = RuleEngine(self.pushed.load())
        self.rule_pushes: deque[tuple[str, str]] = deque()  # from the link's thread, applied in run()
        self.rule_pushes_applied = self.rule_pushes_rejected = 0
        self.policies = PolicySet.load(Path(args.policy)) if args.policy else PolicySet()
        self.checker = PolicyChecker(self.policies)
        # every event goes to each sink in turn; the policy's findings come last
        self.sinks: tuple[Sink, ...] = (self.models, self.rules, self.checker)
        self.profile = args.profile
        options = ProbeOptions(ring_pages=args.ring_pages, wake_batch=args.wake_batch, poll_ms=args.poll_ms,
                               profile=self.profile, sensitive=self.profile != "lean",
                               auto_full=choose_profile("auto", self.rules.rules()) == "full")
        self.tracer = Tracer(options, docker=not args.no_docker, record=args.record,
                             cri_sockets=args.cri_socket or None,
                             prefixes=self.rules.open_prefixes(),
                             mode=self.effective_mode)  # learn: profiled; enforce: urgent
        self.models.kernel_counts = True
        self.models.early_rates = True  # a burst is reported while its window runs (issue 21 item 4)
        self.responder = Responder.create(use_docker=not args.no_docker, cri_for=self.tracer.cri_for)
        # one pause/kill per container while the last one holds (still frozen, gone)
        self.gate = ActionGate(holds=self._action_holds)
        self.banned: dict[int, set[str]] = {}
        self.pending: list[Finding] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.last_drops = 0
        self.last_save = self.last_refresh = time.monotonic()
        self.rate = (time.monotonic(), 0)
        self.events_per_s = 0
        self.bpf_ns_per_s: int | None = None  # the programs' run time per second, while the kernel counts it
        self._bpf_last: tuple[int, float] | None = None
        self.link = self._link(state) if args.collector else None

    def _link(self, state: Path) -> CollectorLink:
        a = self.args
        cfg = LinkConfig(a.collector, sensor_id=a.sensor_id, node=a.node, token=a.token,
                         ca=Path(a.ca) if a.ca else None, cert=Path(a.cert) if a.cert else None,
                         key=Path(a.key) if a.key else None, heartbeat_s=2.0, snapshot_s=a.snapshot_s)
        cb = LinkCallbacks(counters=self.counters, containers=self.tracer.containers,
                           container_images=self.tracer.container_images, snapshots=self.snapshots,
                           on_policy=self.on_policy, on_baseline=self.on_baseline,
                           on_rules=self.on_rules, cgroup_path=self.tracer.cgroup_path, on_accept=self.on_accept,
                           resolve=self.tracer.resolve)
        return CollectorLink(cfg, Spool(state / "spool", a.spool_mb << 20), self.responder, cb).start()

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> int:
        print(f"cgsentry sensor running: {len(self.rules.rules())} rules, {len(self.models.images)} "
              f"baselines, collector {self.args.collector or '(none)'}", flush=True)
        print(profile_banner(self.profile, self.rules.rules(), self.tracer.probe.full), flush=True)
        last_tick = time.monotonic()
        while not self.stop.is_set():
            idle = True
            for ev in self.tracer.poll():  # watched and recorded by the tracer, one by one
                idle = False
                self.handle(ev)
            now = time.monotonic()
            if now - last_tick >= 1.0:
                self.tick()
                last_tick = now
            self.flush()
            if self.rule_pushes:
                self.apply_rule_pushes()
            if idle:
                time.sleep(0.01)
        return self.shutdown()

    def handle(self, ev: Event) -> None:
        if ev.runtime not in ("host", "unknown", "") and ev.cgroup_id not in self.banned:
            self.apply_bans(ev)
        found: list[Finding] = []
        for sink in self.sinks:  # all are asked before any response (a loop: a comprehension costs 0.1 us)
            found += sink.handle(ev)
        if found:  # a learnable rule's finding: learned while its image learns, quiet once expected
            for f in self.models.to_act_on(found, self.effective_mode):
                self.respond(f)

    def effective_mode(self, ev: Event) -> str:
        """The operator's policy mode if set, else the image's learning lifecycle."""
        return self._mode(self.policies.for_event(ev), ev)

    def _mode(self, pol: ImagePolicy, ev: Event) -> str:
        return pol.mode or self.models.mode(ev.image_key)

    def respond(self, f: Finding) -> None:
        ev = f.event
        pol = self.policies.for_event(ev)  # once per finding
        mode = self._mode(pol, ev)
        action, _why = pol.respond(f, mode)
        if mode == "alert":
            would = pol.would_enforce(f)
            if would not in ("alert", "none"):
                self.models.record_would_enforce(ev.image_key, f"{f.kind}:{would}")
        if action == "none":
            return
        ancestors, end = self.tracer.enricher.procs.ancestors(ev.pid, parent_exe=ev.pexe) if ev.pid else ((), "")
        f = f.replace(action=action, mode=mode, ancestors=ancestors, ancestors_end=end)
        if action in CONTAINER_ACTIONS or action == "kill-process":
            self.execute(f, action)
        with self.lock:
            self.pending.append(f)
        if self.args.print_findings:
            print(json.dumps({"priority": f.priority, "rule": f.rule, "action": action, "mode": mode,
                              "output": f.output}),
                  flush=True)

    def execute(self, f: Finding, action: str) -> None:
        ev = f.event
        if action == "kill-process" and ev.killed:
            return  # the kernel killed it at exec (the finding's output says so)
        if not self.gate.admit(ev.container_id, action, ev.pid):
            return
        result = self.responder.act(action, ev.container_id, self.tracer.cgroup_path(ev.container_id), ev.pid)
        log.warning("%s %s (%s): %s", action, ev.container_name, f.rule, "ok" if result.ok else result.error)
        if self.link is not None:
            self.link.report_action(result, f"policy:{ev.image}", f"{f.rule}: {f.output}"[:500])

    def _action_holds(self, container_id: str, action: str, pid: int) -> bool:
        return self.responder.holds(action, container_id, self.tracer.cgroup_path(container_id), pid)

    def apply_bans(self, ev: Event) -> None:
        """Enforce-mode banned processes go into the kernel map for this container's cgroup."""
        pol = self.policies.for_event(ev)
        wanted = set(pol.banned_comms()) if self._mode(pol, ev) == "enforce" else set()
        current = self.banned.get(ev.cgroup_id, set())
        for comm in wanted - current:
            self.tracer.ban_exec(ev.cgroup_id, comm)
        for comm in current - wanted:
            self.tracer.unban_exec(ev.cgroup_id, comm)
        self.banned[ev.cgroup_id] = wanted

    def tick(self) -> None:
        now_ns = time.time_ns()
        for f in self.models.tick(now_ns):
            self.respond(f)
        self.models.observe_syscall_counts(self.tracer.syscall_counts())
        self.models.observe_kernel_counts(self.tracer.kernel_counts())
        stats = self.tracer.counters()
        drops = stats["kernel_drops"] + stats["queue_drops"]
        self.models.on_loss(drops - self.last_drops, now_ns)
        self.last_drops = drops
        t0, n0 = self.rate
        self.events_per_s = int((stats["delivered"] - n0) / max(1e-3, time.monotonic() - t0))
        self.rate = (time.monotonic(), stats["delivered"])
        self.bpf_ns_per_s = self._bpf_cost()
        now = time.monotonic()
        if now - self.last_save >= 30.0:
            self.last_save = now
            self.models.save_all()
        if now - self.last_refresh >= 5.0:
            self.last_refresh = now
            self.tracer.refresh_modes()  # images promoted out of learning stop being profiled

    def _bpf_cost(self) -> int | None:
        """Nanoseconds per second the sensor's BPF programs ran since the last tick (1e7 = 1 % of a
        CPU), only while the operator has the kernel count it (sysctl kernel.bpf_stats_enabled=1,
        which itself costs ~20 ns a run); None otherwise."""
        try:
            counting = BPF_STATS_KNOB.read_text().strip() == "1"
        except OSError:
            counting = False
        if not counting:
            self._bpf_last = None
            return None
        now, total = time.monotonic(), sum(ns for ns, _runs in self.tracer.program_stats().values())
        last, self._bpf_last = self._bpf_last, (total, now)
        if last is None or now <= last[1] or total < last[0]:  # a program's fdinfo unreadable this time
            return None
        return int((total - last[0]) / (now - last[1]))

    def apply_rule_pushes(self) -> None:
        """Install pushed rule sets between batches: a bad one is refused and the rules stay."""
        while self.rule_pushes:
            name, text = self.rule_pushes.popleft()
            try:
                self.rules.install(self.pushed.apply(name, text))  # loaded once, in load order
            except RuleError as err:
                self.rule_pushes_rejected += 1
                log.error("refused pushed rule set %s, keeping the current rules: %s", name, err)
                continue
            self.rule_pushes_applied += 1
            self.tracer.set_open_prefixes(self.rules.open_prefixes())
            if self.tracer.probe.set_full(choose_profile("auto", self.rules.rules()) == "full"):
                log.warning("%s", profile_banner(self.profile, self.rules.rules(), self.tracer.probe.full))
            log.info("rule set %s %s: %d rules loaded", name, "installed" if text.strip() else "removed",
                     len(self.rules.ruleset.rules))

    def flush(self) -> None:
        with self.lock:
            batch, self.pending = self.pending, []
        if batch and self.link is not None:
            self.link.submit(batch)

    def shutdown(self) -> int:
        self.flush()
        self.models.save_all()
        stats = self.tracer.close()
        if self.link is not None:
            self.link.close()
        log.info("sensor stopped: %s", stats)
        return 0

    # -- link callbacks -------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        s = self.tracer.counters()
        out = {"events_per_s": self.events_per_s, "kernel_drops": s["kernel_drops"],
               "kernel_drops_with_room": s["kernel_drops_with_room"], "queue_drops": s["queue_drops"],
               "queue_depth": s["queue_depth"], "events": s["delivered"]}
        if self.link is not None:
            out.update(spool_bytes=self.link.spool.bytes(), spool_unacked=self.link.spool.unacked(),
                       spool_quarantined_batches=self.link.spool.quarantined)
        if self.bpf_ns_per_s is not None:
            out["bpf_run_ns_per_s"] = self.bpf_ns_per_s
        out.update(self.models.stats())
        out.update(rules_loaded=len(self.rules.ruleset.rules), rule_pushes_applied=self.rule_pushes_applied,
                   rule_pushes_rejected=self.rule_pushes_rejected)
        return out

    def snapshots(self) -> list[tuple[str, bytes] | tuple[str, bytes, str]]:
        return [(k, msgpack.packb(model_store.to_dict(b), use_bin_type=True), json.dumps(b.inactive_parts()))
                for k, b in self.models.images.items()]

    def on_policy(self, image: str, payload: bytes) -> None:
        try:
            data = json.loads(payload)
            pol = PolicySet.from_dict({"images": [{"match": image, **data}]}, f"policy for {image}").images[0]
        except (ValueError, RuleError) as err:
            log.error("ignoring pushed policy for %s: %s", image, err)
            return
        self.policies.upsert(pol)
        for b in self.models.images.values():
            if pol.mode and image in (b.image, b.key) and b.mode != pol.mode:
                b.set_mode(pol.mode, "collector", time.time_ns())
        self.banned.clear()  # re-evaluate kernel bans on the next event of each cgroup
        self.tracer.refresh_modes()  # and syscall profiling (learning images only)
        log.info("policy for %s: mode %s, default action %s", image, pol.mode, pol.default_action)

    def on_baseline(self, image_key: str, payload: bytes) -> None:
        try:
            self.models.merge_snapshot(msgpack.unpackb(payload, raw=False, strict_map_key=False))
        except Exception as err:  # noqa: BLE001 - a bad fleet baseline must not stop the sensor
            log.error("ignoring fleet baseline for %s: %s", image_key, err)

    def on_accept(self, item: Any) -> None:
        """An analyst suppressed an alert: its item joins the baseline (audited in the model); or
        unsuppressed it: the item leaves the baseline again."""
        try:
            key = tuple(json.loads(item.key_json))
            b = self.models.get(item.image_key or item.image)
            decide = b.reject if getattr(item, "forget", False) else b.accept  # forget: an alert unsuppressed
            decide(item.dimension, key, f"collector:{item.actor}", time.time_ns(), item.reason)
        except Exception as err:  # noqa: BLE001 - a bad push must not stop the sensor
            log.error("cannot accept baseline item for %s: %s", item.image, err)

    def on_rules(self, name: str, text: str) -> None:
        self.rule_pushes.append((name, text))


NEEDS_SYSCALL_TRACEPOINTS = frozenset({"open", "sys"})  # event kinds only the full profile reports


def choose_profile(asked: str, rules: Any) -> str:
    """The state a profile runs in for these rules: ``auto`` is lean unless a loaded rule can fire
    only on events lean does not report (the daemon asks again after every rule push)."""
    if asked != "auto":
        return str(asked)
    return "full" if unavailable_rules("lean", rules) else "lean"


def unavailable_rules(profile: str, rules: Any) -> list[str]:
    """Names of the rules that can never fire under ``profile`` (every kind they match is one it
    does not report); rules of any kind, or of some kind it reports, stay available."""
    if profile != "lean":
        return []
    return [r.name for r in rules if r.kinds and r.kinds <= NEEDS_SYSCALL_TRACEPOINTS]


def profile_banner(profile: str, rules: Any, full: bool = False) -> str:
    """What this sensor sees and what it does not, in a few lines, for start-up and the log.
    ``full``: where ``auto`` stands now (full while a rule needs syscall tracepoints)."""
    lines = []
    state = profile
    if profile == "auto":
        needing = unavailable_rules("lean", rules)  # what keeps auto full
        lines.append(f"profile auto, now {'full' if full else 'lean'}: "
                     + (f"{len(needing)} loaded rules need syscall tracepoints (every syscall on the host pays "
                        f"for them while one is loaded): {', '.join(sorted(needing))}" if needing else
                        "no loaded rule needs syscall tracepoints"))
        state = "full" if full else "lean"
    what = DETECTIONS[state]
    lines.append(f"profile {state}: sees " + "; ".join(k for k, v in what.items() if v))
    lacks = [k for k, v in what.items() if not v]
    if lacks:
        lines.append("  not available: " + "; ".join(lacks))
    gone = unavailable_rules(profile, rules)  # none under auto: it turns full for them instead
    if gone:
        lines.append(f"  rules that cannot fire in this profile ({len(gone)}): " + ", ".join(sorted(gone)))
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    daemon = Daemon(args)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: daemon.stop.set())
    if args.duration:
        timer = threading.Timer(args.duration, daemon.stop.set)
        timer.daemon = True  # a stop by signal must not wait out the duration
        timer.start()
    return daemon.run()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _collectors(text: str) -> str:
    """``HOST:PORT`` or a comma-separated list of them (a fleet's collectors), checked."""
    for addr in text.split(","):
        host, _, port = addr.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise argparse.ArgumentTypeError(f"{addr.strip()!r} is not HOST:PORT (a port of 1 to 65535); give "
                                             "HOST:PORT or HOST:PORT,HOST:PORT,...")
    return ",".join(a.strip() for a in text.split(","))


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="the sensor daemon: detect, respond, report to the collector")
    p.add_argument("--collector", metavar="HOST:PORT[,HOST:PORT...]", type=_collectors,
                   help="collector address, or several collectors of one fleet: the sensor moves to the next "
                        "when its collector goes away (a DNS name with several records works too); omit: local only")
    p.add_argument("--sensor-id", default=socket.gethostname())
    p.add_argument("--node", default=socket.gethostname())
    p.add_argument("--token", default=os.environ.get("CGSENTRY_SENSOR_TOKEN", ""))
    p.add_argument("--ca", help="collector CA certificate (TLS)")
    p.add_argument("--cert", help="sensor certificate (mTLS)")
    p.add_argument("--key", help="sensor key (mTLS)")
    p.add_argument("--state-dir", default="/var/lib/cgsentry", help="models and spool")
    p.add_argument("--rules", type=Path, action="append", help="rule file (default: built-in library)")
    p.add_argument("--policy", help="per-image policy YAML")
    p.add_argument("--learn-s", type=float, default=300.0, help="minimum learning time (wall) before promotion")
    p.add_argument("--stable-s", type=float, default=120.0, help="wall time with nothing new before auto-promotion")
    p.add_argument("--window-s", type=float, default=10.0, help="rate model window")
    p.add_argument("--snapshot-s", type=float, default=30.0, help="baseline snapshot interval")
    p.add_argument("--spool-mb", type=_positive_int, default=64, help="bound of the on-disk finding spool")
    p.add_argument("--ring-pages", type=int, default=256)
    p.add_argument("--wake-batch", type=int, default=64, metavar="N",
                   help="records per CPU between reader wakeups (1: every record, lowest latency)")
    p.add_argument("--poll-ms", type=int, default=10, metavar="MS", help="ring drain interval")
    p.add_argument("--record", type=Path, help="also write a msgpack journal")
    p.add_argument("--no-docker", action="store_true")
    p.add_argument("--profile", choices=PROFILES, default="auto",
                   help="lean: no syscall tracepoint (socket hooks, sched tracepoints); full: every hook; "
                        "auto (default): lean, and full while a loaded rule needs file opens or sensitive "
                        "syscalls (switched at run time when pushed rules change that)")
    add_cri_socket_option(p)
    p.add_argument("--duration", type=float, help="stop after S seconds")
    p.add_argument("--print-findings", action="store_true", help="also print findings as JSON lines")
    p.set_defaults(func=cmd_run)
