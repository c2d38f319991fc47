"""Reading alerts through the real `cgsentry` CLI and a real collector (issue 23 items 1 and 2):
the list fits 80 and 200 columns, filters, pages with a cursor and never caps an export silently,
--follow streams until Ctrl-C, show gives the ancestry; the Falco form carries id, count and
Falco's syscall names."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from collector.alertview import ELLIPSIS, alert_table, paint, use_colour
from collector.store import SqlStore
from sensor.events import Event, Finding
from tests.integration.helpers import backend_collector, run

ROOT = Path(__file__).resolve().parents[2]
_names = itertools.count()
LONG_RULE = "Shell Spawned By Non-Shell Program"


def alert(i: int, rule: str = LONG_RULE, exe: str = "/bin/sh", args: tuple[str, ...] = ("sh", "-c", "id"),
          priority: str = "WARNING", tags: tuple[str, ...] = ("T1059", "shell"), name: str = "web-1",
          kind: str = "exec", ppid: int = 7, ancestry: tuple[str, ...] = ("/usr/sbin/nginx", "/usr/bin/runc"),
          namespace: str = "", pod: str = "") -> Finding:
    ev = Event(kind, 1_700_000_000_000_000_000 + i * 10**9, pid=100 + i, ppid=ppid, comm=exe.rsplit("/", 1)[-1],
               exe=exe, args=args, container_id=f"{i:02x}" * 32, container_name=name, image="shop/web:1",
               runtime="docker", pexe=ancestry[0] if ancestry else "", ancestry=ancestry, namespace=namespace,
               pod=pod, daddr="10.0.0.9" if kind == "connect" else "", dport=4444 if kind == "connect" else 0)
    return Finding("rule", rule, priority, f"{rule} #{i}", ev, time_ns=ev.time_ns, source="rule", tags=tags,
                   explanation={"learnable": True})


def seeded(store: Any) -> None:
    store.ingest("s1", "n1", 1, [
        alert(1),
        alert(2, "Read Sensitive File Untrusted", "/bin/cat", ("cat", "/etc/shadow"), "CRITICAL", ("T1003",),
              name="payments-api-7d9f", kind="open"),
        alert(3, "Outbound Connection To Miner Pool", "/usr/bin/python3", ("python3", "-c", "import socket"),
              "ERROR", ("T1496",), name="worker", kind="connect", namespace="shop", pod="worker-1"),
        alert(4, "New Process", "/tmp/x", ("x",), "NOTICE", ("baseline",), ppid=0, ancestry=()),
    ])


def id_of(store: Any, i: int) -> str:
    """The alert id of ``alert(i)`` (a batch's alerts get ids in fingerprint order)."""
    return str(next(r.id for r in store.list_alerts(limit=1000) if r.finding.output.endswith(f"#{i}")))


def number(row: dict[str, Any]) -> int:
    return int(row["output"].rsplit("#", 1)[1])


def cli(capsys: Any, live: Any, *argv: str, role: str = "viewer") -> tuple[int, str, str]:
    server, toks, _ = live
    return run(capsys, "--server", server, "--token", toks[role], *argv)


def test_the_list_fits_80_columns_and_shows_more_at_200(live: Any, capsys: Any, monkeypatch: Any) -> None:
    seeded(live[2])
    monkeypatch.setenv("COLUMNS", "80")
    rc, out, err = cli(capsys, live, "alerts", "list")
    lines = out.splitlines()
    assert rc == 0 and err == "" and len(lines) == 5, out
    assert all(len(line) <= 80 for line in lines), out
    assert lines[0].split()[:3] == ["ID", "LAST", "SEEN"] and "PROCESS" not in lines[0]
    cut = [line for line in lines if ELLIPSIS in line]
    assert cut, out
    for line in lines[1:]:  # a rule name is whole or a word-boundary prefix of itself with an ellipsis
        shown = line[lines[0].index("RULE"):]
        full = next(r for r in (LONG_RULE, "Read Sensitive File Untrusted", "Outbound Connection To Miner Pool",
                                "New Process") if r.startswith(shown.rstrip(ELLIPSIS)))
        assert shown == full or (shown.endswith(ELLIPSIS) and full[len(shown) - 1] == " "), (shown, full)
    assert [line.split()[0] for line in lines[1:]] == [id_of(live[2], i) for i in (4, 3, 2, 1)]  # newest first
    assert lines[1].split()[1] == "2023-11-14T22:13:24Z"  # RFC 3339 with its zone
    monkeypatch.setenv("COLUMNS", "200")
    rc, out, _ = cli(capsys, live, "alerts", "list")
    lines = out.splitlines()
    assert rc == 0 and all(len(line) <= 200 for line in lines) and ELLIPSIS not in out
    assert "PROCESS" in lines[0] and "COMMAND LINE" in lines[0]
    assert LONG_RULE in out and "cat /etc/shadow" in out and "/usr/bin/python3" in out


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], SqlStore]]:
    """A live collector on SQLite or PostgreSQL, tokens named after their roles."""
    with backend_collector(request, tmp_path, {"viewer": "viewer", "responder": "responder"}, "reading") as live:
        yield live


