"""The collector's exceptions, and their gRPC status codes — mapped here, in one place."""

from __future__ import annotations

from typing import Any

from sensor.errors import EX_DATAERR, EX_NOINPUT, EX_NOPERM, EX_UNAVAILABLE, CgsentryError


class CollectorError(CgsentryError):
    """Base of every expected collector failure."""

    status = "INTERNAL"


class NotFound(CollectorError):
    exit_code = EX_NOINPUT
    status = "NOT_FOUND"


class InvalidArgument(CollectorError):
    exit_code = EX_DATAERR
    status = "INVALID_ARGUMENT"


class ResourceExhausted(CollectorError):
    """A peer asked for more than the collector keeps for it (e.g. one sensor's containers)."""

    exit_code = EX_DATAERR
    status = "RESOURCE_EXHAUSTED"


class Unauthenticated(CollectorError):
    exit_code = EX_NOPERM
    status = "UNAUTHENTICATED"


class PermissionDenied(CollectorError):
    exit_code = EX_NOPERM
    status = "PERMISSION_DENIED"


class Unavailable(CollectorError):
    exit_code = EX_UNAVAILABLE
    status = "UNAVAILABLE"


class DeadlineExceeded(CollectorError):
    exit_code = EX_UNAVAILABLE
    status = "DEADLINE_EXCEEDED"


def status_code(err: CollectorError) -> Any:
    import grpc

    return getattr(grpc.StatusCode, err.status, grpc.StatusCode.INTERNAL)


def from_rpc_error(err: Any, target: str) -> CollectorError:
    """A client-side grpc.RpcError -> the matching CollectorError with a one-line message."""
    import grpc

    code, details = err.code(), (err.details() or "").splitlines()[0] if err.details() else ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(f"cannot reach collector at {target}: {details or 'unavailable'} "
                           "(is `cgsentry collector serve` running?)")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Unauthenticated(f"collector refused the credentials: {details} (set --token or CGSENTRY_TOKEN)")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(f"not allowed: {details}")
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # a message over the other side's size limit
        return CollectorError(f"collector at {target} refused the request: {details or 'too large'}",
                              exit_code=EX_DATAERR)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unavailable(f"collector at {target} did not answer in time")
    return CollectorError(f"collector error {code.name}: {details}")


# Docker's answer when a container is not in the state an action needs (HTTP 409 Conflict).
_CONFLICT_STATES = {"kill": "is not running", "stop": "is not running", "pause": "is not running or is already paused",
                    "unpause": "is not paused"}


def action_failure(container: str, action: str, error: str) -> CollectorError:
    """A failed container action (the sensor's one-line ``error``) as a CollectorError.

    Docker's API error reads ``409 Client Error for <url>: Conflict ("<explanation>")``; the
    sensor may cut it short, so the status code decides, the explanation only refines it:
    409 -> "container X is not running" (EX_DATAERR: the container is not in a state the
    action applies to), 404 -> "container X no longer exists" (EX_NOINPUT), anything else ->
    the sensor's error (EX_UNAVAILABLE: the runtime or cgroup refused)."""
    import re

    status = re.search(r"\b(\d{3}) (?:Client|Server) Error", error)
    explanation = re.search(r'\("([^"]*)', error)
    text = explanation.group(1) if explanation else ""
    if status and status.group(1) == "409":
        state = next((p for p in ("is not running", "is already paused", "is not paused", "is paused")
                      if p in text), _CONFLICT_STATES.get(action, "is not in a state to " + action))
        return CollectorError(f"container {container} {state}", exit_code=EX_DATAERR)
    if status and status.group(1) == "404":
        return NotFound(f"container {container} no longer exists")
    return Unavailable(f"{action} {container} failed at its sensor: {error or 'no reason given'}")
