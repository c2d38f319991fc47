"""Kernel tier: connects that fail count, and a scan is one finding (issue 21 item 3).

A busybox container learns a peer that refuses it (a client retrying a service that is down),
then, in alert mode:
- must not fire: the same refused peer, again and again;
- must fire: a refused connect to a new port is a new-endpoint finding that says it was refused;
  a sweep over 21 ports is one "Outbound Scan" finding (count, ports), not 21 findings.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.kernel.sensord import daemon, findings

pytestmark = [pytest.mark.kernel, pytest.mark.docker]

LEARN = ("--learn-s", "6", "--stable-s", "3", "--window-s", "1", "--profile", "full")


def test_refused_connects_and_scans(tmp_path: Path, busybox) -> None:  # type: ignore[no-untyped-def]
    with daemon(tmp_path / "state", *LEARN) as out:
        c = busybox("while true; do nc 127.0.0.1 9 </dev/null; sleep 0.3; done")
        time.sleep(18)  # learns the refused peer, turns stable, promotes to alert
        subprocess.run(["docker", "exec", c.id, "nc", "127.0.0.1", "7777"], capture_output=True, timeout=30)
        time.sleep(12)  # longer than a scan's gap: the next connects are a burst of their own
        subprocess.run(["docker", "exec", c.id, "sh", "-c",
                        "for p in $(seq 20 40); do nc 127.0.0.1 $p </dev/null; done"],
                       capture_output=True, timeout=60)
        time.sleep(3)
    mine = [f for f in findings(out) if c.name in f["output"]]
    outbound = [f for f in mine if f["rule"] == "New Outbound Endpoint"]
    # (each finding names the nearest learned item, 127.0.0.1:9, after what it saw)
    assert not [f for f in outbound if f["output"].startswith("new outbound endpoint tcp 127.0.0.1:9 ")], outbound
    refused = [f for f in outbound if "7777" in f["output"]]
    assert len(refused) == 1 and "ECONNREFUSED" in refused[0]["output"], mine
    scans = [f for f in mine if f["rule"] == "Outbound Scan"]
    assert scans and "ports 20, 21, 22" in scans[0]["output"], mine
    assert len(scans) <= 2, scans  # 8, then 16: once per doubling
    per_port = [f for f in outbound if "7777" not in f["output"]]
    assert len(per_port) <= 7, per_port  # only those before it was a scan
