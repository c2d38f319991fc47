"""Models: profile dimensions, lifecycle, loss-awareness, merge, persistence, determinism, exports."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import numpy as np
import pytest

from bench.workloads import DEVIATIONS, IMAGE_ID, SEC, deviation, fleet
from models import store
from models.baseline import ModelConfig
from models.engine import ModelEngine
from models.errors import ModelError
from models.export import network_policy, seccomp_profile
from models.fleet import merge_snapshots
from sensor.events import Event
from tests.unit.model_cli import model_cli

CFG = ModelConfig(min_learn_s=60, stable_s=30)


def learned(seconds: int = 240, containers: int = 3, cfg: ModelConfig = CFG) -> ModelEngine:
    eng = ModelEngine(cfg)
    for ev in fleet(containers, seconds):
        assert eng.handle(ev) == []  # learning never alerts
    return eng


def test_profile_dimensions_are_learned() -> None:
    b = learned().images[IMAGE_ID]
    items = b.profile.items
    assert ("/usr/sbin/httpd", 0) in items["process"] and ("/usr/bin/wget", "/bin/sh") in items["parent"]
    assert set(items["listen"]) == {("tcp", 8080)} and set(items["inbound"]) == {("tcp", 8080)}
    assert set(items["outbound"]) == {("tcp", 8080, "127.0.0.1")}
    stat = items["process"][("/usr/sbin/httpd", 0)]
    assert len(stat.containers) == 3 and stat.provenance["container"] == "web-0"
    assert len(b.profile.containers) == 3


def test_an_accept_whose_local_port_is_unknown_is_not_an_item() -> None:
    """Port 0 means the sensor could not tell the listener, not that the image serves port 0."""
    from models.profile import item_keys

    assert list(item_keys(Event("accept", 1, proto="tcp", sport=8080))) == [("inbound", ("tcp", 8080))]
    assert list(item_keys(Event("accept", 1, proto="tcp", sport=0))) == []


def test_observed_time_and_auto_promotion() -> None:
    eng = ModelEngine(CFG)
    evs = fleet(1, 240)
    promoted_at = None
    for ev in evs:
        eng.handle(ev)
        if promoted_at is None and eng.mode(IMAGE_ID) == "alert":
            promoted_at = ev.time_ns
    b = eng.images[IMAGE_ID]
    assert promoted_at is not None and 60 <= (promoted_at - evs[0].time_ns) / SEC <= 70
    assert b.life.audit[-1]["actor"] == "auto-promotion"
    # observed time ignores idle gaps: the same activity shifted by an hour adds no idle hour
    eng2 = ModelEngine(ModelConfig(min_learn_s=10**6))
    for ev in fleet(1, 60) + fleet(1, 60, start_ns=evs[0].time_ns + 3600 * SEC):
        eng2.handle(ev)
    assert 110 < eng2.images[IMAGE_ID].learned_s() < 125


def test_learned_time_counts_only_learning_and_promotion_follows_wall_time_without_news() -> None:
    """issue 20 item 6: "baseline learned 82s" grew in alert mode, and promotion waited for a share
    of observed time that a quiet service takes hours to collect (NeuVector's rule instead)."""
    eng = ModelEngine(CFG)
    evs = fleet(1, 240)
    for ev in evs:
        eng.handle(ev)
    b = eng.images[IMAGE_ID]
    assert b.mode == "alert" and 60 <= b.learned_s() <= 70  # frozen at promotion, not 240
    promoted = b.life.promoted_ns
    # a quiet image: an event every 45 s is never "observed" time, yet after min_learn_s of wall
    # time with nothing new it is promoted
    quiet = ModelEngine(CFG)
    t0 = evs[0].time_ns
    for i in range(3):
        quiet.handle(Event("exec", t0 + i * 45 * SEC, pid=10 + i, exe="/bin/date", comm="date", uid=0,
                           container_id="c1", image="img:1", image_id=IMAGE_ID, pexe="/bin/sh"))
    q = quiet.images[IMAGE_ID]
    assert q.mode == "alert" and q.learned_s() == 0 and q.life.audit[-1]["actor"] == "auto-promotion"
    news = ModelEngine(CFG)  # something new every 20 s: never 30 s without news, never promoted
    for i in range(12):
        news.handle(Event("exec", t0 + i * 20 * SEC, pid=10 + i, exe=f"/bin/new{i}", comm="x", uid=0,
                          container_id="c1", image="img:1", image_id=IMAGE_ID, pexe="/bin/sh"))
    assert news.images[IMAGE_ID].mode == "learn"
    assert news.tick(t0 + 250 * SEC) == [] and news.images[IMAGE_ID].mode == "alert"  # then quiet
    assert promoted > 0


@pytest.mark.parametrize("kind", DEVIATIONS)
def test_each_injected_deviation_is_found_with_reasons(kind: str) -> None:
    # learned for all 240 s, then promoted: "learned" counts only time in learning mode
    eng = learned(cfg=ModelConfig(min_learn_s=60, stable_s=30, auto_promote=False))
    t = fleet(3, 240)[-1].time_ns + SEC
    eng.set_mode(IMAGE_ID, "alert", "test", t)
    out = [f for ev in deviation(kind, t) for f in eng.handle(ev)] + eng.tick(t + 60 * SEC)
    assert out, kind
    f = out[0]
    assert f.mode == "alert" and f.explanation["learned_s"] > 200 and f.explanation["containers"] == 3
    assert f.explanation["expected"], "a finding says what was expected"
    assert f.event.container_id


def test_benign_replay_has_no_findings_and_scores_are_deterministic() -> None:
    a, b = learned(), learned()
    later = fleet(3, 300, start_ns=1_800_000_000 * SEC, seed=2)
    assert [f for ev in later for f in a.handle(ev)] == []
    vec = np.arange(16, dtype=np.float64)
    assert a.images[IMAGE_ID].rate.score(vec) == b.images[IMAGE_ID].rate.score(vec)


def test_finding_once_per_container_and_item() -> None:
    eng = learned()
    t = fleet(3, 240)[-1].time_ns + SEC
    first = eng.handle(deviation("new_binary", t)[0])
    again = eng.handle(deviation("new_binary", t + SEC)[0])
    other = eng.handle(deviation("new_binary", t, i=1)[0])
    assert len(first) == 1 and again == [] and len(other) == 1


def test_loss_freezes_learning_and_tags_findings() -> None:
    eng = ModelEngine(ModelConfig(min_learn_s=10**6, loss_freeze_s=10))
    evs = fleet(1, 30)
    for ev in evs:
        eng.handle(ev)
    t = evs[-1].time_ns
    eng.on_loss(5, t)
    eng.handle(deviation("new_binary", t + SEC)[0])
    assert ("/tmp/xmrig", 0) not in eng.images[IMAGE_ID].profile.items["process"]
    eng.set_mode(IMAGE_ID, "alert", "test", t)
    eng.on_loss(1, t + 2 * SEC)
    f = eng.handle(deviation("new_listen_port", t + 3 * SEC)[0])
    assert f and f[0].during_loss


def test_relearn_extend_and_mode_validation() -> None:
    eng = learned()
    b = eng.images[IMAGE_ID]
    b.extend("ops", 1, 120)
    assert b.mode == "learn" and b.stable_s() < 0
    b.relearn("ops", 2)
    assert b.profile.size() == 0 and b.life.audit[-1]["action"] == "relearn"
    with pytest.raises(ModelError, match="not one of"):
        eng.set_mode(IMAGE_ID, "panic", "ops", 3)


def test_new_digest_of_same_repo_is_seeded_and_flagged() -> None:
    eng = learned()
    ev = fleet(1, 5)[0].replace(image_id="sha256:" + "c" * 64)
    eng.handle(ev)
    nb = eng.images["sha256:" + "c" * 64]
    assert nb.life.seeded_from == IMAGE_ID and nb.profile.known("listen", ("tcp", 8080))


def test_merge_is_associative_and_commutative() -> None:
    snaps = []
    for i in range(3):
        eng = ModelEngine(CFG, node=f"node-{i}")
        for ev in fleet(1, 60 + 30 * i, seed=i + 3):
            eng.handle(ev.replace(container_id=f"{i}" * 64))
        snaps.append(eng.registry.snapshot(IMAGE_ID))
    a, b, c = snaps
    left = merge_snapshots(merge_snapshots(a, b), c)
    right = merge_snapshots(a, merge_snapshots(b, c))
    swapped = merge_snapshots(c, merge_snapshots(b, a))
    assert msgpack.packb(left) == msgpack.packb(right) == msgpack.packb(swapped)
    merged = store.from_dict(left, CFG)
    assert len(merged.profile.containers) == 3 and merged.profile.nodes == {"node-0", "node-1", "node-2"}


def test_persistence_round_trip(tmp_path: Path) -> None:
    eng = learned()
    eng.store_dir = tmp_path
    eng.save_all()
    again = ModelEngine.open(tmp_path, CFG)
    a, b = eng.images[IMAGE_ID], again.images[IMAGE_ID]
    assert b.mode == "alert" and b.profile.to_dict() == a.profile.to_dict()
    vec = np.full(16, 3.0)
    assert a.rate.score(vec) == b.rate.score(vec)  # refit from stored windows: identical


def test_corrupt_and_newer_files_are_quarantined(tmp_path: Path) -> None:
    eng = learned()
    eng.store_dir = tmp_path
    [path] = eng.save_all()
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ModelError, match="corrupt"):
        store.load(path, CFG)
    assert path.exists()  # loading moves nothing: only the store's owner quarantines
    newer = tmp_path / "n.model"
    newer.write_bytes(msgpack.packb({"format": "cgsentry-model", "version": 99}))
    opened = ModelEngine.open(tmp_path, CFG)
    assert opened.images == {} and "newer" in opened.load_errors[1]
    assert not path.exists() and list(tmp_path.glob("*.model.corrupt-*"))
    assert not newer.exists() and list(tmp_path.glob("n.model.newer-*"))


