"""Explanations of rate findings: the features that moved, which test fired and in which direction
(both scores read "higher = more unusual"), what the window ran and where it connected, and the
processes behind the window's events with their ancestry (the top contributors), and the window's
last event labelled as such (a sample of the window, not the anomaly itself). The finding's event
is the top contributor's latest event, so an alert names a process and its parents."""

from __future__ import annotations

from models.baseline import ImageBaseline, fmt_item
from models.features import Window
from models.ratemodel import Z_LIMIT, RateScore
from sensor.events import RATE_ANOMALY, Event, Finding


def rate_finding(b: ImageBaseline, container: str, s: RateScore, w: Window, ev: Event) -> Finding:
    """A rate finding that says which features moved, which test fired and in which direction,
    what the window ran and where it connected, and that its event is the window's last one."""
    top = ", ".join(f"{name} {val:.1f}/s (learned {mean:.1f}/s)" for name, val, mean, _ in s.top)
    # a rate alone never proves an attack (README, "Severity"): far past the threshold is ERROR
    priority = "ERROR" if s.score > s.threshold * 1.5 else "WARNING"
    why = _rate_reasons(s)
    window = _window_summary(w, b.config.window_s)
    last = f"last event of the window: {_event_text(ev)}"
    top_procs = [(pid, exe, n, e) for pid, exe, n, e in w.top_processes() if isinstance(e, Event)]
    if top_procs:
        ev = top_procs[0][3]  # the finding is about the top contributor: its pid, exe and parents
    processes = [{"pid": pid, "exe": exe, "events": n, "ancestry": list(e.ancestry)} for pid, exe, n, e in top_procs]
    who = "processes " + ", ".join(_process_text(p) for p in processes) if processes else "processes unknown"
    endpoints = [fmt_item("outbound", k) for k in sorted(w.endpoints, key=repr)[:5]]
    return Finding(kind=RATE_ANOMALY, rule="Rate Anomaly", priority=priority,
                   output=f"rate anomaly in image {b.image or b.key} container "
                          f"{ev.container_name or container[:12]}: {top}; {'; '.join(why)}; {window}; {who}; "
                          f"{last}",
                   event=ev, time_ns=ev.time_ns, source="model", tags=("baseline", "rate"),
                   explanation={"score": s.score, "threshold": s.threshold, "reasons": why,
                                "top_features": [list(t) for t in s.top],
                                "expected": [f"{n} ~{m:.1f}/s" for n, _, m, _ in s.top],
                                "seen": top, "window": window,
                                "window_execs": [list(x) for x in w.top_exes()],
                                "window_endpoints": endpoints,
                                "window_processes": processes,
                                "evidence": last, **b.context()},
                   mode=b.mode, during_loss=b.life.frozen(ev.time_ns))


def _rate_reasons(s: RateScore) -> list[str]:
    """Why a window alerted, each test stated with its direction (higher score = more unusual)."""
    name, value, mean, z = s.top[0]
    out = [f"{name} {value:.1f}/s is {abs(z):.1f} deviations {'above' if z > 0 else 'below'} its learned "
           f"{mean:.1f}/s ({'alert' if s.z_anomalous else 'no alert'} beyond {Z_LIMIT:.0f})"]
    out.append(f"anomaly score {s.score:.3f} {'is above' if s.forest_anomalous else 'is not above'} the "
               f"alert level {s.threshold:.3f} (isolation forest, higher = more unusual)")
    return out if s.z_anomalous else out[::-1]


def _window_summary(w: Window, window_s: float) -> str:
    """What ran and where the window's connections went, as far as the window recorded it."""
    exes = ", ".join(f"{exe} x{n}" for exe, n in w.top_exes()) or "none"
    ends = ", ".join(fmt_item("outbound", k) for k in sorted(w.endpoints, key=repr)[:3])
    more = f" (+{len(w.endpoints) - 3} more)" if len(w.endpoints) > 3 else ""
    return f"in the {window_s:.0f}s window: executables {exes}; endpoints {ends + more or 'none'}"


def _process_text(p: dict[str, object]) -> str:
    """"/usr/bin/wget (pid 42, 37 events, under /bin/sh < /usr/sbin/nginx)"."""
    ancestry = p["ancestry"]
    under = f", under {' < '.join(map(str, ancestry[:4]))}" if isinstance(ancestry, list) and ancestry else ""
    return f"{p['exe'] or '?'} (pid {p['pid']}, {p['events']} events{under})"


def _event_text(ev: Event) -> str:
    what = " ".join(ev.args) if ev.args else ev.exe or ev.comm
    if ev.kind in ("connect", "accept", "listen"):
        what = f"{ev.exe or ev.comm} {ev.proto} {ev.daddr or ev.saddr}:{ev.dport or ev.sport}"
    return f"{ev.kind} {what} (pid {ev.pid})"
