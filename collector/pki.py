"""``cgsentry collector pki``: a small CA for a first install — server, sensor and client certificates.

EC P-256 keys, SHA-256 signatures; the server certificate covers 127.0.0.1 and localhost (plus
any --san given); sensor certificates carry the sensor id as CN, which the collector checks
against the id the sensor claims. The subject's OU says what a certificate is for: ``sensor``
(a sensor's identity) or ``client`` (an analyst's CLI; it proves nothing but the TLS peer, the
role still comes from a token). See :mod:`collector.auth` for how the collector reads it.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.auth import SENSOR_UNIT
from collector.errors import CollectorError

DAYS = 825
# Names we issue certificates for: the CN (64 characters at most in X.509), a SAN DNS name and
# part of a file name, so no leading '.' or '-' (``..``, ``-x``) and nothing else than these.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CLIENT_UNIT = "client"  # subject OU of analyst client certificates


def _name(cn: str, unit: str = "") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cgsentry")]
    if unit:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(directory: Path, stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    key_path = directory / f"{stem}.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=DAYS)))


def init_ca(directory: Path, sans: list[str] | None = None) -> None:
    """Create ca.{key,crt} and server.{key,crt} in ``directory`` (refuses to overwrite a CA)."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "ca.key").exists():
        raise CollectorError(f"{directory}/ca.key exists: refusing to overwrite a CA", exit_code=73)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (_builder(_name("cgsentry CA"), _name("cgsentry CA"), ca_key)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    _write(directory, "ca", ca_key, ca)
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for san in sans or []:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    _issue(directory, "server", _name("cgsentry collector"), names, ExtendedKeyUsageOID.SERVER_AUTH)


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise CollectorError(f"certificate name {name!r}: 1 to 64 letters, digits, '.', '_' or '-', starting with "
                             "a letter or digit", exit_code=65)


def issue_sensor(directory: Path, sensor_id: str) -> Path:
    """sensor-<id>.{key,crt} signed by the CA in ``directory``, marked OU=sensor."""
    _check_name(sensor_id)
    return _issue(directory, f"sensor-{sensor_id}", _name(sensor_id, SENSOR_UNIT), [x509.DNSName(sensor_id)],
                  ExtendedKeyUsageOID.CLIENT_AUTH)


def issue_client(directory: Path, name: str) -> Path:
    """client-<name>.{key,crt} for an analyst's CLI, marked OU=client: the collector never takes
    it for a sensor, so it gives no role without a token."""
    _check_name(name)
    return _issue(directory, f"client-{name}", _name(name, CLIENT_UNIT), [x509.DNSName(name)],
                  ExtendedKeyUsageOID.CLIENT_AUTH)


def _issue(directory: Path, stem: str, subject: x509.Name, names: list[x509.GeneralName],
           usage: x509.ObjectIdentifier) -> Path:
    try:
        ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
        ca = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    except (OSError, ValueError) as err:
        raise CollectorError(f"{directory}: no usable CA (run `cgsentry collector pki init`): {err}",
                             exit_code=66) from err
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(subject, ca.subject, key).add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    _write(directory, stem, key, cert)
    return directory / f"{stem}.crt"
