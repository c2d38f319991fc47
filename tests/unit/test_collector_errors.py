"""One-line errors for what the collector's clients see: container actions a sensor could not
do, and TLS mismatches between the CLI and the collector (from gRPC's error details)."""

from __future__ import annotations

import pytest

from collector.errors import action_failure
from collector.tlsprobe import diagnose, speaks_tls

URL = "http+docker://localhost/v1.47/containers/" + "6c" * 32


@pytest.mark.parametrize(("action", "error", "message", "code"), [
    ("kill", f'docker: 409 Client Error for {URL}/kill: Conflict ("Cannot kill cont', "qa2-web is not running", 65),
    ("pause", f'docker: 409 Client Error for {URL}/pause: Conflict ("Container 6c is already paused")',
     "qa2-web is already paused", 65),
    ("unpause", f'docker: 409 Client Error for {URL}/unpause: Conflict ("Container 6c is not paused")',
     "qa2-web is not paused", 65),
    ("pause", f"docker: 409 Client Error for {URL}/pause: Conf", "qa2-web is not running or is already paused", 65),
    ("kill", f'docker: 404 Client Error for {URL}/json: Not Found ("No such container: 6c")',
     "qa2-web no longer exists", 66),
    ("pause", "no Docker and no cgroup path known for this container",
     "pause qa2-web failed at its sensor: no Docker and no cgroup path known for this container", 69),
])
def test_action_failures_say_what_state_the_container_is_in(action: str, error: str, message: str,
                                                            code: int) -> None:
    err = action_failure("qa2-web", action, error)
    assert message in str(err) and err.exit_code == code and "\n" not in str(err)


def test_tls_handshake_failures_name_the_flags() -> None:
    plain = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:7443: Tls handshake failed "
             "(TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:"
             "WRONG_VERSION_NUMBER: Invalid certificate verification context: OK")
    err = diagnose(plain, "127.0.0.1:7443", ca=True, cert=False)
    assert err is not None and err.exit_code == 64 and "does not use TLS: leave out --ca" in str(err)
    untrusted = plain.replace("error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER",
                              "error:1a000064:ECDSA routines:OPENSSL_internal:BAD_SIGNATURE")
    err = diagnose(untrusted, "127.0.0.1:7443", ca=True, cert=True)
    assert err is not None and err.exit_code == 77 and "(BAD_SIGNATURE)" in str(err) and "--ca" in str(err)
    refused = "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Connection refused"
    assert diagnose(refused, "127.0.0.1:1", ca=False, cert=False) is None  # not a TLS problem


def test_a_closed_port_or_a_bad_address_does_not_speak_tls() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        assert not speaks_tls(f"127.0.0.1:{port}", timeout_s=1)
    assert not speaks_tls("no-port-here")


def test_a_message_over_the_collectors_limit_is_bad_input() -> None:
    import grpc

    from collector.errors import from_rpc_error

    class TooLarge(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.RESOURCE_EXHAUSTED

        def details(self) -> str:
            return "Received message larger than max (5000017 vs. 4194304)"

    err = from_rpc_error(TooLarge(), "127.0.0.1:7443")
    assert err.exit_code == 65 and "refused the request: Received message larger than max" in str(err)
