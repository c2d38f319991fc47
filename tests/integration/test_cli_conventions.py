"""Conventions of both CLIs (issue 23 item 10), through the real command lines and a real
collector: --version, global options after the command, --server without a port, defaults in help,
one time format, token list and revoke, doctor's exit codes and its Docker cause, --comment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from collector.auth import AuthConfig, TokenStore
from collector.cli import main
from collector.client import check_server
from collector.server import create_server
from collector.store import SqlStore
from sensor import __version__
from sensor.agent import cli as sensor_cli
from sensor.doctor import Check, docker_cause, exit_code
from sensor.events import rfc3339
from tests.integration.helpers import finding, run

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", ["collector.cli", "sensor"])
def test_version_on_both_clis(module: str) -> None:
    res = subprocess.run([sys.executable, "-m", module, "--version"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and res.stdout.strip().endswith(__version__) and res.stdout.startswith("cgsentry")


def test_global_options_are_taken_after_the_command_too(live: Any, capsys: Any) -> None:
    server, toks, store = live
    store.ingest("s1", "n1", 1, [finding(1)])
    before = run(capsys, "--server", server, "--token", toks["viewer"], "--json", "alerts", "list")
    after = run(capsys, "alerts", "list", "--server", server, "--token", toks["viewer"], "--json")
    mixed = run(capsys, "--token", toks["viewer"], "alerts", "list", "--json", "--server", server, "--timeout", "5")
    assert before[0] == after[0] == mixed[0] == 0
    assert json.loads(before[1]) == json.loads(after[1]) == json.loads(mixed[1]) and len(json.loads(after[1])) == 1
    rc, out, _ = run(capsys, "sensors", "list", "--json", "--server", server, "--token", toks["viewer"], "-v")
    assert rc == 0 and json.loads(out) == []
    rc, _, err = run(capsys, "alerts", "list", "--server", "127.0.0.1:1", "--timeout", "2")
    assert rc == 69 and "127.0.0.1:1" in err  # the option after the command is the one used


def test_a_server_without_a_port_gets_the_collectors_port(tmp_path: Path, capsys: Any) -> None:
    assert check_server("collector.example") == "collector.example:7443"
    assert check_server("[::1]") == "[::1]:7443" and check_server("10.1.2.3:9000") == "10.1.2.3:9000"
    store = SqlStore.open(str(tmp_path / "c.db"))
    tokens = TokenStore(tmp_path / "tokens")
    viewer = tokens.add("v", "viewer")
    try:
        server, _ = create_server("127.0.0.1:7443", store, AuthConfig(tokens))
    except Exception as err:  # noqa: BLE001 - the port may be taken on this host
        store.close()
        pytest.skip(f"port 7443 is in use here: {err}")
    try:
        rc, out, err = run(capsys, "--server", "127.0.0.1", "--token", viewer, "alerts", "list", "--json")
        assert rc == 0 and json.loads(out) == [], err
    finally:
        server.stop(0)
        store.close()


def test_help_shows_defaults(capsys: Any) -> None:
    for argv in (["collector", "serve", "--help"], ["--help"], ["audit", "list", "--help"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "(default: " in out, (argv, out)
    main_help = _help(capsys, ["--help"])
    assert "(default: $CGSENTRY_SERVER or 127.0.0.1:7443)" in " ".join(main_help.split())
    assert "(default: 127.0.0.1:7443)" in " ".join(_help(capsys, ["collector", "serve", "--help"]).split())
    assert "(default: 50)" in " ".join(_help(capsys, ["audit", "list", "--help"]).split())


def test_the_sensor_cli_shows_defaults_and_rfc3339_times(capsys: Any) -> None:
    from sensor.agent.cli import build_parser, event_line
    from sensor.events import Event

    for argv in (["trace", "--help"], ["run", "--help"]):
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(argv)
        assert info.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "(default: " in out, (argv, out)
    assert "ring buffer pages (default: 256)" in " ".join(_sensor_help(capsys, ["trace", "--help"]).split())
    line = event_line(Event("exec", 1_700_000_000_123_456_789, pid=7, comm="sh", exe="/bin/sh", args=("sh",)))
    assert line.startswith("2023-11-14T22:13:20.123Z "), line


def _sensor_help(capsys: Any, argv: list[str]) -> str:
    from sensor.agent.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    return str(capsys.readouterr().out)


def _help(capsys: Any, argv: list[str]) -> str:
    with pytest.raises(SystemExit):
        main(argv)
    return str(capsys.readouterr().out)


def test_human_times_are_rfc3339_with_a_zone(live: Any, capsys: Any) -> None:
    server, toks, store = live
    store.ingest("s1", "n1", 1, [finding(1)])
    store.audit("rita", "alert acknowledged", "1", "", "ok")
    viewer = ("--server", server, "--token", toks["viewer"])
    stamp = rfc3339(finding(1).time_ns)[:19] + "Z"  # e.g. 2023-11-14T22:13:20Z
    rc, out, _ = run(capsys, *viewer, "alerts", "list")
    assert rc == 0 and out.splitlines()[1].split()[1] == stamp
    rc, out, _ = run(capsys, *viewer, "alerts", "show", str(store.list_alerts()[0].id))
    seen = next(line for line in out.splitlines() if line.startswith("  seen"))
    assert seen.split()[2] == stamp and seen.split()[4] == stamp
    rc, out, _ = run(capsys, *viewer, "audit", "list")
    stamp = out.splitlines()[1].split()[1]
    assert rc == 0 and len(stamp) == 20 and stamp[10] == "T" and stamp.endswith("Z")


def test_token_list_and_revoke_take_effect_on_a_running_collector(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "tokens"
    rc, alice, _ = run(capsys, "collector", "token", "add", "alice", "--role", "viewer", "--tokens", str(path))
    rc2, bob, _ = run(capsys, "collector", "token", "add", "bob", "--role", "responder", "--tokens", str(path))
    alice, bob = alice.strip(), bob.strip()
    assert rc == rc2 == 0
    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore.existing(path)))
    try:
        address = f"127.0.0.1:{port}"
        assert run(capsys, "--server", address, "--token", alice, "alerts", "list")[0] == 0
        rc, out, _ = run(capsys, "collector", "token", "list", "--tokens", str(path))
        lines = out.splitlines()
        assert rc == 0 and lines[0].split() == ["ID", "ROLE", "NAME"] and len(lines) == 3
        assert [line.split()[1:] for line in lines[1:]] == [["viewer", "alice"], ["responder", "bob"]]
        assert alice not in out and bob not in out  # never the tokens themselves
        rc, out, _ = run(capsys, "collector", "token", "list", "--tokens", str(path), "--json")
        bob_id = next(r["id"] for r in json.loads(out) if r["name"] == "bob")
        rc, out, _ = run(capsys, "collector", "token", "revoke", "alice", "--tokens", str(path))
        assert rc == 0 and out.startswith("revoked token ") and "(alice, viewer)" in out
        rc, _, err = run(capsys, "--server", address, "--token", alice, "alerts", "list")
        assert rc == 77, err  # the running collector took the revocation
        assert run(capsys, "--server", address, "--token", bob, "alerts", "list")[0] == 0
        rc, _, _ = run(capsys, "collector", "token", "revoke", bob_id[:8], "--tokens", str(path))
        assert rc == 0 and run(capsys, "--server", address, "--token", bob, "alerts", "list")[0] == 77
        rc, _, err = run(capsys, "collector", "token", "revoke", "carol", "--tokens", str(path))
        assert rc == 66 and "no token named 'carol'" in err and err.count("\n") == 1
    finally:
        server.stop(0)
        store.close()


def test_doctor_exit_codes_match_the_readme() -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "`doctor` exits 0 when the sensor can run, 77 when only root is missing, 69 otherwise" in readme
    ok, root = Check("bcc", True, ""), Check("privileges", False, "euid 1000")
    assert exit_code([ok]) == 0
    assert exit_code([ok, Check("kernel headers", False, "missing")]) == 69
    assert exit_code([ok, Check("docker", False, "", required=False)]) == 0
    import os

    assert exit_code([ok, root]) == (69 if os.geteuid() == 0 else 77)


def test_doctor_names_the_real_docker_cause() -> None:
    def wrapped(inner: BaseException) -> Exception:
        try:
            try:
                raise inner
            except OSError as err:
                raise RuntimeError("Error while fetching server API version") from err
        except RuntimeError as outer:
            return outer

    detail, fix = docker_cause(wrapped(PermissionError(13, "Permission denied")))
    assert "permission denied" in detail and "docker group" in fix
    detail, fix = docker_cause(wrapped(FileNotFoundError(2, "No such file or directory")))
    assert "daemon not running" in detail and "start dockerd" in fix
    detail, fix = docker_cause(wrapped(ConnectionRefusedError(111, "Connection refused")))
    assert "daemon not running" in detail


def test_comment_is_the_flag_everywhere() -> None:
    from collector.cli import build_parser

    parser = build_parser()
    for argv in (["alerts", "ack", "1"], ["alerts", "resolve", "1"], ["alerts", "suppress", "1"],
                 ["alerts", "reopen", "1"], ["alerts", "unsuppress", "1"], ["containers", "pause", "c1"]):
        args = parser.parse_args([*argv, "--comment", "why"])
        assert (getattr(args, "comment", None) or getattr(args, "reason", None)) == "why", argv
    assert sensor_cli.build_parser().parse_args(["doctor"]).command == "doctor"
