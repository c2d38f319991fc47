"""``cgsentry-sensor model ...``: the baseline as a reviewable artefact.

show / list / diff / export (seccomp, NetworkPolicy) / mode / accept / reject, all on the model
store (``--store``, env ``CGSENTRY_MODEL_DIR``, default /var/lib/cgsentry/models). Items are shown
and taken in one spelling (models/items.py). mode / accept / reject are decisions: queued for a
sensor running on the store and applied to the model file at once (models/decisions.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from models import decisions, items, store
from models.baseline import MODES, ImageBaseline, ModelConfig
from models.decisions import Decision
from models.errors import ModelError
from models.export import blocked_learned, check_learned, network_policy, seccomp_profile
from models.profile import DIMENSIONS
from models.registry import BaselineRegistry
from sensor.errors import EX_CANTCREAT, EX_IOERR

DEFAULT_STORE = Path("/var/lib/cgsentry/models")


def store_dir(args: argparse.Namespace) -> Path:
    return Path(args.store or os.environ.get("CGSENTRY_MODEL_DIR") or DEFAULT_STORE)


def _registry(args: argparse.Namespace) -> BaselineRegistry:
    """The store, read-only: files it cannot use are reported (one line each) and left in place."""
    reg = BaselineRegistry.open(store_dir(args), ModelConfig(), owner=False)  # the sensor owns the store
    for err in reg.load_errors:
        print(f"warning: {err}", file=sys.stderr)
    return reg


def _resolve(args: argparse.Namespace, *refs: str) -> list[ImageBaseline]:
    """Baselines by image, key or ``.model`` file path; the store is opened only if one needs it."""
    reg: BaselineRegistry | None = None
    out: list[ImageBaseline] = []
    for ref in refs:
        path = Path(ref)
        if path.suffix == ".model" and path.exists():
            out.append(store.load(path, ModelConfig()))  # moves nothing, even if unreadable
            continue
        reg = reg or _registry(args)
        out.append(reg.get(ref))
    return out


def summary(b: ImageBaseline) -> dict[str, Any]:
    return {"key": b.key, "image": b.image, "mode": b.mode, "learned_s": round(b.learned_s(), 1),
            "stable_s": round(b.stable_s(), 1), "containers": len(b.profile.containers),
            "nodes": sorted(b.profile.nodes), "seeded_from": b.life.seeded_from,
            "rate_windows": int(len(b.rate.windows)), "would_enforce": b.life.would_enforce,
            "not_active": b.inactive_parts(),
            "items": {d: [items.to_json(d, k, b.profile.items[d][k]) for k in _sorted(b, d)] for d in DIMENSIONS},
            "audit": b.life.audit}


def _sorted(b: ImageBaseline, dim: str, keys: Any = None) -> list[tuple[Any, ...]]:
    return sorted(b.profile.items[dim] if keys is None else keys, key=items.sort_key)


def cmd_list(args: argparse.Namespace) -> int:
    reg = _registry(args)
    rows: list[dict[str, Any]] = [{"image": b.image, "key": b.key, "mode": b.mode, "learned_s": round(b.learned_s()),
             "items": b.profile.size(), "containers": len(b.profile.containers),
             "not_active": [p["part"] for p in b.inactive_parts()]}
            for b in reg.images.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'IMAGE':<36} {'MODE':<8} {'LEARNED':>8} {'ITEMS':>6} {'CONTAINERS':>10}  NOT ACTIVE")
    for r in rows:
        print(f"{(r['image'] or r['key'])[:36]:<36} {r['mode']:<8} {r['learned_s']:>7}s {r['items']:>6} "
              f"{r['containers']:>10}  {', '.join(r['not_active']) or '-'}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    [b] = _resolve(args, args.image)
    s = summary(b)
    if args.json:
        print(json.dumps(s, indent=2, default=str))
        return 0
    print(f"image {s['image'] or s['key']}  mode {s['mode']}  learned {s['learned_s']}s observed "
          f"(stable {s['stable_s']}s) on {s['containers']} container(s)")
    for part in s["not_active"]:
        print(f"  {part['text']}")
    for dim in DIMENSIONS:
        print(f"  {dim} ({len(b.profile.items[dim])}):")
        for key in _sorted(b, dim):
            print(f"    {items.human(dim, key, b.profile.items[dim][key])}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """Items only in A or only in B, spelled as ``model accept`` takes them (JSON: structured)."""
    a, b = _resolve(args, args.a, args.b)
    only = {d: (_sorted(a, d, a.profile.items[d].keys() - b.profile.items[d].keys()),
                _sorted(b, d, b.profile.items[d].keys() - a.profile.items[d].keys())) for d in DIMENSIONS}
    if args.json:
        print(json.dumps({d: {"only_a": [items.to_json(d, k, a.profile.items[d][k]) for k in in_a],
                              "only_b": [items.to_json(d, k, b.profile.items[d][k]) for k in in_b]}
                          for d, (in_a, in_b) in only.items()}, indent=2, default=str))
    else:
        for d, (in_a, in_b) in only.items():
            for key in in_a:
                print(f"- {d} {items.spelling(d, key)}")
            for key in in_b:
                print(f"+ {d} {items.spelling(d, key)}")
    return 1 if any(in_a or in_b for in_a, in_b in only.values()) else 0


def cmd_export(args: argparse.Namespace) -> int:
    """A seccomp profile or NetworkPolicy; refused for a baseline that learned too briefly
    (unless --force: then a warning), warned about learned calls Docker blocks that it leaves out
    (unless --allow-blocked). ``-o -`` (or no -o) writes to stdout."""
    [b] = _resolve(args, args.image)
    warnings = [check_learned(b, args.force)]
    if args.seccomp:
        left_out = [] if args.allow_blocked else blocked_learned(b)
        if left_out:
            warnings.append(f"{b.image or b.key}: left out {', '.join(left_out)}, which Docker's default profile "
                            "blocks (give --allow-blocked to allow them)")
        text = json.dumps(seccomp_profile(b, allow_blocked=args.allow_blocked), indent=2)
    else:
        text = yaml.safe_dump(network_policy(b), sort_keys=False)
    for w in filter(None, warnings):
        print(f"warning: {w}", file=sys.stderr)
    if args.output and args.output != "-":
        write_output(Path(args.output), text)
    else:
        print(text)
    return 0


def write_output(path: Path, text: str) -> None:
    """Write ``text`` to ``path``: ModelError exit 73 if it cannot be created (missing directory, a
    directory, no permission), 74 if writing it fails (the partial file is removed)."""
    try:
        f = open(path, "w")  # noqa: SIM115 - create and write fail differently
    except OSError as err:
        raise ModelError(f"cannot create {path}: {err.strerror}", exit_code=EX_CANTCREAT) from err
    try:
        with f:
            f.write(text)
    except OSError as err:
        path.unlink(missing_ok=True)
        raise ModelError(f"cannot write {path}: {err.strerror}", exit_code=EX_IOERR) from err


def _actor() -> str:
    return f"cli:{os.environ.get('USER', 'root')}"


def cmd_mode(args: argparse.Namespace) -> int:
    b = _registry(args).get(args.image)
    note = _decide(args, Decision("mode", b.key, _actor(), args.reason or "", mode=args.mode))
    print(f"{b.image or b.key}: mode {args.mode}{note}")
    for part in b.inactive_parts(args.mode) if args.mode != "learn" else []:
        print(f"  {part['text']}")
    return 0


def cmd_item(args: argparse.Namespace) -> int:
    """accept: add an item to the baseline; reject: remove it. Both are audited."""
    b = _registry(args).get(args.image)
    key = items.parse_key(args.dimension, args.item)
    if args.model_command == "reject" and not b.profile.known(args.dimension, key):
        raise ModelError(f"{args.image}: {args.dimension} item {items.spelling(args.dimension, key)} is not in "
                         "the baseline (see `cgsentry-sensor model show`)", exit_code=66)
    note = _decide(args, Decision(args.model_command, b.key, _actor(), args.reason or "",
                                  dimension=args.dimension, key=key))
    print(f"{args.model_command}ed {args.dimension} {items.spelling(args.dimension, key)} for "
          f"{b.image or b.key}{note}")
    return 0


def _decide(args: argparse.Namespace, d: Decision) -> str:
    """Queue ``d`` for a running sensor (it applies the inbox every second and never saves over
    it), then apply it to the model file now, under the store lock, for when none runs."""
    directory = store_dir(args)
    decisions.post(directory, d)
    with decisions.locked(directory, timeout_s=5.0) as got:
        if not got:
            return " (queued: the model store is busy; the sensor applies it when it next ticks)"
        path = directory / store.file_name(d.image_key)
        try:
            b = store.load(path, ModelConfig())
        except ModelError as err:
            return f" (queued; the model file could not be updated: {err})"
        decisions.apply(d, b)
        store.save(b, directory)
    return ""


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
    ex.add_argument("-o", "--output", help="file to write ('-' or none: stdout)")
    ex.add_argument("--force", action="store_true", help="export a baseline that learned less than a minute "
                                                         "(with a warning)")
    ex.add_argument("--allow-blocked", action="store_true",
                    help="seccomp: allow learned calls Docker's default profile blocks (mount, unshare, ...)")
    ex.set_defaults(func=cmd_export)
    md = ms.add_parser("mode", help="set learn/alert/enforce")
    md.add_argument("image")
    md.add_argument("mode", choices=MODES)
    md.add_argument("--reason")
    md.set_defaults(func=cmd_mode)
    for name in ("accept", "reject"):
        it = ms.add_parser(name, help=f"{name} one item (audited)")
        it.add_argument("image")
        it.add_argument("dimension", choices=DIMENSIONS)
        it.add_argument("item", nargs="+", help="the item key as `model show`/`diff` spell it, e.g. "
                        "/bin/nc 0 (exe uid), tcp 8080 (proto port), ptrace (syscall)")
        it.add_argument("--reason")
        it.set_defaults(func=cmd_item)
