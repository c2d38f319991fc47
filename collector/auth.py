"""Who may call what: bearer tokens with roles for analysts, mTLS identities (or sensor tokens)
for sensors. Tokens are stored hashed (sha256); the clear token is printed once at creation.

Roles, weakest first: viewer (read), responder (+ acknowledge alerts, act on containers),
admin (+ change image modes and policy). Sensors have the role ``sensor`` and may only report
for their own identity.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.errors import CollectorError, PermissionDenied, Unauthenticated

ROLES = ("viewer", "responder", "admin")
SENSOR = "sensor"


@dataclass(frozen=True)
class Identity:
    name: str
    role: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Tokens file: one JSON object per line {name, role, sha256}."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._by_hash: dict[str, Identity] = {}
        if path is not None and path.exists():
            self._load(path)

    def _load(self, path: Path) -> None:
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                self._by_hash[d["sha256"]] = Identity(d["name"], d["role"])
            except (ValueError, KeyError) as err:
                raise CollectorError(f"{path}:{n}: bad token entry ({err})", exit_code=65) from err

    def add(self, name: str, role: str) -> str:
        if role not in (*ROLES, SENSOR):
            raise CollectorError(f"role {role!r} is not one of {', '.join((*ROLES, SENSOR))}", exit_code=64)
        if self.path is None:
            raise CollectorError("no tokens file given (--tokens FILE)", exit_code=64)
        # A fixed prefix: a bare urlsafe token starts with "-" one time in 32, and then
        # `cgsentry --token <it>` reads it as an option (found by CI on a fresh clone).
        token = "cgs_" + secrets.token_urlsafe(32)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"name": name, "role": role, "sha256": _hash(token)}) + "\n")
        self.path.chmod(0o600)
        self._by_hash[_hash(token)] = Identity(name, role)
        return token

    def lookup(self, token: str) -> Identity | None:
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


def authenticate(cfg: AuthConfig, metadata: Any, auth_context: dict[str, Any]) -> Identity:
    """The caller's identity from its token, or its client certificate's CN (role sensor)."""
    if cfg.insecure:
        return Identity("anonymous", "admin")
    token = bearer(metadata)
    if token:
        ident = cfg.tokens.lookup(token)
        if ident is None:
            raise Unauthenticated("unknown token")
        return ident
    cn = auth_context.get("x509_common_name") if auth_context else None
    if cn:
        return Identity(cn[0].decode() if isinstance(cn[0], bytes) else str(cn[0]), SENSOR)
    raise Unauthenticated("no credentials (send 'authorization: Bearer <token>' or a client certificate)")


def require(ident: Identity, role: str) -> None:
    if role == SENSOR:
        if ident.role not in (SENSOR, "admin"):
            raise PermissionDenied(f"{ident.name} ({ident.role}) is not a sensor")
        return
    if ident.role == SENSOR or ROLES.index(ident.role) < ROLES.index(role):
        raise PermissionDenied(f"{ident.name} has role {ident.role}; this needs {role}")
