"""Conversations hosted on other front ends that endpoints and users served here are in, or
invited to, and by which host: what a host change must end, and where an answer goes.

A conversation's host may change (a failure, a drain) while its members stay where they are;
each record names the host it came from, so that events from a host that has since lost the
conversation are recognised, and the end reaches the member before the invitation back.
"""

from __future__ import annotations

from typing import NamedTuple

from pool.events import Invitation


class RemoteInvitation(NamedTuple):
    """An open invitation from a conversation hosted on ``host``."""

    host: str
    invitation: Invitation


class Memberships:
    def __init__(self) -> None:
        #: endpoint id -> conversation id -> host, for conversations hosted elsewhere
        self.joined: dict[str, dict[str, str]] = {}
        #: user id -> conversation id -> invitation, for users homed here invited to
        #: conversations hosted elsewhere (an endpoint that signs in later is rung too)
        self.invited: dict[int, dict[str, RemoteInvitation]] = {}

    def host_joined(self, endpoint_id: str, conversation_id: str) -> str | None:
        """The host ``endpoint_id`` joined ``conversation_id`` at, if it did."""
        hosted = self.joined.get(endpoint_id)
        return hosted.get(conversation_id) if hosted is not None else None

    def join(self, endpoint_id: str, conversation_id: str, host: str) -> None:
        self.joined.setdefault(endpoint_id, {})[conversation_id] = host

    def part(self, endpoint_id: str, conversation_id: str) -> None:
        self.joined.get(endpoint_id, {}).pop(conversation_id, None)

    def invited_by(self, user_id: int, conversation_id: str) -> str | None:
        record = self.invited.get(user_id, {}).get(conversation_id)
        return record.host if record is not None else None

    def answered(self, user_id: int, conversation_id: str) -> None:
        invited = self.invited.get(user_id)
        if invited is not None:
            invited.pop(conversation_id, None)
