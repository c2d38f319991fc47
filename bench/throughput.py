"""Userspace stage rates, one core: decode (hand-built ring-buffer records), model scoring on a
learned image, the default rule library, and all stages together; and how long the rule loader
takes to refuse hostile expansion bombs (tests/unit/test_rules_hostile.py checks that it refuses
them). Complements bench/pipeline_bench.py (journal read + enrichment)."""

from __future__ import annotations

import argparse
import json
import socket
import time
from typing import Any, Callable

from bench.workloads import SEC, fleet
from models.baseline import ModelConfig
from models.engine import ModelEngine
from rules.engine import RuleEngine
from rules.errors import RuleError
from rules.loader import load_text
from sensor import layout as L
from sensor.decode import Decoder


def records(n: int) -> list[bytes]:
    """A realistic mix of raw records: exec with args, fork, exit, connect."""
    hdr = lambda op: L.HDR.pack(op, 100, 100, 0, 0, 0, 1_000, 4242, b"sh", 1, 0)  # noqa: E731
    argv = b"".join(a + b"\0" for a in (b"wget", b"-q", b"http://127.0.0.1:8080/"))
    mix = [hdr(L.OP_EXEC) + L.EXEC.pack(100, 3, len(argv), 0, b"/usr/bin/wget") + argv,
           hdr(L.OP_FORK) + L.FORK.pack(100, 101), hdr(L.OP_EXIT) + L.EXIT.pack(0, 0),
           hdr(L.OP_CONNECT) + L.NET.pack(0, 3, socket.AF_INET, 6, 0, 8080, 0, b"", socket.inet_aton("127.0.0.1"),
                                          b"")]
    return [mix[i % len(mix)] for i in range(n)]


def rate(n: int, fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return round(n / (time.perf_counter() - t0))


def bombs() -> dict[str, str]:
    """Rule files whose expansion is exponential; each must hit one of the loader's caps."""
    rule = lambda cond: f"- rule: R\n  desc: d\n  condition: {cond}\n  output: o\n  priority: WARNING\n"  # noqa: E731
    laughs = "- list: l0\n  items: &a0 [" + ", ".join(["x"] * 10) + "]\n" + "".join(
        f"- list: l{i}\n  items: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 9))
    lists = "- list: n0\n  items: [a, b, c, d, e, f, g, h, i, j]\n" + "".join(
        f"- list: n{i}\n  items: [{', '.join([f'n{i - 1}'] * 10)}]\n" for i in range(1, 9))
    macros = "- macro: m0\n  condition: proc.name = a\n" + "".join(
        f"- macro: m{i}\n  condition: m{i - 1} or m{i - 1}\n" for i in range(1, 40))
    return {"yaml_alias_laughs": laughs + rule("proc.name in (l8)"),
            "nested_lists": lists + rule("proc.name in (n8)"), "doubling_macros": macros + rule("m39")}


def refusal_ms(text: str, reps: int) -> float:
    """Median milliseconds for load_text to refuse ``text``; a bomb that loads is a bench failure."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        try:
            load_text(text, "bomb.yaml")
        except RuleError:
            times.append(time.perf_counter() - t0)
        else:
            raise SystemExit("bench: an expansion bomb loaded instead of being refused")
    return round(sorted(times)[len(times) // 2] * 1000, 1)


def run(smoke: bool = False) -> dict[str, Any]:
    n = 20_000 if smoke else 200_000
    raw = records(n)
    dec = Decoder(0)
    decoded = [dec(r) for r in raw]
    learn = fleet(3, 60 if smoke else 240)
    eng = ModelEngine(ModelConfig(min_learn_s=30, stable_s=10))
    for ev in learn:
        eng.handle(ev)
    later = fleet(3, 30 if smoke else 300, start_ns=learn[-1].time_ns + SEC, seed=3)
    rules = RuleEngine.load()
    mixed = [e.replace(container_id=learn[0].container_id) for e in decoded[: len(later)]]

    def everything() -> None:
        for r, ev in zip(raw[: len(later)], later, strict=False):
            dec(r)
            eng.handle(ev)
            rules.handle(ev)

    # the item path alone: windows so long none closes during the run
    items_only = ModelEngine(ModelConfig(min_learn_s=30, stable_s=10, window_s=1e6))
    for ev in learn:
        items_only.handle(ev)
    items_only.set_mode(learn[0].image_key, "alert", "bench", 0)
    b = eng.images[learn[0].image_key]
    vec = b.rate.windows[0]
    t0 = time.perf_counter()
    for _ in range(50):
        b.rate.score(vec)
    window_ms = (time.perf_counter() - t0) / 50 * 1000

    return {"benchmark": "throughput", "smoke": smoke, "rate_window_score_ms": round(window_ms, 2),
            "events_per_s": {
        "models_item_path": rate(len(later), lambda: [items_only.handle(e) for e in later]),
        "decode": rate(n, lambda: [dec(r) for r in raw]),
        "models_score_learned_image": rate(len(later), lambda: [eng.handle(e) for e in later]),
        "rules_default_library": rate(len(later), lambda: [rules.handle(e) for e in later]),
        "rules_on_decoded_mix": rate(len(mixed), lambda: [rules.handle(e) for e in mixed]),
        "decode_models_rules": rate(len(later), everything),
    }, "rules_bomb_refusal_ms": {name: refusal_ms(text, 1 if smoke else 5) for name, text in bombs().items()},
        "rules_loaded": len(rules.rules()), "mode_after_learning": eng.mode(learn[0].image_key)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    print(json.dumps(run(ap.parse_args().smoke), indent=2))
