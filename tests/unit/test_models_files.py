"""Bad model files and bad CLI input: one line and a sysexits code, never a traceback, never data lost.

Read-only commands (list, show, diff, export) leave unreadable model files where they are (a newer
sensor sharing the store may own them); only the store's owner quarantines them. Any malformed
field of a model file is a ModelError at load, and any file that loads is usable by every command.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import msgpack
import numpy as np
import pytest
import yaml

from bench.workloads import IMAGE_ID, fleet
from models import decisions, items, store
from models.baseline import ModelConfig
from models.cli import register, summary
from models.decisions import Decision
from models.engine import ModelEngine
from models.errors import ModelError
from models.export import network_policy, seccomp_profile
from models.fleet import merge_snapshots
from models.profile import DIMENSIONS
from sensor.errors import run_command
from sensor.events import EXEC_SESSION, RULE, Event, Finding
from tests.unit.model_cli import model_cli

CFG = ModelConfig(min_learn_s=60, stable_s=30)
PROG = "cgsentry-sensor"


def learned() -> ModelEngine:
    """An alerting baseline with items in every dimension, audit entries and would-enforce counts."""
    eng = ModelEngine(CFG, node="node-a")
    start = fleet(1, 1)[0].time_ns
    for nr in (0, 1, 257):
        eng.handle(Event("syscall", start, syscall_nr=nr, container_id="0" * 64, image_id=IMAGE_ID, runtime="docker"))
    rotate = Event("exec", start, comm="sh", exe="/usr/bin/dash", pexe="/usr/sbin/logrotate", container_id="0" * 64,
                   image_id=IMAGE_ID, runtime="docker")
    eng.rule_finding(Finding(kind=RULE, rule="Shell Spawned by Non-Shell Program in Container", priority="ERROR",
                             output="o", event=rotate, time_ns=start, source="rule",
                             explanation={"learnable": True}))
    eng.handle(Event("exec", start, comm="cat", exe="/bin/cat", args=("cat", "/tmp/healthy"), pexe="/usr/bin/runc",
                     flags=EXEC_SESSION, container_id="0" * 64, image_id=IMAGE_ID, runtime="docker"))  # a probe
    for ev in fleet(3, 240):
        eng.handle(ev)
    eng.record_would_enforce(IMAGE_ID, "new_process")
    assert all(eng.images[IMAGE_ID].profile.items[d] for d in DIMENSIONS)
    return eng


def cli(store_dir: Path | str, *argv: str) -> int:
    """``cgsentry-sensor model --store DIR ...`` as its main runs it (expected errors: one line)."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="c"))
    args = parser.parse_args(["model", "--store", str(store_dir), *argv])
    return run_command(PROG, args.func, args)


def write(path: Path, data: Any) -> Path:
    path.write_bytes(msgpack.packb(data, use_bin_type=True))
    return path


