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


class Unauthenticated(CollectorError):
    exit_code = EX_NOPERM
    status = "UNAUTHENTICATED"


class PermissionDenied(CollectorError):
    exit_code = EX_NOPERM
    status = "PERMISSION_DENIED"


class Unavailable(CollectorError):
    exit_code = EX_UNAVAILABLE
    status = "UNAVAILABLE"


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
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unavailable(f"collector at {target} did not answer in time")
    return CollectorError(f"collector error {code.name}: {details}")
