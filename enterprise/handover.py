"""Applying a new routing table: what moves when a group's primary moves.

A table newer than the one held (older ones are ignored: calls may overtake) may

* **promote** this front end for a group: serve it from the local replica, and restore the
  conferences its organizers had from their rosters (every member is invited back);
* **demote** it: the group's conversations are handed over (they end here with
  ``host-changed``; the new primary restores the conferences), its users' endpoints are signed
  out with ``home-server-changed`` (their tokens then redirect to the new home), remote
  watchers' stand-ins go, and invitations still open here ring the users at their new home;
* **end moved conversations**: those hosted elsewhere whose host changed are over for the
  endpoints here (a conference's new host invites its members back);
* drop stand-ins of front ends no longer up, and **rewatch**: subscriptions of endpoints here
  to users whose home moved are made again at the new home.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

from enterprise.link import Links
from enterprise.memberships import Memberships
from enterprise.proxies import Proxies
from enterprise.replica import ReplicatingStore
from enterprise.replication import Replication
from enterprise.routing import Routing
from enterprise.routing_table import RoutingTable
from enterprise.wire import Watch
from pool.engine import Engine
from pool.events import ConversationEnded, PresenceChanged
from pool.registrar import Endpoint, StandIn

HOME_CHANGED = "home-server-changed"
HOST_CHANGED = "host-changed"  # a conversation's host failed or handed it over


@dataclass(slots=True)
class Handover:
    """Applies routing tables to one front end (see the module docstring)."""

    engine: Engine
    store: ReplicatingStore
    routing: Routing
    links: Links
    proxies: Proxies
    memberships: Memberships
    replication: Replication

    def apply(self, table: RoutingTable, pool_reason: str) -> None:
        """A routing table from the fabric (see the module docstring)."""
        routing = self.routing
        old = routing.table
        if old is not None and table.version < old.version:
            return
        routing.pool_reason = pool_reason  # may change alone (a pool held while it starts)
        if old is not None and table.version == old.version:
            return
        routing.table = table
        self._end_moved_conversations()
        fe_id = routing.fe_id
        moved: set[int] = set()
        for g, home in enumerate(table.homes):
            was = old.homes[g] if old is not None else ""
            if g in routing.loaded and home != fe_id:
                self._demote(g)
            if home == fe_id and g not in routing.loaded:
                self._promote(g)
            if home != was and home not in ("", fe_id):
                moved.add(g)
        self.proxies.drop_departed(table)
        if moved:
            self._rewatch(moved)

    def _end_moved_conversations(self) -> None:
        """Conversations hosted elsewhere whose host is no longer the one they were joined (or
        invited) at: the host failed or handed them over. Tell the endpoints they ended."""
        engine = self.engine
        host_of = self.routing.host_of
        now = engine.clock.now()
        registrar = engine.registrar
        memberships = self.memberships
        for endpoint_id, hosted in list(memberships.joined.items()):
            ep = registrar.get(endpoint_id)
            for conversation_id, host in list(hosted.items()):
                if host_of(conversation_id) != host:
                    del hosted[conversation_id]
                    if ep is not None:
                        engine.deliver(ep, ConversationEnded(conversation_id, HOST_CHANGED, now))
        directory = engine.directory
        for user_id, invited in list(memberships.invited.items()):
            user = directory.by_id(user_id)
            for conversation_id, record in list(invited.items()):
                if host_of(conversation_id) != record.host:
                    del invited[conversation_id]
                    if engine.invitation_closed(user, conversation_id):
                        ended = ConversationEnded(conversation_id, HOST_CHANGED, now)
                        for ep in user.endpoints:
                            if not isinstance(ep, StandIn):
                                engine.deliver(ep, ended)
            if not invited:
                del memberships.invited[user_id]

    def _promote(self, group: int) -> None:
        """This front end is now ``group``'s primary: serve it from the local replica."""
        self.routing.loaded.add(group)
        directory = self.engine.directory
        for uid in self.routing.users_of(group):
            self.proxies.unmirror(directory.by_id(uid))
        self.replication.load(group)
        self._restore_conferences(group)

    def _restore_conferences(self, group: int) -> None:
        """Bring back the conferences of ``group``'s organizers from their rosters."""
        directory = self.engine.directory
        proxies = self.proxies
        data = self.store.group(group)
        for row in sorted(data.conferences.values(), key=lambda r: r.conversation_id):
            stand_in = proxies.mirror(directory.by_id(row.organizer_id))
            members = [directory.by_id(uid) for uid in row.members]
            for member in members:
                if not self.routing.is_local(member):
                    proxies.mirror(member)
            self.engine.restore_conference(row, stand_in, members)

    def _demote(self, group: int) -> None:
        """``group`` is served elsewhere now (or nowhere): its users sign in there, and its
        conversations are handed over (their rosters are on the new primary already)."""
        routing = self.routing
        engine = self.engine
        routing.loaded.discard(group)
        engine.hand_over(group, HOST_CHANGED)
        directory = engine.directory
        uids = routing.users_of(group)
        for uid in uids:
            self.memberships.invited.pop(uid, None)  # their new home keeps them now
        for uid in uids:
            user = directory.by_id(uid)
            for ep in list(user.endpoints):
                if not isinstance(ep, StandIn):
                    routing.remember_moved(ep.token, group)
                    engine.sign_out(ep, HOME_CHANGED)
            engine.forget_user(user)
            # conferences hosted here keep them invited (they left for a new home): ring there
            pending = engine.invitations_for(user)
            if pending:
                stand_in = self.proxies.mirror(user)
                for invitation in pending:
                    engine.deliver(stand_in, invitation)

    def _rewatch(self, groups: set[int]) -> None:
        """Subscriptions of local endpoints to users whose home moved: subscribe there again,
        and tell the endpoint what it sees now."""
        directory = self.engine.directory
        routing = self.routing
        for ep in self.engine.registrar:
            by_home: dict[str, list[int]] = {}
            for tid in ep.subscriptions:
                target = directory.by_id(tid)
                if target.routing_group in groups:
                    home = routing.is_remote(target)
                    if home:
                        by_home.setdefault(home, []).append(tid)
            for home, tids in by_home.items():
                future = self.links.to(home).request(Watch(ep.id, ep.user.id, tuple(tids)))
                future.add_done_callback(functools.partial(self._rewatched, ep))

    def _rewatched(self, ep: Endpoint, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None or ep.signed_out:
            return
        now = self.engine.clock.now()
        for view in future.result():
            self.engine.deliver(ep, PresenceChanged(view, now))
