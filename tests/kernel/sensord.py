"""A real sensor daemon for kernel tests that watch what it finds and does: the one helper every
such test uses (test modules may not import one another, tests/unit/test_import_direction.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tests.waiting import wait_for


@contextmanager
def daemon(state: Path, *extra: str) -> Iterator[Path]:
    """A sensor daemon printing its findings as JSON lines (and its log) into the returned file."""
    out = state.parent / f"{state.name}-{time.monotonic_ns()}.out"
    with out.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "sensor", "run", "--state-dir", str(state),
                                 "--print-findings", *extra], stdout=sink, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(lambda: "cgsentry sensor running" in out.read_text() or proc.poll() is not None,
                     timeout_s=90)
            assert proc.poll() is None, out.read_text()[-2000:]
            yield out
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    assert proc.returncode == 0, out.read_text()[-2000:]


def findings(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]


def paused(c: Any) -> bool:
    c.reload()
    return bool(c.attrs["State"]["Paused"])
