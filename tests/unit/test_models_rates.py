"""Rate model: features whose source is off after learning (the syscall profiler) are recorded but
neither fitted nor scored nor cited; format-1 files migrate deterministically; explanations say
which test fired, in which direction, what the window ran, and that the event is its last one."""

from __future__ import annotations

from pathlib import Path

import msgpack
import numpy as np
import pytest

from bench.workloads import IMAGE_ID, SEC, deviation, fleet
from models import store
from models.baseline import ModelConfig
from models.engine import ModelEngine
from models.explain import _rate_reasons
from models.features import FEATURES, PROFILER_FEATURES, SCORED_FEATURES
from models.ratemodel import RateModel, RateScore
from models.store import VERSION
from sensor.events import RATE_ANOMALY, Event, Finding

CFG = ModelConfig(min_learn_s=60, stable_s=30)
READ, MMAP = 0, 9  # a file-class and a memory-class syscall


def run_like_the_sensor(eng: ModelEngine, events: list[Event]) -> list[Finding]:
    """Feed events; once a second add to each cgroup's syscall-counter totals, but only while the
    image learns (sensor/watch.py turns the per-cgroup profiler off when it leaves learning)."""
    found: list[Finding] = []
    totals: dict[tuple[int, int], int] = {}
    last_s = 0
    for ev in events:
        found += eng.handle(ev)
        if ev.time_ns // SEC != last_s:
            last_s = ev.time_ns // SEC
            for cg in {cg for cg, _ in totals} | {ev.cgroup_id}:
                if eng.mode(IMAGE_ID) == "learn":
                    totals[(cg, READ)] = totals.get((cg, READ), 0) + 300
                    totals[(cg, MMAP)] = totals.get((cg, MMAP), 0) + 120
            eng.observe_syscall_counts(dict(totals))
    return found


def profiled_engine() -> tuple[ModelEngine, int]:
    """Learned with the profiler on, promoted; returns a time after its open windows closed (so a
    deviation injected then falls in a window of its own)."""
    eng = ModelEngine(CFG)
    evs = fleet(3, 240)
    assert run_like_the_sensor(eng, evs) == []
    assert eng.mode(IMAGE_ID) == "alert" and eng.images[IMAGE_ID].rate.fitted
    eng.tick(evs[-1].time_ns + 30 * SEC)
    return eng, evs[-1].time_ns + 30 * SEC


def test_syscall_class_rates_off_after_learning_raise_no_rate_findings() -> None:
    eng, end = profiled_engine()
    b = eng.images[IMAGE_ID]
    sc_file = FEATURES.index("sc_file")
    assert b.rate.windows[:, sc_file].mean() > 10  # learned non-zero: the windows keep it
    later = fleet(3, 300, start_ns=end + SEC, seed=2)  # the same workload, profiler off
    findings = run_like_the_sensor(eng, later) + eng.tick(later[-1].time_ns + 60 * SEC)
    assert [f.output for f in findings if f.kind == RATE_ANOMALY] == []
    assert b.rate.features == SCORED_FEATURES and not set(PROFILER_FEATURES) & set(b.rate.features)


