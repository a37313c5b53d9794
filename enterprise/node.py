"""One Enterprise front end: the engine for the groups whose primary it holds, and the routing
to and from the other front ends of the pool.

Every front end knows every user (the directory comes from the fabric), but holds the
persistent data only of the groups it has a replica of, and serves (registers) only the users
of the groups whose primary it holds: their *home*. What it does for users homed elsewhere:

* **Presence.** A subscription to a remote user is booked here (limits, expiry) and a *proxy*
  of the subscribing endpoint is added to the target's watchers on the target's home, which
  computes each watcher's privacy view and sends the notifications back. A poll asks the home.
* **Conversations** are hosted by the organizer's home: the id names the organizer's routing
  group (``c-g5-...``) and the routing table names its primary. A remote participant is a
  proxy endpoint on the host; its events come back to its real endpoint. Invitations to a
  remote user go to the user's home, which rings every endpoint. The verdict "may this caller
  reach that user" comes from the user's home beforehand.
* **Conference rosters** are persistent data of the organizer's group, replicated like
  contacts. When the group's primary moves (a failure or a drain), everyone in the group's
  conversations is told they ended (``host-changed``); the new primary restores each
  conference from its roster and invites every member back to the same conversation id.
  Two-party conversations are transient and simply end.
* **Links.** Everything for one front end goes over one ``Link``: items queue while a batch is
  in flight and leave as the next batch, one Ray call each. A link has one batch in flight, so
  items arrive in the order they were queued (message order per conversation holds), and the
  handlers on the far side never wait for a third front end.
* **Replication.** Persistent writes go through ``ReplicatingStore``; a call that wrote waits
  until every live secondary of the group has applied the write (``replicated``). A batch
  from another front end that wrote (a conference roster) is answered only after that, too.
  Replicas travel over links of their own, whose handlers never wait, so a batch waiting for
  replication cannot wait, through a cycle of front ends, for itself.
* **The routing table** comes from the fabric; a new one may promote this front end (load the
  group from the local replica) or demote it (sign the group's users out with
  ``home-server-changed``; their tokens then redirect to the new home).

Single-threaded: everything runs on the front end's event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from enterprise.replica import Backup, GroupData, ReplicatingStore, Write
from enterprise.routing_table import RoutingTable
from pool import errors
from pool.cdr import StoredRecord
from pool.directory import ContactEntry, ProvisionResult, User
from pool.engine import Engine
from pool.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    PoolError,
    Redirect,
    ResourceExhausted,
    Unavailable,
)
from pool.events import (
    ChatMessage,
    ConversationEnded,
    Event,
    EventQueue,
    Invitation,
    PresenceChanged,
)
from pool.immcu import REJOIN_REASONS, check_message, group_of
from pool.presence import OFFLINE_AGGREGATE, PresenceStates
from pool.presence_service import ContactView, Publication
from pool.privacy import PresenceView, Reach, reach
from pool.registrar import Endpoint
from pool.service import Created, Invited, Joined
from pool.status import PoolStatusInfo
from pool.store import UserRow

log = logging.getLogger("poolsim.enterprise.node")

HOME_CHANGED = "home-server-changed"
HOST_CHANGED = "host-changed"  # a conversation's host failed or handed it over
GONE = "gone"  # a delivery's reply: that endpoint is no longer here
UNWATCH = "unwatch"  # a delivery's reply: that endpoint no longer watches that user
LINK_BACKLOG = 100_000  # items queued for one front end at most (then calls fail, events drop)
LINK_TIMEOUT = 10.0  # seconds a batch may take before the far front end counts as unreachable
MOVED_TOKENS = 200_000  # tokens of moved endpoints remembered for their redirect

Item = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Failure:
    """A domain error on the far side, as it travels back."""

    kind: str
    message: str

    @classmethod
    def of(cls, exc: PoolError) -> Failure:
        return cls(type(exc).__name__, exc.message)

    def error(self) -> PoolError:
        kind = getattr(errors, self.kind, PoolError)
        if not (isinstance(kind, type) and issubclass(kind, PoolError)) or kind is Redirect:
            kind = PoolError
        return kind(self.message)


class Transport(Protocol):
    """How a front end reaches the others and the fabric (Ray in production)."""

    async def exchange(self, dst: str, src: str, items: list[Item]) -> list[Any]: ...

    async def fabric(self, method: str, *args: Any) -> Any: ...

    async def front_end(self, dst: str, method: str, *args: Any) -> Any: ...


class Link:
    """Batches for one destination front end; one batch in flight (see the module docstring)."""

    def __init__(self, node: FrontEndNode, dst: str) -> None:
        self.node = node
        self.dst = dst
        self.items: list[Item] = []
        self.futures: list[asyncio.Future[Any] | None] = []
        self.busy = False

    def post(self, item: Item) -> None:
        if len(self.items) >= LINK_BACKLOG:
            self.node.dropped_posts += 1
            return
        self.items.append(item)
        self.futures.append(None)
        self._kick()

    def request(self, item: Item) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if len(self.items) >= LINK_BACKLOG:
            future.set_exception(
                ResourceExhausted(
                    f"{len(self.items)} items are waiting for front end {self.dst}: try later"
                )
            )
            return future
        self.items.append(item)
        self.futures.append(future)
        self._kick()
        return future

    def _kick(self) -> None:
        if not self.busy:
            self.busy = True
            # after this loop turn, so that what else runs in it joins the batch
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        task = asyncio.get_running_loop().create_task(self._run())
        self.node.tasks.add(task)
        task.add_done_callback(self.node.tasks.discard)

    async def _run(self) -> None:
        node = self.node
        try:
            while self.items:
                items, futures = self.items, self.futures
                self.items, self.futures = [], []
                try:
                    replies = await asyncio.wait_for(
                        node.transport.exchange(self.dst, node.fe_id, items), LINK_TIMEOUT
                    )
                except Exception as exc:  # the far front end died or hangs
                    error = Unavailable(
                        f"front end {self.dst} did not answer ({type(exc).__name__}): it may "
                        "have failed; try again"
                    )
                    for future in futures:
                        if future is not None and not future.done():
                            future.set_exception(error)
                    continue
                node.observe_batch(len(items))
                for item, future, reply in zip(items, futures, replies, strict=True):
                    if future is None:
                        if reply is not None:
                            node.post_replied(self.dst, item, reply)
                    elif not future.done():
                        if isinstance(reply, Failure):
                            future.set_exception(reply.error())
                        else:
                            future.set_result(reply)
        finally:
            self.busy = False


class RemoteQueue(EventQueue):
    """The queue of a proxy endpoint: what is pushed leaves for the real endpoint's front end."""

    __slots__ = ("endpoint_id", "link")

    def __init__(self, link: Link, endpoint_id: str) -> None:
        super().__init__(1)
        self.link = link
        self.endpoint_id = endpoint_id

    def push(self, event: Event, mono: float) -> bool:
        self.link.post(("deliver", self.endpoint_id, event))
        return True


