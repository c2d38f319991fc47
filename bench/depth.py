"""Detection depth (issue 21): what each capability finds, and how fast, on real containers.

The real sensor daemon runs in a thread of this process (as bench/latency.py runs it), one daemon
per capability with that capability's settings, and notes the wall time each finding went out;
busybox containers (``--network none``: every connect stays on the container's loopback) are
attacked ``reps`` times, a fresh container per repetition:

- drift (learn mode, no learning needed): a binary dropped in a web root, copied over /bin/ls,
  run from a memfd, run from a file deleted before its exec (a small static helper on a read-only
  bind mount does the last two, by descriptor, as fileless malware does);
- multi-call: ``busybox nc ... -e /bin/sh``, an applet through a new symlink, the shell running
  the applet by name, ``exec -a nc /proc/self/exe``, ``exec -a nc`` of a busybox link from a
  subshell and as docker exec's own process (all reverse shells: found means Reverse Shell in
  Container at CRITICAL);
- failed connects (alert mode after learning): refused, timed out (a listener whose accept queue
  is full, in the container's network namespace), UDP (busybox nc has no -u here: nslookup to a new
  resolver, a connected UDP socket), v6 loopback; and a sweep of 21 ports, which must be one
  Outbound Scan finding, not 21;
- early rate findings (alert after learning a noisy loop): a burst of 300 execs, time from its
  start to the finding against the window length;
- state-based enforcement (enforce / pause-container): an offence is paused, ``docker unpause``
  from outside, the same offence at once is paused again; one pause per offence.

Time to finding is from the kernel time of the offending event (the exec or connect; for a scan
and a burst, the exec of the shell that starts it) to the moment the daemon hands the finding on.
Must-not-fire: a benign container (writes files, runs its own binaries, reconnects to its peers:
its own httpd and a peer that refuses) runs beside every capability's daemon; its findings are
false alarms (beside a learn-mode daemon, those of the capability's own rules: learnable rules
report while an image learns, by design). Two offline measures complete it: the rate model's false alarms with early
(running-window) scoring against window-close scoring, both on the same model learned from the
journal of the noisy loop; and the drift check's cost per exec, an A/B of the sensor with the check
on and off (``CGSENTRY_DRIFT_CHECK=0``) on the exec storm, plus the check alone timed in-process.

    flock /tmp/cgsentry-kernel.lock python -m bench.depth [--smoke] [--reps 5]
    python -m bench.depth --table     # the README table from bench/results/depth.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
IMAGE = "cgsentry/busybox:latest"
PREFIX = "cgsentry-depth"
MARK = "depthmark"  # a token in a shell's argv: the kernel time of that exec starts the clock
DRIFT_RULES = ("Drift Executable Not Part of Image", "Drift Executable Run From Temporary Directory",
               "Fileless Execution via Memfd")
REVERSE = "Reverse Shell in Container"

# Writes files, runs the image's own programs, serves itself and reconnects to its peers (its own
# httpd, and a peer that refuses: a client retrying a service that is down).
BENIGN = ("mkdir -p /srv/www; echo '<p>0</p>' > /srv/www/index.html; httpd -p 127.0.0.1:8080 -h /srv/www; i=0;"
          " while true; do i=$((i + 1)); echo \"<p>$i</p>\" > /srv/www/index.html;"
          " cp /srv/www/index.html /tmp/page.$((i % 4)); ls /srv/www /tmp >/dev/null; cat /tmp/page.* >/dev/null;"
          " wget -q -O /dev/null http://127.0.0.1:8080/index.html; nc 127.0.0.1 9 </dev/null 2>/dev/null;"
          " busybox echo calm >/dev/null; sleep 0.5; done")
# A loop whose exec rate varies from one iteration to the next (0-4 execs, 0-0.9 s apart).
NOISY = ("i=0; while true; do i=$((i + 1)); n=$(( (i * 7) % 5 )); j=0;"
         " while [ $j -lt $n ]; do /bin/true; j=$((j + 1)); done; echo $i > /tmp/r; sleep 0.$(( (i * 3) % 10 )); done")
BURST = "for i in $(seq 300); do /bin/true; done"

DRIFT: list[tuple[str, str, str | None]] = [  # (label, what runs in the container, the exe a finding names)
    ("binary dropped in web root", "mkdir -p /srv/www && cp /bin/busybox /srv/www/sleep && /srv/www/sleep 1",
     "/srv/www/sleep"),
    ("binary copied over /bin/ls", "rm /bin/ls && cp /bin/busybox /bin/ls && /bin/ls / >/dev/null", "/bin/ls"),
    ("memfd exec (runs 1 s)", "/depth/fileless memfd /bin/busybox sleep 1", None),
    ("memfd exec (exits at once)", "/depth/fileless memfd /bin/busybox true", None),
    ("deleted file exec (runs 1 s)", "mkdir -p /srv && /depth/fileless deleted /bin/busybox sleep 1", None),
]
MULTICALL: list[tuple[str, str]] = [
    ("busybox nc -e /bin/sh", "busybox nc 127.0.0.1 {port} -e /bin/sh"),
    ("applet via a new symlink", "ln -sf /bin/busybox /tmp/nc && /tmp/nc 127.0.0.1 {port} -e /bin/sh"),
    ("applet by name in the shell", "nc 127.0.0.1 {port} -e /bin/sh"),
    ("exec -a nc /proc/self/exe", "exec -a nc /proc/self/exe 127.0.0.1 {port} -e /bin/sh"),
    ("exec -a nc /bin/ls, in a subshell", "(exec -a nc /bin/ls 127.0.0.1 {port} -e /bin/sh)"),
    # the process replaces docker exec's shell: its parent is the runtime's shim, outside the container
    ("exec -a nc /bin/cat, as docker exec's process", "exec -a nc /bin/cat 127.0.0.1 {port} -e /bin/sh"),
]
MULTICALL_QUIET = "busybox sh -c 'echo quiet'; busybox echo calm; (exec -a true /bin/ls); true"
CONNECTS: list[tuple[str, str]] = [  # {port}: a port new to the baseline; "timed out" gets the full queue's
    ("refused (TCP v4)", "nc 127.0.0.1 {port} </dev/null"),
    ("timed out (TCP v4, 2 s)", "nc -w 2 127.0.0.1 {port} </dev/null"),
    ("UDP (nslookup to a new resolver)", "timeout 2 nslookup x.example 127.0.0.1:{port}"),
    ("refused (TCP v6 loopback)", "nc ::1 {port} </dev/null"),
]
# A host process in the container's network namespace: a listener with a full accept queue (backlog
# 0 and one connection that is never accepted), so the next SYN is dropped and its connect times out.
FULL_QUEUE = ("import socket, sys, time\ns = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(0)\n"
              "c = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=2)\nprint('ready', flush=True)\n"
              "time.sleep(120)\n")
FILELESS_C = r"""
/* fileless memfd|deleted SRC ARGV0 [ARGS...]: run a copy of SRC by descriptor, from an anonymous
 * memory file or from a file in the container's own filesystem unlinked before the exec. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    int src = open(argv[2], O_RDONLY);
    struct stat st;
    if (src < 0 || fstat(src, &st)) { perror(argv[2]); return 1; }
    int memfd = !strcmp(argv[1], "memfd");
    const char *path = "/srv/.depth-payload";
    int w = memfd ? memfd_create("depth", 0) : open(path, O_RDWR | O_CREAT | O_TRUNC, 0755);
    if (w < 0) { perror("create"); return 1; }
    for (off_t off = 0; off < st.st_size;)
        if (sendfile(w, src, &off, st.st_size - off) <= 0) { perror("copy"); return 1; }
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", w);
    int r = memfd ? open(self, O_RDONLY) : (close(w), open(path, O_RDONLY));
    if (r < 0) { perror("reopen"); return 1; }
    if (memfd) close(w); else unlink(path);
    fexecve(r, argv + 3, environ);
    perror("fexecve");
    return 1;
}
"""


def pct(xs: list[float]) -> dict[str, Any]:
    """n, p50 and p95 in ms (None when nothing was measured)."""
    if not xs:
        return {"n": 0, "p50_ms": None, "p95_ms": None}
    return {"n": len(xs), "p50_ms": round(float(np.percentile(xs, 50)), 1),
            "p95_ms": round(float(np.percentile(xs, 95)), 1)}


def log(msg: str) -> None:
    print(f"[depth] {msg}", file=sys.stderr, flush=True)


# -- the daemon ---------------------------------------------------------------------------------
def observed_daemon(args: argparse.Namespace) -> Any:
    """The real sensor daemon, noting when each finding went out (with the action policy gave it),
    the kernel time of each marked exec, the drift and naming flags of container execs, and each
    container action taken (offending event's time, time done, action, ok)."""
    from sensor.agent.daemon import Daemon
    from sensor.events import EXE_DELETED, EXE_FROM_MEMFD, EXE_UPPER_LAYER, Event, Finding

    flags = EXE_UPPER_LAYER | EXE_FROM_MEMFD | EXE_DELETED

    class Observed(Daemon):
        def __init__(self, a: argparse.Namespace) -> None:
            super().__init__(a)
            self.found: list[tuple[int, Finding]] = []
            self.marks: dict[str, int] = {}
            self.flagged: list[Event] = []
            self.acts: list[tuple[str, int, int, str, bool]] = []
            self._acting: Finding | None = None
            act = self.responder.act

            def timed(action: str, container_id: str, cgroup_path: str = "", pid: int = 0) -> Any:
                res = act(action, container_id, cgroup_path, pid)
                t_ev = self._acting.event.time_ns if self._acting else 0
                self.acts.append((container_id, t_ev, time.time_ns(), action, bool(res.ok)))
                return res

            self.responder.act = timed  # type: ignore[method-assign]

        def handle(self, ev: Event) -> None:
            if ev.kind == "exec" and ev.container_id:
                for m in re.findall(MARK + r"[\w-]+", " ".join(ev.args)):
                    self.marks.setdefault(m, ev.time_ns)
                if ev.flags & flags:
                    self.flagged.append(ev)
            super().handle(ev)

        def respond(self, f: Finding) -> None:
            n = len(self.pending)
            super().respond(f)
            if len(self.pending) > n:
                self.found.append((time.time_ns(), self.pending[-1]))

        def execute(self, f: Finding, action: str) -> None:
            self._acting = f
            super().execute(f, action)

    return Observed(args)


@contextlib.contextmanager
def sensor(state: Path, *extra: str) -> Iterator[Any]:
    """An observed daemon (full profile unless ``extra`` says otherwise) running in a thread."""
    from sensor.agent.daemon import register

    ap = argparse.ArgumentParser()
    register(ap.add_subparsers())
    args = ap.parse_args(["run", "--state-dir", str(state), "--profile", "full", *extra])
    d = observed_daemon(args)

    def loop() -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # its banner
            d.run()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield d
    finally:
        d.stop.set()
        thread.join(60)


def wait_finding(d: Any, pred: Callable[[Any], bool], since_ns: int, timeout_s: float) -> tuple[int, Any] | None:
    """The first finding handed on since ``since_ns`` (wall) that ``pred`` accepts: (when, finding)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for t, f in list(d.found):
            if t >= since_ns and pred(f):
                return t, f
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def wait(cond: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- containers -------------------------------------------------------------------------------
class Containers:
    """busybox containers started by the bench, removed at the end."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def start(self, script: str, volume: str = "", v6: bool = False) -> str:
        name = f"{PREFIX}-{len(self.names)}-{time.monotonic_ns() % 10**6}"
        cmd = ["docker", "run", "-d", "--name", name, "--network", "none"]
        if volume:
            cmd += ["-v", volume]
        if v6:
            cmd += ["--sysctl", "net.ipv6.conf.all.disable_ipv6=0", "--sysctl", "net.ipv6.conf.lo.disable_ipv6=0"]
        cid = subprocess.run([*cmd, IMAGE, "/bin/sh", "-c", script], check=True, capture_output=True,
                             text=True).stdout.strip()
        self.names.append(name)
        return cid

    def close(self) -> None:
        if self.names:
            subprocess.run(["docker", "rm", "-f", *self.names], capture_output=True)
        self.names = []


def sh(cid: str, script: str, detach: bool = False, timeout_s: float = 60) -> None:
    """``script`` by the container's shell (``docker exec``); a detached one is not waited for."""
    subprocess.run(["docker", "exec", *(["-d"] if detach else []), cid, "/bin/sh", "-c", script],
                   capture_output=True, timeout=timeout_s)


def paused(cid: str) -> bool:
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.Paused}}", cid], capture_output=True, text=True)
    return out.stdout.strip() == "true"


def image_mode(d: Any) -> str:
    """The busybox image's baseline mode in the daemon ("" before its first event)."""
    return next((b.mode for b in list(d.models.images.values()) if b.image == IMAGE), "")


def false_alarms(d: Any, cid: str, since_ns: int, rules: tuple[str, ...] = ()) -> list[str]:
    """Findings about the benign container since ``since_ns`` (of ``rules`` only, if given)."""
    return [f"{f.rule}: {f.output[:160]}" for t, f in list(d.found)
            if t >= since_ns and f.event.container_id == cid and (not rules or f.rule in rules)]


def outcome(d: Any, pred: Callable[[Any], bool], since_ns: int, timeout_s: float,
            anchor_ns: Callable[[Any], int] | None = None) -> dict[str, Any]:
    """Whether a finding ``pred`` accepts went out within ``timeout_s``, and how long after its
    event (or after ``anchor_ns(finding)``) it did."""
    hit = wait_finding(d, pred, since_ns, timeout_s)
    if hit is None:
        return {"found": False}
    t, f = hit
    start = anchor_ns(f) if anchor_ns else f.event.time_ns
    return {"found": True, "ms": round((t - start) / 1e6, 1) if start else None, "rule": f.rule,
            "priority": f.priority, "output": f.output[:300]}


def per_attack(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Detection over the repetitions and time to finding p50/p95; one output as an example."""
    ms = [r["ms"] for r in runs if r.get("found") and r.get("ms") is not None]
    found = [r for r in runs if r.get("found")]
    out = {"detected": len(found), "runs": len(runs), "time_to_finding": pct(ms)}
    if found:
        out["example"] = found[0]["output"]
    return out | {k: sum(1 for r in runs if r.get(k)) for k in ("flagged", "critical") if any(k in r for r in runs)}


# -- capabilities -------------------------------------------------------------------------------
def build_fileless(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fileless.c").write_text(FILELESS_C)
    subprocess.run(["gcc", "-O2", "-static", str(out_dir / "fileless.c"), "-o", str(out_dir / "fileless")],
                   check=True, capture_output=True)
    return out_dir


def drift(tmp: Path, reps: int, cs: Containers) -> dict[str, Any]:
    from sensor.events import EXE_DELETED, EXE_FROM_MEMFD, EXE_UPPER_LAYER

    helper = build_fileless(tmp / "helper")
    names = {EXE_UPPER_LAYER: "upper layer", EXE_FROM_MEMFD: "memfd", EXE_DELETED: "deleted"}
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in DRIFT}
    with sensor(tmp / "drift", "--learn-s", "1e9") as d:
        benign = cs.start(BENIGN)
        t_benign = time.time_ns()
        for rep in range(reps):
            cid = cs.start("sleep 3600", volume=f"{helper}:/depth:ro")
            time.sleep(1)
            for label, script, exe in DRIFT:
                since = time.time_ns()
                sh(cid, script)

                def mine(f: Any, cid: str = cid, exe: str | None = exe) -> bool:
                    return f.event.container_id == cid and f.rule in DRIFT_RULES and (exe is None or f.event.exe == exe)

                r = outcome(d, mine, since, 5.0)
                seen = [ev for ev in list(d.flagged) if ev.container_id == cid and ev.time_ns >= since]
                r["flagged"] = bool(seen)
                r["flags"] = sorted({n for ev in seen for bit, n in names.items() if ev.flags & bit})
                runs[label].append(r)
            log(f"drift rep {rep + 1}: " + ", ".join(f"{k}={v[-1]['found']}" for k, v in runs.items()))
        fa = false_alarms(d, benign, t_benign, DRIFT_RULES)
    return {"daemon": "learn mode (no learning needed), full profile", "timeout_s": 5.0,
            "false_alarms_counted": list(DRIFT_RULES),
            "attacks": {k: per_attack(v) | {"flags": sorted({f for r in v for f in r["flags"]})}
                        for k, v in runs.items()},
            "benign_false_alarms": len(fa), "benign_false_alarm_examples": fa[:5]}


def multicall(tmp: Path, reps: int, cs: Containers) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in MULTICALL}
    quiet: list[str] = []
    with sensor(tmp / "multicall", "--learn-s", "1e9") as d:
        benign = cs.start(BENIGN)
        t_benign = time.time_ns()
        for rep in range(reps):
            cid = cs.start("sleep 3600")
            time.sleep(1)
            for i, (label, script) in enumerate(MULTICALL):
                port = 21000 + rep * 10 + i
                since = time.time_ns()
                sh(cid, script.format(port=port))

                def mine(f: Any, cid: str = cid, port: int = port) -> bool:
                    return f.event.container_id == cid and f.rule == REVERSE and f" {port} " in f" {f.output} "

                r = outcome(d, mine, since, 5.0)
                r["critical"] = r.get("priority") == "CRITICAL"
                runs[label].append(r)
            since = time.time_ns()
            sh(cid, MULTICALL_QUIET)
            time.sleep(2)
            quiet += [f"{f.rule}: {f.output[:160]}" for t, f in list(d.found) if t >= since
                      and f.event.container_id == cid and f.rule in (REVERSE, "Network Tool Launched in Container")]
            log(f"multicall rep {rep + 1}: " + ", ".join(f"{k}={v[-1]['found']}" for k, v in runs.items()))
        fa = false_alarms(d, benign, t_benign, (REVERSE, "Policy: banned process"))
    return {"daemon": "learn mode, full profile; found = Reverse Shell in Container at CRITICAL",
            "false_alarms_counted": [REVERSE, "Policy: banned process"],
            "attacks": {k: per_attack(v) for k, v in runs.items()},
            "quiet_applets_false_alarms": len(quiet), "quiet_applets": MULTICALL_QUIET,
            "benign_false_alarms": len(fa), "benign_false_alarm_examples": fa[:5]}


def full_queue(cid: str, port: int) -> subprocess.Popen[str]:
    """The full-accept-queue listener in the container's network namespace, once it is ready."""
    pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", cid], capture_output=True, text=True,
                         check=True).stdout.strip()
    proc = subprocess.Popen(["nsenter", "-t", pid, "-n", sys.executable, "-c", FULL_QUEUE, str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


def connects(tmp: Path, reps: int, cs: Containers, learn_s: float) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in CONNECTS}
    scans: list[dict[str, Any]] = []
    with sensor(tmp / "connects", "--learn-s", str(learn_s), "--stable-s", "3", "--window-s", "1") as d:
        benign = cs.start(BENIGN)
        promoted = wait(lambda: image_mode(d) == "alert", learn_s + 90)
        t_alert = time.time_ns()
        for rep in range(reps):
            cid = cs.start(BENIGN, v6=True)
            time.sleep(2)
            base = 22000 + rep * 100
            listener = full_queue(cid, base + 1)
            try:
                for i, (label, script) in enumerate(CONNECTS):
                    since = time.time_ns()
                    sh(cid, script.format(port=base + i))

                    def mine(f: Any, cid: str = cid, port: int = base + i) -> bool:
                        return f.event.container_id == cid and f.rule == "New Outbound Endpoint" and \
                            re.search(rf"\b{port}\b", f.output) is not None

                    runs[label].append(outcome(d, mine, since, 6.0))
            finally:
                listener.kill()
            scans.append(scan(d, cs.start(BENIGN), base + 50, rep))
            log(f"connects rep {rep + 1}: " + ", ".join(f"{k}={v[-1]['found']}" for k, v in runs.items())
                + f", scan={scans[-1]['found']}")
        fa = false_alarms(d, benign, t_alert)
    found = [s for s in scans if s["found"]]
    return {"daemon": f"alert mode after learning the benign loop ({learn_s:.0f} s, 1 s windows), full profile",
            "promoted_to_alert": promoted,
            "attacks": {k: per_attack(v) for k, v in runs.items()},
            "scan": {"ports_per_sweep": 21, "detected": len(found), "runs": len(scans),
                     "time_to_finding": pct([s["ms"] for s in found if s.get("ms") is not None]),
                     "scan_findings_per_sweep": [s["scan_findings"] for s in scans],
                     "per_port_findings_per_sweep": [s["per_port"] for s in scans],
                     "example": found[0]["output"] if found else None},
            "benign_false_alarms": len(fa), "benign_false_alarm_examples": fa[:5]}


def scan(d: Any, cid: str, first: int, rep: int) -> dict[str, Any]:
    """A sweep over 21 new ports from one container: one scan finding (or one per doubling)."""
    time.sleep(2)
    mark = f"{MARK}-scan-{rep}"
    since = time.time_ns()
    sh(cid, f": {mark}; for p in $(seq {first} {first + 20}); do nc 127.0.0.1 $p </dev/null; done")
    r = outcome(d, lambda f: f.event.container_id == cid and f.rule == "Outbound Scan", since, 10.0,
                anchor_ns=lambda f: int(d.marks.get(mark, 0)))
    time.sleep(1.5)
    mine = [f for t, f in list(d.found) if t >= since and f.event.container_id == cid]
    r["scan_findings"] = sum(1 for f in mine if f.rule == "Outbound Scan")
    r["per_port"] = sum(1 for f in mine if f.rule == "New Outbound Endpoint")
    return r


def rate(tmp: Path, reps: int, cs: Containers, learn_s: float, window_s: float, quiet_s: float) -> dict[str, Any]:
    journal = tmp / "rate.msgpack"
    runs: list[dict[str, Any]] = []
    with sensor(tmp / "rate", "--learn-s", str(learn_s), "--stable-s", "3", "--window-s", str(window_s),
                "--record", str(journal)) as d:
        cid = cs.start(NOISY)
        promoted = wait(lambda: image_mode(d) == "alert", learn_s + 90)
        t_alert = time.time_ns()
        time.sleep(quiet_s)
        fa = false_alarms(d, cid, t_alert)
        bursts = []
        for rep in range(reps):
            mark = f"{MARK}-burst-{rep}"
            since = time.time_ns()
            sh(cid, f": {mark}; {BURST}", detach=True)
            r = outcome(d, lambda f: f.event.container_id == cid and f.rule == "Rate Anomaly", since,
                        2 * window_s + 10, anchor_ns=lambda f, mark=mark: int(d.marks.get(mark, 0)))
            hit = wait_finding(d, lambda f: f.event.container_id == cid and f.rule == "Rate Anomaly", since, 0)
            if hit is not None:
                r["early"] = bool(hit[1].explanation.get("early"))
                r["into_window_s"] = hit[1].explanation.get("after_s")
            runs.append(r)
            bursts.append(mark)
            log(f"rate rep {rep + 1}: found={r['found']} ms={r.get('ms')} early={r.get('early')}")
            time.sleep(2 * window_s + 1)  # the next burst starts in a window of its own
        marks = {m: d.marks.get(m, 0) for m in bursts}
    found = [r for r in runs if r["found"]]
    return {"daemon": f"alert mode after learning the noisy loop ({learn_s:.0f} s, {window_s:g} s windows)",
            "promoted_to_alert": promoted, "window_s": window_s, "burst": BURST,
            "detected": len(found), "runs": len(runs),
            "time_to_finding": pct([r["ms"] for r in found if r.get("ms") is not None]),
            "reported_while_window_ran": sum(1 for r in found if r.get("early")),
            "into_window_s": [r.get("into_window_s") for r in found],
            "example": found[0]["output"] if found else None,
            "quiet_alert_s": quiet_s, "benign_false_alarms": len(fa), "benign_false_alarm_examples": fa[:5],
            "_replay": {"journal": journal, "container": cid, "alert_ns": t_alert, "marks": marks}}


def enforce(tmp: Path, reps: int, cs: Containers) -> dict[str, Any]:
    policy = tmp / "enforce.yaml"
    policy.write_text(f"images:\n- match: '{IMAGE.split(':')[0]}:*'\n  mode: enforce\n"
                      "  default_action: pause-container\n")
    first: list[float] = []
    again: list[float] = []
    per_offence: list[int] = []
    with sensor(tmp / "enforce", "--policy", str(policy)) as d:
        for rep in range(reps):
            cid = cs.start("sleep 3600")
            time.sleep(1)
            for ms in (first, again):  # the offence, then the same at once after an outside unpause
                n = len([a for a in list(d.acts) if a[0] == cid])
                sh(cid, "nc 127.0.0.1 9 </dev/null", detach=True)
                if wait(lambda n=n, cid=cid: len([a for a in list(d.acts) if a[0] == cid]) > n, 15):
                    act = [a for a in list(d.acts) if a[0] == cid][n]
                    ms.append(round((act[2] - act[1]) / 1e6, 1))
                time.sleep(1.5)  # the rest of the offence's findings, coalesced while it is frozen
                per_offence.append(len([a for a in list(d.acts) if a[0] == cid]) - n)
                subprocess.run(["docker", "unpause", cid], capture_output=True)
            log(f"enforce rep {rep + 1}: paused={len(first)} again={len(again)} per offence={per_offence[-2:]}")
    return {"daemon": "enforce / pause-container by policy, full profile",
            "paused": len(first), "paused_again_after_outside_unpause": len(again), "runs": reps,
            "offence_to_paused": pct(first), "repeat_offence_to_paused": pct(again),
            "actions_per_offence": per_offence}


# -- offline: early vs window-close rate scoring --------------------------------------------------
def early_vs_close(replay: dict[str, Any], windows_s: tuple[float, ...]) -> dict[str, Any]:
    """The noisy loop's journal replayed into two engines per window length: the same model learned
    from the events before the image went to alert, then scored with early (running-window) and with
    window-close scoring; false alarms before the first burst, and each burst's delay."""
    from sensor.journal import read_journal

    events = [ev for ev in read_journal(replay["journal"]) if ev.container_id == replay["container"]]
    if not events:
        return {"skipped": "no events of the noisy loop in the journal"}
    marks = sorted(t for t in replay["marks"].values() if t)
    quiet_end = marks[0] if marks else events[-1].time_ns + 1
    out: dict[str, Any] = {"events": len(events), "learn_s": round((replay["alert_ns"] - events[0].time_ns) / 1e9, 1),
                           "quiet_alert_s": round((quiet_end - replay["alert_ns"]) / 1e9, 1), "by_window": {}}
    for w in windows_s:
        res = {name: _score(events, replay["alert_ns"], quiet_end, marks, w, early)
               for name, early in (("early", True), ("window_close", False))}
        out["by_window"][f"{w:g}s"] = res
    return out


def _score(events: list[Any], alert_ns: int, quiet_end: int, marks: list[int], window_s: float,
           early: bool) -> dict[str, Any]:
    from models.baseline import ModelConfig
    from models.engine import ModelEngine

    eng = ModelEngine(ModelConfig(window_s=window_s, auto_promote=False))
    eng.early_rates = early
    found: list[tuple[int, Any]] = []
    windows: set[int] = set()
    next_tick = events[0].time_ns + 10**9
    promoted = False
    for ev in events:
        while next_tick <= ev.time_ns:  # the daemon ticks every second
            found += [(next_tick, f) for f in eng.tick(next_tick)]
            next_tick += 10**9
        if not promoted and ev.time_ns >= alert_ns:
            eng.set_mode(ev.image_key, "alert", "bench", ev.time_ns)
            promoted = True
        found += [(ev.time_ns, f) for f in eng.handle(ev)]
        w = eng.open_window(ev.container_id)
        if promoted and w is not None and ev.time_ns < quiet_end:
            windows.add(w.start_ns)
    rates = [(t, f) for t, f in found if f.rule == "Rate Anomaly"]
    fa = [t for t, f in rates if alert_ns <= t < quiet_end]
    delays = []
    for i, m in enumerate(marks):
        end = marks[i + 1] if i + 1 < len(marks) else float("inf")
        hit = next((t for t, f in rates if m <= t < end), None)
        delays.append(round((hit - m) / 1e6, 1) if hit is not None else None)
    return {"alert_windows": len(windows), "false_alarms": len(fa),
            "false_alarm_rate": round(len(fa) / len(windows), 4) if windows else None,
            "burst_delay_ms": delays}


# -- the drift check's cost per exec --------------------------------------------------------------
def drift_cost(tmp: Path, smoke: bool, pairs: int) -> dict[str, Any]:
    """Sensor with the drift check on and off (CGSENTRY_DRIFT_CHECK), alternating, on the exec storm
    (bench/workload.c in a container): µs per exec of the storm and the sensor's CPU per exec."""
    import os

    import psutil

    from bench import overhead

    n = 300 if smoke else overhead.FULL["exec"]
    exe_dir = tmp / "workload"
    exe_dir.mkdir()
    overhead.build_workload(exe_dir)
    policy = tmp / "alert.yaml"
    policy.write_text("images:\n  - match: 'cgsentry/*'\n    mode: alert\n")
    subprocess.run(["docker", "rm", "-f", overhead.NAME], capture_output=True)
    subprocess.run(["docker", "run", "-d", "--name", overhead.NAME, "--network", "none", "-v", f"{exe_dir}:/bench:ro",
                    IMAGE, "sleep", "100000"], check=True, capture_output=True)
    samples: dict[str, dict[str, list[float]]] = {"on": {"us": [], "cpu": []}, "off": {"us": [], "cpu": []}}
    try:
        for i in range(pairs):
            for arm in ("on", "off") if i % 2 == 0 else ("off", "on"):
                out = tmp / f"ab-{arm}.out"
                with out.open("w") as sink:
                    cmd = [sys.executable, "-m", "sensor", "run", "--state-dir", str(tmp / f"ab-{arm}"),
                           "--learn-s", "1e9", "--policy", str(policy)]
                    proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT,
                                            env={**os.environ, "CGSENTRY_DRIFT_CHECK": "1" if arm == "on" else "0"})
                try:
                    if not wait(lambda out=out, proc=proc: "running" in out.read_text() or proc.poll() is not None, 90):
                        raise RuntimeError("the sensor did not start")
                    time.sleep(1.0)
                    ps = psutil.Process(proc.pid)
                    cpu0 = sum(ps.cpu_times()[:2])
                    ns = overhead.storm("exec", n)
                    time.sleep(1.0)  # the records of the storm's last execs
                    cpu = sum(ps.cpu_times()[:2]) - cpu0
                finally:
                    proc.terminate()
                    proc.wait(60)
                samples[arm]["us"].append(ns / 1000)
                samples[arm]["cpu"].append(cpu * 1e6 / n)
            log(f"drift A/B pair {i + 1}: " + ", ".join(f"{a} {s['us'][-1]:.0f} us, sensor {s['cpu'][-1]:.1f} us CPU"
                                                       for a, s in samples.items()))
    finally:
        subprocess.run(["docker", "rm", "-f", overhead.NAME], capture_output=True)
    return _ab_summary(samples, n, pairs) | {"check_alone": check_alone(200 if smoke else 20000)}


def _ab_summary(s: dict[str, dict[str, list[float]]], n: int, pairs: int) -> dict[str, Any]:
    from bench.overhead import paired_ci, paired_median

    us_diff = [a - b for a, b in zip(s["on"]["us"], s["off"]["us"], strict=True)]
    cpu_diff = [a - b for a, b in zip(s["on"]["cpu"], s["off"]["cpu"], strict=True)]
    return {"pairs": pairs, "execs_per_storm": n,
            "storm_us_per_exec_median": {a: round(float(np.median(v["us"])), 1) for a, v in s.items()},
            "storm_slowdown_on_vs_off_pct": paired_median(s["on"]["us"], s["off"]["us"]),
            "storm_slowdown_ci95_pct": list(paired_ci(s["on"]["us"], s["off"]["us"])) if pairs > 1 else None,
            "storm_extra_us_per_exec_median": round(float(np.median(us_diff)), 1),
            "sensor_cpu_us_per_exec_median": {a: round(float(np.median(v["cpu"])), 1) for a, v in s.items()},
            "sensor_extra_cpu_us_per_exec_median": round(float(np.median(cpu_diff)), 1),
            "samples": {a: {k: [round(x, 1) for x in xs] for k, xs in v.items()} for a, v in s.items()}}


def check_alone(calls: int) -> dict[str, Any]:
    """ProcFacts.exec_event on a live container process, the drift check on against off (its
    readlink of /proc/PID/exe and lstat in the upper layer; the mount table is cached): µs per exec."""
    import os

    from sensor.events import Event
    from sensor.procfacts import ProcFacts

    cid = subprocess.run(["docker", "run", "-d", "--network", "none", "--name", f"{PREFIX}-alone", IMAGE,
                          "sleep", "600"], capture_output=True, text=True, check=True).stdout.strip()
    try:
        pid = int(subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", cid], capture_output=True, text=True,
                                 check=True).stdout)
        ev = Event("exec", 1, pid=pid, comm="sleep", exe="/bin/sleep", args=("sleep", "600"), cgroup_id=pid,
                   container_id=cid, runtime="docker", image=IMAGE, image_id="sha256:alone")
        out = {}
        for arm in ("on", "off"):
            os.environ["CGSENTRY_DRIFT_CHECK"] = "1" if arm == "on" else "0"
            facts = ProcFacts()
            facts.exec_event(ev, "sha256:alone", True)  # caches: directories, multi-call, mount table
            best = []
            for _ in range(5):
                t0 = time.perf_counter_ns()
                for _ in range(calls):
                    facts.exec_event(ev, "sha256:alone", True)
                best.append((time.perf_counter_ns() - t0) / calls / 1000)
            out[arm] = round(min(best), 2)
    finally:
        os.environ.pop("CGSENTRY_DRIFT_CHECK", None)
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    return {"calls": calls, "exec_event_us_on": out["on"], "exec_event_us_off": out["off"],
            "drift_check_us_per_exec": round(out["on"] - out["off"], 2)}


# -- the run ------------------------------------------------------------------------------------
def run(smoke: bool = False, reps: int | None = None,
        progress: Callable[[dict[str, Any]], None] = lambda _: None) -> dict[str, Any]:
    """Every capability, then the offline rate replay and the drift check's A/B; ``progress`` gets
    the result so far after each part (``partial``: True until the end)."""
    from bench.overhead import machine

    reps = reps or (1 if smoke else 5)
    logging.getLogger("sensor").setLevel(logging.ERROR)  # a warning per pause otherwise
    tmp = Path(tempfile.mkdtemp(prefix="cgsentry-depth-"))
    cs = Containers()
    t0 = time.monotonic()
    out: dict[str, Any] = {"benchmark": "depth", "smoke": smoke, "reps": reps, "machine": machine()}
    try:
        caps: dict[str, Any] = {}
        for name, fn in (("drift", lambda: drift(tmp, reps, cs)), ("multicall", lambda: multicall(tmp, reps, cs)),
                         ("failed_connects", lambda: connects(tmp, reps, cs, 6 if smoke else 10)),
                         ("early_rate", lambda: rate(tmp, reps, cs, 16 if smoke else 60, 2 if smoke else 5,
                                                     10 if smoke else 60)),
                         ("enforce_state", lambda: enforce(tmp, reps, cs))):
            log(f"{name} ...")
            try:
                caps[name] = fn()
            except Exception as err:  # noqa: BLE001 - one capability's failure must not lose the others
                log(f"{name} failed: {traceback.format_exc()}")
                caps[name] = {"error": f"{type(err).__name__}: {err}"}
            cs.close()
            progress({**out, "partial": True, "capabilities": {k: {x: y for x, y in c.items() if x != "_replay"}
                                                                for k, c in caps.items()}})
        replay = caps["early_rate"].pop("_replay", None)
        out["capabilities"] = caps
        if replay is not None:
            out["early_vs_close"] = early_vs_close(replay, (1.0, 2.0) if smoke else (1.0, 2.0, 5.0))
        progress({**out, "partial": True})
        log("drift check A/B ...")
        out["drift_check_cost"] = drift_cost(tmp, smoke, 1 if smoke else 12)
    finally:
        cs.close()
        shutil.rmtree(tmp, ignore_errors=True)
    out["wall_s"] = round(time.monotonic() - t0, 1)
    out["date"] = time.strftime("%Y-%m-%d")
    return out


def table(res: dict[str, Any]) -> str:
    """The README's tables: per capability and attack, detection over the runs and time to finding;
    false alarms; early vs window-close rate scoring; the drift check's cost."""
    caps = res["capabilities"]
    lines = [f"| capability: attack ({res['reps']} runs each) | detected | time to finding p50 / p95 ms | note |",
             "|---|---|---|---|"]
    lines += [f"| {k.replace('_', ' ')}: failed | | | {c['error']} |" for k, c in caps.items() if "error" in c]
    lines += _attack_rows({k: c for k, c in caps.items() if "error" not in c})
    fa = {k: c["benign_false_alarms"] for k, c in caps.items() if "benign_false_alarms" in c}
    lines += ["", "| must not fire | false alarms |", "|---|---|"]
    lines += [f"| benign container beside the {k.replace('_', ' ')} daemon | {v} |" for k, v in fa.items()]
    if "quiet_applets_false_alarms" in caps.get("multicall", {}):
        lines.append(f"| quiet applets (busybox sh -c, busybox echo, exec -a true /bin/ls) | "
                     f"{caps['multicall']['quiet_applets_false_alarms']} |")
    return "\n".join(lines + _scoring_rows(res.get("early_vs_close", {}))
                     + _cost_rows(res.get("drift_check_cost", {}))) + "\n"


def _attack_rows(caps: dict[str, Any]) -> list[str]:
    lines: list[str] = []

    def row(label: str, a: dict[str, Any], note: str = "") -> None:
        t = a["time_to_finding"]
        ms = f"{t['p50_ms']} / {t['p95_ms']}" if t["n"] else "-"
        lines.append(f"| {label} | {a['detected']}/{a['runs']} | {ms} | {note} |")

    for k, a in caps.get("drift", {}).get("attacks", {}).items():
        row(f"drift: {k}", a, f"sensor flagged {a.get('flagged', 0)}/{a['runs']} ({', '.join(a['flags']) or '-'})")
    for k, a in caps.get("multicall", {}).get("attacks", {}).items():
        row(f"multi-call: {k}", a, "Reverse Shell in Container, CRITICAL")
    for k, a in caps.get("failed_connects", {}).get("attacks", {}).items():
        row(f"failed connects: {k}", a, "New Outbound Endpoint")
    if "failed_connects" in caps:
        sc = caps["failed_connects"]["scan"]
        row("scan: 21 new ports from one container", sc, f"Outbound Scan findings per sweep "
            f"{sc['scan_findings_per_sweep']}, per-port findings before it {sc['per_port_findings_per_sweep']}")
    if "early_rate" in caps:
        er = caps["early_rate"]
        row(f"rate: burst of 300 execs ({er['window_s']:g} s window)", er,
            f"{er['reported_while_window_ran']}/{er['detected']} reported while the window ran")
    if "enforce_state" in caps:
        en = caps["enforce_state"]
        for label, n, t in (("offence paused", en["paused"], en["offence_to_paused"]),
                            ("same offence at once after an outside unpause", en["paused_again_after_outside_unpause"],
                             en["repeat_offence_to_paused"])):
            row(f"enforce: {label}", {"detected": n, "runs": en["runs"], "time_to_finding": t},
                f"pauses per offence: {en['actions_per_offence']}" if label == "offence paused" else "")
    return lines


def _scoring_rows(ev: dict[str, Any]) -> list[str]:
    if "by_window" not in ev:
        return []
    lines = ["", f"| rate scoring, one learned model (noisy loop: {ev['learn_s']} s learned, {ev['quiet_alert_s']} s "
                 "in alert, replayed) | alert windows | false alarms early / window close | "
                 "burst delay ms early / window close |", "|---|---|---|---|"]
    for w, r in ev["by_window"].items():
        lines.append(f"| {w} windows | {r['early']['alert_windows']} | {r['early']['false_alarms']} / "
                     f"{r['window_close']['false_alarms']} | {r['early']['burst_delay_ms']} / "
                     f"{r['window_close']['burst_delay_ms']} |")
    return lines


def _cost_rows(dc: dict[str, Any]) -> list[str]:
    if "pairs" not in dc:
        return []
    return ["", "| drift check on vs off | on | off | difference |", "|---|---|---|---|",
            f"| exec storm, µs per exec (median of {dc['pairs']} alternating pairs) | "
            f"{dc['storm_us_per_exec_median']['on']} | {dc['storm_us_per_exec_median']['off']} | "
            f"{dc['storm_slowdown_on_vs_off_pct']} % {dc['storm_slowdown_ci95_pct'] or ''} |",
            f"| sensor CPU µs per exec | {dc['sensor_cpu_us_per_exec_median']['on']} | "
            f"{dc['sensor_cpu_us_per_exec_median']['off']} | {dc['sensor_extra_cpu_us_per_exec_median']} |",
            f"| the check alone (ProcFacts.exec_event on a live container process), µs | "
            f"{dc['check_alone']['exec_event_us_on']} | {dc['check_alone']['exec_event_us_off']} | "
            f"{dc['check_alone']['drift_check_us_per_exec']} |"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--reps", type=int, help="repetitions per attack (default 5, smoke 1)")
    ap.add_argument("--table", action="store_true", help="print the README table from bench/results/depth.json")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads((RESULTS / "depth.json").read_text())))
        return 0
    path = RESULTS / f"depth{'.smoke' if args.smoke else ''}.json"
    RESULTS.mkdir(exist_ok=True)

    def write(res: dict[str, Any]) -> None:
        path.write_text(json.dumps(res | {"date": time.strftime("%Y-%m-%d")}, indent=2, default=str) + "\n")

    res = run(args.smoke, args.reps, write)
    write(res)
    print(table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
