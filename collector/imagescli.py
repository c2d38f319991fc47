"""``cgsentry images list|mode|preview``: images, their policies, and what enforcing would do.

``mode`` changes only what it is given (mode, action, bans: each kept unless named) and prints
the whole resulting policy; ``preview`` replays an image's stored alerts through a proposed
policy (collector.preview) before anyone enables it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from collector.argtypes import label_arg
from collector.client import Client, _common, _emit, parse_since
from collector.errors import CollectorError
from sensor.errors import EX_NOINPUT
from sensor.text import visible

ACTIONS = {"pause": "pause-container", "kill": "kill-container", "kill-process": "kill-process", "alert": "alert"}


def _images(client: Client) -> list[dict[str, Any]]:
    from collector import convert

    return [convert.image_row(i) for i in client.call("ListImages", convert.empty()).images]


def cmd_images_list(args: argparse.Namespace) -> int:
    rows = _images(Client(args))
    rc = _emit(args, rows, f"{'IMAGE':<40} {'MODE':<8} {'SET BY':<22} {'ACTION':<15} {'WOULD-ENF':>9} "
                           f"{'ALERTS':>6}  BANS",
               lambda r: f"{r['image']:<40} {r['mode'] or '-':<8} {r['set_by'] or '-':<22} {r['action'] or '-':<15} "
                         f"{sum(r['would_enforce'].values()):>9} {r['alerts']:>6}  {','.join(r['bans']) or '-'}")
    if not args.json:
        notes = [line for r in rows for line in _notes(r)]
        if notes:
            print()
            for line in notes:
                print(visible(line))
    return rc


def _notes(row: dict[str, Any]) -> list[str]:
    """What the table has no room for: model parts not active yet, and the workload policies
    that can apply to the image (most specific first: the first that matches a pod wins)."""
    lines = [f"{row['image']}: {p['text']}" + (f" (sensor {', '.join(p['sensors'])})" if p.get("sensors") else "")
             for p in row["not_active"]]
    workloads = row["workloads"]
    if len(workloads) > 1 or any(w["selector"] != row["image"] for w in workloads):
        lines.append(f"{row['image']}: policies, most specific first (the first whose selector matches wins):")
        lines += [f"    {w['selector']}: mode {w['mode'] or '(sensors decide)'}, action {w['default_action']}, "
                  f"bans {','.join(w['banned_processes']) or '-'}" for w in workloads]
    return lines


def cmd_images_mode(args: argparse.Namespace) -> int:
    from collector import convert

    client = Client(args)
    info = client.call("SetImageMode", convert.image_mode_request(
        args.image, args.mode or "", ACTIONS[args.action] if args.action else "", args.ban,
        require_seen=not args.force, clear_bans=args.no_bans, namespace=args.namespace or "", labels=args.label))
    policy = json.loads(info.policy_yaml or "{}")
    action, bans = policy.get("default_action", "alert"), list(policy.get("banned_processes", []))
    row = next((r for r in _images(client) if r["image"] == info.image), None)
    not_active = row["not_active"] if row and info.mode != "learn" else []
    warning = _warning(info.mode, action, bans)
    if args.json:
        print(json.dumps({"image": info.image, "mode": info.mode, "action": action, "bans": bans,
                          "set_by": info.set_by, "policy": policy, "not_active": not_active, "warning": warning}))
    else:
        print(visible(f"{info.image}: mode {info.mode or '(sensors decide)'}, action {action}, "
                      f"bans {','.join(bans) or '-'}  (set by {info.set_by})"))
        for p in not_active:
            print(visible(f"  {_part_text(p, info.mode)}"))
    if warning:
        print(f"cgsentry: warning: {warning}", file=sys.stderr)
    return 0


def _part_text(part: dict[str, Any], mode: str) -> str:
    """A part not active yet, as models.baseline.inactive_parts says it, for the mode just set
    (the sensor's sentence was written in the mode it had then: in alert or enforce mode the rate
    model learns no windows, so it becomes active only after learning again)."""
    if part.get("part") != "rate" or "more_learning_s" not in part or mode == "learn":
        return str(part["text"])
    head = str(part["text"]).split("; active", 1)[0]
    return (f"{head}; active only after about {float(part['more_learning_s']):.0f}s of learning again "
            "(windows are learned in learn mode)")


def _warning(mode: str, action: str, bans: list[str]) -> str:
    if mode != "enforce" or action != "alert":
        return ""
    return ("enforce with action alert enforces nothing" + (" but the bans" if bans else "")
            + ": give --action pause, kill or kill-process")


def cmd_images_preview(args: argparse.Namespace) -> int:
    from collector.images import image_policy
    from collector.preview import preview, summary

    client = Client(args)
    since_ns = parse_since(args.since)
    row = next((r for r in _images(client) if r["image"] == args.image), None)
    if row is None:
        raise CollectorError(f"image {args.image!r}: the collector knows no such image "
                             "(`cgsentry images list` shows the known ones)", exit_code=EX_NOINPUT)
    stored = row["policy"]
    action = ACTIONS[args.action] if args.action else stored.get("default_action", "alert")
    labels = dict(label.split("=", 1) for label in args.label)
    policy = {**stored, "default_action": action,
              "banned_processes": args.ban or ([] if args.no_bans else list(stored.get("banned_processes", [])))}
    pol = image_policy(args.image, args.mode, policy)
    if args.namespace or labels:  # a workload's policy: only the alerts of the pods it selects
        pol = dataclasses.replace(pol, namespace=args.namespace or "", labels=tuple(sorted(labels.items())))
    alerts = [a for a in _image_alerts(client, args.image, since_ns)
              if pol.applies(a.finding.event.image, a.finding.event.image_id, a.finding.event.namespace,
                             a.finding.event.labels) or not (args.namespace or labels)]
    outcomes = preview(pol, args.mode, alerts)
    counts = summary(outcomes)
    warning = _warning(args.mode, pol.default_action, list(pol.banned_processes))
    if args.json:
        print(json.dumps({"image": args.image, "selector": pol.describe(), "mode": args.mode,
                          "action": pol.default_action,
                          "bans": list(pol.banned_processes), "since": args.since, "would": counts,
                          "alerts": [o.row() for o in outcomes], "warning": warning}, indent=2))
    else:
        _print_preview(args, pol.describe(), pol.default_action, list(pol.banned_processes), outcomes, counts)
    if warning:
        print(f"cgsentry: warning: {warning}", file=sys.stderr)
    return 0


def _image_alerts(client: Client, image: str, since_ns: int) -> list[Any]:
    """Every alert of ``image`` last seen since ``since_ns``, page by page."""
    from collector import convert

    rows, cursor = [], ""
    while True:
        page = client.call("ListAlerts", convert.alert_query(image=image, since_ns=since_ns, min_priority="",
                                                             status="", limit=10_000, cursor=cursor))
        rows += [convert.alert_from_pb(a) for a in page.alerts]
        if not page.next_cursor or not page.alerts:
            return rows
        cursor = page.next_cursor


def _print_preview(args: argparse.Namespace, selector: str, action: str, bans: list[str], outcomes: list[Any],
                   counts: dict[str, int]) -> None:
    print(visible(f"preview of {selector}: mode {args.mode}, action {action}, bans {','.join(bans) or '-'}; "
                  f"{len(outcomes)} alert(s) since {args.since}"))
    if outcomes:
        print(f"{'WHEN':<21} {'ACTION':<15} {'EFFECT':<12} {'CONTAINER':<16} RULE (WHY)")
    for o in outcomes:
        r = o.row()
        print(visible(f"{r['time'][:19] + 'Z':<21} {r['action']:<15} {r['effect']:<12} {r['container'][:16]:<16} "
                      f"{r['rule']} ({r['why']})"))
    done = ", ".join(f"{n} x {a}" for a, n in sorted(counts.items())) or "nothing"
    print(f"would have done: {done}")


def add_commands(sub: Any) -> None:
    """``images list|mode|preview`` on the top-level parser's ``sub``."""
    i = sub.add_parser("images", help="images, their mode (learn/alert/enforce) and response")
    is_ = i.add_subparsers(dest="images_command", required=True)
    ls = is_.add_parser("list", help="images, modes, policies, would-enforce counts, model parts not active")
    _common(ls)
    ls.set_defaults(func=cmd_images_list)
    m = is_.add_parser("mode", help="set an image's (or workload's) mode and policy; what is not given is kept")
    m.add_argument("image")
    m.add_argument("mode", nargs="?", choices=["learn", "alert", "enforce"], help="omit: keep the mode")
    _policy_options(m)
    m.add_argument("--namespace", help="a workload's policy: pods in this namespace (glob) only")
    m.add_argument("--label", action="append", default=[], type=label_arg, metavar="KEY=VALUE",
                   help="a workload's policy: pods with this label only (repeat: all of them)")
    m.add_argument("--force", action="store_true", help="set it although no sensor has seen the image yet")
    _common(m)
    m.set_defaults(func=cmd_images_mode)
    p = is_.add_parser("preview", help="replay the image's stored alerts through a proposed policy")
    p.add_argument("image")
    p.add_argument("--mode", choices=["alert", "enforce"], default="enforce", help="proposed mode (default enforce)")
    p.add_argument("--namespace", help="a workload's policy: only the alerts of pods in this namespace (glob)")
    p.add_argument("--label", action="append", default=[], type=label_arg, metavar="KEY=VALUE",
                   help="a workload's policy: only the alerts of pods with this label (repeat: all of them)")
    _policy_options(p)
    p.add_argument("--since", default="7d", help="alerts last seen since: 10m, 2h, 7d, epoch seconds or RFC3339 "
                                                 "(default 7d)")
    _common(p)
    p.set_defaults(func=cmd_images_preview)


def _policy_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--action", choices=list(ACTIONS), help="what enforce mode does on a finding (omit: keep)")
    p.add_argument("--ban", action="append", default=[], metavar="PROCESS",
                   help="banned process (repeat; replaces the bans; omit: keep them)")
    p.add_argument("--no-bans", action="store_true", help="remove every banned process")
