"""The trace CLI as a user runs it: JSON lines with the DESIGN.md keys, and record -> replay."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.docker]
KEYS = {"kind", "time", "pid", "ppid", "comm", "exe", "args", "uid", "cgroup_id", "container_id",
        "container_name", "image"}


def cli(*args: str, **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "sensor", *args], capture_output=True, text=True,
                          timeout=120, **kw)


def test_trace_json_container_filter_and_record_replay(busybox, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tag = f"T{uuid.uuid4().hex[:8]}"
    c = busybox(f"sleep 10; for i in $(seq 7); do /bin/echo {tag}; done; nc 127.0.0.1 9; sleep 30")
    journal = tmp_path / "rec.msgpack"
    res = cli("trace", "--json", "--container", c.name, "--duration", "16", "--record", str(journal))
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert lines and all(set(obj) >= KEYS for obj in lines)
    assert {obj["container_id"] for obj in lines} == {c.id}  # --container filters
    echoes = [o for o in lines if o["kind"] == "exec" and o["args"] == ["/bin/echo", tag]]
    assert len(echoes) == 7 and echoes[0]["image"] == "cgsentry/busybox:latest"
    conn = [o for o in lines if o["kind"] == "connect"]
    assert conn and {"proto", "family", "saddr", "sport", "daddr", "dport"} <= set(conn[0])
    assert conn[0]["dport"] == 9 and conn[0]["daddr"] == "127.0.0.1"
    # The journal holds every event (all containers and host); replay reproduces them exactly.
    replay = cli("replay", str(journal), "--json", "--events")
    assert replay.returncode == 0, replay.stderr
    replayed = [json.loads(line) for line in replay.stdout.splitlines()]
    mine = [o for o in replayed if o["container_id"] == c.id]
    assert mine == lines


def test_trace_unknown_container_is_one_line_error() -> None:
    res = cli("trace", "--container", "no-such-container-xyz", "--duration", "1")
    assert res.returncode == 66
    assert res.stderr.count("\n") == 1 and "not found" in res.stderr and "Traceback" not in res.stderr


def test_doctor_passes_here() -> None:
    res = cli("doctor")
    assert res.returncode == 0, res.stdout
    assert "[OK  ] bcc" in res.stdout and "[OK  ] ring_buffer" in res.stdout


def test_replay_of_corrupt_journal_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(b"\x00garbage")
    res = cli("replay", str(bad))
    assert res.returncode == 65 and "not a cgsentry journal" in res.stderr
    assert "Traceback" not in res.stderr
