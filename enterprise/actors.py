"""A front end on Ray: ``FrontEndActor``, and the calls between actors (``RayTransport``).

``FrontEndActor`` hosts a ``FrontEndNode`` (engine, links, replicas), its own ``grpc.aio``
server and its own metrics endpoint, all on the actor's event loop. Peers call ``exchange``
with batches; the fabric actor (``enterprise.fabric_actor``) calls the rest.

Errors cross Ray as values (``enterprise.wire.Failure``: the status the gRPC adapter would
send), never as exceptions: a domain error raised on the far side arrives as the same domain
error, a ``Redirect`` with its home address.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeAlias, TypeVar

import ray
from prometheus_client import CollectorRegistry

from enterprise import admin
from enterprise.link import OnReply
from enterprise.local_store import LocalReplicaStore, failure_records, store_path
from enterprise.metrics import CrossNodeHistograms, EnterpriseCollector
from enterprise.node import FrontEndNode
from enterprise.options import PoolOptions as PoolOptions
from enterprise.peers import PeerAddress, PeerClient, PeerServer
from enterprise.replica import GroupData
from enterprise.routing_table import RoutingTable
from enterprise.wire import Failure, Message, Packed, Reply, pack, unpack
from pool import heap
from pool.api.metrics import Metrics, serve_metrics
from pool.api.server import FrontEndServer, start_front_end
from pool.clock import SystemClock
from pool.directory import Directory
from pool.errors import PoolError, Unavailable
from pool.store import UserRow

log = logging.getLogger("poolsim.enterprise")

#: a Ray actor handle (Ray's own generic type cannot follow ``.method.remote()``)
Handle: TypeAlias = Any

P = ParamSpec("P")
R = TypeVar("R")

CDR_FLUSH_INTERVAL = 1.0  # seconds between a front end's call detail records reaching the store
HEALTH = "health"  # the concurrency group (its own thread) heartbeats are answered on
CONCURRENCY_GROUPS = {HEALTH: 1}


def node_address(otherwise: str) -> str:
    """This Ray node's address, as Ray gives it to the other nodes (``otherwise`` outside
    Ray, as in the tests that start a front end on their own loop)."""
    if not ray.is_initialized():
        return otherwise
    address: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    return address


def answers(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R | Failure]]:
    """A remote method whose domain errors travel back as ``Failure`` values."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Failure:
        try:
            return await method(*args, **kwargs)
        except PoolError as exc:
            return Failure.of(exc)

    return wrapper


async def unwrap(ref: Awaitable[Any]) -> Any:
    result = await ref
    if isinstance(result, Failure):
        raise result.error()
    return result


class RayTransport:
    """``enterprise.wire.Transport`` over actor handles; a link's batches over the front ends'
    own connections (``peers``, ``enterprise.peers``) when the pool has them, else as calls."""

    def __init__(self, fabric: Handle, src: str = "", direct: bool = False) -> None:
        self.fabric_handle = fabric
        self.handles: dict[str, Handle] = {}
        self.peers = PeerClient(src, self._locate) if direct else None

    def _handle(self, dst: str) -> Handle:
        handle = self.handles.get(dst)
        if handle is None:
            raise Unavailable(f"front end {dst} is not up: try again")
        return handle

    async def exchange(self, dst: str, src: str, items: list[Message]) -> list[Reply]:
        packed = [pack(item) for item in items]
        if self.peers is not None:
            return await self.peers.exchange(dst, packed)
        replies: list[Reply] = await self._handle(dst).exchange.remote(src, packed)
        return replies

    def post(self, dst: str, src: str, items: list[Message], on_reply: OnReply) -> bool:
        connection = None if self.peers is None else self.peers.ready(dst)
        if connection is None:
            return False

        def replied(replies: list[tuple[Packed, Reply]]) -> None:
            for item, reply in replies:
                on_reply(dst, unpack(item), reply)

        connection.post([pack(item) for item in items], replied)
        return True

    async def _locate(self, dst: str) -> PeerAddress | None:
        address: PeerAddress | None = await self._handle(dst).peer_address.remote()
        return address

    async def fabric(self, method: str, *args: Any) -> Any:
        return await unwrap(getattr(self.fabric_handle, method).remote(*args))

    async def front_end(self, dst: str, method: str, *args: Any) -> Any:
        return await unwrap(getattr(self._handle(dst), method).remote(*args))