def noisy_windows(n: int, seed: int = 3) -> np.ndarray:
    """Learning windows: steady process and connection rates, busy syscall classes."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, len(FEATURES)))
    for name, mean, sd in (("execs", 2, .3), ("forks", 2, .3), ("exits", 2, .3), ("connects", 1, .2),
                           ("accepts", 1, .2), ("sc_file", 300, 15), ("sc_memory", 120, 6), ("sc_network", 40, 3)):
        out[:, FEATURES.index(name)] = np.maximum(0, rng.normal(mean, sd, n))
    return out


def test_rate_model_scores_alike_whether_the_profiler_is_on_or_off() -> None:
    model = RateModel(seed=7)
    for row in noisy_windows(30):
        model.add_window(row)
    assert model.fit()
    on = noisy_windows(1, seed=11)[0]
    on[FEATURES.index("execs")] = 12.0  # a real exec burst
    off = on.copy()
    off[[FEATURES.index(f) for f in PROFILER_FEATURES]] = 0.0  # what alert mode sees
    s_on, s_off = model.score(on), model.score(off)
    assert s_on is not None and s_off is not None
    assert s_off.score == s_on.score and s_off.top == s_on.top  # the off features play no part
    assert s_off.anomalous and s_off.top[0][0] == "execs"
    assert not any(name.startswith("sc_") for name, *_ in s_off.top)  # nor are they ever cited


def test_rate_explanations_never_cite_a_profiler_feature() -> None:
    eng, end = profiled_engine()
    t = end + SEC
    out = [f for ev in deviation("connect_burst", t) for f in eng.handle(ev)] + eng.tick(t + 60 * SEC)
    [f] = [f for f in out if f.kind == RATE_ANOMALY]
    assert f.explanation["top_features"][0][0] == "connects"
    assert not any(name.startswith("sc_") for name, *_ in f.explanation["top_features"])
    assert "sc_" not in f.output


def test_rate_explanation_says_direction_window_contents_and_evidence() -> None:
    eng, end = profiled_engine()
    t = end + SEC
    burst = deviation("connect_burst", t)
    out = [f for ev in burst for f in eng.handle(ev)] + eng.tick(t + 60 * SEC)
    [f] = [f for f in out if f.kind == RATE_ANOMALY]
    assert "forest score" not in f.output and "threshold" not in f.output
    assert "connects 40.0/s is" in f.output and "deviations above its learned" in f.output
    assert "alert level" in f.output and "higher = more unusual" in f.output
    assert "endpoints tcp 127.0.0.1:8080" in f.output
    assert f"last event of the window: connect /usr/bin/wget tcp 127.0.0.1:8080 (pid {burst[-1].pid})" in f.output
    assert f.explanation["window_endpoints"] == ["tcp 127.0.0.1:8080"]
    assert f.explanation["score"] > 0 and f.explanation["threshold"] > 0  # higher = more anomalous, as before


def test_rate_explanation_lists_the_windows_top_executables() -> None:
    eng, end = profiled_engine()
    t = end + SEC
    base = deviation("new_binary", t)[0]
    storm = [base.replace(time_ns=t + k * 10_000_000, exe="/usr/bin/wget", comm="wget") for k in range(300)]
    storm.append(base.replace(time_ns=t + 4 * SEC, exe="/bin/sleep", comm="sleep", args=("sleep", "1")))
    out = [f for ev in storm for f in eng.handle(ev)] + eng.tick(t + 60 * SEC)
    [f] = [f for f in out if f.kind == RATE_ANOMALY]
    assert f.explanation["window_execs"][0] == ["/usr/bin/wget", 300]
    assert "executables /usr/bin/wget x300, /bin/sleep x1" in f.output
    assert "last event of the window: exec sleep 1" in f.output


@pytest.mark.parametrize(("z", "score", "first"), [(-7.5, 0.40, "below"), (8.0, 0.40, "above"),
                                                   (1.0, 0.90, "anomaly score 0.900 is above")])
def test_rate_reasons_state_the_test_that_fired_first(z: float, score: float, first: str) -> None:
    why = _rate_reasons(RateScore(score, 0.737, [("execs", 17.5, 2.1, z)]))
    assert first in why[0]
    assert any("anomaly score" in w and "alert level 0.737" in w for w in why)


def v1_file(b_dict: dict[str, object], path: Path) -> None:
    """What cgsentry wrote before format 2: no scored list, 5-field item rows."""
    data = dict(b_dict)
    data["version"] = 1
    data["rate"] = {k: v for k, v in dict(data["rate"]).items() if k != "scored"}  # type: ignore[call-overload]
    prof = dict(data["profile"])  # type: ignore[call-overload]
    prof["items"] = {d: [[k, s[:5]] for k, s in rows] for d, rows in prof["items"].items()}
    data["profile"] = prof
    path.write_bytes(msgpack.packb(data, use_bin_type=True))


def test_format_1_file_migrates_and_rebuilds_the_same_model(tmp_path: Path) -> None:
    eng, _ = profiled_engine()
    b = eng.images[IMAGE_ID]
    path = tmp_path / "old.model"
    v1_file(store.to_dict(b), path)
    old = store.load(path, CFG)
    assert old.rate.features == SCORED_FEATURES and old.profile.to_dict()["items"] == b.profile.to_dict()["items"]
    probe = np.full(len(FEATURES), 2.0)
    assert old.rate.score(probe) == b.rate.score(probe)  # same windows, same seed: same scores
    again = store.load(store.save(old, tmp_path / "v2"), CFG)
    assert store.to_dict(again)["version"] == VERSION == 2 and again.rate.score(probe) == b.rate.score(probe)


def test_unknown_scored_feature_or_newer_format_is_quarantined(tmp_path: Path) -> None:
    from models.errors import ModelError

    eng, _ = profiled_engine()
    data = store.to_dict(eng.images[IMAGE_ID])
    data["rate"]["scored"] = ["execs", "bogus"]
    bad = tmp_path / "bad.model"
    bad.write_bytes(msgpack.packb(data, use_bin_type=True))
    with pytest.raises(ModelError, match="corrupt"):
        store.load(bad, CFG)
    newer = tmp_path / "newer.model"
    newer.write_bytes(msgpack.packb({**store.to_dict(eng.images[IMAGE_ID]), "version": VERSION + 1}))
    with pytest.raises(ModelError, match="newer"):
        store.load(newer, CFG)
    assert bad.exists() and newer.exists()  # loading moves nothing: the store's owner quarantines
    ModelEngine.open(tmp_path, CFG)
    assert not bad.exists() and not newer.exists()
    assert list(tmp_path.glob("bad.model.corrupt-*")) and list(tmp_path.glob("newer.model.newer-*"))


def test_rate_finding_names_the_top_processes_and_their_ancestry() -> None:
    """issue 20 item 6: a rate anomaly carries the processes behind it (most events in the window
    first) with their ancestry, and the finding's event is the top one's, not whatever came last."""
    eng, end = profiled_engine()
    t = end + SEC
    base = deviation("new_binary", t)[0].replace(ancestry=("/bin/sh", "/usr/sbin/httpd"), pexe="/bin/sh")
    storm = [base.replace(time_ns=t + k * 10_000_000, pid=4242, exe="/usr/bin/wget", comm="wget") for k in range(300)]
    storm.append(base.replace(time_ns=t + 4 * SEC, pid=77, exe="/bin/sleep", comm="sleep", args=("sleep", "1"),
                              ancestry=("/bin/sh",)))
    out = [f for ev in storm for f in eng.handle(ev)] + eng.tick(t + 60 * SEC)
    [f] = [f for f in out if f.kind == RATE_ANOMALY]
    procs = f.explanation["window_processes"]
    assert procs[0] == {"pid": 4242, "exe": "/usr/bin/wget", "events": 300,
                        "ancestry": ["/bin/sh", "/usr/sbin/httpd"]}
    assert procs[1]["pid"] == 77 and procs[1]["events"] == 1
    assert "/usr/bin/wget (pid 4242, 300 events, under /bin/sh < /usr/sbin/httpd)" in f.output
    assert (f.event.pid, f.event.exe, f.event.ancestry) == (4242, "/usr/bin/wget", ("/bin/sh", "/usr/sbin/httpd"))
