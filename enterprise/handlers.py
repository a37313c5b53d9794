"""The far side of a link: what other front ends ask of this one, one function per message.

``Handlers.handle`` answers a batch in order, one ``Reply`` per message. The handlers never
await (a batch is answered on one turn of the event loop, so it cannot wait, through a cycle
of front ends, for itself); a domain error becomes the message's ``Failure``, a bug an
internal ``Failure`` (logged), and the batch goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import assert_never

from enterprise.handover import HOST_CHANGED
from enterprise.link import Links
from enterprise.memberships import Memberships, RemoteInvitation
from enterprise.proxies import Proxies
from enterprise.replication import Replication
from enterprise.routing import Routing
from enterprise.wire import (
    GONE,
    UNWATCH,
    Accept,
    AskReach,
    ConversationMessage,
    Decline,
    Deliver,
    DeliverToUser,
    Delivery,
    DropProxy,
    Failure,
    Install,
    Invite,
    Leave,
    Message,
    Refuse,
    Replicate,
    Reply,
    Send,
    Sent,
    Typing,
    Unwatch,
    Views,
    Watch,
)
from pool.conversation import group_of
from pool.directory import User
from pool.engine import Engine
from pool.errors import NotFound, PermissionDenied, PoolError
from pool.events import ConversationEnded, Invitation, PresenceChanged, conversation_of
from pool.privacy import PresenceView, Reach, reach
from pool.registrar import StandIn
from pool.service import Invited, Joined

log = logging.getLogger("poolsim.enterprise.handlers")


@dataclass(slots=True)
class Handlers:
    """The handlers of one front end (see the module docstring)."""

    engine: Engine
    routing: Routing
    links: Links
    proxies: Proxies
    memberships: Memberships
    replication: Replication

    def handle(self, src: str, items: list[Message]) -> list[Reply]:
        replies: list[Reply] = []
        for item in items:
            try:
                replies.append(self._one(src, item))
            except PoolError as exc:
                replies.append(Failure.of(exc))
            except Exception:  # a bug: the caller gets an error, the batch goes on
                name = type(item).__name__
                log.exception("handling %s from %s failed", name, src)
                replies.append(Failure.internal(f"internal error handling {name}"))
        return replies

    def _one(self, src: str, item: Message) -> Reply:
        match item:
            case Deliver():
                return self.deliver(src, item)
            case DeliverToUser():
                self.deliver_to_user(item)
                return None
            case Views():
                return self.views(item)
            case Watch():
                return self.watch(src, item)
            case Unwatch():
                self.unwatch(src, item)
                return None
            case AskReach():
                return self.reach(item)
            case Accept() | Decline() | Leave() | Send() | Typing() | Invite():
                return self.conversation(src, item)
            case Refuse():
                user = self.engine.directory.by_id(item.user_id)
                self.engine.refuse(item.conversation_id, user, 480, "signed-out")
                return None
            case DropProxy():
                self.proxies.drop(src, item.endpoint_id, item.reason)
                return None
            case Replicate():
                self.replication.apply(item)
                return None
            case Install():
                self.replication.install(item.group, item.data)
                return None
            case _:
                assert_never(item)

    # --- events for endpoints and users here ---

    def deliver(self, src: str, item: Deliver) -> Delivery | None:
        engine = self.engine
        ep = engine.registrar.get(item.endpoint_id)
        if ep is None or ep.signed_out:
            return GONE
        event = item.event
        if isinstance(event, PresenceChanged):
            target = engine.directory.get(event.presence.user_uri)
            if target is None or target.id not in ep.subscriptions:
                return UNWATCH
        else:
            conversation_id = conversation_of(event)
            if conversation_id:
                hosted = self.memberships.joined.get(item.endpoint_id, {})
                if hosted.get(conversation_id) != src:
                    return None  # from a host it has moved away from: it ended here already
                if isinstance(event, ConversationEnded):
                    del hosted[conversation_id]
        engine.deliver(ep, event)
        return None

    def deliver_to_user(self, item: DeliverToUser) -> None:
        """An event for every endpoint of a user homed here, from ``item.host`` (the
        conversation's host, whose routing table had ``item.version``). A user not homed here:
        on to their home when this front end's table is the newer (the sender's was older),
        else kept here (this one's is older: the sender knew better, and the next table makes
        this front end their home)."""
        engine = self.engine
        routing = self.routing
        memberships = self.memberships
        user = engine.directory.by_id(item.user_id)
        event, host = item.event, item.host
        mine = routing.version
        if not routing.is_local(user) and mine > item.version and item.hops < 2:
            home = routing.is_remote(user)
            if home:
                onward = DeliverToUser(item.user_id, event, host, mine, item.hops + 1)
                self.links.to(home).post(onward)
            return
        conversation_id = conversation_of(event)
        invited = memberships.invited.setdefault(item.user_id, {})
        if isinstance(event, Invitation):
            # invited back by a conference's new host before this front end heard of the move
            now = engine.clock.now()
            group = group_of(conversation_id)
            if group is not None and routing.table is not None and item.version > mine:
                # this front end may still host it under its older table: hand it over now,
                # so its end reaches the user before the new invitation, not after
                engine.hand_over(group, HOST_CHANGED, conversation_id)
            for ep in user.endpoints:
                hosted = memberships.joined.get(ep.id, {})
                if hosted.get(conversation_id, host) != host:
                    del hosted[conversation_id]
                    engine.deliver(ep, ConversationEnded(conversation_id, HOST_CHANGED, now))
            engine.invited_elsewhere(user, conversation_id)
            invited[conversation_id] = RemoteInvitation(host, event)
        elif isinstance(event, ConversationEnded):
            record = invited.get(conversation_id)
            if record is not None and record.host != host:
                return  # the end of an invitation from a host it has moved away from
            invited.pop(conversation_id, None)
            engine.invitation_closed(user, conversation_id)
        if not invited:
            del memberships.invited[item.user_id]
        for ep in user.endpoints:
            if not isinstance(ep, StandIn) and conversation_id not in memberships.joined.get(
                ep.id, {}
            ):
                engine.deliver(ep, event)

    # --- presence of users homed here ---

    def _served_here(self, user_ids: tuple[int, ...]) -> list[User]:
        directory = self.engine.directory
        return self.routing.check_served_here([directory.by_id(uid) for uid in user_ids])

    def views(self, item: Views) -> list[PresenceView]:
        watcher = self.engine.directory.by_id(item.watcher_id)
        presence = self.engine.presence
        return [presence.view_for(watcher, u) for u in self._served_here(item.user_ids)]

    def watch(self, src: str, item: Watch) -> list[PresenceView]:
        users = self._served_here(item.user_ids)
        proxy = self.proxies.of(src, item.endpoint_id, item.watcher_id)
        return self.engine.watch(proxy, users)

    def unwatch(self, src: str, item: Unwatch) -> None:
        proxy = self.proxies.get(src, item.endpoint_id)
        if proxy is not None:
            directory = self.engine.directory
            self.engine.unwatch(proxy, [directory.by_id(uid) for uid in item.user_ids])

    def reach(self, item: AskReach) -> list[Reach]:
        caller = self.engine.directory.by_id(item.caller_id)
        return [reach(u.current, u.level_for(caller)) for u in self._served_here(item.user_ids)]

    # --- conversations hosted here ---

    def conversation(self, src: str, item: ConversationMessage) -> Reply:
        """A remote participant's operation: its endpoint's stand-in does it here."""
        engine = self.engine
        proxies = self.proxies
        cid = item.conversation_id
        user = engine.directory.by_id(item.user_id)
        if isinstance(item, Accept):
            proxies.mirror(user)
            conv = engine.accept(proxies.of(src, item.endpoint_id, item.user_id), cid)
            return Joined(conv.uris(), conv.conference_uri)
        proxy = proxies.get(src, item.endpoint_id)
        joined = proxy is not None and cid in proxy.conversations
        if isinstance(item, Decline):
            engine.decline(proxies.mirror(user), cid)
            return None
        if isinstance(item, Leave):
            engine.leave(proxy if proxy is not None and joined else proxies.mirror(user), cid)
            return None
        if proxy is None or not joined:
            if engine.conversation(cid) is None:
                raise NotFound(f"unknown conversation {cid}: it ended")
            raise PermissionDenied(
                f"{user.uri} (endpoint {item.endpoint_id}) is not a participant of conversation "
                f"{cid}"
            )
        match item:
            case Send():
                message_id, sequence = engine.send_message(proxy, cid, item.body, item.content_type)
                return Sent(message_id, sequence)
            case Typing():
                engine.set_typing(proxy, cid, item.typing)
                return None
            case Invite():
                target = engine.directory.by_id(item.target_id)
                if not self.routing.is_local(target):
                    proxies.mirror(target)
                conv, escalated = engine.invite(proxy, cid, target.uri, item.verdict)
                return Invited(escalated, conv.conference_uri)
        raise AssertionError(f"not a conversation operation: {item!r}")
