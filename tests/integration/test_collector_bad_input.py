"""Bad input to `cgsentry` (client and `collector serve`): one line on stderr and a sysexits code,
never a traceback, a C-level abort or a second collector sharing a port."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from collector import pki
from collector.auth import AuthConfig, TokenStore
from collector.cli import main
from collector.errors import Unavailable
from collector.server import create_server
from collector.store import SqlStore

NO_SERVER = "127.0.0.1:1"  # nothing listens: a call that got this far would be refused (69)
NO_DB = "/nonexistent-dir/c.db"  # serve fails opening it, after argument checks and before binding


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, str]]:
    tokens = TokenStore(tmp_path / "tokens")
    admin = tokens.add("admin", "admin")
    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(tokens))
    yield f"127.0.0.1:{port}", admin
    server.stop(0)
    store.close()


def run(capsys: Any, *argv: str) -> tuple[int, str]:
    """(exit code, stderr) of the CLI in-process; argparse's usage errors arrive as SystemExit."""
    try:
        rc = main(list(argv))
    except SystemExit as exit_:
        rc = int(exit_.code or 0)
    return rc, capsys.readouterr().err


def one_line(err: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err


def usage_error(err: str) -> bool:
    """argparse's own shape: its usage lines, then one "error:" line."""
    return "Traceback" not in err and ": error: " in err.splitlines()[-1]


def test_a_second_collector_cannot_take_a_port_a_collector_holds(tmp_path: Path) -> None:
    store = SqlStore.open(str(tmp_path / "a.db"))
    first, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(None), insecure=True))
    try:
        with pytest.raises(Unavailable, match="address in use"):
            create_server(f"127.0.0.1:{port}", store, AuthConfig(TokenStore(None), insecure=True))
    finally:
        first.stop(0)
        store.close()


def test_serve_on_a_port_in_use_is_one_line_69(tmp_path: Path, capsys: Any) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        rc, err = run(capsys, "collector", "serve", "--listen", f"127.0.0.1:{port}", "--db",
                      str(tmp_path / "other.db"), "--insecure")
        assert rc == 69 and one_line(err) and "address in use" in err
        rc, err = run(capsys, "collector", "serve", "--listen", "127.0.0.1:7443", "--db", str(tmp_path / "o.db"),
                      "--insecure", "--metrics-port", str(port))
        assert rc == 69 and one_line(err) and f"--metrics-port {port}" in err