class FrontEndActor:
    """One front end (see the module docstring). Created by the fabric actor."""

    def __init__(self, fe_id: str, opts: PoolOptions, fabric: Handle) -> None:
        logging.basicConfig(level=logging.WARNING)
        heap.tune()
        self.fe_id = fe_id
        self.opts = opts
        self.transport = RayTransport(fabric, fe_id, direct=opts.peer_links == "direct")
        self.server: FrontEndServer | None = None
        self.peer_server: PeerServer | None = None
        self.peer_host = opts.host
        self.metrics_server: Any = None
        self.loops: list[asyncio.Task[None]] = []
        self.local: LocalReplicaStore | None = None
        self.heartbeat_delay = 0.0  # a failure drill's (slow_heartbeat)
        self.late_heartbeats = 0  # answered late for a drill
        self.starting: asyncio.Task[tuple[str, str, dict[int, int]]] | None = None

    async def start(
        self, rows: list[UserRow], port: int, metrics_port: int, fresh: bool, noticed: float
    ) -> tuple[str, str, dict[int, int]]:
        """Serve; returns the addresses and the replicas brought back from the local store
        (``{group: sequence}``; none when ``fresh``: the pool's first start). Endpoints the
        store still lists were lost when this front end went down and the pool did not take
        them when it noticed (``noticed``: then, wall clock; 0 if it never did): each gets its
        call detail record now.

        Once per actor: a call while a start runs (the fabric gave up waiting on a loaded
        machine and asks again) waits for that start, not a second one binding the same
        ports; a start that failed is undone, so the next call starts afresh."""
        if self.starting is None:
            self.starting = asyncio.get_running_loop().create_task(
                self._start(rows, port, metrics_port, fresh, noticed)
            )
        starting = self.starting
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:
            raise
        except Exception:
            if self.starting is starting:
                self.starting = None
                await self._undo_start()
            raise

    async def _undo_start(self) -> None:
        for task in self.loops:
            task.cancel()
        self.loops = []
        if self.server is not None:
            await self.server.stop(grace=0)
            self.server = None
        self._close_metrics_and_store()

    def _close_metrics_and_store(self) -> None:
        if self.peer_server is not None:
            self.peer_server.close()
            self.peer_server = None
        if self.transport.peers is not None:
            self.transport.peers.close()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
            self.metrics_server = None
        if self.local is not None:
            self.local.close()
            self.local = None

    async def _start(
        self, rows: list[UserRow], port: int, metrics_port: int, fresh: bool, noticed: float
    ) -> tuple[str, str, dict[int, int]]:
        opts = self.opts
        self.local = local = LocalReplicaStore(
            store_path(opts.data_dir, self.fe_id), durability=opts.durability
        )
        if fresh:
            local.clear()
        registry = CollectorRegistry()
        metrics = Metrics(registry)
        config = dataclasses.replace(
            opts.engine,
            front_end_id=self.fe_id,
            pool_name=opts.pool_name,
            routing_groups=opts.groups_per_front_end * opts.front_ends,
        )
        directory = Directory(config.routing_groups, config.password_iterations)
        flow = CrossNodeHistograms(registry)
        self.node = node = FrontEndNode(
            self.fe_id,
            config,
            directory,
            self.transport,
            observer=metrics,
            local=local,
            observe_batch=flow.batch,
            observe_replication=flow.replication,
        )
        engine = node.engine
        node.load_users(rows)
        heap.settle()  # the directory lives until the front end stops
        self.collector = EnterpriseCollector(node.routing, node.hub, registry, self.transport.peers)
        self.server = await start_front_end(
            engine,
            host=opts.host,
            port=port,
            admin_token=opts.admin_token,
            metrics=metrics,
            tls=opts.tls,
            service=node,
            serving=False,  # until the fabric's table says the pool serves
        )
        host = opts.host
        if host in ("0.0.0.0", "::"):
            host = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
            engine.address = f"{host}:{self.server.port}"
        if self.transport.peers is not None:
            self.peer_server = PeerServer(self._answer_now)
            # where the other Ray nodes reach this one, whatever the clients' --host
            self.peer_host = node_address(opts.host)
            await self.peer_server.start(self.peer_host)
        if metrics_port >= 0:
            try:
                self.metrics_server, _ = serve_metrics(opts.metrics_host, metrics_port, registry)
            except OSError as exc:
                if metrics_port == 0 or opts.metrics_base_port != 0:
                    raise  # a port the user chose: its clear error
                # the free port it had before it went down was taken meanwhile (an ephemeral
                # port of some client's socket, say): any free port, as it was given
                log.warning("%s: %s; serving metrics on another free port", self.fe_id, exc)
                self.metrics_server, _ = serve_metrics(opts.metrics_host, 0, registry)
            mhost = opts.metrics_host
            if mhost in ("0.0.0.0", "::"):
                mhost = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
            engine.metrics_address = f"{mhost}:{self.metrics_server.server_port}"
        metrics.watch(engine, "enterprise")
        # taken once both ports are bound: a start that fails there loses no records
        lost = local.take_registrations()
        for time_, record in failure_records(self.fe_id, lost, noticed or SystemClock().now()):
            node.store.add_cdr(time_, record)
        loop = asyncio.get_running_loop()
        self.loops = [
            loop.create_task(self._every(CDR_FLUSH_INTERVAL, self.flush_cdrs)),
            loop.create_task(self._every(opts.backup_interval, self.backup)),
        ]
        return engine.address, engine.metrics_address, local.freshness()

    async def _every(self, seconds: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await action()
            except Exception:  # the fabric is restarting or gone: try again next time
                log.warning("%s: periodic %s failed", self.fe_id, action.__name__, exc_info=True)

    # --- what peers ask ---

    async def exchange(self, src: str, items: list[Packed]) -> list[Reply]:
        """A batch from ``src`` (packed by ``RayTransport.exchange``), as a Ray call or from
        this front end's ``PeerServer``."""
        return await self.node.answer(src, [unpack(item) for item in items])

    def _answer_now(
        self, src: str, items: list[Packed]
    ) -> tuple[list[Reply], Awaitable[None] | None]:
        """A batch from ``src`` through this front end's ``PeerServer``."""
        return self.node.answer_now(src, [unpack(item) for item in items])

    async def peer_address(self) -> PeerAddress | None:
        """Where and with what secret the other front ends' connections reach this one's
        ``PeerServer`` (``None`` while it is not serving)."""
        server = self.peer_server
        if server is None or server.server is None:
            return None
        return self.peer_host, server.port, server.secret

    # --- what the fabric asks ---

    @ray.method(concurrency_group=HEALTH)
    async def heartbeat(self) -> tuple[dict[int, int], int, int] | None:
        """Freshness, endpoints, users signed in; ``None`` from an actor Ray restarted that
        has not been started again. Answered on a thread of its own (Ray's concurrency
        group, with its own event loop), never behind the front end's loop: a busy front end
        is not taken for a dead one. Reads only (copies taken under the GIL)."""
        if self.server is None:
            return None
        if self.heartbeat_delay:
            delay, self.heartbeat_delay = self.heartbeat_delay, 0.0
            await asyncio.sleep(delay)
            self.late_heartbeats += 1
        engine = self.node.engine
        groups = dict(self.node.store.groups)
        freshness = {g: data.seq for g, data in groups.items()}
        return freshness, len(engine.registrar), engine.users_signed_in

    @ray.method(concurrency_group=HEALTH)
    async def pid(self) -> int:
        """This actor's process id (a failure drill kills it)."""
        return os.getpid()

    @ray.method(concurrency_group=HEALTH)
    async def slow_heartbeat(self, seconds: float) -> None:
        """For failure drills: the next heartbeat answers ``seconds`` late, as on a machine
        too busy to schedule this process in time."""
        self.heartbeat_delay = seconds

    @ray.method(concurrency_group=HEALTH)
    async def late_heartbeats_answered(self) -> int:
        return self.late_heartbeats

    async def freeze_loop(self, seconds: float) -> None:
        """For failure drills: block this front end's event loop for ``seconds``, as a
        saturated front end would (its heartbeats still answer)."""
        time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is the point

    async def set_table(
        self,
        table: RoutingTable,
        pool_reason: str,
        handles: dict[str, Handle],
        counters: dict[str, int],
    ) -> None:
        self.transport.handles = handles
        if self.transport.peers is not None:
            self.transport.peers.set_table(table.addresses)
        self.collector.counters = counters
        self.node.set_table(table, pool_reason)
        if self.server is not None:
            await self.server.set_serving(not pool_reason)

    async def load_users(self, rows: list[UserRow]) -> None:
        self.node.load_users(rows)
        heap.settle()  # the directory lives until the front end stops

    async def install(self, group: int, data: GroupData) -> None:
        self.node.install(group, data)

    @answers
    async def copy_group(self, group: int, to_fe: str) -> None:
        await self.node.copy_group(group, to_fe)

    @answers
    async def catch_up(self, group: int, to_fe: str, since: int) -> int:
        return await self.node.catch_up(group, to_fe, since)

    async def group_data(self, group: int) -> GroupData | None:
        """This front end's replica of ``group``, if it holds one."""
        data = self.node.store.groups.get(group)
        return None if data is None else data.snapshot()

    async def drop_group(self, group: int) -> None:
        self.node.drop_group(group)

    @answers
    async def check_contacts(self, entries: bytes) -> None:
        self.node.check_contacts(admin.bulk_entries(entries))

    @answers
    async def provision_contacts(self, entries: bytes) -> int:
        written = await self.node.provision_contacts_here(admin.bulk_entries(entries))
        heap.settle()  # the contact lists live until the front end stops
        return written

    async def flush_cdrs(self) -> None:
        store = self.node.store
        if store.cdrs:
            cdrs, store.cdrs = store.cdrs, []
            await self.transport.fabric("add_cdrs", cdrs)

    async def backup(self) -> None:
        backups = self.node.take_backup()
        if backups:
            await self.transport.fabric("backup", backups)

    async def stop(self) -> None:
        """Sign everyone out, flush records and backups, stop serving."""
        for task in self.loops:
            task.cancel()
        if self.server is not None:
            await self.server.stop(grace=2.0)
        with contextlib.suppress(Exception):
            await self.flush_cdrs()
            await self.backup()
        self._close_metrics_and_store()
