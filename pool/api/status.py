"""Domain errors <-> gRPC status codes: the one place where the two meet.

A redirect to the user's home front end also travels as standard rich error details: a
``google.rpc.Status`` in the ``grpc-status-details-bin`` trailer holding a
``google.rpc.ErrorInfo`` (reason ``USER_HOMED_ELSEWHERE``, domain ``poolsim.v1``, metadata
``homeAddress`` and ``frontEndId``), which every language's gRPC library can read; the
``poolsim-home-address`` trailer stays for the clients that read it.

"Server too busy" (``errors.ServerTooBusy``, UNAVAILABLE) travels the same way: a
``google.rpc.RetryInfo`` (``retry_delay``) and an ``ErrorInfo`` (reason ``SERVER_TOO_BUSY`` or
``HELD_TOO_LONG``), beside the ``retry-after-ms`` trailer (milliseconds, as text).
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from pool import errors
from pool._proto.poolsim.v1 import frontend_pb2 as pb

_CODES: dict[type[errors.PoolError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}
_ERRORS: dict[grpc.StatusCode, type[errors.PoolError]] = {v: k for k, v in _CODES.items()}

HOME_ADDRESS_KEY = "poolsim-home-address"
FRONT_END_KEY = "poolsim-front-end"
DETAILS_KEY = "grpc-status-details-bin"
ERROR_DOMAIN = "poolsim.v1"
HOMED_ELSEWHERE = pb.ErrorReason.Name(pb.ERROR_REASON_USER_HOMED_ELSEWHERE).removeprefix(
    "ERROR_REASON_"
)
TOO_BUSY = pb.ErrorReason.Name(pb.ERROR_REASON_SERVER_TOO_BUSY).removeprefix("ERROR_REASON_")


def code_of(error: errors.PoolError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        code = _CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def _packed(*messages: error_details_pb2.ErrorInfo | error_details_pb2.RetryInfo) -> list[Any]:
    out = []
    for message in messages:
        detail = any_pb2.Any()
        detail.Pack(message)
        out.append(detail)
    return out


def rich_details(error: errors.PoolError, code: grpc.StatusCode) -> tuple[str, bytes] | None:
    """The ``grpc-status-details-bin`` trailer for ``error``, when it has details to give."""
    if isinstance(error, errors.Redirect):
        details = _packed(
            error_details_pb2.ErrorInfo(
                reason=HOMED_ELSEWHERE,
                domain=ERROR_DOMAIN,
                metadata={"homeAddress": error.home_address, "frontEndId": error.front_end_id},
            )
        )
    elif isinstance(error, errors.ServerTooBusy):
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(error.retry_after * 1e9))
        details = _packed(
            error_details_pb2.RetryInfo(retry_delay=delay),
            error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN),
        )
    else:
        return None
    status = status_pb2.Status(code=code.value[0], message=error.message, details=details)
    return DETAILS_KEY, status.SerializeToString()


def error_info(details: bytes) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo in a ``grpc-status-details-bin`` value, if there is one."""
    try:
        status = status_pb2.Status.FromString(details)
    except Exception:  # not a Status: there are no details to read
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def error_of(
    code: grpc.StatusCode, message: str, metadata: dict[str, str], details: bytes = b""
) -> errors.PoolError:
    """The domain error a status code stands for (clients raise these)."""
    info = error_info(details) if details else None
    if (
        code == grpc.StatusCode.FAILED_PRECONDITION
        and info is not None
        and info.domain == ERROR_DOMAIN
        and info.reason == HOMED_ELSEWHERE
        and info.metadata.get("homeAddress")
    ):
        return errors.Redirect(
            "", info.metadata["homeAddress"], info.metadata.get("frontEndId", ""), message
        )
    home = metadata.get(HOME_ADDRESS_KEY)
    if code == grpc.StatusCode.FAILED_PRECONDITION and home:
        return errors.Redirect("", home, metadata.get(FRONT_END_KEY, ""), message)
    retry_ms = metadata.get(errors.RETRY_AFTER_KEY)
    if code == grpc.StatusCode.UNAVAILABLE and retry_ms is not None:
        reason = info.reason if info is not None and info.domain == ERROR_DOMAIN else ""
        try:
            retry_after = max(0.0, float(retry_ms) / 1000)
        except ValueError:
            retry_after = 0.0
        return errors.ServerTooBusy(message, retry_after, reason or TOO_BUSY)
    cls = _ERRORS.get(code, errors.PoolError)
    return cls(message, metadata=metadata)