def test_exports() -> None:
    eng = ModelEngine(CFG)
    start = fleet(1, 1)[0].time_ns
    for nr in (0, 1, 3, 257):  # first-seen syscall records while learning
        eng.handle(Event("syscall", start, syscall_nr=nr, container_id="0" * 64,
                         image_id=IMAGE_ID, runtime="docker"))
    for ev in fleet(3, 240):
        eng.handle(ev)
    b = eng.images[IMAGE_ID]
    seccomp = seccomp_profile(b)
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    assert {"read", "write", "close", "openat", "execve"} <= set(seccomp["syscalls"][0]["names"])
    pol = network_policy(b)
    assert pol["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert pol["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"] == "127.0.0.1/32"


def test_cli_show_export_accept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = model_cli(learned(), tmp_path)
    assert run("show", IMAGE_ID, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["mode"] == "alert" and shown["containers"] == 3
    assert run("export", "cgsentry/busybox:latest", "--seccomp") == 0
    assert json.loads(capsys.readouterr().out)["defaultAction"] == "SCMP_ACT_ERRNO"
    assert run("accept", IMAGE_ID, "listen", "tcp", "9090", "--reason", "new metrics port") == 0
    assert ModelEngine.open(tmp_path, CFG).images[IMAGE_ID].profile.known("listen", ("tcp", 9090))
    with pytest.raises(ModelError, match="no model for image"):
        run("show", "nope:1")


def test_connect_rates_from_kernel_counters() -> None:
    """With the kernel's first-seen filter on, connect/accept rates come from the counters."""
    from sensor import layout as L

    eng = ModelEngine(CFG)
    eng.kernel_counts = True
    evs = fleet(1, 40)
    cg = evs[0].cgroup_id
    per_window: list[float] = []
    for ev in evs:
        before = eng.open_window(ev.container_id)
        eng.handle(ev)
        if before is not None and eng.open_window(ev.container_id) is not before:
            per_window.append(before.counts.get("connects", 0.0))
        # the kernel counter: one more connect per second since the container started
        eng.observe_kernel_counts({(cg, L.OP_CONNECT, True): (ev.time_ns - evs[0].time_ns) // SEC})
    assert per_window and all(c == 0 or c >= 5 for c in per_window)  # counted from the map, not events
    assert max(per_window) <= 11  # 10 s windows, about one connect per second


def test_fork_and_exit_rates_from_kernel_counters_not_records() -> None:
    """Forks (and exits of fork-only children) never leave the kernel; their rates come from the
    per-cgroup counters, and an exit record that does arrive is not counted twice."""
    from sensor import layout as L

    eng = ModelEngine(CFG)
    eng.kernel_counts = True
    ev = fleet(1, 1)[0]
    eng.handle(ev)
    cg = ev.cgroup_id
    eng.observe_kernel_counts({(cg, L.OP_FORK, True): 40, (cg, L.OP_EXIT, True): 30})
    eng.observe_kernel_counts({(cg, L.OP_FORK, True): 45, (cg, L.OP_EXIT, True): 30})  # +5 forks
    eng.handle(ev.replace(kind="exit", time_ns=ev.time_ns + 1))
    window = eng.open_window(ev.container_id)
    assert window is not None and (window.counts.get("forks"), window.counts.get("exits")) == (45.0, 30.0)


def test_image_first_seen_during_loss_is_frozen_too() -> None:
    eng = ModelEngine(ModelConfig(min_learn_s=10**6, loss_freeze_s=10))
    t = fleet(1, 1)[0].time_ns
    eng.on_loss(7, t)  # drops before the image was ever seen
    eng.handle(deviation("new_binary", t + SEC)[0])
    assert eng.images[IMAGE_ID].life.frozen(t + SEC)
    assert ("/tmp/xmrig", 0) not in eng.images[IMAGE_ID].profile.items["process"]


@pytest.mark.parametrize("n_windows", [6, 40, 600])
def test_flat_forest_scores_equal_scikit_learns(n_windows: int) -> None:
    """The array walk that replaced score_samples gives scikit-learn's scores, window for window,
    including windows far outside the training range and on exact split values."""
    from sklearn.ensemble import IsolationForest

    from models.ratemodel import FlatForest

    rng = np.random.default_rng(n_windows)
    train = rng.gamma(2.0, 3.0, size=(n_windows, 9))
    train[:, 2] = np.round(train[:, 2])  # repeated values: thresholds that queries hit exactly
    forest = IsolationForest(n_estimators=100, random_state=7, contamination="auto").fit(train)
    queries = np.vstack([train, train * 50, np.zeros((1, 9)),
                         rng.gamma(2.0, 3.0, size=(300, 9)) * rng.choice([0.1, 1.0, 10.0], size=(300, 9))])
    flat = FlatForest.from_sklearn(forest)
    np.testing.assert_allclose(flat.score(queries), -forest.score_samples(queries), rtol=0, atol=1e-12)
    assert flat.score(queries[5])[0] == pytest.approx(-forest.score_samples(queries[5:6])[0], abs=1e-12)


def test_numpy_isolation_forest_ranks_like_scikit_learns() -> None:
    """The forest the sensor fits without scikit-learn: deterministic per seed, and it ranks
    outliers above inliers as well as scikit-learn's does (its trees use another random
    stream, so scores agree in ranking, not digit for digit)."""
    from sklearn.ensemble import IsolationForest

    from models.ratemodel import isolation_forest

    rng = np.random.default_rng(3)
    train = rng.gamma(2.0, 3.0, size=(400, 9))
    inliers = rng.gamma(2.0, 3.0, size=(200, 9))
    outliers = inliers * rng.choice([8.0, 0.05], size=(200, 9))
    queries = np.vstack([inliers, outliers])
    truth = np.r_[np.zeros(200), np.ones(200)]
    ours = isolation_forest(train, seed=7).score(queries)
    np.testing.assert_array_equal(ours, isolation_forest(train, seed=7).score(queries))
    theirs = -IsolationForest(n_estimators=100, random_state=7).fit(train).score_samples(queries)

    def auc(scores: np.ndarray) -> float:  # P(outlier scores above inlier)
        return float((scores[truth == 1][:, None] > scores[truth == 0][None, :]).mean())

    assert auc(ours) > 0.95 and abs(auc(ours) - auc(theirs)) < 0.02
    assert np.corrcoef(np.argsort(np.argsort(ours)), np.argsort(np.argsort(theirs)))[0, 1] > 0.9


def test_the_sensor_does_not_import_scikit_learn() -> None:
    """~100 MB of resident memory: the daemon's modules must not pull scikit-learn or scipy in."""
    import subprocess
    import sys

    code = ("import sys, sensor.agent.daemon, models.engine, models.ratemodel; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
