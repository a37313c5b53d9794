"""One Enterprise front end: ``pool.service.PoolService`` for the users homed here, over the
engine for the groups whose primary it holds, and the far side of the other front ends' links.

Every front end knows every user (the directory comes from the fabric), but holds the
persistent data only of the groups it has a replica of, and serves (registers) only the users
of the groups whose primary it holds: their *home*. Each call is answered here when what it
touches is here, else sent to the front end that holds it, through one helper per kind:

* **Presence.** A subscription to a remote user is booked here (limits, expiry) and a
  stand-in of the subscribing endpoint watches the target at the target's home, which
  computes each watcher's privacy view and sends the notifications back. A poll asks the home.
* **Conversations** are hosted by the organizer's home (the id names the organizer's routing
  group, ``c-g5-...``). A remote participant is a stand-in endpoint on the host; invitations
  to a remote user go to the user's home, which rings every endpoint. The verdict "may this
  caller reach that user" comes from the user's home beforehand (``_reaches``).
* **Persistent writes** are acknowledged once every live secondary applied them
  (``Replication.replicated``); so is a batch from another front end that wrote.

Where each concern lives: ``enterprise/__init__.py``. Single-threaded: everything runs on the
front end's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from enterprise import admin
from enterprise.handlers import Handlers
from enterprise.handover import Handover
from enterprise.link import Link, Links
from enterprise.local_store import LocalReplicaStore
from enterprise.memberships import Memberships, RemoteInvitation
from enterprise.proxies import Proxies
from enterprise.replica import Backup, GroupData, ReplicatingStore
from enterprise.replication import Replication
from enterprise.routing import Routing
from enterprise.routing_table import RoutingTable
from enterprise.wire import (
    GONE,
    UNWATCH,
    Accept,
    AskReach,
    ConversationMessage,
    Decline,
    Deliver,
    DropProxy,
    Invite,
    Leave,
    Message,
    Refuse,
    Reply,
    Send,
    Sent,
    Transport,
    Typing,
    Unwatch,
    Views,
    Watch,
)
from enterprise.wire import Item as Item  # what a batch holds (older code and tests)
from pool.cdr import StoredRecord
from pool.clock import Clock, SystemClock
from pool.config import EngineConfig
from pool.conversation import REJOIN_REASONS, check_message
from pool.directory import Directory, ProvisionResult, User
from pool.engine import Engine
from pool.events import ChatMessage, PresenceChanged
from pool.observer import NULL_OBSERVER, Observer
from pool.presence_service import BulkEntry, ContactView, Publication
from pool.privacy import PresenceView, Reach, reach
from pool.registrar import Endpoint
from pool.service import Created, Invited, Joined
from pool.status import PoolStatusInfo, ResetType
from pool.store import UserRow


class FrontEndNode:
    """An Enterprise front end (see the module docstring)."""

    def __init__(
        self,
        fe_id: str,
        config: EngineConfig,
        directory: Directory,
        transport: Transport,
        *,
        clock: Clock | None = None,
        observer: Observer = NULL_OBSERVER,
        local: LocalReplicaStore | None = None,
        observe_batch: Callable[[int], None] = lambda items: None,
        observe_replication: Callable[[float], None] = lambda seconds: None,
    ):
        """The front end builds its engine over a ``ReplicatingStore`` (kept durable in
        ``local``, when given) and tells both where to call back: the store after each write,
        the engine before each sign-out. ``observe_batch`` is told the size of every
        cross-node batch answered, ``observe_replication`` every wait for the secondaries
        (the metrics' histograms)."""
        self.fe_id = fe_id
        self.store = store = ReplicatingStore(directory.group_of, local, on_write=self._wrote)
        self.engine = engine = Engine(
            config,
            store,
            clock if clock is not None else SystemClock(),
            observer,
            directory=directory,
            on_sign_out=self._signed_out,
        )
        self.transport = transport
        self.routing = routing = Routing(fe_id)
        self.hub = links = Links(transport, fe_id, self._replied, observe_batch)
        self.proxies = proxies = Proxies(engine, routing, links)
        self.memberships = memberships = Memberships()
        self.replication = replication = Replication(
            engine, store, routing, links, observe_replication
        )
        self.handover = Handover(engine, store, routing, links, proxies, memberships, replication)
        self.handlers = Handlers(engine, routing, links, proxies, memberships, replication)
        self.fabric = admin.FabricCalls(transport)

    # --- what the rest of the front end (actor, metrics, tests) reads ---

    @property
    def table(self) -> RoutingTable | None:
        return self.routing.table

    @property
    def loaded(self) -> set[int]:
        return self.routing.loaded

    @property
    def links(self) -> dict[str, Link]:
        return self.hub.main

    @property
    def repl_links(self) -> dict[str, Link]:
        return self.hub.replicas

    @property
    def tasks(self) -> set[asyncio.Task[Any]]:
        return self.hub.tasks

    @property
    def invitations(self) -> dict[int, dict[str, RemoteInvitation]]:
        return self.memberships.invited

    @property
    def dropped_posts(self) -> int:
        return self.hub.dropped_posts

    # --- the directory and the routing table ---

    def load_users(self, rows: Sequence[UserRow]) -> None:
        directory = self.engine.directory
        for row in rows:
            if directory.get(row.uri) is None:
                directory.load(row)
                self.routing.add_user(row.id, row.routing_group)

    def set_table(self, table: RoutingTable, pool_reason: str) -> None:
        """A routing table from the fabric (``enterprise.handover``)."""
        self.handover.apply(table, pool_reason)

    def authenticate(self, token: str) -> Endpoint:
        self.routing.check_token(token)
        return self.engine.authenticate(token)

    # --- the far side ---

    async def answer(self, src: str, items: list[Message]) -> list[Reply]:
        """A batch from ``src``: ``handle`` it, and if it wrote (a conference roster), answer
        only once that reached the secondaries, as for a call of this front end's own."""
        replies, replicated = self.answer_now(src, items)
        if replicated is not None:
            await replicated
        return replies

    def answer_now(
        self, src: str, items: list[Message]
    ) -> tuple[list[Reply], Awaitable[None] | None]:
        """``answer``, handled now: the replies, and what to wait for before giving them if
        the batch wrote (batches handled in the order they arrive, none waiting for another)."""
        before = self.store.writes
        replies = self.handlers.handle(src, items)
        return replies, self.replication.replicated() if self.store.writes != before else None

    def _replied(self, dst: str, item: Message, reply: Reply) -> None:
        """A posted message came back with something to act on."""
        if not isinstance(item, Deliver):
            return
        if reply is GONE:
            self.proxies.drop(dst, item.endpoint_id, "signed-out")
        elif reply is UNWATCH:
            proxy = self.proxies.get(dst, item.endpoint_id)
            event = item.event
            if proxy is not None and isinstance(event, PresenceChanged):
                target = self.engine.directory.get(event.presence.user_uri)
                if target is not None:
                    self.engine.unwatch(proxy, [target])

    def _wrote(self) -> None:
        """Store hook, after each write: ship it to the secondaries soon."""
        self.replication.schedule_ship()

    def _signed_out(self, ep: Endpoint, reason: str) -> None:
        """Engine hook, before the sign-out: tell the front ends that hold stand-ins of ``ep``
        and the hosts of invitations nobody here can answer now."""
        self.store.deregistered(ep.id)
        directory = self.engine.directory
        routing = self.routing
        holders: set[str] = set()
        for tid in ep.subscriptions:
            home = routing.is_remote(directory.by_id(tid))
            if home:
                holders.add(home)
        holders.update(self.memberships.joined.pop(ep.id, {}).values())
        for holder in holders:
            self.hub.to(holder).post(DropProxy(ep.id, reason))
        user = ep.user
        if reason not in REJOIN_REASONS and all(
            other is ep or other.signed_out for other in user.endpoints
        ):
            for conversation_id, record in self.memberships.invited.pop(user.id, {}).items():
                if self.engine.invitation_closed(user, conversation_id):
                    self.hub.to(record.host).post(Refuse(user.id, conversation_id))

    # --- replicas, directed by the fabric ---

    def replicated(self) -> Awaitable[None]:
        """Done when every write made so far is on every live secondary of its group."""
        return self.replication.replicated()

    def install(self, group: int, data: GroupData) -> None:
        self.replication.install(group, data)

    async def copy_group(self, group: int, to_fe: str) -> None:
        await self.replication.copy_group(group, to_fe)

    async def catch_up(self, group: int, to_fe: str, since: int) -> int:
        return await self.replication.catch_up(group, to_fe, since)

    def drop_group(self, group: int) -> None:
        self.replication.drop_group(group)

    def freshness(self) -> dict[int, int]:
        return self.replication.freshness()

    def take_backup(self) -> list[Backup]:
        return self.replication.take_backup()

    # --- PoolService: registration ---

    async def sign_in(self, uri: str, password: str, device: str) -> Endpoint:
        self.routing.check_serving()
        user = await asyncio.to_thread(self.engine.check_password, uri, password)
        self.routing.check_home_for_sign_in(user)
        ep = self.engine.sign_in(user, device)
        self.store.registered(ep.id, user.uri, device, ep.registered_at)
        invited = self.memberships.invited.get(user.id, {})
        for conversation_id, record in list(invited.items()):
            if conversation_id in user.invitations:
                self.engine.deliver(ep, record.invitation)
            else:
                del invited[conversation_id]
        return ep

    async def sign_out(self, ep: Endpoint) -> None:
        self.engine.sign_out(ep)
        await self.replicated()  # the rosters of the conferences it left

    # --- PoolService: presence and contacts ---

    async def publish(self, ep: Endpoint, pub: Publication) -> PresenceView:
        view = self.engine.publish(ep, pub)
        await self.replicated()
        return view

    async def reset_presence(self, ep: Endpoint) -> PresenceView:
        view = self.engine.reset_presence(ep)
        await self.replicated()
        return view

    async def _remote_views(
        self,
        views: list[PresenceView],
        users: list[User],
        request: Callable[[tuple[int, ...]], Message],
    ) -> list[PresenceView]:
        """``views`` with those of remote users replaced by what their homes say."""
        by_home = self.routing.by_home(users)
        if not by_home:
            return views
        homes = list(by_home)
        answers = await asyncio.gather(
            *(self.hub.to(h).request(request(tuple(u.id for u in by_home[h]))) for h in homes),
            return_exceptions=True,
        )
        remote: dict[int, PresenceView] = {}
        for h, answer in zip(homes, answers, strict=True):
            if isinstance(answer, BaseException):
                continue  # that home is failing over: offline until the new home answers
            for user, view in zip(by_home[h], answer, strict=True):
                remote[user.id] = view
        return [remote.get(u.id, v) for u, v in zip(users, views, strict=True)]

    async def get_presence(self, ep: Endpoint, uris: list[str]) -> list[PresenceView]:
        users = self.engine.presence.targets(uris, "poll")
        views = self.engine.get_presence(ep, uris)
        return await self._remote_views(views, users, lambda ids: Views(ep.user.id, ids))

    async def subscribe(self, ep: Endpoint, uris: list[str], expires: float) -> list[PresenceView]:
        views = self.engine.subscribe(ep, uris, expires)
        users = self.engine.presence.targets(uris, "subscribe to")
        return await self._remote_views(views, users, lambda ids: Watch(ep.id, ep.user.id, ids))

    async def unsubscribe(self, ep: Endpoint, uris: list[str]) -> int:
        users = self.engine.presence.targets(uris, "unsubscribe from")
        left = self.engine.unsubscribe(ep, uris)
        for home, remote in self.routing.by_home(users).items():
            self.hub.to(home).post(Unwatch(ep.id, tuple(u.id for u in remote)))
        return left

    async def add_contact(self, ep: Endpoint, uri: str, level: int, group: str) -> ContactView:
        contact = self.engine.add_contact(ep, uri, level, group)
        await self.replicated()
        return contact

    async def remove_contact(self, ep: Endpoint, uri: str) -> int:
        left = self.engine.remove_contact(ep, uri)
        await self.replicated()
        return left

    async def list_contacts(self, ep: Endpoint) -> list[ContactView]:
        return self.engine.list_contacts(ep)

    # --- PoolService: conversations ---

    async def _reaches(self, caller: User, users: list[User]) -> dict[int, Reach]:
        """What the homes of remote ``users`` say about ``caller`` reaching them."""
        routing = self.routing
        out: dict[int, Reach] = {}
        by_home = routing.by_home(users)
        for user in users:
            if not routing.is_local(user) and not routing.home_of(user):
                out[user.id] = Reach.OFFLINE  # their group is not served
        homes = list(by_home)
        answers = await asyncio.gather(
            *(
                self.hub.to(h).request(AskReach(caller.id, tuple(u.id for u in by_home[h])))
                for h in homes
            )
        )
        for h, answer in zip(homes, answers, strict=True):
            for user, verdict in zip(by_home[h], answer, strict=True):
                out[user.id] = verdict
        for user in users:
            if not routing.is_local(user):
                self.proxies.mirror(user)
        return out

    async def create_conversation(
        self, ep: Endpoint, invitees: list[str], subject: str, first: ChatMessage | None
    ) -> Created:
        directory = self.engine.directory
        users = [directory.require(uri, field_name="invitees") for uri in invitees]
        remote = [u for u in users if not self.routing.is_local(u)]
        reaches = await self._reaches(ep.user, remote)
        conv, seq = self.engine.create_conversation(ep, invitees, subject, first, reaches)
        await self.replicated()  # a conference's roster
        return Created(conv.id, conv.conference_uri, seq)

    async def _at_host(self, ep: Endpoint, host: str, op: ConversationMessage) -> Any:
        """Carry ``op`` out on ``host``, the front end that hosts the conversation."""
        self.routing.check_host(host, op.conversation_id)
        self.engine.touch(ep)
        return await self.hub.to(host).request(op)

    async def invite(self, ep: Endpoint, conversation_id: str, uri: str) -> Invited:
        target = self.engine.directory.require(uri)
        routing = self.routing
        host = routing.host_of(conversation_id)
        verdict: Reach | None = None
        if routing.home_of(target) != host:
            if routing.is_local(target):
                verdict = reach(target.current, target.level_for(ep.user))
            else:
                verdict = (await self._reaches(ep.user, [target]))[target.id]
        if host == self.fe_id:
            conv, escalated = self.engine.invite(ep, conversation_id, uri, verdict)
            await self.replicated()
            return Invited(escalated, conv.conference_uri)
        op = Invite(conversation_id, ep.id, ep.user.id, target.id, verdict)
        result: Invited = await self._at_host(ep, host, op)
        return result

    def _answered(self, user: User, conversation_id: str) -> None:
        self.engine.invitation_closed(user, conversation_id)
        self.memberships.answered(user.id, conversation_id)

    def _invited_by(self, user: User, conversation_id: str) -> str:
        """The host an open invitation came from: it may be newer than this front end's
        routing table (a conference's new host invites its members back at once)."""
        host = self.memberships.invited_by(user.id, conversation_id)
        return host if host is not None else self.routing.host_of(conversation_id)

    async def accept(self, ep: Endpoint, conversation_id: str) -> Joined:
        host = self._invited_by(ep.user, conversation_id)
        if host == self.fe_id:
            conv = self.engine.accept(ep, conversation_id)
            return Joined(conv.uris(), conv.conference_uri)
        memberships = self.memberships
        memberships.join(ep.id, conversation_id, host)  # before the host's events can arrive
        try:
            joined: Joined = await self._at_host(
                ep, host, Accept(conversation_id, ep.id, ep.user.id)
            )
        except BaseException:
            memberships.part(ep.id, conversation_id)
            raise
        self._answered(ep.user, conversation_id)
        return joined

    async def decline(self, ep: Endpoint, conversation_id: str) -> None:
        host = self._invited_by(ep.user, conversation_id)
        if host == self.fe_id:
            self.engine.decline(ep, conversation_id)
            await self.replicated()
            return
        await self._at_host(ep, host, Decline(conversation_id, ep.id, ep.user.id))
        self._answered(ep.user, conversation_id)

    async def send_message(
        self, ep: Endpoint, conversation_id: str, body: str, content_type: str
    ) -> tuple[str, int]:
        host = self.routing.host_of(conversation_id)
        if host == self.fe_id:
            return self.engine.send_message(ep, conversation_id, body, content_type)
        limit = self.engine.config.limits.max_message_chars
        message = check_message(body, content_type, limit)  # refuse before the trip
        op = Send(conversation_id, ep.id, ep.user.id, message.body, message.content_type)
        sent: Sent = await self._at_host(ep, host, op)
        return sent.message_id, sent.sequence

    async def set_typing(self, ep: Endpoint, conversation_id: str, typing: bool) -> None:
        host = self.routing.host_of(conversation_id)
        if host == self.fe_id:
            self.engine.set_typing(ep, conversation_id, typing)
            return
        await self._at_host(ep, host, Typing(conversation_id, ep.id, ep.user.id, typing))

    async def leave(self, ep: Endpoint, conversation_id: str) -> None:
        host = self.routing.host_of(conversation_id)
        if host == self.fe_id:
            self.engine.leave(ep, conversation_id)
            await self.replicated()
            return
        await self._at_host(ep, host, Leave(conversation_id, ep.id, ep.user.id))
        self.memberships.part(ep.id, conversation_id)
        self._answered(ep.user, conversation_id)

    # --- administration (the fabric answers; see enterprise.admin) ---

    async def status(self) -> PoolStatusInfo:
        return await self.fabric.status()

    async def provision(
        self, prefix: str, domain: str, count: int, start_index: int, password: str
    ) -> tuple[ProvisionResult, int]:
        return await self.fabric.provision(prefix, domain, count, start_index, password)

    async def provision_contacts(self, entries: list[BulkEntry]) -> int:
        """Split by the owners' homes; every home checks its part before any writes."""
        return await admin.provision_contacts(
            self.transport, self.routing, self.engine.directory, entries
        )

    def check_contacts(self, entries: list[BulkEntry]) -> None:
        """Validate bulk contacts for users homed here, changing nothing."""
        self.engine.presence.check_contacts(entries)

    async def provision_contacts_here(self, entries: list[BulkEntry]) -> int:
        written = self.engine.provision_contacts(entries)
        await self.replicated()
        return written

    async def call_detail_records(self, since: float) -> Sequence[StoredRecord]:
        return await self.fabric.call_detail_records(since)

    async def stop_front_end(self, front_end_id: str, crash: bool) -> PoolStatusInfo:
        return await self.fabric.stop_front_end(front_end_id, crash, self.fe_id)

    async def start_front_end(self, front_end_id: str) -> PoolStatusInfo:
        return await self.fabric.start_front_end(front_end_id)

    async def reset_registrar_state(
        self, reset_type: ResetType, front_end_id: str
    ) -> tuple[list[int], PoolStatusInfo]:
        return await self.fabric.reset(reset_type, front_end_id)
