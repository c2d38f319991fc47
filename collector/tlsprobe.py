"""Why a CLI call could not reach the collector, when the cause is TLS rather than the network.

gRPC reports every failed connection as UNAVAILABLE. A plaintext client talking to a TLS
collector, and a TLS client without a certificate talking to an mTLS collector, both see only
"Socket closed" (the server drops the connection during the handshake); a TLS client talking to
a plaintext collector sees "Tls handshake failed ... WRONG_VERSION_NUMBER"; a certificate the
other side does not trust, "Tls handshake failed ... <reason>". For "Socket closed", one short
TLS probe of the address tells a TLS collector from a collector that went away.
"""

from __future__ import annotations

import re
import socket
import ssl

from collector.errors import CollectorError, Unauthenticated
from sensor.errors import EX_USAGE

FLAGS = "--ca CA.crt --cert CLIENT.crt --key CLIENT.key (or CGSENTRY_CA, CGSENTRY_CERT, CGSENTRY_KEY)"


def diagnose(details: str, target: str, ca: bool, cert: bool) -> CollectorError | None:
    """The TLS mismatch behind an UNAVAILABLE error's ``details``, or None if it is not one.

    ``ca`` / ``cert``: whether the client used a CA (TLS) and a client certificate."""
    if "Tls handshake failed" in details:
        found = re.search(r"OPENSSL_internal:([A-Z0-9_]+)", details)
        reason = found.group(1) if found else "handshake error"
        if reason == "WRONG_VERSION_NUMBER":
            return CollectorError(f"collector at {target} does not use TLS: leave out --ca, --cert and --key",
                                  exit_code=EX_USAGE)
        return Unauthenticated(f"TLS handshake with collector at {target} failed ({reason}): check that --ca is "
                               "the collector's CA certificate and --cert/--key were issued by that CA")
    if "Socket closed" not in details or not speaks_tls(target):
        return None
    if not ca:
        return CollectorError(f"collector at {target} uses TLS: give {FLAGS}", exit_code=EX_USAGE)
    if not cert:
        return CollectorError(f"collector at {target} requires a client certificate: give --cert and --key "
                              "(an operator issues one with `cgsentry collector pki client NAME`)", exit_code=EX_USAGE)
    return Unauthenticated(f"collector at {target} refused the client certificate (--cert): was it issued by "
                           "the collector's CA (`cgsentry collector pki client NAME`)?")


def speaks_tls(target: str, timeout_s: float = 2.0) -> bool:
    """True if ``host:port`` answers a TLS ClientHello like a TLS server (a handshake, or a TLS
    alert such as "certificate required"); False for plaintext, refused or unparseable."""
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return False
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # only asking whether it speaks TLS, not trusting it
    ctx.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as raw, ctx.wrap_socket(raw):
            return True
    except ssl.SSLError as err:
        return "ALERT" in str(err).upper()
    except OSError:
        return False