def test_filters_by_container_rule_process_tag_and_statuses(backend: Any, capsys: Any) -> None:
    live = backend
    seeded(live[2])

    def ids(*flags: str) -> list[int]:
        rc, out, err = cli(capsys, live, "alerts", "list", "--json", *flags)
        assert rc == 0, err
        return sorted(number(r) for r in json.loads(out))

    assert ids("--container", "web-1") == [1, 4]
    assert ids("--container", "02" * 6) == [2]  # an id prefix
    assert ids("--container", "02" * 32) == [2]
    assert ids("--container", "shop/worker-1") == [3]
    assert ids("--rule", "new process") == [4]
    assert ids("--process", "cat") == [2] and ids("--process", "/usr/bin/python3") == [3]
    assert ids("--tag", "T1059") == [1] and ids("--tag", "T10") == []
    rc, _, _ = cli(capsys, live, "alerts", "ack", id_of(live[2], 1), role="responder")
    rc2, _, _ = cli(capsys, live, "alerts", "resolve", id_of(live[2], 2), role="responder")
    assert rc == rc2 == 0
    assert ids("--status", "open,acknowledged") == [1, 3, 4]
    assert ids("--status", "resolved") == [2]
    rc, _, err = cli(capsys, live, "alerts", "list", "--status", "open,closed")
    assert rc == 64 and "--status 'open,closed'" in err and err.count("\n") == 1


def test_exports_page_through_everything_or_say_where_they_stopped(live: Any, capsys: Any) -> None:
    store = live[2]
    store.ingest("s1", "n1", 1, [alert(i, f"Rule {i}") for i in range(1, 8)])
    rc, out, err = cli(capsys, live, "alerts", "list", "--json")
    assert rc == 0 and err == "" and len(json.loads(out)) == 7
    rc, out, err = cli(capsys, live, "alerts", "list", "--falco", "--limit", "3")
    first = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and len(first) == 3 and "stopped after 3 alerts (--limit 3)" in err and err.count("\n") == 1
    cursor = err.split("--cursor ")[1].split()[0]
    rc, out, err = cli(capsys, live, "alerts", "list", "--falco", "--cursor", cursor)
    rest = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and err == ""
    ids = [f["output_fields"]["cgsentry.id"] for f in first + rest]
    assert ids == [int(id_of(store, i)) for i in (7, 6, 5, 4, 3, 2, 1)]
    assert all(f["output_fields"]["cgsentry.count"] == 1 for f in first + rest)
    assert {f["output_fields"]["evt.type"] for f in first} == {"execve"}
    rc, out, err = cli(capsys, live, "alerts", "list", "--limit", "2")  # a table page says how to go on
    assert rc == 0 and len(out.splitlines()) == 3 and "--cursor" in err


def test_falco_event_types_are_falcos_syscall_names(live: Any, capsys: Any) -> None:
    seeded(live[2])
    rc, out, _ = cli(capsys, live, "alerts", "list", "--falco")
    types = {int(json.loads(line)["output"].rsplit("#")[1]): json.loads(line)["output_fields"]["evt.type"]
             for line in out.splitlines()}
    assert rc == 0 and types == {1: "execve", 2: "openat", 3: "connect", 4: "execve"}


