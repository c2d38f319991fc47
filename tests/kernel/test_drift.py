"""Kernel tier: drift, a program that is not part of the image (issue 21 item 1).

A real daemon and a busybox container, with no learning (the image is still learning):
- must fire: a binary dropped into a web root and one copied over /bin/ls, each when run;
- must not fire: the image's own programs, before and after the workload writes data files;
- enforce: with kill-process as the policy's action, the dropped binary is killed (from user
  space, right after its exec: the kernel cannot tell an upper-layer file without its inode).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.kernel.sensord import daemon, findings
from tests.waiting import wait_for

pytestmark = [pytest.mark.kernel, pytest.mark.docker]

RULE = "Drift Executable Not Part of Image"
RUNS = ("sleep 2; ls / >/dev/null; echo ok >/dev/null; mkdir -p /srv/www; echo '<p>hi</p>' > /srv/www/index.html;"
        " cat /srv/www/index.html >/dev/null; cp /bin/busybox /srv/www/tool; /srv/www/tool true;"
        " rm /bin/ls; cp /bin/busybox /bin/ls; /bin/ls / >/dev/null; /bin/echo still-quiet; echo done; sleep 3600")


def test_dropped_and_replaced_binaries_are_drift_in_learn_mode(tmp_path: Path, busybox) -> None:  # type: ignore[no-untyped-def]
    with daemon(tmp_path / "state", "--profile", "full") as out:
        c = busybox(RUNS)
        wait_for(lambda: "done" in c.logs().decode(), timeout_s=30)
        time.sleep(2)
    drift = [f for f in findings(out) if f["rule"] == RULE and c.name in f["output"]]
    exes = sorted(f["output"].split("exe=", 1)[1].split()[0] for f in drift)
    assert exes == ["/bin/ls", "/srv/www/tool"], drift  # and not cat, echo, mkdir or the first ls


def test_drift_is_killed_in_enforce_mode(tmp_path: Path, busybox) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "policy.yaml"
    policy.write_text("images:\n- match: 'cgsentry/busybox:*'\n  mode: enforce\n  default_action: kill-process\n")
    with daemon(tmp_path / "state", "--profile", "full", "--policy", str(policy)) as out:
        # a copy of busybox, run by an applet's name (busybox runs what argv[0] names)
        c = busybox("sleep 2; mkdir -p /srv; cp /bin/busybox /srv/sleep; /srv/sleep 30; echo rc=$?; echo fine;"
                    " echo rc2=$?; sleep 3600")
        wait_for(lambda: "rc2=" in c.logs().decode(), timeout_s=60)
    logs = c.logs().decode()
    assert "rc=137" in logs and "rc2=0" in logs, logs
    killed = [f for f in findings(out) if f["rule"] == RULE]
    assert killed and killed[0]["action"] == "kill-process", findings(out)


def test_fileless_execs_from_a_memfd_or_a_deleted_file_are_found(tmp_path: Path, busybox) -> None:  # type: ignore[no-untyped-def]
    """Run by descriptor (fexecve), as fileless malware runs: the exec names /dev/fd/N, and only
    /proc/PID/exe says it was an anonymous memory file or a file already unlinked. The helper is
    bench/depth.py's, compiled static; each payload runs a second, long enough to be read."""
    from bench.depth import build_fileless

    helper = build_fileless(tmp_path / "helper")
    with daemon(tmp_path / "state", "--profile", "full") as out:
        c = busybox("sleep 2; /depth/fileless memfd /bin/busybox sleep 1; mkdir -p /srv;"
                    " /depth/fileless deleted /bin/busybox sleep 1; echo done; sleep 3600",
                    volumes={str(helper): {"bind": "/depth", "mode": "ro"}})
        wait_for(lambda: "done" in c.logs().decode(), timeout_s=30)
        time.sleep(2)
    mine = [f for f in findings(out) if c.name in f["output"]]
    memfd = [f for f in mine if f["rule"] == "Fileless Execution via Memfd"]
    deleted = [f for f in mine if f["rule"] == RULE]
    assert len(memfd) == 1 and memfd[0]["priority"] == "CRITICAL", mine
    assert len(deleted) == 1 and "exe=/dev/fd/" in deleted[0]["output"], mine  # the exec by descriptor
    # the shell that ran the helper is not blamed for what its pid ran later
    assert not [f for f in memfd + deleted if "exe=/bin/sh" in f["output"]], mine
