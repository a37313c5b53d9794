"""What the gRPC adapter calls: a pool as seen from one front end.

``PoolService`` is the seam between the transport and the editions. Standard Edition's
``LocalService`` answers everything from the one engine in this process. Enterprise Edition's
front end (``enterprise.node``) answers from its engine when the state is local and asks the
front end that owns it otherwise, through Ray. The adapter cannot tell them apart, which is
how users cannot either.

Methods are coroutines so a front end may wait for another; results are plain values (never a
``Conversation`` that may live on another front end).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pool.cdr import StoredRecord
from pool.directory import ProvisionResult
from pool.engine import Engine
from pool.errors import FailedPrecondition
from pool.events import ChatMessage
from pool.pickling import by_arguments
from pool.presence_service import BulkEntry, ContactView, Publication
from pool.privacy import PresenceView
from pool.registrar import Endpoint
from pool.status import (
    FrontEndInfo,
    FrontEndState,
    GroupState,
    PoolStatusInfo,
    QuorumState,
    ResetType,
    RoutingGroupInfo,
)


@dataclass(frozen=True, slots=True)
class Created:
    conversation_id: str
    conference_uri: str
    sequence: int  # of the first message, 0 without one


@by_arguments
@dataclass(frozen=True, slots=True)
class Joined:
    participants: tuple[str, ...]
    conference_uri: str


@by_arguments
@dataclass(frozen=True, slots=True)
class Invited:
    escalated: bool
    conference_uri: str


class PoolService(Protocol):
    engine: Engine

    def authenticate(self, token: str) -> Endpoint: ...

    async def sign_in(self, uri: str, password: str, device: str) -> Endpoint: ...

    async def sign_out(self, ep: Endpoint) -> None: ...

    async def publish(self, ep: Endpoint, pub: Publication) -> PresenceView: ...

    async def reset_presence(self, ep: Endpoint) -> PresenceView: ...

    async def get_presence(self, ep: Endpoint, uris: list[str]) -> list[PresenceView]: ...

    async def subscribe(
        self, ep: Endpoint, uris: list[str], expires: float
    ) -> list[PresenceView]: ...

    async def unsubscribe(self, ep: Endpoint, uris: list[str]) -> int: ...

    async def add_contact(self, ep: Endpoint, uri: str, level: int, group: str) -> ContactView: ...

    async def remove_contact(self, ep: Endpoint, uri: str) -> int: ...

    async def list_contacts(self, ep: Endpoint) -> list[ContactView]: ...

    async def create_conversation(
        self, ep: Endpoint, invitees: list[str], subject: str, first: ChatMessage | None
    ) -> Created: ...

    async def invite(self, ep: Endpoint, conversation_id: str, uri: str) -> Invited: ...

    async def accept(self, ep: Endpoint, conversation_id: str) -> Joined: ...

    async def decline(self, ep: Endpoint, conversation_id: str) -> None: ...

    async def send_message(
        self, ep: Endpoint, conversation_id: str, body: str, content_type: str
    ) -> tuple[str, int]: ...

    async def set_typing(self, ep: Endpoint, conversation_id: str, typing: bool) -> None: ...

    async def leave(self, ep: Endpoint, conversation_id: str) -> None: ...

    # --- administration ---

    async def status(self) -> PoolStatusInfo: ...

    async def provision(
        self, prefix: str, domain: str, count: int, start_index: int, password: str
    ) -> tuple[ProvisionResult, int]: ...

    async def provision_contacts(self, entries: list[BulkEntry]) -> int: ...

    async def call_detail_records(self, since: float) -> Sequence[StoredRecord]: ...

    async def stop_front_end(self, front_end_id: str, crash: bool) -> PoolStatusInfo: ...

    async def start_front_end(self, front_end_id: str) -> PoolStatusInfo: ...

    async def reset_registrar_state(
        self, reset_type: ResetType, front_end_id: str
    ) -> tuple[list[int], PoolStatusInfo]: ...


def _one_front_end(what: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"{what} needs an Enterprise pool: a Standard Edition server is one front end "
        "(start one with `poolsim serve --edition enterprise`)"
    )


class LocalService:
    """Standard Edition: the whole pool is this process's engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def authenticate(self, token: str) -> Endpoint:
        return self.engine.authenticate(token)

    async def sign_in(self, uri: str, password: str, device: str) -> Endpoint:
        user = await asyncio.to_thread(self.engine.check_password, uri, password)
        return self.engine.sign_in(user, device)

    async def sign_out(self, ep: Endpoint) -> None:
        self.engine.sign_out(ep)

    async def publish(self, ep: Endpoint, pub: Publication) -> PresenceView:
        return self.engine.publish(ep, pub)

    async def reset_presence(self, ep: Endpoint) -> PresenceView:
        return self.engine.reset_presence(ep)

    async def get_presence(self, ep: Endpoint, uris: list[str]) -> list[PresenceView]:
        return self.engine.get_presence(ep, uris)

    async def subscribe(self, ep: Endpoint, uris: list[str], expires: float) -> list[PresenceView]:
        return self.engine.subscribe(ep, uris, expires)

    async def unsubscribe(self, ep: Endpoint, uris: list[str]) -> int:
        return self.engine.unsubscribe(ep, uris)

    async def add_contact(self, ep: Endpoint, uri: str, level: int, group: str) -> ContactView:
        return self.engine.add_contact(ep, uri, level, group)

    async def remove_contact(self, ep: Endpoint, uri: str) -> int:
        return self.engine.remove_contact(ep, uri)

    async def list_contacts(self, ep: Endpoint) -> list[ContactView]:
        return self.engine.list_contacts(ep)

    async def create_conversation(
        self, ep: Endpoint, invitees: list[str], subject: str, first: ChatMessage | None
    ) -> Created:
        conv, seq = self.engine.create_conversation(ep, invitees, subject, first)
        return Created(conv.id, conv.conference_uri, seq)

    async def invite(self, ep: Endpoint, conversation_id: str, uri: str) -> Invited:
        conv, escalated = self.engine.invite(ep, conversation_id, uri)
        return Invited(escalated, conv.conference_uri)

    async def accept(self, ep: Endpoint, conversation_id: str) -> Joined:
        conv = self.engine.accept(ep, conversation_id)
        return Joined(conv.uris(), conv.conference_uri)

    async def decline(self, ep: Endpoint, conversation_id: str) -> None:
        self.engine.decline(ep, conversation_id)

    async def send_message(
        self, ep: Endpoint, conversation_id: str, body: str, content_type: str
    ) -> tuple[str, int]:
        return self.engine.send_message(ep, conversation_id, body, content_type)

    async def set_typing(self, ep: Endpoint, conversation_id: str, typing: bool) -> None:
        self.engine.set_typing(ep, conversation_id, typing)

    async def leave(self, ep: Endpoint, conversation_id: str) -> None:
        self.engine.leave(ep, conversation_id)

    async def status(self) -> PoolStatusInfo:
        return standard_status(self.engine)

    async def provision(
        self, prefix: str, domain: str, count: int, start_index: int, password: str
    ) -> tuple[ProvisionResult, int]:
        result = self.engine.provision(prefix, domain, count, start_index, password)
        return result, len(self.engine.directory)

    async def provision_contacts(self, entries: list[BulkEntry]) -> int:
        return self.engine.provision_contacts(entries)

    async def call_detail_records(self, since: float) -> Sequence[StoredRecord]:
        return list(self.engine.call_detail_records(since))

    async def stop_front_end(self, front_end_id: str, crash: bool) -> PoolStatusInfo:
        raise _one_front_end("StopFrontEnd")

    async def start_front_end(self, front_end_id: str) -> PoolStatusInfo:
        raise _one_front_end("StartFrontEnd")

    async def reset_registrar_state(
        self, reset_type: ResetType, front_end_id: str
    ) -> tuple[list[int], PoolStatusInfo]:
        raise _one_front_end("ResetPoolRegistrarState")


def standard_status(engine: Engine) -> PoolStatusInfo:
    """The Standard Edition's picture: one front end holding every group's only replica."""
    counts = [0] * engine.config.routing_groups
    for user in engine.directory:
        counts[user.routing_group] += 1
    fe = engine.config.front_end_id
    groups = tuple(RoutingGroupInfo(g, fe, (), GroupState.HEALTHY, n) for g, n in enumerate(counts))
    front_end = FrontEndInfo(
        fe,
        engine.address,
        engine.metrics_address,
        FrontEndState.DRAINING if engine.closing else FrontEndState.UP,
        primaries=len(groups),
        endpoints=len(engine.registrar),
        start_order=1,
    )
    return PoolStatusInfo(
        "standard",
        engine.config.pool_name,
        (front_end,),
        groups,
        QuorumState.HAS_QUORUM,
        "1 of 1 front ends running, 1 needed",
        len(engine.directory),
        len(engine.registrar),
        engine.users_signed_in,
        engine.started_at,
    )
