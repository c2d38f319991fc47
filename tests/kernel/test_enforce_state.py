"""Kernel tier: enforcement follows the container's state, not a timer (issue 21 item 5).

A container paused by policy and unpaused at once outside cgsentry (``docker unpause``) that
offends again is paused again, however soon; the findings of one burst, while it is still frozen,
make one pause; each pause is logged (and, with a collector, audited) once.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.kernel.sensord import daemon, findings, paused
from tests.waiting import wait_for

pytestmark = [pytest.mark.kernel, pytest.mark.docker]


def test_an_unpaused_container_that_offends_at_once_is_paused_again(tmp_path: Path, busybox) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "policy.yaml"
    policy.write_text("images:\n- match: 'cgsentry/busybox:*'\n  mode: enforce\n  default_action: pause-container\n")
    with daemon(tmp_path / "state", "--policy", str(policy), "--profile", "full") as out:
        # one offence, a burst of findings (network tool, its connect, new process)
        c = busybox("sleep 1; nc 127.0.0.1 9 </dev/null; sleep 3600")
        wait_for(lambda: paused(c), timeout_s=30)
        subprocess.run(["docker", "unpause", c.id], check=True, capture_output=True)
        assert not paused(c)
        # within the old 5 s timer of the first pause: that would only have alerted, and this one
        # offence brings no later finding that could pause it
        subprocess.run(["docker", "exec", c.id, "nc", "127.0.0.1", "9"], capture_output=True, timeout=30)
        wait_for(lambda: paused(c), timeout_s=30)
        subprocess.run(["docker", "unpause", c.id], check=True, capture_output=True)
        time.sleep(1)
    acted = [f for f in findings(out) if f["action"] == "pause-container"]
    assert len(acted) >= 2, acted
    pauses = [line for line in out.read_text().splitlines() if f"pause-container {c.name} (" in line]
    assert len(pauses) == 2, pauses  # one per offence: the first burst's other findings coalesced