def test_show_gives_each_ancestry_level_and_why_a_parent_is_unknown(live: Any, capsys: Any) -> None:
    seeded(live[2])
    rc, out, _ = cli(capsys, live, "alerts", "show", id_of(live[2], 1))
    assert rc == 0
    assert "    parent    pid 7  /usr/sbin/nginx" in out.splitlines()
    assert "    ancestor  /usr/bin/runc  (pid not recorded)" in out.splitlines()
    rc, out, _ = cli(capsys, live, "alerts", "show", id_of(live[2], 4))
    parent = next(line for line in out.splitlines() if line.startswith("    parent"))
    assert rc == 0 and "unresolved: the finding carries no parent pid" in parent


def test_show_gives_pid_and_command_line_per_level_when_the_sensor_sends_them(live: Any, capsys: Any) -> None:
    f = alert(5)
    hostile = "\x1b]0;owned\x07"
    f = f.replace(ancestors=((7, "/usr/sbin/nginx", ("nginx: worker process",)),
                             (6, "/usr/sbin/nginx", ("nginx: master process", hostile)), (5, "/usr/bin/runc", ())),
                  ancestors_end="parent pid 4 unknown to the sensor: it ended before the sensor started")
    live[2].ingest("s1", "n1", 1, [f])
    rc, out, _ = cli(capsys, live, "alerts", "show", id_of(live[2], 5))
    lines = out.splitlines()
    assert rc == 0 and "\x1b" not in out and "\x07" not in out
    assert "    parent    pid 7       /usr/sbin/nginx  nginx: worker process" in lines
    assert "    ancestor  pid 6       /usr/sbin/nginx  nginx: master process \\x1b]0;owned\\x07" in lines
    assert "    ancestor  pid 5       /usr/bin/runc  (no command line)" in lines
    assert "    above     unresolved: parent pid 4 unknown to the sensor: it ended before the sensor started" in lines


def test_hostile_names_stay_escaped_at_any_width(live: Any, capsys: Any, monkeypatch: Any) -> None:
    hostile = "\x1b[2J\x1b]8;;http://evil\x07x"
    live[2].ingest("s1", "n1", 1, [alert(1, name="web" + hostile, args=("sh", hostile))])
    for columns in ("80", "200"):
        monkeypatch.setenv("COLUMNS", columns)
        rc, out, _ = cli(capsys, live, "alerts", "list")
        assert rc == 0 and "\x1b" not in out and "\x07" not in out and "\\x1b" in out


def test_priority_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch: Any) -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(Tty()) and not use_colour(sys.stdout)  # type: ignore[arg-type]
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Tty())  # type: ignore[arg-type]
    row = {"id": 1, "last_seen": "2026-12-03T16:11:03.000000000Z", "priority": "CRITICAL", "status": "open",
           "count": 1, "container_name": "web", "container_id": "ab", "rule": "R", "exe": "/bin/sh", "args": ["sh"]}
    coloured = alert_table([row], 80, colour=True)[1]
    assert paint("CRITICAL", "CRITICAL", True) in coloured and "\x1b" not in alert_table([row], 80)[1]


@pytest.mark.parametrize("form", ["--json", "table"])
def test_follow_streams_new_alerts_and_ctrl_c_exits_0(live: Any, form: str, tmp_path: Path) -> None:
    server, toks, store = live
    store.ingest("s1", "n1", 1, [alert(1)])
    flags = ["--json"] if form == "--json" else []
    env = {**os.environ, "COLUMNS": "120", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "collector.cli", "alerts", "list", "--follow", *flags,
                             "--server", server, "--token", toks["viewer"]], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()

    def feed() -> None:  # the watch starts after what is stored: new alerts until one is printed
        for seq in range(2, 600):
            if stop.wait(0.2):
                return
            store.ingest("s1", "n1", seq, [alert(seq + 50, "Fresh Alert")])

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while not lines or "Fresh Alert" not in lines[-1]:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            lines.append(line)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        stop.set()
        feeder.join()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    first = lines[0]
    if form == "--json":
        assert json.loads(first)["rule"] == "Fresh Alert"  # only new ones, not the one stored before
    else:
        assert first.split()[:3] == ["ID", "LAST", "SEEN"] and len(lines) == 2
