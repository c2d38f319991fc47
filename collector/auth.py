"""Who may call what: bearer tokens with roles for analysts, mTLS identities (or sensor tokens)
for sensors. Tokens are stored hashed (sha256); the clear token is printed once at creation.

Roles, weakest first: viewer (read), responder (+ acknowledge alerts, act on containers),
admin (+ change image modes and policy). Sensors have the role ``sensor`` and may only report
for their own identity.

A client certificate alone (no token) makes its holder a sensor only if it is a sensor
certificate: subject OU ``sensor`` (``pki sensor``). An OU ``client`` certificate (``pki client``,
for analysts behind mTLS) gives no role at all, and neither does a certificate without an OU (a
CA certificate, or a sensor certificate issued before the marker existed): it is refused with how
to re-issue it, never taken for a sensor.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.errors import CollectorError, PermissionDenied, Unauthenticated
from sensor.errors import EX_CANTCREAT, EX_DATAERR, EX_NOINPUT, EX_NOPERM

log = logging.getLogger(__name__)

ROLES = ("viewer", "responder", "admin")
SENSOR = "sensor"
SENSOR_UNIT = "sensor"  # subject OU that marks a sensor certificate (collector.pki)


@dataclass(frozen=True)
class Identity:
    name: str
    role: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class TokenStore:
    """Tokens file: one JSON object per line {name, role, sha256}."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._by_hash: dict[str, Identity] = {}
        self._stamp: tuple[int, int] | None = None  # the file's (mtime, size) as last read
        if path is not None and path.exists():
            self._load(path)

    @classmethod
    def existing(cls, path: Path) -> TokenStore:
        """The collector's ``--tokens``: the file must exist (``token add`` creates it); a missing
        one is an error (66), not a collector with no tokens."""
        if not path.exists():
            raise CollectorError(f"{path}: tokens file does not exist (create it with `cgsentry collector token add "
                                 f"NAME --role ROLE --tokens {path}`)", exit_code=EX_NOINPUT)
        return cls(path)

    def _load(self, path: Path) -> None:
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as err:
            raise CollectorError(f"{path}: cannot read tokens file: {err.strerror}",
                                 exit_code=EX_NOPERM if isinstance(err, PermissionError) else EX_NOINPUT) from None
        except UnicodeDecodeError as err:
            raise CollectorError(f"{path}: not a tokens file (not UTF-8 text at byte {err.start})",
                                 exit_code=EX_DATAERR) from None
        by_hash: dict[str, Identity] = {}
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                by_hash[d["sha256"]] = Identity(d["name"], d["role"])
            except (ValueError, KeyError, TypeError) as err:
                raise CollectorError(f"{path}:{n}: bad token entry ({err})", exit_code=EX_DATAERR) from err
        self._by_hash, self._stamp = by_hash, _stamp(path)

    def _refresh(self) -> None:
        """Read the file again if it changed since (a token added or revoked while the collector
        runs takes effect at once); a file now unreadable or broken keeps what was read before."""
        if self.path is None:
            return
        stamp = _stamp(self.path)
        if stamp is None or stamp == self._stamp:
            return
        try:
            self._load(self.path)
        except CollectorError as err:
            log.warning("tokens file changed but is not read: %s (the previous tokens stay)", err)
            self._stamp = stamp

    def entries(self) -> list[dict[str, str]]:
        """The tokens: name, role and an id (the first 12 hex digits of the token's hash; the
        token itself is never stored)."""
        self._refresh()
        return [{"id": h[:12], "name": i.name, "role": i.role} for h, i in self._by_hash.items()]

    def revoke(self, name_or_id: str) -> list[dict[str, str]]:
        """Remove every token of that name, or the one with that id (hash prefix, 6+ digits); the
        file is replaced whole (atomically). NotFound-like CollectorError (66) if none matches."""
        self._refresh()
        gone = [h for h, i in self._by_hash.items()
                if i.name == name_or_id or (len(name_or_id) >= 6 and h.startswith(name_or_id.lower()))]
        if not gone or self.path is None:
            raise CollectorError(f"no token named {name_or_id!r} or with that id (see `cgsentry collector token "
                                 "list`)", exit_code=EX_NOINPUT)
        keep = {h: i for h, i in self._by_hash.items() if h not in gone}
        text = "".join(json.dumps({"name": i.name, "role": i.role, "sha256": h}) + "\n" for h, i in keep.items())
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            tmp.chmod(0o600)
            os.replace(tmp, self.path)
        except OSError as err:
            raise CollectorError(f"{self.path}: cannot write tokens file: {err.strerror}",
                                 exit_code=EX_NOPERM if isinstance(err, PermissionError) else EX_CANTCREAT) from None
        removed = [{"id": h[:12], "name": self._by_hash[h].name, "role": self._by_hash[h].role} for h in gone]
        self._by_hash, self._stamp = keep, _stamp(self.path)
        return removed

    def add(self, name: str, role: str) -> str:
        if role not in (*ROLES, SENSOR):
            raise CollectorError(f"role {role!r} is not one of {', '.join((*ROLES, SENSOR))}", exit_code=64)
        if self.path is None:
            raise CollectorError("no tokens file given (--tokens FILE)", exit_code=64)
        # A fixed prefix: a bare urlsafe token starts with "-" one time in 32, and then
        # `cgsentry --token <it>` reads it as an option (found by CI on a fresh clone).
        token = "cgs_" + secrets.token_urlsafe(32)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"name": name, "role": role, "sha256": _hash(token)}) + "\n")
            self.path.chmod(0o600)
        except OSError as err:
            raise CollectorError(f"{self.path}: cannot write tokens file: {err.strerror}",
                                 exit_code=EX_NOPERM if isinstance(err, PermissionError) else EX_CANTCREAT) from None
        self._by_hash[_hash(token)] = Identity(name, role)
        return token

    def lookup(self, token: str) -> Identity | None:
        self._refresh()
        return self._by_hash.get(_hash(token))

    def __len__(self) -> int:
        return len(self._by_hash)


