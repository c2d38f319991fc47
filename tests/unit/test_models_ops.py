"""Models, operator side: host events, severity, idle windows, would-enforce counts, reject with
audit, CLI list/mode/diff/networkpolicy on a tmp store, non-model files, sequence scorers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgpack
import pytest
import yaml

from bench.workloads import IMAGE_ID, SEC, deviation, fleet
from models import store
from models.baseline import ModelConfig
from models.engine import ModelEngine
from models.errors import ModelError
from models.sequence import BagOfSyscalls, NgramNovelty, Stide
from sensor.events import HOST, NEW_PARENT, NEW_PROCESS, Event
from tests.unit.model_cli import model_cli

CFG = ModelConfig(min_learn_s=60, stable_s=30)


def learned(seconds: int = 240, containers: int = 3) -> ModelEngine:
    eng = ModelEngine(CFG)
    for ev in fleet(containers, seconds):
        eng.handle(ev)
    return eng


def host_exec(t: int) -> Event:
    return Event("exec", t, pid=5, comm="nc", exe="/usr/bin/nc", container_id=HOST, runtime="host")


def test_host_events_are_ignored_unless_configured() -> None:
    eng = ModelEngine(CFG)
    assert eng.handle(host_exec(1)) == [] and eng.images == {}
    eng = ModelEngine(ModelConfig(learn_host=True))
    eng.handle(host_exec(1))
    assert eng.images[HOST].profile.known("process", ("/usr/bin/nc", 0))


def test_severity_shell_under_service_and_binary_from_tmp_are_errors() -> None:
    eng = learned()
    t = fleet(3, 240)[-1].time_ns + SEC
    [shell] = eng.handle(deviation("shell_from_server", t)[0])
    [binary] = eng.handle(deviation("new_binary", t, i=1)[0])
    # /bin/sh itself is known; its new parent httpd is the deviation
    assert shell.kind == NEW_PARENT and binary.kind == NEW_PROCESS
    assert shell.priority == "ERROR" and binary.priority == "ERROR"  # README, "Severity"
    # the analyst line names what was seen, where, and what the baseline knows
    assert "/tmp/xmrig" in binary.output and "web-1" in binary.output and "3 container(s)" in binary.output
    assert binary.explanation["seen"].startswith("/tmp/xmrig (parent /bin/sh")


def test_learning_mode_learns_deviations_instead_of_alerting() -> None:
    eng = ModelEngine(ModelConfig(min_learn_s=10**6))
    evs = fleet(1, 30)
    for ev in evs:
        eng.handle(ev)
    assert eng.handle(deviation("new_binary", evs[-1].time_ns + SEC)[0]) == []
    assert eng.images[IMAGE_ID].profile.known("process", ("/tmp/xmrig", 0))


def test_tick_closes_idle_windows_into_training() -> None:
    eng = ModelEngine(ModelConfig(min_learn_s=10**6, window_s=10))
    evs = fleet(1, 5)
    for ev in evs:
        eng.handle(ev)
    before = len(eng.images[IMAGE_ID].rate.windows)
    assert eng.tick(evs[-1].time_ns + SEC) == []  # still inside its window: stays open
    assert eng.open_window(evs[-1].container_id) is not None
    eng.tick(evs[-1].time_ns + 30 * SEC)
    assert eng.open_window(evs[-1].container_id) is None and len(eng.images[IMAGE_ID].rate.windows) == before + 1


def test_would_enforce_counts_and_persist(tmp_path: Path) -> None:
    eng = learned()
    eng.record_would_enforce(IMAGE_ID, NEW_PROCESS)
    eng.record_would_enforce(IMAGE_ID, NEW_PROCESS)
    eng.record_would_enforce("sha256:unknown", NEW_PROCESS)  # unknown image: ignored, no crash
    eng.store_dir = tmp_path
    eng.save_all()
    assert ModelEngine.open(tmp_path, CFG).images[IMAGE_ID].life.would_enforce == {NEW_PROCESS: 2}


def test_not_a_model_file_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "x.model"
    path.write_bytes(msgpack.packb({"hello": 1}))
    with pytest.raises(ModelError, match="not a cgsentry model"):
        store.load(path, CFG)
    assert path.exists()
    assert "not a cgsentry model" in ModelEngine.open(tmp_path, CFG).load_errors[0]
    assert not path.exists() and len(list(tmp_path.glob("x.model.corrupt-*"))) == 1


@pytest.fixture()
def cli(tmp_path: Path) -> tuple[Path, object]:
    return tmp_path, model_cli(learned(), tmp_path)


def test_cli_list_and_mode(cli: tuple[Path, object], capsys: pytest.CaptureFixture[str]) -> None:
    store_dir, run = cli
    assert run("list", "--json") == 0  # type: ignore[operator]
    [row] = json.loads(capsys.readouterr().out)
    assert row["key"] == IMAGE_ID and row["mode"] == "alert" and row["containers"] == 3
    assert run("mode", IMAGE_ID, "enforce") == 0  # type: ignore[operator]
    b = ModelEngine.open(store_dir, CFG).images[IMAGE_ID]
    assert b.mode == "enforce" and b.life.audit[-1]["action"] == "mode alert -> enforce"
    assert b.life.audit[-1]["actor"].startswith("cli:")


def test_cli_reject_is_audited_and_missing_item_fails(cli: tuple[Path, object]) -> None:
    store_dir, run = cli
    assert run("reject", IMAGE_ID, "process", "/usr/bin/wget", "0", "--reason", "not ours") == 0  # type: ignore[operator]
    b = ModelEngine.open(store_dir, CFG).images[IMAGE_ID]
    assert not b.profile.known("process", ("/usr/bin/wget", 0))
    assert b.life.audit[-1]["reason"] == "not ours" and "reject process" in b.life.audit[-1]["action"]
    with pytest.raises(ModelError, match="not in the baseline") as err:
        run("reject", IMAGE_ID, "process", "/usr/bin/wget", "0")  # type: ignore[operator]
    assert err.value.exit_code == 66


def test_cli_accept_records_provenance(cli: tuple[Path, object]) -> None:
    store_dir, run = cli
    assert run("accept", IMAGE_ID, "process", "/usr/bin/nc", "0") == 0  # type: ignore[operator]
    b = ModelEngine.open(store_dir, CFG).images[IMAGE_ID]
    stat = b.profile.items["process"][("/usr/bin/nc", 0)]
    assert stat.provenance["accepted_by"].startswith("cli:")
    t = fleet(3, 240)[-1].time_ns + SEC
    ev = deviation("new_binary", t)[0].replace(exe="/usr/bin/nc", comm="nc")
    # the process is now known; only its unseen parent is reported
    assert [f.kind for f in ModelEngine.open(store_dir, CFG).handle(ev)] == ["new_parent"]


def test_cli_diff_model_files(cli: tuple[Path, object], tmp_path_factory: pytest.TempPathFactory,
                              capsys: pytest.CaptureFixture[str]) -> None:
    store_dir, run = cli
    [a] = list(store_dir.glob("*.model"))
    other = tmp_path_factory.mktemp("other")
    b = store.load(a, CFG)
    b.profile.items["listen"].pop(("tcp", 8080))
    b_path = store.save(b, other)
    assert run("diff", str(a), str(a)) == 0  # type: ignore[operator]
    capsys.readouterr()
    assert run("diff", str(a), str(b_path), "--json") == 1  # type: ignore[operator]
    diff = json.loads(capsys.readouterr().out)
    [item] = diff["listen"]["only_a"]  # structured, as `model show --json` gives items
    assert (item["kind"], item["proto"], item["port"], diff["listen"]["only_b"]) == ("listen", "tcp", 8080, [])


def test_cli_networkpolicy_to_file(cli: tuple[Path, object], tmp_path_factory: pytest.TempPathFactory) -> None:
    _, run = cli
    out = tmp_path_factory.mktemp("np") / "np.yaml"
    assert run("export", IMAGE_ID, "--networkpolicy", "-o", str(out)) == 0  # type: ignore[operator]
    doc = yaml.safe_load(out.read_text())
    assert doc["kind"] == "NetworkPolicy" and doc["metadata"]["name"] == (  # per image: no collisions
        "cgsentry-busybox-" + hashlib.sha256(b"cgsentry/busybox:latest").hexdigest()[:10])
    assert doc["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_sequence_scorers_rank_novel_traces_higher() -> None:
    train = [[1, 2, 3, 4, 5, 6, 7] * 5, [1, 2, 3, 4, 5, 6, 7, 8] * 4]
    normal, attack = [1, 2, 3, 4, 5, 6, 7] * 3, [9, 10, 11, 1, 2, 12, 13, 14, 15] * 3
    stide = Stide(3).fit(train)
    assert stide.score(normal) == 0.0 and stide.score(attack) > 0.8
    for model in (BagOfSyscalls().fit(train), NgramNovelty().fit(train)):
        assert model.score(attack) > model.score(normal)
    nn = NgramNovelty().fit(train)
    assert nn.score(normal) == NgramNovelty().fit(train).score(normal)  # deterministic
