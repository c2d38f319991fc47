"""``cgsentry-sensor``: doctor, trace, replay — and the commands of the models, the rules and the daemon.

Expected failures print one line (``cgsentry-sensor: <what and the fix>``) and return a sysexits
code; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import signal
import sys
from pathlib import Path
from typing import IO, Any, Iterable

from models import cli as models_cli
from rules import cli as rules_cli
from sensor import bpf_loader
from sensor.agent import daemon
from sensor.agent.replay import add_options as add_replay_options
from sensor.errors import UsageParser, leaves, run_command, show_defaults
from sensor.events import (
    ARGS_FROM_PROC,
    ARGS_UNREAD,
    EXEC_SESSION,
    EXEC_TTY,
    NAME_MISMATCH,
    NETWORK_KINDS,
    STDIO_SOCKET,
    Event,
    rfc3339,
)
from sensor.runtimes import add_cri_socket_option
from sensor.text import visible

PROG = "cgsentry-sensor"
TRACE_KEYS = ("kind", "time", "pid", "ppid", "comm", "exe", "args", "uid", "cgroup_id",
              "container_id", "container_name", "image", "runtime", "pod", "namespace", "image_digest")
NET_KEYS = ("proto", "family", "saddr", "sport", "daddr", "dport")


def event_json(ev: Event) -> dict[str, Any]:
    """The trace JSON form (DESIGN.md §4) plus kind-specific extras."""
    out: dict[str, Any] = {k: getattr(ev, k) for k in TRACE_KEYS if k != "time"}
    out["time"] = rfc3339(ev.time_ns)
    out["args"] = list(ev.args)
    out["labels"] = dict(ev.labels)
    if ev.kind in NETWORK_KINDS:
        out.update({k: getattr(ev, k) for k in NET_KEYS})
        out["ret"] = ev.ret
    extras = {"exit": ("exit_code",), "fork": ("child_pid",), "open": ("path", "flags", "ret"),
              "sys": ("syscall", "ret"), "syscall": ("syscall", "syscall_nr")}
    for k in extras.get(ev.kind, ()):
        out[k] = getattr(ev, k)
    if ev.kind == "sys":
        out["sc_args"] = list(ev.sc_args)
    if ev.kind == "exec":
        out.update(pexe=ev.pexe, ancestry=list(ev.ancestry), killed=ev.killed, truncated=ev.truncated,
                   args_source=_args_source(ev))
        if ev.flags & STDIO_SOCKET:  # a shell or interpreter with a network socket as stdio
            out["stdio_socket"] = {k: getattr(ev, k) for k in NET_KEYS}
        if ev.flags & NAME_MISMATCH:  # runs under another name than its file's (applet, exec -a)
            out["name_mismatch"] = {"file": ev.path or ev.exe, "argv0": ev.args[0] if ev.args else ""}
    if ev.family == "unix":
        out["path"] = ev.path
    if ev.kind != "open" and ev.flags & EXEC_SESSION:  # docker/kubectl exec, an exec probe (sensor/sessions.py)
        out["exec_session"] = {"tty": bool(ev.flags & EXEC_TTY)}
    return out


def event_line(ev: Event) -> str:
    """One human line: time, container, image, pid, comm, then what happened."""
    ts = rfc3339(ev.time_ns)[:23] + "Z"  # RFC 3339 in UTC to the millisecond, as every human output
    # a pod's container reads namespace/pod/container, as kubectl names it
    name = ev.container_name or ev.container_id[:12] or "?"
    cname = (f"{ev.namespace}/{ev.pod}/{name}" if ev.pod else name)[-20:]
    image = (ev.image or "-")[:28]
    what = _what(ev)
    return visible(f"{ts} {cname:<20} {image:<28} {ev.pid:>7} {ev.comm[:15]:<15} {ev.kind:<7} {what}")


def _args_source(ev: Event) -> str:
    """Where an exec's argv came from: the kernel, /proc after the exec (the kernel could not read
    a page), or nowhere whole ("unread": some entries are empty)."""
    if ev.flags & ARGS_FROM_PROC:
        return "proc"
    return "unread" if ev.flags & ARGS_UNREAD else "kernel"


def _mismatch(ev: Event) -> str:
    """How an exec's name differs from its file: the file a multi-call binary's applet came from,
    or the argv[0] it was given."""
    first = ev.args[0] if ev.args else ""
    return f"[file {ev.path}]" if ev.path else f"[argv0 {first}]"


def _session(ev: Event) -> str:
    return "[exec session, tty]" if ev.flags & EXEC_TTY else "[exec session]"


def _what(ev: Event) -> str:
    if ev.kind == "exec":
        marks = [m for m, on in (("[truncated]", ev.truncated), ("[args unread]", _args_source(ev) == "unread"),
                                 (f"[stdio socket {ev.saddr}:{ev.sport}->{ev.daddr}:{ev.dport}]",
                                  bool(ev.flags & STDIO_SOCKET)), ("[KILLED]", ev.killed),
                                 (_mismatch(ev), bool(ev.flags & NAME_MISMATCH)),
                                 (_session(ev), bool(ev.flags & EXEC_SESSION))) if on]
        return " ".join([ev.exe, *ev.args[1:], *marks]) if len(ev.args) > 1 or marks else f"{ev.exe} "
    if ev.kind in ("connect", "accept"):
        peer = ev.path if ev.family == "unix" else f"{ev.daddr}:{ev.dport}"
        return f"{ev.proto or ev.family} -> {peer} ret={ev.ret}"
    if ev.kind == "listen":
        return f"{ev.proto} {ev.saddr}:{ev.sport}"
    if ev.kind == "exit":
        return f"code={ev.exit_code}"
    if ev.kind == "fork":
        return f"child={ev.child_pid}"
    if ev.kind == "open":
        return f"{ev.path} flags={ev.flags:#o} ret={ev.ret}"
    return f"{ev.syscall} ret={ev.ret}" if ev.kind == "sys" else ev.syscall


def _emit(events: Iterable[Event], as_json: bool, out: IO[str]) -> int:
    n = 0
    if not as_json:
        print(f"{'TIME':<12} {'CONTAINER':<20} {'IMAGE':<28} {'PID':>7} {'COMM':<15} {'KIND':<7} "
              "DETAIL", file=out)
    for ev in events:
        print(json.dumps(event_json(ev)) if as_json else event_line(ev), file=out, flush=True)
        n += 1
    return n


def cmd_doctor(args: argparse.Namespace) -> int:
    from sensor.doctor import can_run, exit_code, run_checks

    checks = run_checks(args.cri_socket or None)
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        for c in checks:
            mark = "OK  " if c.ok else ("FAIL" if c.required else "WARN")
            print(f"[{mark}] {c.name:<15} {c.detail}" + ("" if c.ok else f"\n       fix: {c.fix}"))
    ok = can_run(checks)
    if not args.json:
        print("sensor can run" if ok else "sensor cannot run: fix the FAIL lines above")
    return exit_code(checks)


def cmd_trace(args: argparse.Namespace) -> int:
    options = bpf_loader.ProbeOptions(ring_pages=args.ring_pages, syscall_profile=args.syscalls,
                                      wake_batch=args.wake_batch, poll_ms=args.poll_ms,
                                      fork_records=args.forks, profile=args.profile,
                                      sensitive=args.profile == "full")
    if args.dump_bpf:
        print("// cflags: " + " ".join(bpf_loader.cflags(options)))
        print(bpf_loader.source_text())
        return 0
    from sensor.tracer import Tracer

    tracer = Tracer(options, container=args.container, docker=not args.no_docker,
                    record=args.record, cri_sockets=args.cri_socket or None)
    signal.signal(signal.SIGTERM, _exit_on_signal)  # unwind: the journal is flushed, BPF detached
    try:
        _emit(tracer.events(args.duration), args.json, sys.stdout)
    finally:
        stats = tracer.close()
    if not args.json:
        print(f"# {stats}", file=sys.stderr)
    return 0


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != 0 and not 1e-3 <= value <= 1e6:
        raise argparse.ArgumentTypeError(f"{value:g}: use 0 (as fast as possible) or 0.001 to 1000000")
    return value


def cmd_replay(args: argparse.Namespace) -> int:
    """The journal's findings (``--events``: its events), as the detectors find them."""
    from sensor.agent.replay import Replay
    from sensor.journal import ReplaySource

    events = ReplaySource(args.file, speed=args.speed).events()
    first = next(events, None)  # a missing or corrupt journal fails here, before any output
    chained = itertools.chain([first] if first else [], events)
    if args.events:
        _emit(chained, args.json, sys.stdout)
        return 0
    replay = Replay(args.rules, args.policy, args.models)
    n = 0
    for f in replay.run(chained):
        n += 1
        print(json.dumps(finding_json(f)) if args.json else finding_line(f), flush=True)
    if not args.json:
        print(f"# {replay.events} events, {n} findings")
    return 0


