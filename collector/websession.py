"""Who is asking the web console, and whether a state change is theirs: sessions, CSRF, headers.

People log in with a token (:data:`COOKIE` after that: a random session id, HttpOnly,
SameSite=Strict, never in a URL; the token itself is never stored in the browser). Scripts send
``Authorization: Bearer TOKEN`` to ``/api/...``. Either way the identity and its role come from the
collector's :class:`~collector.auth.TokenStore`, and every request checks the role it needs.

Every state change from a session carries its CSRF token (a form field or the ``X-CSRF-Token``
header) and, when the browser says where it comes from, an ``Origin`` of this console; a bearer
request needs neither (a browser never attaches a bearer token on its own).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from collector.auth import ANONYMOUS, ROLES, AuthConfig, Identity, bearer
from collector.errors import PermissionDenied, Unauthenticated

COOKIE = "cgsentry_session"
LOGIN_COOKIE = "cgsentry_login"  # the login form's CSRF token, before there is a session
SESSION_S = 8 * 3600.0  # a session's lifetime from its last use
MAX_SESSIONS = 10_000  # past this, the least recently used session is dropped
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on a form post,
# which the Origin check (rightly) refuses.
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
           "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


@dataclass
class Session:
    ident: Identity
    csrf: str
    used: float


class Sessions:
    """Server-side sessions in memory (a restarted collector asks people to log in again)."""

    def __init__(self, auth: AuthConfig) -> None:
        self.auth = auth
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def login(self, token: str) -> tuple[str, Session]:
        """A new session for the holder of ``token``: (session id, session)."""
        ident = self.check_token(token)
        sid = secrets.token_urlsafe(32)
        session = Session(ident, secrets.token_urlsafe(32), time.monotonic())
        with self._lock:
            if len(self._by_id) >= MAX_SESSIONS:
                oldest = min(self._by_id, key=lambda k: self._by_id[k].used)
                del self._by_id[oldest]
            self._by_id[sid] = session
        return sid, session

    def check_token(self, token: str) -> Identity:
        if self.auth.insecure:
            return ANONYMOUS
        ident = self.auth.tokens.lookup(token.strip()) if token.strip() else None
        if ident is None:
            raise Unauthenticated("unknown token")
        if ident.role not in ROLES:
            raise PermissionDenied(f"{ident.name} is a {ident.role}, not an analyst: the console needs a "
                                   "viewer, responder or admin token")
        return ident

    def get(self, sid: str) -> Session | None:
        now = time.monotonic()
        with self._lock:
            session = self._by_id.get(sid)
            if session is None:
                return None
            if now - session.used > SESSION_S:
                del self._by_id[sid]
                return None
            session.used = now
            return session

    def logout(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)


@dataclass(frozen=True)
class Caller:
    """Who sent a request: their identity, and the session's CSRF token ("" for bearer calls)."""

    ident: Identity
    csrf: str
    by_bearer: bool


def caller(sessions: Sessions, headers: dict[str, str], cookies: dict[str, str]) -> Caller:
    """The request's caller, from a bearer token or the session cookie; Unauthenticated if neither."""
    token = bearer(headers.items())
    if token:
        return Caller(sessions.check_token(token), "", True)
    session = sessions.get(cookies.get(COOKIE, ""))
    if session is None:
        raise Unauthenticated("not logged in (log in with a token, or send 'Authorization: Bearer <token>')")
    return Caller(session.ident, session.csrf, False)


def require_role(who: Caller, role: str) -> None:
    if ROLES.index(who.ident.role) < ROLES.index(role):
        raise PermissionDenied(f"{who.ident.name} has role {who.ident.role}; this needs {role}")


def check_csrf(who: Caller, sent: str, origin: str, host: str) -> None:
    """PermissionDenied unless a session's state change carries its CSRF token and, if the browser
    sent an Origin, comes from this console. Bearer calls carry no ambient credential: no check."""
    if who.by_bearer:
        return
    if origin and origin.split("://", 1)[-1] != host:
        raise PermissionDenied(f"cross-origin request refused (Origin {origin[:100]!r})")
    if not sent or not hmac.compare_digest(sent.encode(), who.csrf.encode()):
        raise PermissionDenied("missing or wrong CSRF token (reload the page and try again)")
