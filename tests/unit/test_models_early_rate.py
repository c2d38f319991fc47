"""A burst is reported while its window runs, saying which counters crossed and by how much
(issue 21 item 4)."""

from __future__ import annotations

from models.baseline import ModelConfig
from models.engine import ModelEngine
from sensor.events import Event

CID = "e" * 64
IMAGE = "sha256:rate"
S = 1_000_000_000


def ex(t: float, pid: int) -> Event:
    return Event("exec", int(t * S), pid=pid, comm="worker", exe="/bin/worker", args=("worker",),
                 container_id=CID, container_name="web-1", image="web:1", image_id=IMAGE, runtime="docker")


def learned() -> ModelEngine:
    """Forty 5 s windows of two or three execs each, then alert mode."""
    eng = ModelEngine(ModelConfig(window_s=5, min_learn_s=10_000, stable_s=10_000))
    for i in range(40 * 5):
        if i % 2 == 0 or i % 5 == 1:
            eng.handle(ex(i, 100 + i))
    eng.set_mode(IMAGE, "alert", "test", 200 * S)
    eng.early_rates = True  # as the sensor runs it
    return eng


def test_a_burst_is_reported_within_a_second_of_its_start() -> None:
    eng = learned()
    found = []
    for k in range(300):  # 300 execs in 0.6 s, at the start of a 5 s window
        found += eng.handle(ex(300 + k * 0.002, 1000 + k))
    rates = [f for f in found if f.rule == "Rate Anomaly"]
    assert len(rates) == 1, [f.rule for f in found]
    early = rates[0].explanation
    assert early["early"] and early["after_s"] < 1.0
    assert early["crossed"][0]["feature"] == "execs" and early["crossed"][0]["per_s"] > 10 * early["crossed"][0][
        "learned_per_s"]
    assert "crossed: execs" in rates[0].output
    # the window closes later without reporting the same burst again
    assert [f.rule for f in eng.handle(ex(306, 5000)) + eng.tick(320 * S)] == []


def test_a_usual_window_is_not_reported_early_or_late() -> None:
    eng = learned()
    found = []
    for i in range(20):
        if i % 2 == 0:
            found += eng.handle(ex(400 + i, 2000 + i))
        found += eng.tick(int((400 + i) * S))
    assert [f.rule for f in found if f.rule == "Rate Anomaly"] == []


def test_a_model_says_which_parts_are_not_active_yet() -> None:
    """Issue 21 item 6: the rate model needs MIN_WINDOWS windows; until then it says so."""
    eng = ModelEngine(ModelConfig(window_s=5, min_learn_s=10_000, stable_s=10_000))
    for i in range(12):  # two 5 s windows' worth
        eng.handle(ex(i, 100 + i))
    eng.tick(30 * S)
    b = eng.get(IMAGE)
    [part] = b.inactive_parts()
    assert part["part"] == "rate" and part["windows"] < part["needs"] and part["more_learning_s"] > 0
    assert "more of learning" in part["text"]
    assert "learning again" in b.inactive_parts("alert")[0]["text"]
    assert learned().get(IMAGE).inactive_parts() == []  # forty windows: all active
