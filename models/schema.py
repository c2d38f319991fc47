"""The stored model format (current version), checked field by field before anything is built.

A model file is data from disk: another cgsentry version, an operator's edit, a bad disk. That
msgpack decodes it proves only that it is msgpack. :func:`check` walks the decoded (and migrated)
dict and raises :class:`Invalid` naming the first bad field by its path (``life.mode``,
``profile.items.listen[3][1][2]``), so every malformed file is one error and not a traceback far
from the file. It checks what the builders (``ImageProfile.from_dict``, ``RateModel.from_dict``,
``Lifecycle``) and everything after them rely on: types, shapes and ranges — ints are 64-bit (the
format's ``*_ns`` and counts), text is ``str`` (never bytes), window rates are >= 0 and
fit in float32 (what the forest computes in).

Unknown keys are errors too: a file of this version never has them, so they mean a file edited
or written by something else, and saving it back would drop them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Final, NoReturn

import numpy as np

from models.baseline import MODES, Lifecycle
from models.features import FEATURES
from models.items import key_error
from models.profile import DIMENSIONS

INT64: Final = (-(2**63), 2**63 - 1)
COUNT: Final = (0, 2**63 - 1)
SEED: Final = (0, 2**32 - 1)  # what IsolationForest's random_state takes
WINDOW_MAX: Final = float(np.finfo(np.float32).max)  # the forest fits and scores in float32
_LIFE_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(Lifecycle))
_LIFE_TIMES: Final = ("last_active_ns", "last_new_observed_ns", "frozen_until_ns", "promoted_ns",
                      "learn_started_ns", "last_new_ns")
_AUDIT_TEXT: Final = ("actor", "action", "reason", "decision")


class Invalid(ValueError):
    """A decoded model whose structure is wrong; ``str()`` is one line naming the field."""


def check(data: Any) -> None:
    """Raise :class:`Invalid` unless ``data`` is a well-formed current-version model dict."""
    top = _map(data, "model")
    _keys(top, "", required=("format", "version", "key", "profile", "rate", "life"), optional=("image",))
    if not _text(top["key"], "key"):
        _fail("key", "non-empty text", top["key"])
    _text(top.get("image", ""), "image")
    _profile(top["profile"])
    _rate(top["rate"])
    _life(top["life"])


def _profile(value: Any) -> None:
    prof = _map(value, "profile")
    _keys(prof, "profile.", required=(), optional=("items", "containers", "nodes"))
    items = _map(prof.get("items", {}), "profile.items")
    for dim, rows in items.items():
        if dim not in DIMENSIONS:
            _fail(f"profile.items.{dim}", f"a dimension ({', '.join(DIMENSIONS)})", dim)
        for i, row in enumerate(_list(rows, f"profile.items.{dim}")):
            where = f"profile.items.{dim}[{i}]"
            if not isinstance(row, list) or len(row) != 2:
                _fail(where, "[key, stat]", row)
            problem = key_error(dim, row[0])
            if problem is not None:
                raise Invalid(f"{where}[0]: {problem}")
            _stat(row[1], f"{where}[1]")
    for name in ("containers", "nodes"):
        _texts(prof.get(name, []), f"profile.{name}")


def _stat(value: Any, where: str) -> None:
    """[first_ns, last_ns, count, containers, provenance] plus nodes since format 2."""
    if not isinstance(value, list) or len(value) not in (5, 6):
        _fail(where, "[first_ns, last_ns, count, containers, provenance, nodes]", value)
    _int(value[0], f"{where}[0]", INT64)
    _int(value[1], f"{where}[1]", INT64)
    _int(value[2], f"{where}[2]", COUNT)
    _texts(value[3], f"{where}[3]")
    _map(value[4], f"{where}[4]")
    if len(value) == 6:
        _texts(value[5], f"{where}[5]")


def _rate(value: Any) -> None:
    rate = _map(value, "rate")
    _keys(rate, "rate.", required=("seed", "quantile", "margin", "features", "scored", "shape", "windows"),
          optional=("dtype",))
    _int(rate["seed"], "rate.seed", SEED)
    _real(rate["quantile"], "rate.quantile", 0.0, 1.0)
    _real(rate["margin"], "rate.margin", -math.inf, math.inf)
    if rate["features"] != list(FEATURES):
        _fail("rate.features", "this version's feature names in order", rate["features"])
    scored = _texts(rate["scored"], "rate.scored")
    if not scored or not set(scored) <= set(FEATURES):
        _fail("rate.scored", f"a non-empty subset of {', '.join(FEATURES)}", scored)
    if rate.get("dtype", "float64") != "float64":
        _fail("rate.dtype", "'float64'", rate["dtype"])
    shape = rate["shape"]
    if not isinstance(shape, list) or len(shape) != 2:
        _fail("rate.shape", "[rows, columns]", shape)
    rows = _int(shape[0], "rate.shape[0]", COUNT)
    if shape[1] != len(FEATURES):
        _fail("rate.shape[1]", f"{len(FEATURES)} (one column per feature)", shape[1])
    windows = rate["windows"]
    if not isinstance(windows, bytes) or len(windows) != rows * len(FEATURES) * 8:
        _fail("rate.windows", f"{rows * len(FEATURES) * 8} bytes of float64 ({rows} x {len(FEATURES)})", windows)
    values = np.frombuffer(windows, dtype=np.float64)
    if not ((values >= 0) & (values <= WINDOW_MAX)).all():  # also false for NaN
        raise Invalid(f"rate.windows: holds values outside 0..{WINDOW_MAX:.3g} (rates per second)")


def _life(value: Any) -> None:
    life = _map(value, "life")
    _keys(life, "life.", required=(), optional=tuple(sorted(_LIFE_FIELDS)))
    if life.get("mode", "learn") not in MODES:
        _fail("life.mode", f"one of {', '.join(MODES)}", life["mode"])
    _int(life.get("observed_ns", 0), "life.observed_ns", COUNT)
    for name in _LIFE_TIMES:
        _int(life.get(name, 0), f"life.{name}", INT64)
    _text(life.get("seeded_from", ""), "life.seeded_from")
    for i, entry in enumerate(_list(life.get("audit", []), "life.audit")):
        entry = _map(entry, f"life.audit[{i}]")
        if "time_ns" in entry:
            _int(entry["time_ns"], f"life.audit[{i}].time_ns", INT64)
        for name in _AUDIT_TEXT:
            if name in entry:
                _text(entry[name], f"life.audit[{i}].{name}")
    for kind, n in _map(life.get("would_enforce", {}), "life.would_enforce").items():
        _int(n, f"life.would_enforce.{kind}", COUNT)


# -- primitives ----------------------------------------------------------------------------
def _fail(where: str, expected: str, got: Any) -> NoReturn:
    text = repr(got)
    raise Invalid(f"{where or 'model'}: expected {expected}, got {type(got).__name__} "
                  f"{text[:40]}{'...' if len(text) > 40 else ''}")


def _keys(m: dict[str, Any], prefix: str, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    for name in required:
        if name not in m:
            raise Invalid(f"{prefix}{name}: missing")
    for name in m:
        if name not in required and name not in optional:
            raise Invalid(f"{prefix}{name}: unknown field (not written by this format version)")


def _map(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        _fail(where, "a map with text keys", value)
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        _fail(where, "a list", value)
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        _fail(where, "text", value)
    return value


def _texts(value: Any, where: str) -> list[str]:
    for i, item in enumerate(_list(value, where)):
        _text(item, f"{where}[{i}]")
    return list(value)


def _int(value: Any, where: str, bounds: tuple[int, int]) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not bounds[0] <= value <= bounds[1]:
        _fail(where, f"an integer in {bounds[0]}..{bounds[1]}", value)
    return value


def _real(value: Any, where: str, lo: float, hi: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or not lo <= value <= hi:
        _fail(where, f"a finite number in {lo}..{hi}", value)
    return float(value)

