"""Kernel tier: a rate burst is reported while its window runs (issue 21 item 4).

A busybox container learns a steady loop (an exec or two a second) over 5 s windows; in alert
mode a burst of 300 execs is reported before its window closes, naming the counter that crossed.
Must not fire: the steady loop itself, before the burst.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.kernel.sensord import daemon, findings

pytestmark = [pytest.mark.kernel, pytest.mark.docker]


def test_burst_is_reported_while_its_window_runs(tmp_path: Path, busybox) -> None:  # type: ignore[no-untyped-def]
    learn = ("--learn-s", "40", "--stable-s", "3", "--window-s", "5", "--profile", "full")
    with daemon(tmp_path / "state", *learn) as out:
        c = busybox("while true; do /bin/true; sleep 1; done")
        time.sleep(50)  # eight windows learned, then promoted to alert
        quiet = [f for f in findings(out) if f["rule"] == "Rate Anomaly"]
        subprocess.run(["docker", "exec", c.id, "sh", "-c", "for i in $(seq 300); do /bin/true; done"],
                       capture_output=True, timeout=60)
        time.sleep(12)
    assert quiet == [], quiet
    rates = [f for f in findings(out) if f["rule"] == "Rate Anomaly" and c.name in f["output"]]
    assert rates and "into the window, crossed: execs" in rates[0]["output"], findings(out)
