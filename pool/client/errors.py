"""The client's errors: a gRPC status turned into the domain's own error (``pool.errors``)."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TypeVar, cast

import grpc

from pool.api.status import DETAILS_KEY, error_of
from pool.errors import PoolError, Redirect, ServerTooBusy, Unavailable

T = TypeVar("T")


class TransportError(PoolError):
    """The call failed for a reason that is not the pool's answer (deadline, cancel, ...)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code


def translate(exc: grpc.aio.AioRpcError) -> PoolError:
    code = exc.code()
    message = exc.details() or ""
    pairs = cast(Sequence[tuple[str, str | bytes]], exc.trailing_metadata() or ())
    metadata = {key: value for key, value in pairs if isinstance(value, str)}
    details = next((v for k, v in pairs if k == DETAILS_KEY and isinstance(v, bytes)), b"")
    error = error_of(code, message, metadata, details)
    if type(error) is PoolError:
        return TransportError(code, message)
    return error


async def _call(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except grpc.aio.AioRpcError as exc:
        raise translate(exc) from exc


def _unavailable(error: BaseException) -> bool:
    """The front end is down, stopping or without quorum: worth trying elsewhere. Not when
    it is only too busy (``ServerTooBusy``): signing in again would add to its load; the
    caller gets the error, with its ``retry_after``."""
    if isinstance(error, ServerTooBusy):
        return False
    return isinstance(error, Unavailable) or (
        isinstance(error, TransportError) and error.code == grpc.StatusCode.UNAVAILABLE
    )


def _reconnects(error: BaseException) -> bool:
    """A session's call failed in a way that signing in again may cure."""
    return isinstance(error, Redirect) or _unavailable(error)
