"""Stand-ins: this front end's endpoints for endpoints and users served by other front ends.

* A **remote endpoint's stand-in** (``Proxies.of``) watches users homed here for an endpoint
  elsewhere, or takes part in a conversation hosted here; what the engine pushes to it leaves
  for the real endpoint (``Deliver``).
* A **remote user's stand-in** (``Proxies.mirror``) takes what is sent to *every* endpoint of
  a user homed elsewhere (an invitation, its end), sent on to the user's home as the routing
  table says at the time (``DeliverToUser``).

Both are ``pool.registrar.StandIn``s; the engine attaches, watches and drops them.
"""

from __future__ import annotations

from enterprise.link import Link, Links
from enterprise.routing import Routing
from enterprise.routing_table import RoutingTable
from enterprise.wire import Deliver, DeliverToUser
from pool.directory import User
from pool.engine import Engine
from pool.events import Event, EventQueue
from pool.registrar import StandIn


class RemoteQueue(EventQueue):
    """The queue of a remote endpoint's stand-in: what is pushed leaves at once, for the real
    endpoint's front end (the bounded queue's own state is unused)."""

    __slots__ = ("endpoint_id", "link")

    def __init__(self, link: Link, endpoint_id: str) -> None:
        super().__init__(0)  # no room: every push comes to ``push`` (see EventQueue)
        self.link = link
        self.endpoint_id = endpoint_id

    def push(self, event: Event, mono: float) -> bool:
        self.link.post(Deliver(self.endpoint_id, event))
        return True


class UserQueue(EventQueue):
    """The queue of a remote user's stand-in: events for *every* endpoint of the user, sent to
    the user's home as the routing table says at the time."""

    __slots__ = ("links", "routing", "user")

    def __init__(self, routing: Routing, links: Links, user: User) -> None:
        super().__init__(0)  # no room: every push comes to ``push`` (see EventQueue)
        self.routing = routing
        self.links = links
        self.user = user

    def push(self, event: Event, mono: float) -> bool:
        routing = self.routing
        home = routing.is_remote(self.user)
        if home:
            message = DeliverToUser(self.user.id, event, routing.fe_id, routing.version)
            self.links.to(home).post(message)
        return True


class Proxies:
    def __init__(self, engine: Engine, routing: Routing, links: Links) -> None:
        self.engine = engine
        self.routing = routing
        self.links = links
        #: (front end, endpoint id) -> the stand-in of that remote endpoint
        self.endpoints: dict[tuple[str, str], StandIn] = {}
        #: user id -> the stand-in of that remote user
        self.users: dict[int, StandIn] = {}

    def get(self, src: str, endpoint_id: str) -> StandIn | None:
        return self.endpoints.get((src, endpoint_id))

    def of(self, src: str, endpoint_id: str, user_id: int) -> StandIn:
        """The stand-in of endpoint ``endpoint_id`` (of user ``user_id``) at ``src``."""
        key = (src, endpoint_id)
        proxy = self.endpoints.get(key)
        if proxy is None:
            user = self.engine.directory.by_id(user_id)
            queue = RemoteQueue(self.links.to(src), endpoint_id)
            proxy = self.endpoints[key] = StandIn.of(endpoint_id, user, queue)
        return proxy

    def drop(self, src: str, endpoint_id: str, reason: str) -> None:
        proxy = self.endpoints.pop((src, endpoint_id), None)
        if proxy is not None:
            self.engine.drop_stand_in(proxy, reason)

    def drop_departed(self, table: RoutingTable) -> None:
        """Stand-ins of endpoints at front ends that are no longer up."""
        for src, endpoint_id in list(self.endpoints):
            if src not in table.addresses:
                self.drop(src, endpoint_id, "connection-lost")

    def mirror(self, user: User) -> StandIn:
        """The stand-in of a remote user (events for all of their endpoints)."""
        proxy = self.users.get(user.id)
        if proxy is None:
            queue = UserQueue(self.routing, self.links, user)
            proxy = self.users[user.id] = StandIn.of(f"user-{user.id}", user, queue)
        if not self.routing.is_local(user):
            self.engine.attach_stand_in(user, proxy)
        return proxy

    def unmirror(self, user: User) -> None:
        """``user`` is served here now: their stand-in goes."""
        proxy = self.users.pop(user.id, None)
        if proxy is not None:
            self.engine.detach_stand_in(user, proxy)
