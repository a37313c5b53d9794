"""What every RPC handler shares: refusing a request that is undecodable or invalid on the
wire (before authentication), reading the bearer token, turning domain errors into one status
(with metadata), and recording the call's latency by method and code.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from pool.api.decoding import RateLimitedLog, Undecodable
from pool.api.metrics import Metrics
from pool.api.status import code_of, rich_details
from pool.api.validate import check_request
from pool.errors import InvalidArgument, PoolError

log = logging.getLogger("poolsim.rpc")

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self = TypeVar("Self", bound="Handler")


class Handler:
    """Base of the servicers: holds the metrics and a clock for durations."""

    metrics: Metrics | None
    monotonic: Callable[[], float]
    _undecodable_log: RateLimitedLog | None = None

    def admit(self, method: str, request: object) -> None:
        """Refuse what is not a valid request of ``method`` (InvalidArgument)."""
        if type(request) is Undecodable:
            if self.metrics is not None:
                self.metrics.undecodable(method)
            if self._undecodable_log is None:
                self._undecodable_log = RateLimitedLog(self.monotonic)
            self._undecodable_log.warning(f"{method}: {request.message()}")
            raise InvalidArgument(request.message())
        assert isinstance(request, Message)
        check_request(request)


def bearer(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


def status_of(
    method: str, exc: BaseException
) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str | bytes], ...]]:
    """The status a failed call answers with: code, message and trailing metadata (the rich
    details included). A bug is logged and answered INTERNAL."""
    if isinstance(exc, PoolError):
        code = code_of(exc)
        trailers: tuple[tuple[str, str | bytes], ...] = tuple(exc.metadata.items())
        details = rich_details(exc, code)
        if details is not None:
            trailers += (details,)
        return code, exc.message, trailers
    log.exception("internal error in %s", method, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error in {method}: {type(exc).__name__}", ()


async def abort(
    context: grpc.aio.ServicerContext[Any, Any], method: str, exc: BaseException
) -> grpc.StatusCode:
    code, message, trailers = status_of(method, exc)
    await context.abort(code, message, trailers)
    raise AssertionError("unreachable")  # abort raises


def code_after(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException | None) -> str:
    if exc is None:
        return "OK"
    if isinstance(exc, PoolError):
        return code_of(exc).name
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return (
        "CANCELLED"
        if isinstance(exc, BaseException) and not isinstance(exc, Exception)
        else "INTERNAL"
    )


def unary(
    method: Callable[[Self, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]],
) -> Callable[[Self, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]:
    """A handler answering one status for its call: the request is admitted (checked) first
    unless it is a stream of requests (``bidi``), the outcome is counted by method and code."""
    return _handler(method, admit=True)


def bidi(
    method: Callable[[Self, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]],
) -> Callable[[Self, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]:
    """``unary`` for a handler given a stream of requests (it admits each itself)."""
    return _handler(method, admit=False)


def _handler(
    method: Callable[[Self, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]],
    *,
    admit: bool,
) -> Callable[[Self, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]:
    name = method.__name__

    @functools.wraps(method)
    async def wrapper(
        self: Self, request: Req, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Resp:
        start = self.monotonic()
        if self.metrics is not None:
            self.metrics.rpc_started(name)
        failure: BaseException | None = None
        try:
            if admit:
                self.admit(name, request)
            return await method(self, request, context)
        except grpc.aio.AbortError as exc:  # already a status
            failure = exc
            raise
        except Exception as exc:  # domain errors and bugs alike become one status (abort raises)
            failure = exc
            await abort(context, name, exc)
            raise
        finally:
            if self.metrics is not None:
                self.metrics.rpc_done(name, code_after(context, failure), self.monotonic() - start)

    return wrapper


def streaming(
    method: Callable[[Self, Req, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Resp]],
) -> Callable[[Self, Req, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Resp]]:
    name = method.__name__

    @functools.wraps(method)
    async def wrapper(
        self: Self, request: Req, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Resp]:
        start = self.monotonic()
        if self.metrics is not None:
            self.metrics.rpc_started(name)
        failure: BaseException | None = None
        sent = 0
        try:
            self.admit(name, request)
            async for item in method(self, request, context):
                yield item
                sent += 1
        except grpc.aio.AbortError as exc:  # already a status
            failure = exc
            raise
        except Exception as exc:  # domain errors and bugs alike become one status
            failure = exc
            await abort(context, name, exc)
        except BaseException as exc:  # cancelled: the client went away
            failure = exc
            raise
        finally:
            if self.metrics is not None:
                code = code_after(context, failure)
                self.metrics.rpc_done(name, code, self.monotonic() - start, sent)

    return wrapper
