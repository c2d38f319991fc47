"""Operator decisions made with the CLI while a sensor owns the model store: never written over,
applied by the running engine on its next tick, still there after a restart; and with no sensor
running the CLI still updates the model file itself."""

from __future__ import annotations

from pathlib import Path

import msgpack

from bench.workloads import IMAGE_ID, SEC, deviation, fleet
from models import decisions, store
from models.baseline import ModelConfig
from models.decisions import Decision
from models.engine import ModelEngine
from tests.unit.model_cli import model_cli

CFG = ModelConfig(min_learn_s=60, stable_s=30)
LATER = fleet(3, 240)[-1].time_ns + SEC


def learned() -> ModelEngine:
    eng = ModelEngine(CFG)
    for ev in fleet(3, 240):
        eng.handle(ev)
    return eng


def audit_of(store_dir: Path, action: str) -> list[dict[str, object]]:
    b = ModelEngine.open(store_dir, CFG, owner=False).images[IMAGE_ID]
    return [e for e in b.life.audit if e["action"] == action]


def test_cli_accept_survives_the_running_sensors_save_and_restart(tmp_path: Path) -> None:
    run = model_cli(learned(), tmp_path)
    sensor = ModelEngine.open(tmp_path, CFG)  # the daemon: loaded before the operator's decision
    assert run("accept", IMAGE_ID, "listen", "tcp", "9090", "--reason", "metrics port") == 0
    sensor.save_all()  # the periodic save, before any tick: it used to write the item away
    [entry] = audit_of(tmp_path, "accept listen tcp 9090")
    assert entry["reason"] == "metrics port" and str(entry["actor"]).startswith("cli:")
    assert sensor.images[IMAGE_ID].profile.known("listen", ("tcp", 9090))
    assert not decisions.has_pending(tmp_path)  # consumed once saved
    restarted = ModelEngine.open(tmp_path, CFG)
    assert restarted.images[IMAGE_ID].profile.known("listen", ("tcp", 9090))
    assert len(audit_of(tmp_path, "accept listen tcp 9090")) == 1  # applied by CLI and sensor: once


def test_accepted_item_stops_findings_in_the_running_sensor_at_its_next_tick(tmp_path: Path) -> None:
    run = model_cli(learned(), tmp_path)
    sensor = ModelEngine.open(tmp_path, CFG)
    assert sensor.handle(deviation("new_listen_port", LATER)[0])  # found before the decision
    assert run("accept", IMAGE_ID, "listen", "tcp", "4444", "--reason", "debug port") == 0
    sensor.tick(LATER + SEC)  # the daemon ticks every second
    assert sensor.handle(deviation("new_listen_port", LATER + 2 * SEC, i=1)[0]) == []
    assert not decisions.has_pending(tmp_path)
    # the tick saved what it applied: a crash before the 30 s save loses nothing
    assert ModelEngine.open(tmp_path, CFG, owner=False).images[IMAGE_ID].profile.known("listen", ("tcp", 4444))


def test_cli_mode_applies_in_the_running_sensor_and_is_kept(tmp_path: Path) -> None:
    run = model_cli(learned(), tmp_path)
    sensor = ModelEngine.open(tmp_path, CFG)
    assert run("mode", IMAGE_ID, "enforce", "--reason", "go live") == 0
    sensor.tick(LATER)
    assert sensor.mode(IMAGE_ID) == "enforce"
    sensor.save_all()
    b = ModelEngine.open(tmp_path, CFG).images[IMAGE_ID]
    assert b.mode == "enforce" and [e["reason"] for e in b.life.audit if e["action"] == "mode alert -> enforce"] \
        == ["go live"]


def test_cli_reject_while_sensor_runs_is_not_undone(tmp_path: Path) -> None:
    run = model_cli(learned(), tmp_path)
    sensor = ModelEngine.open(tmp_path, CFG)
    assert run("reject", IMAGE_ID, "process", "/usr/bin/wget", "0", "--reason", "not ours") == 0
    sensor.save_all()
    on_disk = store.load(next(tmp_path.glob("*.model")), CFG)  # the file as saved, inbox aside
    assert not on_disk.profile.known("process", ("/usr/bin/wget", 0))
    assert not ModelEngine.open(tmp_path, CFG).images[IMAGE_ID].profile.known("process", ("/usr/bin/wget", 0))