def finding_json(f: Any) -> dict[str, Any]:
    """A replayed finding: what it is, why, and what the sensor would have done."""
    ev = f.event
    return {"time": rfc3339(f.time_ns or ev.time_ns), "rule": f.rule, "priority": f.priority, "kind": f.kind,
            "source": f.source, "output": f.output, "action": f.action, "mode": f.mode, "tags": list(f.tags),
            "container_id": ev.container_id, "container_name": ev.container_name, "image": ev.image,
            "pid": ev.pid, "exe": ev.exe, "explanation": dict(f.explanation)}


def finding_line(f: Any) -> str:
    ev = f.event
    ts = rfc3339(f.time_ns or ev.time_ns)[:23] + "Z"
    name = (ev.container_name or ev.container_id[:12] or "host")[-20:]
    return visible(f"{ts} {f.priority:<9} {name:<20} {f.action:<15} {f.rule}: {f.output}")


def build_parser() -> argparse.ArgumentParser:
    from sensor import __version__

    p = UsageParser(prog=PROG, description="cgsentry eBPF container sensor")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser("doctor", help="check that the sensor can run here, with fixes")
    d.add_argument("--json", action="store_true")
    add_cri_socket_option(d)
    d.set_defaults(func=cmd_doctor)
    t = sub.add_parser("trace", help="print live events, one per line")
    t.add_argument("--json", action="store_true", help="one JSON object per line")
    t.add_argument("--container", metavar="ID|NAME", help="only this container (syscalls profiled)")
    t.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    t.add_argument("--record", type=Path, metavar="FILE", help="also write a msgpack journal")
    t.add_argument("--dump-bpf", action="store_true", help="print the BPF source and cflags, exit")
    t.add_argument("--syscalls", action=argparse.BooleanOptionalAction, default=True,
                   help="compile the syscall profiler (default on)")
    t.add_argument("--ring-pages", type=int, default=256, metavar="N", help="ring buffer pages")
    t.add_argument("--wake-batch", type=int, default=64, metavar="N",
                   help="records per CPU between reader wakeups (1: every record)")
    t.add_argument("--poll-ms", type=int, default=10, metavar="MS", help="ring drain interval")
    t.add_argument("--forks", action="store_true",
                   help="also show forks and the exits of processes that never exec'd (else kernel-counted)")
    t.add_argument("--no-docker", action="store_true", help="cgroup-only attribution (unless --cri-socket)")
    add_cri_socket_option(t)
    t.add_argument("--profile", choices=("full", "lean"), default="full",
                   help="lean: no syscall tracepoint (exec/fork/exit from sched, network from socket hooks)")
    t.set_defaults(func=cmd_trace)
    r = sub.add_parser("replay", help="replay a recorded journal through the detectors (baselines, rules, "
                                      "policy) and print the findings")
    r.add_argument("file", type=Path)
    r.add_argument("--json", action="store_true")
    r.add_argument("--speed", type=_speed, default=0.0, help="1.0 = real time; 0 = max (default)")
    add_replay_options(r)
    r.set_defaults(func=cmd_replay)
    for register in (models_cli.register, rules_cli.register, daemon.register):  # model, rules, run
        register(sub)
    for parser, _ in leaves(p, (), every=True):
        show_defaults(parser)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_command(PROG, args.func, args)


if __name__ == "__main__":
    sys.exit(main())

