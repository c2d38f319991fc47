"""``cgsentry-sensor model ...``: the baseline as a reviewable artefact.

show / list / diff / export (seccomp, NetworkPolicy) / mode / accept / reject / relearn, all on
the model store (``--store``, env ``CGSENTRY_MODEL_DIR``, default /var/lib/cgsentry/models).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from models import store
from models.baseline import MODES, ImageBaseline, ModelConfig
from models.engine import ModelEngine
from models.errors import ModelError
from models.export import network_policy, seccomp_profile
from models.profile import DIMENSIONS, ItemStat

DEFAULT_STORE = Path("/var/lib/cgsentry/models")


def store_dir(args: argparse.Namespace) -> Path:
    return Path(args.store or os.environ.get("CGSENTRY_MODEL_DIR") or DEFAULT_STORE)


def _engine(args: argparse.Namespace) -> ModelEngine:
    eng = ModelEngine.open(store_dir(args), ModelConfig())
    for err in eng.load_errors:
        print(f"warning: {err}", file=sys.stderr)
    return eng


def _resolve(eng: ModelEngine, ref: str) -> ImageBaseline:
    path = Path(ref)
    if path.suffix == ".model" and path.exists():
        return store.load(path, eng.config)
    return eng.get(ref)


def summary(b: ImageBaseline) -> dict[str, Any]:
    items = {d: sorted(_item(d, k, s) for k, s in b.profile.items[d].items()) for d in DIMENSIONS}
    return {"key": b.key, "image": b.image, "mode": b.mode, "learned_s": round(b.learned_s(), 1),
            "stable_s": round(b.stable_s(), 1), "containers": len(b.profile.containers),
            "nodes": sorted(b.profile.nodes), "seeded_from": b.life.seeded_from,
            "rate_windows": int(len(b.rate.windows)), "would_enforce": b.life.would_enforce,
            "items": items, "audit": b.life.audit}


def _item(dim: str, key: tuple[Any, ...], s: ItemStat) -> str:
    return f"{' '.join(str(k) for k in key)}  (count {s.count}, containers {len(s.containers)})"


def cmd_list(args: argparse.Namespace) -> int:
    eng = _engine(args)
    rows: list[dict[str, Any]] = [{"image": b.image, "key": b.key, "mode": b.mode, "learned_s": round(b.learned_s()),
             "items": b.profile.size(), "containers": len(b.profile.containers)}
            for b in eng.images.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'IMAGE':<36} {'MODE':<8} {'LEARNED':>8} {'ITEMS':>6} {'CONTAINERS':>10}")
    for r in rows:
        print(f"{(r['image'] or r['key'])[:36]:<36} {r['mode']:<8} {r['learned_s']:>7}s {r['items']:>6} "
              f"{r['containers']:>10}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    s = summary(_resolve(_engine(args), args.image))
    if args.json:
        print(json.dumps(s, indent=2, default=str))
        return 0
    print(f"image {s['image'] or s['key']}  mode {s['mode']}  learned {s['learned_s']}s observed "
          f"(stable {s['stable_s']}s) on {s['containers']} container(s)")
    for dim, items in s["items"].items():
        print(f"  {dim} ({len(items)}):")
        for it in items:
            print(f"    {it}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    eng = _engine(args)
    a, b = _resolve(eng, args.a), _resolve(eng, args.b)
    diff = {d: {"only_a": sorted(map(str, a.profile.items[d].keys() - b.profile.items[d].keys())),
                "only_b": sorted(map(str, b.profile.items[d].keys() - a.profile.items[d].keys()))}
            for d in DIMENSIONS}
    if args.json:
        print(json.dumps(diff, indent=2))
    else:
        for d, v in diff.items():
            for item in v["only_a"]:
                print(f"- {d} {item}")
            for item in v["only_b"]:
                print(f"+ {d} {item}")
    return 1 if any(v["only_a"] or v["only_b"] for v in diff.values()) else 0


def cmd_export(args: argparse.Namespace) -> int:
    b = _resolve(_engine(args), args.image)
    doc = seccomp_profile(b) if args.seccomp else network_policy(b)
    text = json.dumps(doc, indent=2) if args.seccomp else yaml.safe_dump(doc, sort_keys=False)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text)
    return 0


def cmd_mode(args: argparse.Namespace) -> int:
    eng = _engine(args)
    b = eng.get(args.image)
    b.set_mode(args.mode, f"cli:{os.environ.get('USER', 'root')}", time.time_ns())
    store.save(b, store_dir(args))
    print(f"{b.image or b.key}: mode {b.mode}")
    return 0


def cmd_item(args: argparse.Namespace) -> int:
    """accept: add an item to the baseline; reject: remove it. Both are audited."""
    eng = _engine(args)
    b = eng.get(args.image)
    if args.dimension not in DIMENSIONS:
        raise ModelError(f"dimension {args.dimension!r} is not one of {', '.join(DIMENSIONS)}", exit_code=64)
    key = tuple(int(p) if p.lstrip("-").isdigit() else p for p in args.item)
    actor = f"cli:{os.environ.get('USER', 'root')}"
    if args.model_command == "accept":
        b.accept(args.dimension, key, actor, time.time_ns(), args.reason or "")
    else:
        if b.profile.items[args.dimension].pop(key, None) is None:
            raise ModelError(f"{args.image}: {args.dimension} item {key} is not in the baseline", exit_code=66)
        b.life.audit.append({"time_ns": time.time_ns(), "actor": actor, "action": f"reject {args.dimension} {key}",
                             "reason": args.reason or ""})
    store.save(b, store_dir(args))
    print(f"{args.model_command}ed {args.dimension} {key} for {b.image or b.key}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("model", help="show, diff, export and manage per-image baselines")
    p.add_argument("--store", help="model directory (env CGSENTRY_MODEL_DIR)")
    ms = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    ls = ms.add_parser("list", help="images with a baseline")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    sh = ms.add_parser("show", help="one baseline, human or --json")
    sh.add_argument("image")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_show)
    df = ms.add_parser("diff", help="items only in A or only in B (exit 1 if they differ)")
    df.add_argument("a")
    df.add_argument("b")
    df.add_argument("--json", action="store_true")
    df.set_defaults(func=cmd_diff)
    ex = ms.add_parser("export", help="seccomp profile or NetworkPolicy from the baseline")
    ex.add_argument("image")
    kind = ex.add_mutually_exclusive_group(required=True)
    kind.add_argument("--seccomp", action="store_true")
    kind.add_argument("--networkpolicy", action="store_true")
    ex.add_argument("-o", "--output")
    ex.set_defaults(func=cmd_export)
    md = ms.add_parser("mode", help="set learn/alert/enforce")
    md.add_argument("image")
    md.add_argument("mode", choices=MODES)
    md.set_defaults(func=cmd_mode)
    for name in ("accept", "reject"):
        it = ms.add_parser(name, help=f"{name} one item (audited)")
        it.add_argument("image")
        it.add_argument("dimension", choices=DIMENSIONS)
        it.add_argument("item", nargs="+", help="the item key, e.g. /bin/nc 0  or  tcp 8080")
        it.add_argument("--reason")
        it.set_defaults(func=cmd_item)