class UserQueue(EventQueue):
    """The queue of a remote user's stand-in: events for *every* endpoint of the user, sent to
    the user's home as the routing table says at the time."""

    __slots__ = ("node", "user")

    def __init__(self, node: FrontEndNode, user: User) -> None:
        super().__init__(1)
        self.node = node
        self.user = user

    def push(self, event: Event, mono: float) -> bool:
        node = self.node
        home = node.home_of(self.user)
        if home and home != node.fe_id:
            version = node.table.version if node.table is not None else 0
            node.link(home).post(("deliver_user", self.user.id, event, node.fe_id, version, 0))
        return True


def _proxy_endpoint(endpoint_id: str, user: User, queue: EventQueue) -> Endpoint:
    return Endpoint(
        id=endpoint_id,
        user=user,
        device="remote",
        token="",
        registered_at=0.0,
        expires_at=math.inf,
        queue=queue,
        last_input=0.0,
    )


class FrontEndNode:
    """An Enterprise front end (``pool.service.PoolService`` plus the handlers of ``Link``)."""

    def __init__(self, fe_id: str, engine: Engine, store: ReplicatingStore, transport: Transport):
        self.fe_id = fe_id
        self.engine = engine
        self.store = store
        self.transport = transport
        self.table: RoutingTable | None = None
        self.pool_reason = "the pool has not started yet: waiting for its first front ends"
        self.loaded: set[int] = set()  # groups whose primary is here and is loaded
        self.users_by_group: dict[int, list[int]] = {}
        self.links: dict[str, Link] = {}
        self.proxies: dict[tuple[str, str], Endpoint] = {}
        self.user_proxies: dict[int, Endpoint] = {}
        #: endpoint id -> conversation id -> host, for conversations hosted elsewhere
        self.remote_conversations: dict[str, dict[str, str]] = {}
        #: user id -> conversation id -> (host, invitation), for users homed here invited to
        #: conversations hosted elsewhere (an endpoint that signs in later is rung too)
        self.invitations: dict[int, dict[str, tuple[str, Invitation]]] = {}
        self.repl_links: dict[str, Link] = {}
        self.moved: OrderedDict[str, int] = OrderedDict()  # token -> group, for the redirect
        self.tasks: set[asyncio.Task[Any]] = set()
        self.dropped_posts = 0
        self.batches = 0
        self.batch_items = 0
        self.observe_batch: Callable[[int], None] = self.count_batch
        self.observe_replication: Callable[[float], None] = lambda seconds: None
        self._last_ship: asyncio.Future[None] | None = None
        self._ship_soon = False
        engine.on_sign_out = self._signed_out
        store.on_write = self._schedule_ship

    # --- the directory and the routing table ---

    def load_users(self, rows: Sequence[UserRow]) -> None:
        directory = self.engine.directory
        for row in rows:
            if directory.get(row.uri) is None:
                directory.load(row)
                self.users_by_group.setdefault(row.routing_group, []).append(row.id)

    def home_of(self, user: User) -> str:
        table = self.table
        return table.homes[user.routing_group] if table is not None else ""

    def is_local(self, user: User) -> bool:
        return user.routing_group in self.loaded

    def set_table(self, table: RoutingTable, pool_reason: str) -> None:
        """A routing table from the fabric (older ones are ignored: calls may overtake)."""
        old = self.table
        if old is not None and table.version <= old.version:
            return
        self.table = table
        self.pool_reason = pool_reason
        self._end_moved_conversations(table)
        moved: set[int] = set()
        for g, home in enumerate(table.homes):
            was = old.homes[g] if old is not None else ""
            if g in self.loaded and home != self.fe_id:
                self._demote(g)
            if home == self.fe_id and g not in self.loaded:
                self._promote(g)
            if home != was and home not in ("", self.fe_id):
                moved.add(g)
        for src, endpoint_id in list(self.proxies):
            if src not in table.addresses:
                self._drop_proxy(src, endpoint_id, "connection-lost")
        if moved:
            self._rewatch(moved)

    def _host(self, conversation_id: str) -> str:
        """The front end hosting a conversation now (this one for an id that is not ours, so
        the engine answers for it; "" while its group is not served)."""
        g = group_of(conversation_id)
        if g is None:
            return self.fe_id
        table = self.table
        return table.homes[g] if table is not None and g < len(table.homes) else ""

    def _end_moved_conversations(self, table: RoutingTable) -> None:
        """Conversations hosted elsewhere whose host is no longer the one they were joined (or
        invited) at: the host failed or handed them over. Tell the endpoints they ended (a
        conference's new host invites its members back)."""
        now = self.engine.clock.now()
        registrar = self.engine.registrar
        for endpoint_id, hosted in list(self.remote_conversations.items()):
            ep = registrar.get(endpoint_id)
            for conversation_id, host in list(hosted.items()):
                if self._host(conversation_id) != host:
                    del hosted[conversation_id]
                    if ep is not None:
                        self.engine.deliver(
                            ep, ConversationEnded(conversation_id, HOST_CHANGED, now)
                        )
        directory = self.engine.directory
        for user_id, invited in list(self.invitations.items()):
            user = directory.by_id(user_id)
            for conversation_id, (host, _) in list(invited.items()):
                if self._host(conversation_id) != host:
                    del invited[conversation_id]
                    if conversation_id in user.invitations:
                        user.invitations.discard(conversation_id)
                        ended = ConversationEnded(conversation_id, HOST_CHANGED, now)
                        for ep in user.endpoints:
                            if ep.token:
                                self.engine.deliver(ep, ended)
            if not invited:
                del self.invitations[user_id]

    def _promote(self, group: int) -> None:
        """This front end is now ``group``'s primary: serve it from the local replica."""
        self.loaded.add(group)
        for uid in self.users_by_group.get(group, ()):
            user = self.engine.directory.by_id(uid)
            proxy = self.user_proxies.pop(uid, None)
            if proxy is not None and proxy in user.endpoints:
                user.endpoints.remove(proxy)
        self._load_group(group)
        self._restore_conferences(group)

    def _restore_conferences(self, group: int) -> None:
        """Bring back the conferences of ``group``'s organizers from their rosters."""
        directory = self.engine.directory
        immcu = self.engine.immcu
        data = self.store.group(group)
        for row in sorted(data.conferences.values(), key=lambda r: r.conversation_id):
            stand_in = self._mirror(directory.by_id(row.organizer_id))
            members = [directory.by_id(uid) for uid in row.members]
            for member in members:
                if not self.is_local(member):
                    self._mirror(member)
            immcu.restore(row, stand_in, members)

    def _load_group(self, group: int) -> None:
        directory = self.engine.directory
        for uid in self.users_by_group.get(group, ()):
            user = directory.by_id(uid)
            user.contacts = {}
            user.states.manual = None
            user.states.note = ""
        data = self.store.group(group)
        for row in data.contacts.values():
            directory.by_id(row.user_id).contacts[row.contact_id] = ContactEntry(
                row.access_level, row.group
            )
        for p in data.presence.values():
            self.engine.presence.restore(directory.by_id(p.user_id), p)

    def _demote(self, group: int) -> None:
        """``group`` is served elsewhere now (or nowhere): its users sign in there, and its
        conversations are handed over (their rosters are on the new primary already)."""
        self.loaded.discard(group)
        immcu = self.engine.immcu
        immcu.hand_over(group, HOST_CHANGED)
        directory = self.engine.directory
        for uid in self.users_by_group.get(group, ()):
            self.invitations.pop(uid, None)  # their new home keeps them now
        for uid in self.users_by_group.get(group, ()):
            user = directory.by_id(uid)
            for ep in list(user.endpoints):
                if ep.token:
                    self._remember_moved(ep.token, group)
                    self.engine.sign_out(ep, HOME_CHANGED)
            for watcher in list(user.watchers):
                if not watcher.token:  # a proxy: its front end subscribes at the new home
                    user.watchers.discard(watcher)
                    watcher.subscriptions.pop(uid, None)
            user.contacts = {}
            user.states = PresenceStates()
            user.current = OFFLINE_AGGREGATE
            # conferences hosted here keep them invited (they left for a new home): ring there
            pending = immcu.invitations_for(user)
            if pending:
                stand_in = self._mirror(user)
                for invitation in pending:
                    self.engine.deliver(stand_in, invitation)

    def _remember_moved(self, token: str, group: int) -> None:
        self.moved[token] = group
        while len(self.moved) > MOVED_TOKENS:
            self.moved.popitem(last=False)

    def _rewatch(self, groups: set[int]) -> None:
        """Subscriptions of local endpoints to users whose home moved: subscribe there again,
        and tell the endpoint what it sees now."""
        directory = self.engine.directory
        for ep in self.engine.registrar:
            by_home: dict[str, list[int]] = {}
            for tid in ep.subscriptions:
                target = directory.by_id(tid)
                if target.routing_group in groups:
                    home = self.home_of(target)
                    if home and home != self.fe_id:
                        by_home.setdefault(home, []).append(tid)
            for home, tids in by_home.items():
                future = self.link(home).request(("watch", ep.id, ep.user.id, tids))
                future.add_done_callback(functools.partial(self._rewatched, ep))

    def _rewatched(self, ep: Endpoint, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None or ep.signed_out:
            return
        now = self.engine.clock.now()
        for view in future.result():
            self.engine.deliver(ep, PresenceChanged(view, now))

    def link(self, dst: str) -> Link:
        link = self.links.get(dst)
        if link is None:
            link = self.links[dst] = Link(self, dst)
        return link

    def repl_link(self, dst: str) -> Link:
        """The link for replicas (writes and copies) to ``dst``, apart from everything else."""
        link = self.repl_links.get(dst)
        if link is None:
            link = self.repl_links[dst] = Link(self, dst)
        return link

    def count_batch(self, items: int) -> None:
        self.batches += 1
        self.batch_items += items

    # --- serving checks ---

    def _check_serving(self) -> RoutingTable:
        table = self.table
        if table is None or self.pool_reason:
            raise Unavailable(self.pool_reason or "the pool has not started yet")
        return table

    def _home_for_sign_in(self, user: User) -> None:
        table = self._check_serving()
        g = user.routing_group
        home = table.homes[g]
        if not home:
            raise Unavailable(table.reasons[g] or f"routing group {g} is not served")
        if home != self.fe_id:
            address = table.address_of(home)
            raise Redirect(
                user.uri,
                address,
                home,
                f"{user.uri} is homed on front end {home} at {address} (routing group {g}): "
                "sign in there",
            )

    def authenticate(self, token: str) -> Endpoint:
        group = self.moved.get(token)
        if group is not None:
            table = self._check_serving()
            home = table.homes[group]
            if not home:
                raise Unavailable(table.reasons[group] or f"routing group {group} is not served")
            address = table.address_of(home)
            raise Redirect(
                "",
                address,
                home,
                f"routing group {group} moved to front end {home} at {address}: sign in there",
            )
        self._check_serving()
        return self.engine.authenticate(token)

    # --- replication ---

    def _schedule_ship(self) -> None:
        """The store took a write: ship it soon even if no call waits for it (a roster change
        made by a timer or by another front end's batch)."""
        if not self._ship_soon:
            self._ship_soon = True
            asyncio.get_running_loop().call_soon(self._ship_now)

    def _ship_now(self) -> None:
        self._ship_soon = False
        if self.store.has_pending:
            self.replicated()

    def replicated(self) -> Awaitable[None]:
        """Done when every write made so far is on every live secondary of its group."""
        if self.store.has_pending:
            previous = self._last_ship
            self._last_ship = asyncio.ensure_future(self._ship(self.store.take_pending(), previous))
        last = self._last_ship
        if last is None or last.done():
            return _done()
        return asyncio.shield(last)

    async def _ship(
        self, pending: dict[int, tuple[int, list[Write]]], previous: asyncio.Future[None] | None
    ) -> None:
        table = self.table
        start = self.engine.clock.monotonic()
        futures = []
        if table is not None:
            for g, (seq, writes) in pending.items():
                for secondary in table.secondaries[g]:
                    if secondary != self.fe_id and secondary in table.addresses:
                        futures.append(
                            self.repl_link(secondary).request(("replicate", g, seq, writes))
                        )
        if futures:
            # a secondary that does not answer is dead: the fabric will notice and rebuild
            await asyncio.gather(*futures, return_exceptions=True)
            self.observe_replication(self.engine.clock.monotonic() - start)
        if previous is not None:
            await previous

    # --- PoolService: registration ---

    async def sign_in(self, uri: str, password: str, device: str) -> Endpoint:
        self._check_serving()
        user = await asyncio.to_thread(self.engine.check_password, uri, password)
        self._home_for_sign_in(user)
        ep = self.engine.sign_in(user, device)
        invited = self.invitations.get(user.id, {})
        for conversation_id, (_, invitation) in list(invited.items()):
            if conversation_id in user.invitations:
                self.engine.deliver(ep, invitation)
            else:
                del invited[conversation_id]
        return ep

    async def sign_out(self, ep: Endpoint) -> None:
        self.engine.sign_out(ep)
        await self.replicated()  # the rosters of the conferences it left

    def _signed_out(self, ep: Endpoint, reason: str) -> None:
        """Engine hook, before the sign-out: tell the front ends that hold proxies of ``ep``."""
        directory = self.engine.directory
        holders: set[str] = set()
        for tid in ep.subscriptions:
            home = self.home_of(directory.by_id(tid))
            if home and home != self.fe_id:
                holders.add(home)
        holders.update(self.remote_conversations.pop(ep.id, {}).values())
        for holder in holders:
            self.link(holder).post(("drop_proxy", ep.id, reason))
        user = ep.user
        if reason not in REJOIN_REASONS and all(
            other is ep or other.signed_out for other in user.endpoints
        ):
            for conversation_id, (host, _) in self.invitations.pop(user.id, {}).items():
                if conversation_id in user.invitations:
                    user.invitations.discard(conversation_id)
                    self.link(host).post(("refuse", user.id, conversation_id))

    # --- PoolService: presence and contacts ---

    async def publish(self, ep: Endpoint, pub: Publication) -> PresenceView:
        view = self.engine.publish(ep, pub)
        await self.replicated()
        return view

    async def reset_presence(self, ep: Endpoint) -> PresenceView:
        view = self.engine.reset_presence(ep)
        await self.replicated()
        return view

    def _by_home(self, users: list[User]) -> dict[str, list[User]]:
        out: dict[str, list[User]] = {}
        for user in users:
            if not self.is_local(user):
                home = self.home_of(user)
                if home:
                    out.setdefault(home, []).append(user)
        return out

    async def _remote_views(
        self, views: list[PresenceView], users: list[User], request: Callable[[list[int]], Item]
    ) -> list[PresenceView]:
        """``views`` with those of remote users replaced by what their homes say."""
        by_home = self._by_home(users)
        if not by_home:
            return views
        homes = list(by_home)
        answers = await asyncio.gather(
            *(self.link(h).request(request([u.id for u in by_home[h]])) for h in homes),
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
        return await self._remote_views(views, users, lambda ids: ("views", ep.user.id, ids))

    async def subscribe(self, ep: Endpoint, uris: list[str], expires: float) -> list[PresenceView]:
        views = self.engine.subscribe(ep, uris, expires)
        users = self.engine.presence.targets(uris, "subscribe to")
        return await self._remote_views(views, users, lambda ids: ("watch", ep.id, ep.user.id, ids))

    async def unsubscribe(self, ep: Endpoint, uris: list[str]) -> int:
        users = self.engine.presence.targets(uris, "unsubscribe from")
        left = self.engine.unsubscribe(ep, uris)
        for home, remote in self._by_home(users).items():
            self.link(home).post(("unwatch", ep.id, [u.id for u in remote]))
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
        out: dict[int, Reach] = {}
        by_home = self._by_home(users)
        for user in users:
            if not self.is_local(user) and not self.home_of(user):
                out[user.id] = Reach.OFFLINE  # their group is not served
        homes = list(by_home)
        answers = await asyncio.gather(
            *(self.link(h).request(("reach", caller.id, [u.id for u in by_home[h]])) for h in homes)
        )
        for h, answer in zip(homes, answers, strict=True):
            for user, verdict in zip(by_home[h], answer, strict=True):
                out[user.id] = verdict
        for user in users:
            if not self.is_local(user):
                self._mirror(user)
        return out

    def _mirror(self, user: User) -> Endpoint:
        """The stand-in endpoint of a remote user (events for all of their endpoints)."""
        proxy = self.user_proxies.get(user.id)
        if proxy is None:
            proxy = _proxy_endpoint(f"user-{user.id}", user, UserQueue(self, user))
            self.user_proxies[user.id] = proxy
        if not self.is_local(user) and proxy not in user.endpoints:
            user.endpoints.append(proxy)
        return proxy

    async def create_conversation(
        self, ep: Endpoint, invitees: list[str], subject: str, first: ChatMessage | None
    ) -> Created:
        directory = self.engine.directory
        users = [directory.require(uri, field_name="invitees") for uri in invitees]
        reaches = await self._reaches(ep.user, [u for u in users if not self.is_local(u)])
        conv, seq = self.engine.create_conversation(ep, invitees, subject, first, reaches)
        await self.replicated()  # a conference's roster
        return Created(conv.id, conv.conference_uri, seq)

    async def _at_host(
        self, ep: Endpoint, host: str, conversation_id: str, op: str, arg: Any = None
    ) -> Any:
        """Carry ``op`` out on ``host``, the front end that hosts the conversation."""
        table = self._check_serving()
        if host not in table.addresses:
            g = group_of(conversation_id)
            reason = table.reasons[g] if g is not None and g < len(table.reasons) else ""
            raise Unavailable(
                f"conversation {conversation_id} has no host now: {reason or 'try again'}"
            )
        self.engine.touch(ep)
        return await self.link(host).request(
            ("conversation", op, conversation_id, ep.id, ep.user.id, arg)
        )

    async def invite(self, ep: Endpoint, conversation_id: str, uri: str) -> Invited:
        target = self.engine.directory.require(uri)
        host = self._host(conversation_id)
        verdict: Reach | None = None
        if self.home_of(target) != host:
            if self.is_local(target):
                verdict = reach(target.current, target.level_for(ep.user))
            else:
                verdict = (await self._reaches(ep.user, [target]))[target.id]
        if host == self.fe_id:
            conv, escalated = self.engine.invite(ep, conversation_id, uri, verdict)
            await self.replicated()
            return Invited(escalated, conv.conference_uri)
        result: Invited = await self._at_host(
            ep, host, conversation_id, "invite", (target.id, verdict)
        )
        return result

    def _answered(self, user: User, conversation_id: str) -> None:
        user.invitations.discard(conversation_id)
        invited = self.invitations.get(user.id)
        if invited is not None:
            invited.pop(conversation_id, None)

    def _invited_by(self, user: User, conversation_id: str) -> str:
        """The host an open invitation came from: it may be newer than this front end's
        routing table (a conference's new host invites its members back at once)."""
        record = self.invitations.get(user.id, {}).get(conversation_id)
        return record[0] if record is not None else self._host(conversation_id)

    async def accept(self, ep: Endpoint, conversation_id: str) -> Joined:
        host = self._invited_by(ep.user, conversation_id)
        if host == self.fe_id:
            conv = self.engine.accept(ep, conversation_id)
            return Joined(conv.uris(), conv.conference_uri)
        mine = self.remote_conversations.setdefault(ep.id, {})
        mine[conversation_id] = host  # before the host's events for it can arrive
        try:
            joined: Joined = await self._at_host(ep, host, conversation_id, "accept")
        except BaseException:
            mine.pop(conversation_id, None)
            raise
        self._answered(ep.user, conversation_id)
        return joined

    async def decline(self, ep: Endpoint, conversation_id: str) -> None:
        host = self._invited_by(ep.user, conversation_id)
        if host == self.fe_id:
            self.engine.decline(ep, conversation_id)
            await self.replicated()
            return
        await self._at_host(ep, host, conversation_id, "decline")
        self._answered(ep.user, conversation_id)

    async def send_message(
        self, ep: Endpoint, conversation_id: str, body: str, content_type: str
    ) -> tuple[str, int]:
        host = self._host(conversation_id)
        if host == self.fe_id:
            return self.engine.send_message(ep, conversation_id, body, content_type)
        limit = self.engine.config.limits.max_message_chars
        message = check_message(body, content_type, limit)  # refuse before the trip
        sent: tuple[str, int] = await self._at_host(
            ep, host, conversation_id, "send", (message.body, message.content_type)
        )
        return sent

    async def set_typing(self, ep: Endpoint, conversation_id: str, typing: bool) -> None:
        host = self._host(conversation_id)
        if host == self.fe_id:
            self.engine.set_typing(ep, conversation_id, typing)
            return
        await self._at_host(ep, host, conversation_id, "typing", typing)

    async def leave(self, ep: Endpoint, conversation_id: str) -> None:
        host = self._host(conversation_id)
        if host == self.fe_id:
            self.engine.leave(ep, conversation_id)
            await self.replicated()
            return
        await self._at_host(ep, host, conversation_id, "leave")
        self.remote_conversations.get(ep.id, {}).pop(conversation_id, None)
        self._answered(ep.user, conversation_id)

    # --- the far side: what other front ends ask of this one (the handlers never await) ---

    async def answer(self, src: str, items: list[Item]) -> list[Any]:
        """A batch from ``src``: ``handle`` it, and if it wrote (a conference roster), answer
        only once that reached the secondaries, as for a call of this front end's own."""
        before = self.store.writes
        replies = self.handle(src, items)
        if self.store.writes != before:
            await self.replicated()
        return replies

    def handle(self, src: str, items: list[Item]) -> list[Any]:
        replies: list[Any] = []
        for item in items:
            try:
                replies.append(getattr(self, "_on_" + item[0])(src, *item[1:]))
            except PoolError as exc:
                replies.append(Failure.of(exc))
            except Exception:  # a bug: the caller gets an error, the batch goes on
                log.exception("handling %s from %s failed", item[0], src)
                replies.append(Failure("PoolError", f"internal error handling {item[0]}"))
        return replies

    def post_replied(self, dst: str, item: Item, reply: Any) -> None:
        """A posted item came back with something to act on."""
        if item[0] != "deliver":
            return
        endpoint_id = item[1]
        if reply == GONE:
            self._drop_proxy(dst, endpoint_id, "signed-out")
        elif reply == UNWATCH:
            proxy = self.proxies.get((dst, endpoint_id))
            event = item[2]
            target = self.engine.directory.get(event.presence.user_uri)
            if proxy is not None and target is not None:
                target.watchers.discard(proxy)
                proxy.subscriptions.pop(target.id, None)

    def _proxy(self, src: str, endpoint_id: str, user_id: int) -> Endpoint:
        key = (src, endpoint_id)
        proxy = self.proxies.get(key)
        if proxy is None:
            user = self.engine.directory.by_id(user_id)
            proxy = _proxy_endpoint(endpoint_id, user, RemoteQueue(self.link(src), endpoint_id))
            self.proxies[key] = proxy
        return proxy

    def _drop_proxy(self, src: str, endpoint_id: str, reason: str) -> None:
        proxy = self.proxies.pop((src, endpoint_id), None)
        if proxy is None:
            return
        directory = self.engine.directory
        for tid in list(proxy.subscriptions):
            directory.by_id(tid).watchers.discard(proxy)
        proxy.subscriptions.clear()
        for conversation_id in list(proxy.conversations):
            conv = self.engine.immcu.conversations.get(conversation_id)
            if conv is not None and not conv.ended:
                self.engine.immcu.leave(proxy, conversation_id, reason)
        proxy.signed_out = True

    def _on_deliver(self, src: str, endpoint_id: str, event: Event) -> str | None:
        ep = self.engine.registrar.get(endpoint_id)
        if ep is None or ep.signed_out:
            return GONE
        if isinstance(event, PresenceChanged):
            target = self.engine.directory.get(event.presence.user_uri)
            if target is None or target.id not in ep.subscriptions:
                return UNWATCH
        else:
            conversation_id: str = getattr(event, "conversation_id", "")
            if conversation_id:
                hosted = self.remote_conversations.get(endpoint_id, {})
                if hosted.get(conversation_id) != src:
                    return None  # from a host it has moved away from: it ended here already
                if isinstance(event, ConversationEnded):
                    del hosted[conversation_id]
        self.engine.deliver(ep, event)
        return None

    def _on_deliver_user(
        self, src: str, user_id: int, event: Event, host: str, version: int, hops: int
    ) -> None:
        """An event for every endpoint of a user homed here, from ``host`` (the conversation's
        host, whose routing table had ``version``). A user not homed here: on to their home
        when this front end's table is the newer (the sender's was older), else kept here
        (this one's is older: the sender knew better, and the next table makes this front end
        their home)."""
        user = self.engine.directory.by_id(user_id)
        table = self.table
        mine = table.version if table is not None else 0
        if not self.is_local(user) and mine > version and hops < 2:
            home = self.home_of(user)
            if home and home != self.fe_id:
                self.link(home).post(("deliver_user", user_id, event, host, mine, hops + 1))
            return
        conversation_id: str = getattr(event, "conversation_id", "")
        invited = self.invitations.setdefault(user_id, {})
        if isinstance(event, Invitation):
            # invited back by a conference's new host before this front end heard of the move
            now = self.engine.clock.now()
            group = group_of(conversation_id)
            if group is not None and table is not None and version > table.version:
                # this front end may still host it under its older table: hand it over now,
                # so its end reaches the user before the new invitation, not after
                self.engine.immcu.hand_over(group, HOST_CHANGED, conversation_id)
            for ep in user.endpoints:
                hosted = self.remote_conversations.get(ep.id, {})
                if hosted.get(conversation_id, host) != host:
                    del hosted[conversation_id]
                    self.engine.deliver(ep, ConversationEnded(conversation_id, HOST_CHANGED, now))
            user.invitations.add(conversation_id)
            invited[conversation_id] = (host, event)
        elif isinstance(event, ConversationEnded):
            record = invited.get(conversation_id)
            if record is not None and record[0] != host:
                return  # the end of an invitation from a host it has moved away from
            invited.pop(conversation_id, None)
            user.invitations.discard(conversation_id)
        if not invited:
            del self.invitations[user_id]
        for ep in user.endpoints:
            if ep.token and conversation_id not in self.remote_conversations.get(ep.id, {}):
                self.engine.deliver(ep, event)

    def _served_here(self, user_ids: list[int]) -> list[User]:
        directory = self.engine.directory
        users = [directory.by_id(uid) for uid in user_ids]
        for user in users:
            if not self.is_local(user):
                raise Unavailable(
                    f"routing group {user.routing_group} is not served by front end "
                    f"{self.fe_id} any more: ask its new home"
                )
        return users

    def _on_views(self, src: str, watcher_id: int, user_ids: list[int]) -> list[PresenceView]:
        watcher = self.engine.directory.by_id(watcher_id)
        presence = self.engine.presence
        return [presence.view_for(watcher, u) for u in self._served_here(user_ids)]

    def _on_watch(
        self, src: str, endpoint_id: str, watcher_id: int, user_ids: list[int]
    ) -> list[PresenceView]:
        users = self._served_here(user_ids)
        proxy = self._proxy(src, endpoint_id, watcher_id)
        for user in users:
            user.watchers.add(proxy)
            proxy.subscriptions[user.id] = 0.0
        presence = self.engine.presence
        return [presence.view_for(proxy.user, u) for u in users]

    def _on_unwatch(self, src: str, endpoint_id: str, user_ids: list[int]) -> None:
        proxy = self.proxies.get((src, endpoint_id))
        if proxy is None:
            return
        directory = self.engine.directory
        for uid in user_ids:
            directory.by_id(uid).watchers.discard(proxy)
            proxy.subscriptions.pop(uid, None)

    def _on_reach(self, src: str, caller_id: int, user_ids: list[int]) -> list[Reach]:
        caller = self.engine.directory.by_id(caller_id)
        return [reach(u.current, u.level_for(caller)) for u in self._served_here(user_ids)]

    def _on_conversation(
        self, src: str, op: str, conversation_id: str, endpoint_id: str, user_id: int, arg: Any
    ) -> Any:
        immcu = self.engine.immcu
        user = self.engine.directory.by_id(user_id)
        if op == "accept":
            self._mirror(user)
            conv = immcu.accept(self._proxy(src, endpoint_id, user_id), conversation_id)
            return Joined(conv.uris(), conv.conference_uri)
        proxy = self.proxies.get((src, endpoint_id))
        joined = proxy is not None and conversation_id in proxy.conversations
        if op == "decline":
            immcu.decline(self._mirror(user), conversation_id)
            return None
        if op == "leave":
            immcu.leave(
                proxy if proxy is not None and joined else self._mirror(user), conversation_id
            )
            return None
        if proxy is None or not joined:
            if conversation_id not in immcu.conversations:
                raise NotFound(f"unknown conversation {conversation_id}: it ended")
            raise PermissionDenied(
                f"{user.uri} (endpoint {endpoint_id}) is not a participant of conversation "
                f"{conversation_id}"
            )
        if op == "send":
            body, content_type = arg
            message = check_message(body, content_type, self.engine.config.limits.max_message_chars)
            sent = immcu.send(proxy, conversation_id, message)
            return sent.message_id, sent.sequence
        if op == "typing":
            immcu.set_typing(proxy, conversation_id, bool(arg))
            return None
        if op == "invite":
            target_id, verdict = arg
            target = self.engine.directory.by_id(target_id)
            if not self.is_local(target):
                self._mirror(target)
            escalated = immcu.invite(proxy, conversation_id, target, verdict)
            return Invited(escalated, immcu.conversations[conversation_id].conference_uri)
        raise FailedPrecondition(f"unknown conversation operation {op!r}")

    def _on_refuse(self, src: str, user_id: int, conversation_id: str) -> None:
        user = self.engine.directory.by_id(user_id)
        self.engine.immcu.refuse(conversation_id, user, 480, "signed-out")

    def _on_drop_proxy(self, src: str, endpoint_id: str, reason: str) -> None:
        self._drop_proxy(src, endpoint_id, reason)

    def _on_replicate(self, src: str, group: int, seq: int, writes: list[Write]) -> None:
        data = self.store.group(group)
        for write in writes:
            data.apply(write)
        data.seq = max(data.seq, seq)

    def _on_install(self, src: str, group: int, data: GroupData) -> None:
        self.install(group, data)

    # --- replicas, directed by the fabric ---

    def install(self, group: int, data: GroupData) -> None:
        """Hold ``data`` as this front end's copy of ``group`` (a copy or a reload)."""
        self.store.groups[group] = data
        if group in self.loaded:
            self._load_group(group)

    async def copy_group(self, group: int, to_fe: str) -> None:
        """Send this primary's copy of ``group`` to ``to_fe``, its new secondary. Writes made
        after this go to it through the same link, so arrive after the copy."""
        await self.repl_link(to_fe).request(("install", group, self.store.group(group).snapshot()))

    def drop_group(self, group: int) -> None:
        if group not in self.loaded:
            self.store.drop(group)

    def freshness(self) -> dict[int, int]:
        return {g: data.seq for g, data in self.store.groups.items()}

    def take_backup(self) -> list[Backup]:
        return [b for b in self.store.take_dirty() if b.group in self.loaded]

    # --- administration (the fabric answers; see enterprise.actors) ---

    async def status(self) -> PoolStatusInfo:
        info: PoolStatusInfo = await self.transport.fabric("status")
        return info

    async def provision(
        self, prefix: str, domain: str, count: int, start_index: int, password: str
    ) -> tuple[ProvisionResult, int]:
        result: tuple[ProvisionResult, int] = await self.transport.fabric(
            "provision", prefix, domain, count, start_index, password
        )
        return result

    async def provision_contacts(self, entries: list[tuple[str, str, int, str]]) -> int:
        """Split by the owners' homes; every home checks its part before any writes."""
        directory = self.engine.directory
        table = self._check_serving()
        parts: dict[str, list[tuple[str, str, int, str]]] = {}
        for entry in entries:
            owner = directory.require(entry[0], field_name="owner_uri")
            home = table.homes[owner.routing_group]
            if not home:
                raise Unavailable(table.reasons[owner.routing_group])
            parts.setdefault(home, []).append(entry)
        for home, part in parts.items():
            await self.transport.front_end(home, "check_contacts", part)
        written = 0
        for home, part in parts.items():
            written += await self.transport.front_end(home, "provision_contacts", part)
        return written

    def check_contacts(self, entries: list[tuple[str, str, int, str]]) -> None:
        """Validate bulk contacts for users homed here, changing nothing."""
        self.engine.presence.check_contacts(entries)

    async def provision_contacts_here(self, entries: list[tuple[str, str, int, str]]) -> int:
        written = self.engine.provision_contacts(entries)
        await self.replicated()
        return written

    async def call_detail_records(self, since: float) -> Sequence[StoredRecord]:
        records: Sequence[StoredRecord] = await self.transport.fabric("call_detail_records", since)
        return records

    async def stop_front_end(self, front_end_id: str, crash: bool) -> PoolStatusInfo:
        info: PoolStatusInfo = await self.transport.fabric("stop_front_end", front_end_id, crash)
        return info

    async def start_front_end(self, front_end_id: str) -> PoolStatusInfo:
        info: PoolStatusInfo = await self.transport.fabric("start_front_end", front_end_id)
        return info

    async def reset_registrar_state(
        self, reset_type: str, front_end_id: str
    ) -> tuple[list[int], PoolStatusInfo]:
        result: tuple[list[int], PoolStatusInfo] = await self.transport.fabric(
            "reset", reset_type, front_end_id
        )
        return result


async def _nothing() -> None:
    return None


def _done() -> Awaitable[None]:
    return _nothing()