@dataclass
class AuthConfig:
    tokens: TokenStore
    insecure: bool = False  # no authentication at all (loopback demos and tests only)
    mtls: bool = False


def bearer(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "authorization" and value.lower().startswith("bearer "):
            return str(value[7:].strip())
    return ""


# --insecure (loopback demos and tests): every caller, analyst or sensor, is this one identity.
ANONYMOUS = Identity("anonymous", "admin")


def authenticate(cfg: AuthConfig, metadata: Any, auth_context: dict[str, Any]) -> Identity:
    """The caller's identity from its token, or its client certificate's CN (role sensor)."""
    if cfg.insecure:
        return ANONYMOUS
    token = bearer(metadata)
    if token:
        ident = cfg.tokens.lookup(token)
        if ident is None:
            raise Unauthenticated("unknown token")
        return ident
    cn = auth_context.get("x509_common_name") if auth_context else None
    if cn:
        name = _text(cn[0])
        units = _cert_units(auth_context)
        if not units:
            raise Unauthenticated(f"certificate {name!r} carries no role (no OU): re-issue a sensor's with "
                                  "`cgsentry collector pki sensor NAME --dir DIR`, or send a token")
        if SENSOR_UNIT not in units:
            raise Unauthenticated(f"certificate {name!r} (OU {', '.join(units)}) is not a sensor certificate; "
                                  "a client certificate needs a token for a role")
        return Identity(name, SENSOR)
    raise Unauthenticated("no credentials (send 'authorization: Bearer <token>' or a client certificate)")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _cert_units(auth_context: dict[str, Any]) -> list[str]:
    """The subject OUs of the peer's (CA-verified) certificate; [] for an unmarked one."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    pem = auth_context.get("x509_pem_cert")
    if not pem:
        raise Unauthenticated("the client certificate was not available to check (no x509_pem_cert)")
    try:
        cert = x509.load_pem_x509_certificate(pem[0] if isinstance(pem[0], bytes) else str(pem[0]).encode())
    except ValueError as err:
        raise Unauthenticated(f"unreadable client certificate: {err}") from err
    return [_text(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]


def require(ident: Identity, role: str) -> None:
    if role == SENSOR:
        # Only sensor identities stream findings: an admin token speaking as a sensor could file
        # findings and claim containers under any sensor's id (and take its sequence numbers).
        if ident.role != SENSOR and ident is not ANONYMOUS:
            raise PermissionDenied(f"{ident.name} ({ident.role}) is not a sensor")
        return
    if ident.role == SENSOR or ROLES.index(ident.role) < ROLES.index(role):
        raise PermissionDenied(f"{ident.name} has role {ident.role}; this needs {role}")