@pytest.mark.parametrize("flags", [["--cert", "CERT"], ["--key", "KEY"]])
def test_a_client_certificate_without_its_key_is_a_usage_error_not_an_abort(tmp_path: Path,
                                                                           flags: list[str]) -> None:
    pki.init_ca(tmp_path)
    crt = pki.issue_client(tmp_path, "alice")
    files = {"CERT": str(crt), "KEY": str(crt.with_suffix(".key"))}
    # a subprocess: before the check, gRPC's C core aborted the whole process (SIGABRT)
    proc = subprocess.run([sys.executable, "-m", "collector", "--server", NO_SERVER, "--timeout", "2",
                           "--ca", str(tmp_path / "ca.crt"), flags[0], files[flags[1]], "alerts", "list"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 64 and one_line(proc.stderr) and "--cert and --key go together" in proc.stderr


def test_invalid_tls_files_are_named_in_one_line(tmp_path: Path, capsys: Any) -> None:
    pki.init_ca(tmp_path)
    alice, bob = pki.issue_client(tmp_path, "alice"), pki.issue_client(tmp_path, "bob")
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x7fELF\x00\x01 not PEM")
    ca = str(tmp_path / "ca.crt")
    cases = [([garbage, alice, alice.with_suffix(".key")], f"{garbage} is not a PEM certificate"),
             ([ca, alice, garbage], f"{garbage} is not a PEM private key"),
             ([ca, alice, bob.with_suffix(".key")], f"{bob.with_suffix('.key')} is not the key of {alice}")]
    for (ca_file, cert, key), message in cases:
        rc, err = run(capsys, "--server", NO_SERVER, "--timeout", "2", "--ca", str(ca_file), "--cert", str(cert),
                      "--key", str(key), "alerts", "list")
        assert rc == 65 and one_line(err) and f"TLS files invalid: {message}" in err, err


@pytest.mark.parametrize("argv", [["alerts", "show", "99999999999999999999"],
                                  ["alerts", "ack", "99999999999999999999"],
                                  ["alerts", "show", "0"],
                                  ["alerts", "list", "--limit", "99999999999999999999"],
                                  ["alerts", "list", "--limit", "-1"],
                                  ["audit", "list", "--limit", "99999999999999999999"]])
def test_numbers_protobuf_cannot_hold_are_usage_errors(capsys: Any, argv: list[str]) -> None:
    rc, err = run(capsys, "--server", NO_SERVER, "--timeout", "2", *argv)
    assert rc == 64 and usage_error(err) and "out of range" in err, err


@pytest.mark.parametrize("since", ["99999999999999999999", "999999999999d", "1900-01-01T00:00:00Z"])
def test_a_since_out_of_int64_nanoseconds_is_bad_input(capsys: Any, since: str) -> None:
    rc, err = run(capsys, "--server", NO_SERVER, "--timeout", "2", "alerts", "list", "--since", since)
    assert rc == 65 and one_line(err) and f"--since {since!r}: out of range" in err, err


def test_a_binary_rules_file_is_bad_input(tmp_path: Path, capsys: Any) -> None:
    binary = tmp_path / "ls"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    rc, err = run(capsys, "--server", NO_SERVER, "--timeout", "2", "rules", "push", "team", str(binary))
    assert rc == 65 and one_line(err) and "not UTF-8 text" in err, err


def test_a_rule_set_over_the_message_limit_is_refused_with_its_size(live: Any, tmp_path: Path, capsys: Any) -> None:
    server, admin = live
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 500_000)  # 5 MB of comments: valid YAML, too large a message
    rc, err = run(capsys, "--server", server, "--token", admin, "rules", "push", "team", str(big))
    assert rc == 65 and one_line(err) and "rule set is 4.8 MB, the limit is 4 MB" in err, err


def test_a_bad_tokens_file_is_named(tmp_path: Path, capsys: Any) -> None:
    binary = tmp_path / "ls"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\xff\xfe\n")
    serve = ["collector", "serve", "--listen", "127.0.0.1:7443", "--db", NO_DB, "--tokens"]
    rc, err = run(capsys, *serve, str(binary))
    assert rc == 65 and one_line(err) and f"{binary}: not a tokens file" in err, err
    rc, err = run(capsys, *serve, str(tmp_path / "missing"))
    assert rc == 66 and one_line(err) and "tokens file does not exist" in err, err


@pytest.mark.parametrize(("flags", "message"), [(["--server", ""], "--server ''"),
                                                (["--token", "cgs_a\nb"], "printable ASCII"),
                                                (["--token", "cgs_é"], "printable ASCII")])
def test_a_server_or_token_grpc_cannot_send_is_a_usage_error(capsys: Any, flags: list[str], message: str) -> None:
    rc, err = run(capsys, "--timeout", "2", *flags, "alerts", "list")
    assert rc == 64 and one_line(err) and message in err, err


@pytest.mark.parametrize(("flags", "message"), [(["--listen", "127.0.0.1"], "use HOST:PORT"),
                                                (["--listen", "127.0.0.1:99999"], "use HOST:PORT"),
                                                (["--listen", "127.0.0.1:0"], "use HOST:PORT"),
                                                (["--webhook", "notaurl"], "http:// or https://"),
                                                (["--webhook", "ftp://example.com/x"], "http:// or https://"),
                                                (["--metrics-port", "70000"], "out of range")])
def test_serve_refuses_addresses_it_cannot_use(capsys: Any, flags: list[str], message: str) -> None:
    rc, err = run(capsys, "collector", "serve", "--db", NO_DB, "--insecure", *flags)
    assert rc == 64 and usage_error(err) and message in err, err


@pytest.mark.parametrize("timeout", ["-1", "nan", "1e300", "0", "inf"])
def test_a_timeout_outside_0_to_an_hour_is_a_usage_error(capsys: Any, timeout: str) -> None:
    rc, err = run(capsys, "--server", NO_SERVER, "--timeout", timeout, "alerts", "list")
    assert rc == 64 and usage_error(err) and "--timeout" in err, err


def test_a_webhook_url_is_accepted(tmp_path: Path, capsys: Any) -> None:
    """The check lets a real URL through: the run goes on to (and fails at) opening the store."""
    rc, err = run(capsys, "collector", "serve", "--db", NO_DB, "--insecure", "--webhook",
                  "https://hooks.example.com:8443/falco?x=1")
    assert rc == 73 and one_line(err) and err.startswith(f"cgsentry: cannot open database {NO_DB}: "), err


def test_a_refused_start_creates_no_database(tmp_path: Path, capsys: Any) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        rc, _ = run(capsys, "collector", "serve", "--listen", f"127.0.0.1:{port}", "--db", str(tmp_path / "o.db"),
                    "--insecure")
    assert rc == 69 and not (tmp_path / "o.db").exists()


def test_tokens_without_tls_off_loopback_are_refused_unless_asked_for(tmp_path: Path, capsys: Any,
                                                                      caplog: Any) -> None:
    """Bearer tokens on a plaintext non-loopback listener can be read off the wire and reused."""
    tokens = TokenStore(tmp_path / "tokens")
    tokens.add("admin", "admin")
    serve = ["collector", "serve", "--listen", "0.0.0.0:7443", "--db", NO_DB, "--tokens", str(tmp_path / "tokens")]
    rc, err = run(capsys, *serve)
    assert rc == 65 and one_line(err) and "tokens would cross the network in plaintext" in err, err
    rc, err = run(capsys, *serve, "--allow-plaintext-tokens")  # past the check: fails opening NO_DB
    assert rc == 73 and "cannot open database" in err, err
    assert "serving tokens without TLS on 0.0.0.0:7443" in caplog.text
    rc, err = run(capsys, "collector", "serve", "--listen", "127.0.0.1:7443", "--db", NO_DB,
                  "--tokens", str(tmp_path / "tokens"))  # loopback: no such refusal
    assert "plaintext" not in err, err
