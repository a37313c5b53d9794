"""Shipping a primary's writes to its secondaries, and the replicas the fabric directs.

Persistent writes go through ``ReplicatingStore``; a call that wrote waits until every live
secondary of the group has applied the write (``replicated``). Writes nobody waits for (a
roster change made by a timer or by another front end's batch) leave soon anyway. Replicas
travel over the replica links (``Links.replicas_to``), apart from everything else. The fabric
installs copies (``install``), has a primary copy a group to a new secondary (``copy_group``),
drops replicas, and collects lazy backups for the back-end store (``take_backup``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from enterprise.link import Links
from enterprise.replica import Backup, GroupData, ReplicatingStore, Write
from enterprise.routing import Routing
from enterprise.wire import Install, Replicate
from pool.engine import Engine


class Replication:
    def __init__(
        self,
        engine: Engine,
        store: ReplicatingStore,
        routing: Routing,
        links: Links,
        observe: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.routing = routing
        self.links = links
        #: told every wait for the secondaries, in seconds (the metrics' histogram)
        self.observe = observe
        self._last_ship: asyncio.Future[None] | None = None
        self._ship_soon = False

    def schedule_ship(self) -> None:
        """The store took a write: ship it soon even if no call waits for it."""
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
        table = self.routing.table
        fe_id = self.routing.fe_id
        clock = self.engine.clock
        start = clock.monotonic()
        futures = []
        if table is not None:
            for g, (seq, writes) in pending.items():
                message = Replicate(g, seq, tuple(writes), seq - len(writes))
                for secondary in table.secondaries[g]:
                    if secondary != fe_id and secondary in table.addresses:
                        futures.append(self.links.replicas_to(secondary).request(message))
        if futures:
            # a secondary that does not answer is dead: the fabric will notice and rebuild
            await asyncio.gather(*futures, return_exceptions=True)
            self.observe(clock.monotonic() - start)
        if previous is not None:
            await previous

    def apply(self, message: Replicate) -> None:
        """Writes from ``message.group``'s primary (this is a secondary)."""
        self.store.apply_replicated(message.group, message.since, message.seq, message.writes)

    # --- replicas, directed by the fabric ---

    def load(self, group: int) -> None:
        """Serve ``group``'s users with the persistent data of the local replica."""
        directory = self.engine.directory
        data = self.store.group(group)
        users = [directory.by_id(uid) for uid in self.routing.users_of(group)]
        self.engine.load_persistent(users, data.contacts.rows(), data.presence.values())

    def install(self, group: int, data: GroupData) -> None:
        """Hold ``data`` as this front end's copy of ``group`` (a copy or a reload)."""
        self.store.install(group, data)
        if group in self.routing.loaded:
            self.load(group)

    async def copy_group(self, group: int, to_fe: str) -> None:
        """Send this primary's copy of ``group`` to ``to_fe``, its new secondary. Writes made
        after this go to it through the same link, so arrive after the copy."""
        snapshot = self.store.group(group).snapshot()
        await self.links.replicas_to(to_fe).request(Install(group, snapshot))

    async def catch_up(self, group: int, to_fe: str, since: int) -> int:
        """Send ``to_fe`` (a secondary back with its replica of ``group`` at ``since``) only
        the writes it missed, or a whole copy if this primary cannot tell what those are.
        Returns the number of writes sent (-1: a whole copy)."""
        missed = self.store.changes_since(group, since)
        if missed is None:
            await self.copy_group(group, to_fe)
            return -1
        seq, writes = missed
        if writes or seq > since:
            message = Replicate(group, seq, tuple(writes), since)
            await self.links.replicas_to(to_fe).request(message)
        return len(writes)

    def drop_group(self, group: int) -> None:
        if group not in self.routing.loaded:
            self.store.drop(group)

    def freshness(self) -> dict[int, int]:
        return {g: data.seq for g, data in self.store.groups.items()}

    def take_backup(self) -> list[Backup]:
        return [b for b in self.store.take_dirty() if b.group in self.routing.loaded]


async def _nothing() -> None:
    return None


def _done() -> Awaitable[None]:
    return _nothing()
