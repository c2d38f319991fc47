"""The webhook export: findings POSTed as Falco JSON to an operator's URL, one at a time, in order.

A receiver is someone else's server and may be down, slow, or broken: it may time out, close the
connection without answering, answer something that is not HTTP, or answer 5xx. None of that stops
the worker. The finding in hand is retried with exponential backoff (:data:`BACKOFF_S`: 0.5 s
doubling to at most 60 s) until the receiver takes it, so a receiver that comes back gets every
finding queued meanwhile. The queue is bounded (:data:`MAX_QUEUED`); past it, new findings are
dropped and counted, and ingest is never blocked. A receiver that *refuses* a finding (a 4xx other
than 408/429, or a redirect, which would turn the POST into a GET that drops the body) will refuse
it again: it is dropped, counted, not retried. Every outcome is a Prometheus counter, and only the
first failure of a run and the recovery are logged (per-finding problems are counters, not lines).
The URL is checked whole before anything starts (:func:`check_webhook_url`), and so are the
headers sent with every POST (``--webhook-header 'Authorization: Bearer ...'``, :func:`check_header`).

An alert is sent when it first occurs; its repeats are counted and sent as one digest per alert
every ``digest_s`` (:class:`Digest`), so a burst of one finding is two POSTs, not thousands. Every
body is Falco's JSON output form (collector.export.falco_json), which falcosidekick takes as-is; a
digest is the alert's latest occurrence in that form, its output saying how often it repeated and
``output_fields`` carrying ``cgsentry.repeats`` and ``cgsentry.digest``.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

from collector.errors import InvalidArgument

log = logging.getLogger(__name__)
MAX_QUEUED: Final = 10_000
BACKOFF_S: Final = (0.5, 60.0)  # first retry delay, and the most it doubles to
POST_TIMEOUT_S: Final = 5.0  # per connect and per read
FAILURE_REASONS: Final = ("timeout", "closed", "bad_response", "http_status", "connection", "error")
DROP_REASONS: Final = ("queue_full", "refused")
PORT_RANGE: Final = "the port must be a number from 1 to 65535"
DIGEST_S: Final = 60.0  # repeats of an alert are sent once per this many seconds
MAX_TRACKED: Final = 100_000  # alerts remembered as already sent (the oldest are forgotten first)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 token)


def check_header(text: str) -> tuple[str, str]:
    """``Name: value`` as a header every POST carries, or InvalidArgument in one line: a token for
    the name, printable ASCII without line breaks for the value (a CR or LF would inject headers)."""
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not _TOKEN.fullmatch(name):
        raise InvalidArgument(f"webhook header {text[:40]!r}...: give 'Name: value' (e.g. 'Authorization: Bearer "
                              "TOKEN')" if len(text) > 40 else f"webhook header {text!r}: give 'Name: value' "
                              "(e.g. 'Authorization: Bearer TOKEN')")
    if not value or not (value.isascii() and value.isprintable()):
        raise InvalidArgument(f"webhook header {name}: the value must be printable ASCII on one line")
    if name.lower() in ("content-type", "content-length", "host"):
        raise InvalidArgument(f"webhook header {name}: set by the webhook itself")
    return name, value


class Digest:
    """Which alerts were sent already, and the repeats of each since the last digest.

    ``offer`` says whether a finding's alert (its fingerprint) is new: True the first time (send
    it now), False after (its payload is kept as the latest, and counted). ``take`` returns one
    payload per alert that repeated since the last take, marked as a digest, and starts over."""

    def __init__(self, max_tracked: int = MAX_TRACKED) -> None:
        self.max_tracked = max_tracked
        self._lock = threading.Lock()
        self._sent: dict[str, None] = {}  # insertion-ordered: the oldest is forgotten first
        self._repeats: dict[str, tuple[dict[str, Any], int, str]] = {}  # key -> (latest, count, first time)

    def offer(self, key: str, payload: dict[str, Any]) -> bool:
        with self._lock:
            if key not in self._sent:
                self._sent[key] = None
                if len(self._sent) > self.max_tracked:
                    self._sent.pop(next(iter(self._sent)))
                return True
            _, n, since = self._repeats.get(key, (payload, 0, str(payload.get("time", ""))))
            self._repeats[key] = (payload, n + 1, since)
            return False

    def take(self, period_s: float) -> list[dict[str, Any]]:
        with self._lock:
            repeats, self._repeats = self._repeats, {}
        out = []
        for payload, n, since in repeats.values():
            fields = {**payload.get("output_fields", {}), "cgsentry.repeats": n, "cgsentry.digest": True}
            out.append({**payload, "output": f"{payload.get('output', '')} (repeated {n} more time(s) since "
                                             f"{since}, digest every {period_s:g}s)", "output_fields": fields})
        return out


def check_webhook_url(text: str) -> str:
    """``text`` if it is a URL the webhook can POST to: http or https, a host, a port from 1 to
    65535 if one is given, no user or password (urllib would not send them, and the URL shows up in
    logs), ASCII without spaces or control characters. Otherwise InvalidArgument, one line saying what is wrong."""
    def bad(why: str) -> InvalidArgument:
        return InvalidArgument(f"webhook URL {text!r}: {why} (use http:// or https://HOST[:PORT]/PATH)")

    if any(c.isspace() or not c.isprintable() for c in text):
        raise bad("contains a space or a control character")
    if not text.isascii():  # http.client cannot send it: every POST would fail, for ever
        raise bad("contains a character that is not ASCII (percent-encode it, or use the punycode host)")
    try:
        url = urlsplit(text)
        port = url.port  # ValueError for a port that is not a number or past 65535
    except ValueError as err:
        raise bad(PORT_RANGE if "port" in str(err).lower() else f"not a valid URL ({err})") from None
    if url.scheme not in ("http", "https"):
        raise bad(f"the scheme must be http or https, not {url.scheme!r}" if url.scheme else "no scheme")
    if url.username is not None or url.password is not None or "@" in url.netloc:
        raise bad("a user or password in the URL is not supported: it would not be sent, and would be logged")
    if not url.hostname:
        raise bad("no host")
    if port == 0 or url.netloc.endswith(":"):
        raise bad(PORT_RANGE)
    return text


def retry_delay_s(failed: int, backoff_s: tuple[float, float] = BACKOFF_S) -> float:
    """Seconds to wait after the ``failed``-th failure in a row: the first delay, doubled each
    time, at most the second."""
    first, most = backoff_s
    return float(min(most, first * 2.0 ** min(failed - 1, 30)))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an HTTPError: urllib would follow a POST's 301/302 as a GET without the body."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class WebhookSender:
    """One worker thread POSTing queued findings; see the module docstring for what it survives."""

    def __init__(self, url: str, registry: Any, *, queue_size: int = MAX_QUEUED,
                 timeout_s: float = POST_TIMEOUT_S, backoff_s: tuple[float, float] = BACKOFF_S,
                 headers: list[str] | tuple[str, ...] = (), digest_s: float = DIGEST_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from prometheus_client import Counter, Gauge

        self.url = check_webhook_url(url)
        self.headers = dict(check_header(h) for h in headers)
        if not digest_s >= 0:  # false for NaN too
            raise InvalidArgument(f"webhook digest interval {digest_s!r}: give 0 (every occurrence) or more seconds")
        self.digest_s, self.digest, self._clock = digest_s, Digest(), clock
        self._next_digest = clock() + digest_s
        parts = urlsplit(url)
        self.shown = f"{parts.scheme}://{parts.netloc}{parts.path}"  # the query may hold a token: not logged
        self.timeout_s, self.backoff_s = timeout_s, backoff_s
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=queue_size)
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._stop = threading.Event()
        self.sent = Counter("cgsentry_webhook_sent_total", "Findings the webhook receiver accepted",
                            registry=registry)
        self.failures = Counter("cgsentry_webhook_failures_total",
                                "Failed webhook POSTs (each is retried with backoff)", ["reason"], registry=registry)
        self.dropped = Counter("cgsentry_webhook_dropped_total",
                               "Findings the webhook did not deliver: queue full, or refused by the receiver",
                               ["reason"], registry=registry)
        for reason in FAILURE_REASONS:
            self.failures.labels(reason)
        for reason in DROP_REASONS:
            self.dropped.labels(reason)
        Gauge("cgsentry_webhook_queued", "Findings waiting for the webhook", registry=registry).set_function(
            self._queue.qsize)
        self.failing = Gauge("cgsentry_webhook_consecutive_failures",
                             "Failed POSTs in a row of the finding in hand (0: the receiver takes them)",
                             registry=registry)
        self.digests = Counter("cgsentry_webhook_digests_total",
                               "Digests of repeated alerts queued (one per alert that repeated in a period)",
                               registry=registry)
        self._thread = threading.Thread(target=self._run, name="cgsentry-webhook", daemon=True)
        self._thread.start()

    def notify(self, key: str, payload: dict[str, Any]) -> bool:
        """An occurrence of the alert ``key`` (its fingerprint), Falco JSON ``payload``: queued now
        if the alert is new (or digests are off), else kept for the next digest. False if dropped."""
        if self.digest_s and not self.digest.offer(key, payload):
            return True
        return self.put(json.dumps(payload).encode())

    def flush_digest(self) -> int:
        """Queue the digest of every alert that repeated since the last one; how many."""
        self._next_digest = self._clock() + self.digest_s
        out = self.digest.take(self.digest_s)
        for payload in out:
            self.digests.inc()
            self.put(json.dumps(payload).encode())
        return len(out)

    def put(self, body: bytes) -> bool:
        """Queue one JSON body; False (counted) if the queue is full. Never blocks."""
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            self.dropped.labels("queue_full").inc()
            return False
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the worker (what is still queued is not sent)."""
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        failed = 0  # consecutive failures of the body in hand
        body: bytes | None = None
        while not self._stop.is_set():
            if self.digest_s and self._clock() >= self._next_digest:
                self.flush_digest()
            if body is None:
                try:
                    body = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
            outcome = self._post(body)
            if outcome in ("sent", "refused"):
                if failed:
                    log.warning("webhook %s: delivering again after %d failed attempt(s)", self.shown, failed)
                failed, body = 0, None
                self.failing.set(0)
                continue
            failed += 1
            self.failing.set(failed)
            if failed == 1:
                log.warning("webhook %s: %s; retrying with backoff (counted in cgsentry_webhook_failures_total)",
                            self.shown, outcome)
            self._stop.wait(retry_delay_s(failed, self.backoff_s))

    def _post(self, body: bytes) -> str:
        """POST once: "sent", "refused" (dropped, counted), or why it failed (counted, to retry)."""
        headers = {**self.headers, "Content-Type": "application/json"}
        req = urllib.request.Request(self.url, body, headers, method="POST")  # noqa: S310 - http(s) only, checked at start
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                resp.read(1 << 16)  # drain a little, so a keep-alive receiver is not cut mid-answer
        except urllib.error.HTTPError as err:
            err.close()
            if 300 <= err.code < 500 and err.code not in (408, 429):
                self.dropped.labels("refused").inc()
                log.debug("webhook %s refused a finding: HTTP %d", self.shown, err.code)
                return "refused"
            return self._failed("http_status", f"HTTP {err.code}")
        except Exception as err:  # noqa: BLE001 - whatever the receiver does, the worker goes on
            return self._failed(*_reason(err))
        self.sent.inc()
        return "sent"

    def _failed(self, reason: str, detail: str) -> str:
        self.failures.labels(reason).inc()
        return f"{reason} ({detail})"


def _reason(err: BaseException) -> tuple[str, str]:
    """(counter label, one-line detail) for a failed POST."""
    cause = err.reason if isinstance(err, urllib.error.URLError) and isinstance(err.reason, BaseException) else err
    # repr: the receiver wrote this text (a bad status line), and it goes to a log and a terminal
    detail = f"{type(cause).__name__}: {repr(str(cause))[1:-1][:200]}" if str(cause) else type(cause).__name__
    if isinstance(cause, TimeoutError):
        return "timeout", detail
    if isinstance(cause, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
        return "closed", detail
    if isinstance(cause, http.client.HTTPException):
        return "bad_response", detail
    if isinstance(cause, OSError):
        return "connection", detail
    return "error", detail
