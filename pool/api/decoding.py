"""Request bodies that are not the method's protobuf type: the client's mistake, not a crash.

grpcio calls a method's request deserializer before any handler code; when it raises (bad
UTF-8 in a string field, a truncated field), grpcio logs a traceback and answers UNKNOWN,
without any token, on every RPC. ``add_services`` registers the generated servicers with a
deserializer that never raises: what cannot be parsed arrives at the handler as an
``Undecodable``, which the handler decorators (``pool.api.rpc``) answer with INVALID_ARGUMENT
before authentication. Each is counted; the log gets one line per minute at most.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pool

log = logging.getLogger("poolsim.rpc")

LOG_EVERY = 60.0  # seconds between log lines about undecodable requests, at most


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A request body that could not be parsed as ``type_name``."""

    type_name: str
    detail: str
    size: int

    def message(self) -> str:
        return (
            f"the request body ({self.size} bytes) could not be parsed as {self.type_name}, "
            f"the method's request type: {self.detail}"
        )


def tolerant(deserialize: Callable[[bytes], Any], type_name: str) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # DecodeError, or whatever else the parser raises
            detail = str(exc) or type(exc).__name__
            return Undecodable(type_name, detail[:200], len(data))

    return parse


class _Capture:
    """Stands in for the server while a generated ``add_*_to_server`` registers its handlers."""

    def __init__(self) -> None:
        self.services: list[tuple[str, dict[str, Any]]] = []

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        pass  # the same handlers arrive by name below

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.services.append((service, handlers))


def add_services(
    server: grpc.aio.Server,
    registrations: Iterable[tuple[Callable[[Any, Any], None], Any]],
) -> None:
    """Register servicers, each (generated ``add_XServicer_to_server``, servicer), with
    tolerant deserializers. The methods a servicer names in ``RAW_RESPONSES`` write bytes
    they serialized themselves (no response serializer)."""
    pool = descriptor_pool.Default()
    for add, servicer in registrations:
        capture = _Capture()
        add(servicer, capture)
        raw = frozenset(getattr(servicer, "RAW_RESPONSES", ()))
        for service, handlers in capture.services:
            methods = pool.FindServiceByName(service).methods_by_name
            wrapped = {
                name: h._replace(  # a namedtuple in grpcio
                    request_deserializer=tolerant(
                        h.request_deserializer, methods[name].input_type.full_name
                    ),
                    response_serializer=None if name in raw else h.response_serializer,
                )
                for name, h in handlers.items()
            }
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, wrapped),)
            )
            # the registered-method fast path the generated code uses (not in the stubs)
            server.add_registered_method_handlers(service, wrapped)  # type: ignore[attr-defined]


class RateLimitedLog:
    """One warning per ``every`` seconds at most, saying how many were not logged."""

    def __init__(self, monotonic: Callable[[], float], every: float = LOG_EVERY) -> None:
        self._monotonic = monotonic
        self._every = every
        self._next = float("-inf")
        self._quiet = 0

    def warning(self, text: str) -> None:
        now = self._monotonic()
        if now < self._next:
            self._quiet += 1
            return
        more = f" ({self._quiet} more since the last line)" if self._quiet else ""
        log.warning("%s%s", text, more)
        self._quiet = 0
        self._next = now + self._every
