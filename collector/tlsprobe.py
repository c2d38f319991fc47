"""Why a CLI call could not reach the collector, when the cause is TLS rather than the network.

gRPC reports every failed connection as UNAVAILABLE. A plaintext client talking to a TLS
collector, and a TLS client without a certificate talking to an mTLS collector, both see only
"Socket closed" (the server drops the connection during the handshake); a TLS client talking to
a plaintext collector sees "Tls handshake failed ... WRONG_VERSION_NUMBER"; a certificate the
other side does not trust, "Tls handshake failed ... <reason>". For "Socket closed", one short
TLS probe of the address tells a TLS collector from a collector that went away.

Before any of that, :func:`client_files` checks the CLI's own TLS files (:func:`check_pems` the
collector's).
"""

from __future__ import annotations

import re
import socket
import ssl
from pathlib import Path
from typing import Any

from collector.errors import CollectorError, Unauthenticated
from sensor.errors import EX_DATAERR, EX_NOINPUT, EX_NOPERM, EX_USAGE

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


def client_files(ca: str, cert: str, key: str) -> tuple[bytes, bytes | None, bytes | None]:
    """The CLI's ``--ca``, ``--key``, ``--cert`` contents (key and cert None without mTLS), checked
    before gRPC sees them: gRPC aborts the process on a certificate without its key, and logs C
    errors then reports "cannot reach collector" for a file that is not PEM or a key of another
    certificate. Usage mistakes exit 64, unreadable files 66 (77 permission), invalid files 65."""
    if bool(cert) != bool(key):
        raise CollectorError("--cert and --key go together: give both (mTLS) or neither", exit_code=EX_USAGE)
    if cert and not ca:
        raise CollectorError("--cert and --key need --ca (the collector's CA certificate)", exit_code=EX_USAGE)
    ca_pem = _read(ca)
    if not cert:
        check_pems(ca, ca_pem)
        return ca_pem, None, None
    cert_pem, key_pem = _read(cert), _read(key)
    check_pems(ca, ca_pem, cert, cert_pem, key, key_pem)
    return ca_pem, key_pem, cert_pem


def check_pems(ca: str, ca_pem: bytes, cert: str = "", cert_pem: bytes = b"", key: str = "",
               key_pem: bytes = b"") -> None:
    """Raise "TLS files invalid: ..." (65) unless ``ca_pem`` (and ``cert_pem``, if given) hold PEM
    certificates and ``key_pem`` is the unencrypted PEM key of ``cert_pem``'s first certificate;
    ``ca``, ``cert``, ``key`` name the files in the message. Client and collector use it alike."""
    _certificate(ca, ca_pem)
    if cert:
        _check_key(key, key_pem, cert, _certificate(cert, cert_pem))


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise CollectorError(f"cannot read TLS file {path}: {err.strerror}",
                             exit_code=EX_NOPERM if isinstance(err, PermissionError) else EX_NOINPUT) from None


def _certificate(path: str, pem: bytes) -> Any:
    """The first (leaf) certificate of a PEM file."""
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(pem)[0]
    except ValueError:
        raise CollectorError(f"TLS files invalid: {path} is not a PEM certificate", exit_code=EX_DATAERR) from None


def _check_key(key_path: str, key_pem: bytes, cert_path: str, cert: Any) -> None:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

    try:
        key = load_pem_private_key(key_pem, password=None)
    except TypeError:  # "Password was not given but private key is encrypted"
        raise CollectorError(f"TLS files invalid: {key_path} is encrypted (gRPC needs an unencrypted key)",
                             exit_code=EX_DATAERR) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CollectorError(f"TLS files invalid: {key_path} is not a PEM private key", exit_code=EX_DATAERR) from None
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise CollectorError(f"TLS files invalid: {key_path} is not the key of {cert_path}", exit_code=EX_DATAERR)
