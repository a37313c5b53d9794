"""The domain's errors: one small tree, mapped to gRPC status codes in ``pool.api.status``.

    PoolError
    ├── InvalidArgument      the request itself is malformed
    ├── Unauthenticated      no, forged or expired credentials
    ├── PermissionDenied     authenticated, but not allowed to do this
    ├── NotFound             unknown user or conversation
    ├── AlreadyExists
    ├── FailedPrecondition   valid, but not in the current state (DND, redirect, ...)
    ├── ResourceExhausted    a limit of SPEC reached (contacts, subscriptions, endpoints, ...)
    └── Unavailable          shutting down, quorum lost, front end down
        └── ServerTooBusy    overloaded (Lync's 503): try again after ``retry_after`` seconds

Messages say what was wrong and what to do about it.
"""

from __future__ import annotations


class PoolError(Exception):
    """Base of every error the engine raises on purpose."""

    def __init__(self, message: str, *, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: extra key/values a transport may pass on (e.g. the home address of a redirect)
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(PoolError):
    pass


class Unauthenticated(PoolError):
    pass


class PermissionDenied(PoolError):
    pass


class NotFound(PoolError):
    pass


class AlreadyExists(PoolError):
    pass


class FailedPrecondition(PoolError):
    pass


class ResourceExhausted(PoolError):
    pass


class Unavailable(PoolError):
    pass


#: trailing metadata (and a Session reply's ``CallStatus.metadata``) of a ``ServerTooBusy``:
#: milliseconds the client should wait before it tries again
RETRY_AFTER_KEY = "retry-after-ms"


class ServerTooBusy(Unavailable):
    """The front end is overloaded and refused the request before running it, so the request
    changed nothing: try again after ``retry_after`` seconds. ``reason`` is the ErrorInfo
    reason (``SERVER_TOO_BUSY``: the store falls behind; ``HELD_TOO_LONG``: the request
    waited at the front end's door for longer than the limit)."""

    def __init__(self, message: str, retry_after: float, reason: str) -> None:
        super().__init__(message, metadata={RETRY_AFTER_KEY: str(round(retry_after * 1000))})
        self.retry_after = retry_after
        self.reason = reason


class Redirect(FailedPrecondition):
    """The user is homed on another front end: sign in there."""

    def __init__(
        self, user_uri: str, home_address: str, front_end_id: str, message: str = ""
    ) -> None:
        super().__init__(
            message
            or f"{user_uri} is homed on front end {front_end_id} at {home_address}: sign in there",
            metadata={"poolsim-home-address": home_address, "poolsim-front-end": front_end_id},
        )
        self.home_address = home_address
        self.front_end_id = front_end_id