@pytest.fixture()
def shared(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """A store with one good model and three this sensor cannot read."""
    model_cli(learned(), tmp_path)
    good = store.to_dict(learned().images[IMAGE_ID])
    bad = {"newer": write(tmp_path / "newer.model", {**good, "key": "sha256:n", "version": store.VERSION + 1}),
           "typed": write(tmp_path / "typed.model",
                          {**good, "key": "sha256:t", "life": {**good["life"], "mode": None}}),
           "bytes": tmp_path / "bytes.model"}
    bad["bytes"].write_bytes(b"\x93\x01")  # a truncated msgpack array
    return tmp_path, bad


@pytest.mark.parametrize("argv", [("list",), ("list", "--json"), ("show", IMAGE_ID), ("diff", IMAGE_ID, IMAGE_ID),
                                  ("export", IMAGE_ID, "--seccomp"), ("export", IMAGE_ID, "--networkpolicy")])
def test_read_only_commands_report_unreadable_files_and_leave_them(
        shared: tuple[Path, dict[str, Path]], argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    store_dir, bad = shared
    before = sorted(p.name for p in store_dir.rglob("*"))
    assert cli(store_dir, *argv) == 0
    out, err = capsys.readouterr()
    assert (out or argv[0] == "diff") and sorted(p.name for p in store_dir.rglob("*")) == before  # nothing moved
    lines = err.splitlines()
    assert len(lines) == 3 and all(line.startswith("warning: model ") for line in lines)
    assert all("left in place" in line and "moved" not in line for line in lines)
    assert any("format version 3 is newer" in line and "newer.model" in line for line in lines)
    assert any("life.mode" in line and "typed.model" in line for line in lines)


def test_model_list_as_installed_prints_one_line_per_unreadable_file(shared: tuple[Path, dict[str, Path]]) -> None:
    store_dir, bad = shared
    done = subprocess.run([sys.executable, "-m", "sensor", "model", "--store", str(store_dir), "list"],
                          capture_output=True, text=True, check=False, cwd=Path(__file__).parents[2])
    assert done.returncode == 0 and IMAGE_ID[:30] in done.stdout
    assert len(done.stderr.splitlines()) == 3 and all(p.exists() for p in bad.values()), done.stderr


def test_only_the_owner_quarantines_and_a_newer_file_is_not_called_corrupt(
        shared: tuple[Path, dict[str, Path]]) -> None:
    store_dir, bad = shared
    ModelEngine.open(store_dir, CFG, owner=False)
    assert all(p.exists() for p in bad.values())
    eng = ModelEngine.open(store_dir, CFG)
    assert list(eng.images) == [IMAGE_ID] and len(eng.load_errors) == 3
    assert not any(p.exists() for p in bad.values())
    assert [p.name.rsplit("-", 1)[0] for p in sorted(store_dir.glob("*.model.*"))] == [
        "bytes.model.corrupt", "newer.model.newer", "typed.model.corrupt"]


def test_a_quarantine_that_fails_says_so(shared: tuple[Path, dict[str, Path]], monkeypatch: pytest.MonkeyPatch) -> None:
    store_dir, bad = shared

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(store.os, "replace", refuse)
    errors = ModelEngine.open(store_dir, CFG).load_errors
    assert len(errors) == 3 and all(p.exists() for p in bad.values())
    assert all("could not move it to" in e and "Permission denied" in e and "left in place" in e
               and "moved to" not in e for e in errors)


def test_a_reader_leaves_an_unreadable_decision_for_the_owner(tmp_path: Path) -> None:
    model_cli(learned(), tmp_path)
    decisions.inbox(tmp_path).mkdir()
    newer = write(decisions.inbox(tmp_path) / f"{1:020d}-x{decisions.SUFFIX}",
                  {"format": decisions.FORMAT, "version": decisions.VERSION + 1})
    assert "left in place" in ModelEngine.open(tmp_path, CFG, owner=False).load_errors[0] and newer.exists()
    assert "moved to" in ModelEngine.open(tmp_path, CFG).load_errors[0] and not newer.exists()


# -- any malformed field is a ModelError; anything that loads is usable ------------------------
WRONG: list[Any] = [None, True, -1, 2**64 - 1, 1.5, math.nan, "", "x", b"x", [], [None], {}, {"x": 1}, {1: 2}]


def valid_model() -> dict[str, Any]:
    data = store.to_dict(learned().images[IMAGE_ID])
    data["life"]["mode"] = "learn"  # no forest fit per load (mode itself is mutated too)
    return msgpack.unpackb(msgpack.packb(data, use_bin_type=True), raw=False, strict_map_key=False)  # type: ignore[no-any-return]


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every field of a decoded model (of a list longer than a row: the first and the last element)."""
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(node, list) and node:
        for i in range(len(node)) if len(node) <= 8 else (0, len(node) - 1):
            yield from paths(node[i], (*prefix, i))


def mutants(data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in paths(data):
        for value in WRONG:
            doc = copy.deepcopy(data)
            parent = doc
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = value
            yield f"{path} = {value!r}", doc
        if isinstance(path[-1], str):
            doc = copy.deepcopy(data)
            parent = doc
            for step in path[:-1]:
                parent = parent[step]
            del parent[path[-1]]
            yield f"{path} deleted", doc


def usable(b: Any) -> None:
    """Everything the CLI and the engine do with a loaded baseline."""
    json.dumps(summary(b), default=str)
    json.dumps({"image": b.image, "key": b.key, "mode": b.mode, "learned_s": round(b.learned_s()),
                "items": b.profile.size(), "containers": len(b.profile.containers)})
    f"{(b.image or b.key)[:36]:<36} {b.mode:<8} {round(b.learned_s()):>7}s"  # model list's row
    for dim in DIMENSIONS:
        for key in sorted(b.profile.items[dim], key=items.sort_key):
            items.human(dim, key, b.profile.items[dim][key])
            items.spelling(dim, key)
    json.dumps(seccomp_profile(b))
    yaml.safe_dump(network_policy(b))
    doc = store.to_dict(b)
    msgpack.packb(merge_snapshots(doc, doc, CFG), use_bin_type=True)


def test_any_malformed_field_is_a_model_error_and_anything_that_loads_is_usable(tmp_path: Path) -> None:
    data = valid_model()
    usable(store.load(write(tmp_path / "ok.model", data), CFG))
    rejected = 0
    for what, doc in mutants(data):
        path = write(tmp_path / "m.model", doc)
        try:
            b = store.load(path, CFG)
        except ModelError as err:
            assert "\n" not in str(err) and path.exists(), what
            rejected += 1
            continue
        except Exception as err:  # noqa: BLE001 - the property under test
            pytest.fail(f"{what}: {type(err).__name__}: {err}")
        try:
            usable(b)
        except Exception as err:  # noqa: BLE001
            pytest.fail(f"{what} loaded but is unusable: {type(err).__name__}: {err}")
    assert rejected > 1000


@pytest.mark.parametrize(("where", "value"), [
    (("profile",), 5), (("profile",), []), (("profile", "items", "process"), [[["a", 0], [1]]]),
    (("life", "observed_ns"), "x"), (("life", "last_new_observed_ns"), "x"), (("life", "mode"), None),
    (("image",), 5), (("key",), 5), (("key",), None), (("life", "audit"), 5), (("rate", "shape"), [-1, 2]),
    (("rate", "seed"), -1), (("rate", "windows"), b"\x00" * 8),
    (("profile", "items", "listen"), [[["tcp", 70000], []]]),
])
def test_each_malformed_file_qa_found_is_one_model_error(tmp_path: Path, where: tuple[str, ...], value: Any) -> None:
    data = valid_model()
    parent = data
    for step in where[:-1]:
        parent = parent[step]
    parent[where[-1]] = value
    with pytest.raises(ModelError, match="corrupt") as err:
        store.load(write(tmp_path / "q.model", data), CFG)
    assert err.value.exit_code == 65 and "\n" not in str(err.value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, 1e39])
def test_window_rates_a_forest_cannot_fit_are_a_model_error(tmp_path: Path, value: float) -> None:
    data = valid_model()
    data["life"]["mode"] = "alert"  # fits the forest on load
    windows = np.frombuffer(data["rate"]["windows"], dtype=np.float64).copy()
    windows[3] = value
    data["rate"]["windows"] = windows.tobytes()
    with pytest.raises(ModelError, match=r"rate\.windows: holds values outside"):
        store.load(write(tmp_path / "w.model", data), CFG)


# -- CLI input ------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["/nonexistent/x.json", "DIR"])
def test_export_to_an_unwritable_path_is_one_line_exit_73(tmp_path: Path, target: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    model_cli(learned(), tmp_path)
    out = str(tmp_path) if target == "DIR" else target
    assert cli(tmp_path, "export", IMAGE_ID, "--seccomp", "-o", out) == 73
    err = capsys.readouterr().err
    assert err.startswith(f"{PROG}: cannot create {out}: ") and err.count("\n") == 1


@pytest.mark.parametrize("item", [("listen", "tcp", "99999999999999999999999"), ("listen", "tcp", "-5"),
                                  ("outbound", "tcp", "65536", "10.0.0.0/24"), ("process", "/bin/sh", "-1"),
                                  ("syscall", str(2**32)), ("syscall", "-1")])
def test_accept_checks_ranges_and_queues_nothing(tmp_path: Path, item: tuple[str, ...],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    model_cli(learned(), tmp_path)
    assert cli(tmp_path, "accept", IMAGE_ID, *item) == 64
    err = capsys.readouterr().err
    assert "must be in" in err and err.count("\n") == 1
    assert not decisions.inbox(tmp_path).exists() or not list(decisions.inbox(tmp_path).iterdir())
    assert cli(tmp_path, "accept", IMAGE_ID, "listen", "tcp", "65535") == 0


def test_post_leaves_no_temp_file_whatever_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError, match="cannot queue decision") as err:
        decisions.post(tmp_path, Decision("accept", IMAGE_ID, "t", dimension="listen", key=("tcp", 2**70)))
    assert err.value.exit_code == 65

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(decisions.os, "replace", refuse)
    with pytest.raises(ModelError, match="No space left") as err:
        decisions.post(tmp_path, Decision("accept", IMAGE_ID, "t", dimension="listen", key=("tcp", 80)))
    assert err.value.exit_code == 74
    assert list(decisions.inbox(tmp_path).iterdir()) == []


@pytest.mark.parametrize("argv", [("list",), ("show", IMAGE_ID), ("accept", IMAGE_ID, "listen", "tcp", "80")])
def test_a_missing_store_or_a_file_is_one_line_exit_66(tmp_path: Path, argv: tuple[str, ...],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    missing, a_file = tmp_path / "none", tmp_path / "file"
    a_file.write_text("x")
    assert cli(missing, *argv) == 66 and not missing.exists()
    assert capsys.readouterr().err == f"{PROG}: no model store at {missing}\n"
    assert cli(a_file, *argv) == 66
    assert capsys.readouterr().err == f"{PROG}: no model store at {a_file} (it is a file, not a directory)\n"
    assert ModelEngine.open(missing, CFG).images == {}  # the sensor's first start: an empty store


def test_show_of_a_model_file_needs_no_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_cli(learned(), tmp_path / "s")
    [path] = (tmp_path / "s").glob("*.model")
    assert cli(tmp_path / "none", "show", str(path), "--json") == 0
    assert json.loads(capsys.readouterr().out)["key"] == IMAGE_ID
