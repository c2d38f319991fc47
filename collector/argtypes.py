"""argparse types for the ``cgsentry`` command line: each refuses, with one line, what gRPC or
protobuf would otherwise take wrongly (a port past 65535, an int64 past its range, a nan timeout)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

DEFAULT_PORT = 7443  # the collector's port: `collector serve --listen` and a `--server` without a port
DEFAULT_SERVER = f"127.0.0.1:{DEFAULT_PORT}"
INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1  # protobuf int32/int64 fields refuse more
MAX_TIMEOUT_S = 3600.0


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [lo, hi] (protobuf refuses what its field cannot hold)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text} is out of range ({lo} to {hi})")
        return value
    return parse


def timeout_s(text: str) -> float:
    """``--timeout``: seconds, more than 0 and at most an hour (gRPC reads nan or 1e300 as "expired")."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= MAX_TIMEOUT_S:  # false for nan too
        raise argparse.ArgumentTypeError(f"{text} seconds: give more than 0 and at most {MAX_TIMEOUT_S:g}")
    return value


def listen_addr(text: str) -> str:
    """``--listen``: HOST:PORT ([V6ADDR]:PORT), port 1-65535 — gRPC binds 443 for a bare host and
    some other port for one past 65535."""
    m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})", text)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: use HOST:PORT with a port from 1 to 65535 (e.g. {DEFAULT_SERVER})")
    return text


def webhook_url(text: str) -> str:
    """``--webhook``: an http:// or https:// URL with a host (collector.webhook.check_webhook_url)."""
    from collector.errors import InvalidArgument
    from collector.webhook import check_webhook_url

    try:
        return check_webhook_url(text)
    except InvalidArgument as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def webhook_header(text: str) -> str:
    """``--webhook-header``: 'Name: value' (collector.webhook.check_header)."""
    from collector.errors import InvalidArgument
    from collector.webhook import check_header

    try:
        check_header(text)
    except InvalidArgument as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def digest_s(text: str) -> float:
    """``--webhook-digest-s``: 0 (send every occurrence) or more seconds, at most a day."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 86400:  # false for nan too
        raise argparse.ArgumentTypeError(f"{text} seconds: give 0 (every occurrence) to 86400")
    return value


def label_arg(text: str) -> str:
    """KEY=VALUE: a Kubernetes pod label to filter alerts by."""
    key, eq, _ = text.partition("=")
    if not eq or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: give a pod label as KEY=VALUE")
    return text