def test_without_a_sensor_the_cli_updates_the_file_and_a_later_sensor_applies_nothing_twice(
        tmp_path: Path) -> None:
    run = model_cli(learned(), tmp_path)
    assert run("accept", IMAGE_ID, "process", "/usr/bin/nc", "0") == 0
    assert run("reject", IMAGE_ID, "process", "/usr/bin/nc", "0") == 0
    on_disk = store.load(next(tmp_path.glob("*.model")), CFG)  # no engine involved: the file itself
    assert not on_disk.profile.known("process", ("/usr/bin/nc", 0)) and decisions.has_pending(tmp_path)
    sensor = ModelEngine.open(tmp_path, CFG)  # starts later: both already in the file's audit
    assert not sensor.images[IMAGE_ID].profile.known("process", ("/usr/bin/nc", 0))
    assert not decisions.has_pending(tmp_path)
    assert [e["action"] for e in sensor.images[IMAGE_ID].life.audit[-2:]] == [
        "accept process /usr/bin/nc 0", "reject process /usr/bin/nc 0"]


def test_decision_replayed_after_a_crash_applies_once(tmp_path: Path) -> None:
    eng = learned()
    eng.store_dir = tmp_path
    eng.save_all()
    d = Decision("accept", IMAGE_ID, "cli:ops", "x", "listen", ("tcp", 7000))
    path = decisions.post(tmp_path, d)
    copy = path.read_bytes()
    sensor = ModelEngine.open(tmp_path, CFG)
    assert not path.exists()
    path.write_bytes(copy)  # as if the sensor died after saving, before removing it
    again = ModelEngine.open(tmp_path, CFG)
    assert sensor.images[IMAGE_ID].profile.known("listen", ("tcp", 7000))
    assert len([e for e in again.images[IMAGE_ID].life.audit if e.get("decision") == d.id]) == 1


def test_bad_and_unappliable_decisions_are_set_aside_and_reported(tmp_path: Path) -> None:
    eng = learned()
    eng.store_dir = tmp_path
    eng.save_all()
    inbox = decisions.inbox(tmp_path)
    inbox.mkdir()
    (inbox / "1-bad.decision").write_bytes(b"\xc1 not msgpack")
    (inbox / "2-newer.decision").write_bytes(msgpack.packb({"format": "cgsentry-decision", "version": 9}))
    decisions.post(tmp_path, Decision("accept", "sha256:gone", "cli:ops", dimension="listen", key=("tcp", 1)))
    opened = ModelEngine.open(tmp_path, CFG)
    assert len(opened.load_errors) == 2 and "newer" in opened.load_errors[1]
    names = sorted(p.name for p in inbox.iterdir())
    assert not decisions.has_pending(tmp_path)
    assert any(".corrupt-" in n for n in names) and any(".failed-" in n for n in names)


def test_reader_sees_queued_decisions_but_leaves_them_for_the_sensor(tmp_path: Path) -> None:
    eng = learned()
    eng.store_dir = tmp_path
    eng.save_all()
    decisions.post(tmp_path, Decision("mode", IMAGE_ID, "cli:ops", mode="enforce"))
    assert ModelEngine.open(tmp_path, CFG, owner=False).mode(IMAGE_ID) == "enforce"
    assert decisions.has_pending(tmp_path)  # the CLI never consumes the sensor's inbox
    assert ModelEngine.open(tmp_path, CFG).mode(IMAGE_ID) == "enforce"
    assert not decisions.has_pending(tmp_path)


def test_a_malformed_item_in_a_decision_neither_stops_the_sensor_nor_changes_the_model(tmp_path: Path) -> None:
    """A syscall decision with no parts once raised IndexError out of tick(), and again at every
    restart while the file stayed queued."""
    eng = learned()
    eng.store_dir = tmp_path
    eng.save_all()
    before = {dim: set(items) for dim, items in eng.images[IMAGE_ID].profile.items.items()}
    for i, (dim, key) in enumerate([("syscall", []), ("listen", ["tcp", [1]]), ("process", ["/x", True])]):
        raw = Decision("accept", IMAGE_ID, "cli:ops", dimension="listen", key=("tcp", 1)).to_dict()
        raw.update(dimension=dim, key=key)
        (decisions.inbox(tmp_path)).mkdir(exist_ok=True)
        (decisions.inbox(tmp_path) / f"{i}-bad.decision").write_bytes(msgpack.packb(raw))
    eng.tick(LATER)  # applies the inbox: must not raise
    opened = ModelEngine.open(tmp_path, CFG)  # nor at restart
    assert not decisions.has_pending(tmp_path) and len(eng.load_errors) == 3  # set aside, each reported
    assert {dim: set(items) for dim, items in opened.images[IMAGE_ID].profile.items.items()} == before
