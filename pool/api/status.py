"""Domain errors <-> gRPC status codes: the one place where the two meet."""

from __future__ import annotations

import grpc

from pool import errors

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


def code_of(error: errors.PoolError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        code = _CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def error_of(code: grpc.StatusCode, message: str, metadata: dict[str, str]) -> errors.PoolError:
    """The domain error a status code stands for (clients raise these)."""
    home = metadata.get(HOME_ADDRESS_KEY)
    if code == grpc.StatusCode.FAILED_PRECONDITION and home:
        return errors.Redirect("", home, metadata.get("poolsim-front-end", ""), message)
    cls = _ERRORS.get(code, errors.PoolError)
    return cls(message, metadata=metadata)
