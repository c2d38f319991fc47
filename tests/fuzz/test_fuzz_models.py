"""Malformed model files: store.load gives a baseline or a ModelError (one line); a baseline that
loads is usable (scored, summarised, saved again); ``model show`` and ``model diff`` on such a file
exit 0 or print one line."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from bench.workloads import IMAGE_ID, fleet
from models import store
from models.baseline import ModelConfig
from models.cli import register, summary
from models.engine import ModelEngine
from models.errors import ModelError
from sensor.errors import run_command
from sensor.events import Event
from tests.fuzz.inputs import fuzz, mutated, one_line, replaced, write

CFG = ModelConfig(min_learn_s=60, stable_s=30)


def _valid() -> tuple[bytes, dict[str, Any]]:
    eng = ModelEngine(CFG, node="node-a")
    for ev in fleet(2, 120):
        eng.handle(ev)
    eng.handle(Event("syscall", fleet(1, 1)[0].time_ns, syscall_nr=0, container_id="0" * 64, image_id=IMAGE_ID))
    with tempfile.TemporaryDirectory() as d:
        data = store.save(eng.images[IMAGE_ID], Path(d)).read_bytes()
    return data, msgpack.unpackb(data, raw=False, strict_map_key=False)


VALID, DOC = _valid()
EVENTS = fleet(1, 30, start_ns=fleet(1, 1)[0].time_ns + 3600 * 10**9)
MODELS = st.one_of(st.binary(max_size=200), mutated(VALID),
                   replaced(DOC, ["format", "version", "key", "profile", "rate", "life", "windows", "items"]).map(
                       lambda doc: msgpack.packb(doc, use_bin_type=True)))


@fuzz(250)
@given(data=MODELS)
def test_a_malformed_model_loads_usable_or_is_one_model_error(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path / "m.model", data)
    try:
        b = store.load(path, CFG)
    except ModelError as err:
        one_line(err)
        return
    summary(b)
    eng = ModelEngine(CFG, node="node-b")
    eng.images[IMAGE_ID] = b  # scored (or learned from) as the sensor would
    for ev in EVENTS:
        eng.handle(ev)
    store.save(b, tmp_path / "again")


@fuzz(80)
@given(data=MODELS, command=st.sampled_from([["show"], ["show", "--json"], ["diff"]]))
def test_model_show_and_diff_on_a_malformed_file_are_one_line_or_success(tmp_path: Path, capsys: Any, data: bytes,
                                                                         command: list[str]) -> None:
    path = write(tmp_path / "m.model", data)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="c"))
    refs = [str(path), str(path)] if command == ["diff"] else [str(path)]
    args = parser.parse_args(["model", "--store", str(tmp_path / "store"), command[0], *refs, *command[1:]])
    capsys.readouterr()
    rc = run_command("cgsentry-sensor", args.func, args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (rc == 0 and not err) or (rc != 0 and err.count("\n") == 1), (rc, err)
