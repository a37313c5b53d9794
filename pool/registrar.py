"""Registrations: signed-in endpoints, their tokens, and when they expire.

An *endpoint* is one signed-in device of a user (up to 8 per user). Its registration expires
600 s after the last sign of life unless refreshed; any authenticated call refreshes it and an
open event stream keeps it fresh. Tokens are random (192 bits), bound to one endpoint, and die
with it.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pool.errors import Unauthenticated
from pool.events import EventQueue
from pool.presence import MachineState
from pool.timers import Timer

if TYPE_CHECKING:
    from collections import deque

    from pool.conversation import Conversation
    from pool.directory import User
    from pool.throttle import Waiter


@dataclass(slots=True, eq=False)
class Endpoint:
    id: str
    user: User
    device: str
    token: str
    registered_at: float  # wall clock, for records
    expires_at: float  # monotonic
    queue: EventQueue
    last_input: float  # monotonic: the last thing the person did here
    machine: MachineState = MachineState.ACTIVE  # as published (before idling)
    effective: MachineState = MachineState.ACTIVE  # after idle timers
    #: presence subscriptions: target user id -> monotonic expiry (0.0: none)
    subscriptions: dict[int, float] = field(default_factory=dict)
    conversations: dict[str, Conversation] = field(default_factory=dict)
    streams: int = 0  # open Events streams: flow control applies while one is
    signed_out: bool = False
    timer: Timer | None = None  # the endpoint's one housekeeping timer
    outstanding: int = 0  # its requests under way (``pool.throttle``: at most the limit)
    waiters: deque[Waiter] | None = None  # its requests waiting at the door, first come first

    @property
    def uri(self) -> str:
        return self.user.uri


@dataclass(slots=True, eq=False)
class StandIn(Endpoint):
    """An endpoint of this engine that stands in for an endpoint (or every endpoint of a
    user) served by another front end of an Enterprise pool: never registered, no token,
    its queue forwards what is pushed to it. Made by ``StandIn.of``."""

    @classmethod
    def of(cls, endpoint_id: str, user: User, queue: EventQueue) -> StandIn:
        return cls(
            id=endpoint_id,
            user=user,
            device="remote",
            token="",
            registered_at=0.0,
            expires_at=math.inf,
            queue=queue,
            last_input=0.0,
        )


class Registrar:
    """Endpoints by token and by id."""

    def __init__(self) -> None:
        self._by_token: dict[str, Endpoint] = {}
        self._by_id: dict[str, Endpoint] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Endpoint]:
        """A snapshot: the registrar may change while the caller iterates."""
        return iter(list(self._by_id.values()))

    @staticmethod
    def new_token() -> str:
        return secrets.token_urlsafe(24)

    @staticmethod
    def new_endpoint_id() -> str:
        return "ep-" + secrets.token_hex(8)

    def add(self, endpoint: Endpoint) -> None:
        self._by_token[endpoint.token] = endpoint
        self._by_id[endpoint.id] = endpoint

    def remove(self, endpoint: Endpoint) -> None:
        self._by_token.pop(endpoint.token, None)
        self._by_id.pop(endpoint.id, None)

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self._by_id.get(endpoint_id)

    def authenticate(self, token: str) -> Endpoint:
        if not token:
            raise Unauthenticated(
                "no token: send the token from SignIn as 'authorization: Bearer <token>' metadata"
            )
        endpoint = self._by_token.get(token)
        if endpoint is None or endpoint.signed_out:
            raise Unauthenticated(
                "token is not valid: it was never issued, or its endpoint signed out or its "
                "registration expired; sign in again"
            )
        return endpoint
