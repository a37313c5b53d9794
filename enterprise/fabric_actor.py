"""The fabric actor: the Windows Fabric role and the back-end store in one.

``FabricActor`` wraps the pure ``enterprise.fabric.Fabric``, starts the front-end actors
(``enterprise.actors.FrontEndActor``, one per Ray node while there are nodes, round robin),
pulls heartbeats every ``heartbeat_interval`` (Ray's own death signal, a ``RayActorError``,
marks an actor dead at once), carries out what every state change asks for (reload or copy a
group, push the routing table to every front end), and keeps the back-end SQLite store: the
directory, the lazy backups of every group, the call detail records.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections import Counter
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from enterprise.actors import CONCURRENCY_GROUPS, FrontEndActor, Handle, answers, unwrap
from enterprise.backend import backend_groups, lacking, log_recovery, user_row, write_backups
from enterprise.changes import (
    CatchUpTask,
    Change,
    CopyTask,
    FrontEndChanged,
    GroupRecovered,
    ReloadTask,
    ReplicaDropped,
    TableSwapped,
)
from enterprise.fabric import Fabric
from enterprise.heartbeats import MissedRounds, judge_round
from enterprise.local_store import lost_with
from enterprise.options import PoolOptions
from enterprise.placement import Promotion
from enterprise.replica import Backup, GroupData
from pool.cdr import CdrRecord, StoredRecord
from pool.clock import SystemClock
from pool.directory import Directory, ProvisionResult
from pool.errors import FailedPrecondition, NotFound, PoolError
from pool.sqlite_store import SqliteStore
from pool.status import FrontEndState, PoolStatusInfo, ResetType

log = logging.getLogger("poolsim.enterprise")

START_TIMEOUT = 60.0  # seconds a front end actor may take to come up


class FabricActor:
    """The pool manager and back-end store (see the module docstring)."""

    def __init__(self, opts: PoolOptions) -> None:
        logging.basicConfig(level=logging.WARNING)
        self.opts = opts
        self.fabric = Fabric(opts.fabric_config())
        self.clock = SystemClock()
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = SqliteStore(opts.data_dir / "backend.db", durability=opts.durability)
        self.directory = Directory(self.fabric.routing_groups, opts.engine.password_iterations)
        for row in self.store.load_users():
            self.directory.load(row)
        self.handles: dict[str, Handle] = {}
        self.ports: dict[str, tuple[int, int]] = {}
        self.endpoints: dict[str, int] = {}
        self.signed_in: dict[str, int] = {}
        self.lock = asyncio.Lock()
        self.heartbeats: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.hold = ""  # why the pool does not serve yet though it could (see start)
        self.rebalances = 0  # times primaries were rebalanced once the pool was whole again
        self.stopping: set[str] = set()  # stopped by the operator: not restarted
        self.answer_first: set[str] = set()  # stopped through themselves: answer, then stop
        #: crashed front ends Ray restarts, and when to start each again (monotonic seconds)
        self.restarting: dict[str, tuple[Handle, float]] = {}
        self.rejoining: set[str] = set()
        self.noticed: dict[str, float] = {}  # when each front end was last noticed down
        self.missed = MissedRounds(opts.heartbeat_misses)  # rounds unanswered in a row
        self.retiring: dict[str, asyncio.Future[None]] = {}  # actors stopping in the background
        self.restarts = 0  # crashed front ends started again by themselves
        self.caught_up = 0  # writes sent to returning replicas by catch-ups
        self.lost_in_recovery = 0  # surviving acknowledged writes quorum-loss recovery dropped
        self.last_recovery_lost = 0  # the same, in the last quorum-loss recovery

    # --- start-up ---

    async def start(self, hold: str = "") -> PoolStatusInfo:
        """Start every front end; returns once the pool serves (or cannot start). The pool may
        start before the last front ends register (the first-start table asks for fewer):
        their share of primaries is given to them once all have come up. A ``hold`` (e.g.
        "provisioning 60 users") keeps every front end answering UNAVAILABLE with it, and
        health NOT_SERVING, until ``release()``."""
        self.hold = hold
        ids = self.opts.front_end_ids()
        await asyncio.gather(*(self._launch(fe) for fe in ids))
        async with self.lock:
            if self.fabric.started:
                await self._apply(self.fabric.rebalance())
        self.heartbeats = asyncio.get_running_loop().create_task(self._heartbeat_loop())
        return self._status()

    def _options(self, fe_id: str) -> dict[str, Any]:
        index = int(fe_id[2:]) - 1
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))  # type: ignore[no-untyped-call]
        options: dict[str, Any] = {
            "num_cpus": 0,
            "max_concurrency": 100_000,
            "max_restarts": -1 if self.opts.restart_delay >= 0 else 0,
            "name": f"poolsim-{self.opts.pool_name}-{fe_id}-{secrets.token_hex(3)}",
        }
        if nodes:
            node = nodes[index % len(nodes)]
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
        return options

    def _ports(self, fe_id: str) -> tuple[int, int]:
        if fe_id in self.ports:
            return self.ports[fe_id]  # a restarted front end comes back where it was
        index, opts = int(fe_id[2:]) - 1, self.opts
        port = opts.base_port + index if opts.base_port else 0
        mport = opts.metrics_base_port
        return port, -1 if mport < 0 else (mport + index if mport else 0)

    async def _launch(self, fe_id: str) -> None:
        stopping = self.retiring.pop(fe_id, None)
        if stopping is not None:
            await stopping  # its port is free again
        me = ray.get_runtime_context().current_actor
        remote: Any = ray.remote  # its overloads do not list concurrency_groups
        actor_class: Any = remote(concurrency_groups=CONCURRENCY_GROUPS)(FrontEndActor)
        handle = actor_class.options(**self._options(fe_id)).remote(fe_id, self.opts, me)
        port, metrics_port = self._ports(fe_id)
        await self._join(fe_id, handle, port, metrics_port)

    async def _join(
        self, fe_id: str, handle: Handle, port: int, metrics_port: int, *, restarted: bool = False
    ) -> None:
        """Start the front end on ``handle`` and register it with the replicas it brought.
        Restarted, it comes back on the ports it had, its metrics' too (what scrapes them),
        and is counted before the table that says so is pushed (with the counters)."""
        rows = [user_row(self.directory, u.id) for u in self.directory]
        fresh, noticed = not self.fabric.started, self.noticed.pop(fe_id, 0.0)
        address, metrics_address, held = await asyncio.wait_for(
            handle.start.remote(rows, port, metrics_port, fresh, noticed), START_TIMEOUT
        )
        mport = int(metrics_address.rpartition(":")[2]) if metrics_port >= 0 else metrics_port
        self.ports[fe_id] = (int(address.rpartition(":")[2]), mport)
        async with self.lock:
            self.handles[fe_id] = handle
            self.restarts += restarted
            was_started = self.fabric.started
            now = self.clock.monotonic()
            changes = self.fabric.register(fe_id, address, metrics_address, now, held)
            await self._apply(changes, first_start=not was_started and self.fabric.started)
            whole = was_started and self.opts.rebalance_when_whole and self.fabric.whole
            if whole and (moves := self.fabric.rebalance()):
                self.rebalances += 1
                moved = sum(isinstance(m, Promotion) for m in moves)
                log.warning("pool whole again: primaries rebalanced (%d moves)", moved)
                await self._apply(moves)

    # --- carrying out changes ---

    async def _apply(
        self,
        changes: list[Change],
        *,
        first_start: bool = False,
        died: frozenset[str] = frozenset(),
    ) -> None:
        """Do what ``changes`` ask, in an order that loses nothing: data before the table
        that routes users to it, the table before copies (so writes after a copy follow it)."""
        if first_start:
            placement = self.fabric.placement
            if placement is not None:
                data = backend_groups(self.store, self.directory)
                await asyncio.gather(
                    *(
                        self._call(fe, "install", g, data.get(g, GroupData()))
                        for g, replicas in enumerate(placement.groups)
                        for fe in (replicas.primary, *replicas.secondaries)
                    )
                )
        reloads = [c for c in changes if isinstance(c, ReloadTask)]
        if reloads:
            data = backend_groups(self.store, self.directory)
            for task in reloads:
                await self._call(task.fe, "install", task.group, data.get(task.group, GroupData()))
        for change in changes:
            if isinstance(change, FrontEndChanged) and change.new is FrontEndState.DOWN:
                await self._down(change.fe, died=change.fe in died, reason=change.reason)
        if any(isinstance(c, TableSwapped) for c in changes) or first_start:
            await self._push_table()
        recovered = [c for c in changes if isinstance(c, GroupRecovered)]
        if recovered:
            log.warning(
                "routing groups out of quorum loss, their replicas back: %s",
                ", ".join(f"{c.group} ({c.primary} serving)" for c in recovered),
            )
        for change in changes:
            if isinstance(change, CopyTask | CatchUpTask):
                await self._bring_up(change)
            elif isinstance(change, ReplicaDropped):
                await self._call(change.fe, "drop_group", change.group)

    async def _bring_up(self, task: CopyTask | CatchUpTask) -> None:
        """Copy or catch up a replica; once acknowledged, tell the fabric. A failed one is
        ordered again by the heartbeat rounds (``Fabric.unfinished``)."""
        if isinstance(task, CopyTask):
            done, _ = await self._task(task.from_fe, "copy_group", task.group, task.to_fe)
        else:
            args = (task.group, task.to_fe, task.since)
            done, sent = await self._task(task.from_fe, "catch_up", *args)
            self.caught_up += max(0, sent) if done else 0
        if done:
            self.fabric.caught_up(task.group, task.to_fe)

    async def _call(self, fe: str, method: str, *args: Any) -> Any:
        return (await self._task(fe, method, *args))[1]

    async def _task(self, fe: str, method: str, *args: Any) -> tuple[bool, Any]:
        """(whether ``fe`` carried out ``method``, what it answered)."""
        handle = self.handles.get(fe)
        if handle is None:
            return False, None
        try:
            return True, await unwrap(getattr(handle, method).remote(*args))
        except (ray.exceptions.RayActorError, PoolError) as exc:
            log.warning("%s.%s failed: %s", fe, method, exc)
            return False, None

    async def _push_table(self) -> None:
        table = self.fabric.routing_table
        verdict = self.fabric.pool_serving()
        reason = "" if verdict.ok else verdict.detail
        if self.hold:
            reason = f"the pool is starting: {self.hold}; try again in a moment"
        handles = {fe: h for fe, h in self.handles.items() if fe in table.addresses}
        counters = self._counters()
        await asyncio.gather(
            *(
                self._call(fe, "set_table", table, reason, handles, counters)
                for fe in list(self.handles)
            )
        )

    async def _down(self, fe_id: str, *, died: bool, reason: str = "") -> None:
        """``fe_id`` is down. Stopped by the operator (or self-healing off): retired. Crashed:
        left to Ray's restart (forced if it hangs), started again after ``restart_delay``,
        and the endpoints lost with it get their call detail records now."""
        delay = self.opts.restart_delay
        self.noticed[fe_id] = noticed = self.clock.now()
        self.missed.forget(fe_id)
        crashed = fe_id not in self.stopping
        if not crashed or delay < 0:
            self.stopping.discard(fe_id)
            answer_first = fe_id in self.answer_first
            self.answer_first.discard(fe_id)
            await self._retire(fe_id, wait=not answer_first)
        elif (handle := self.handles.pop(fe_id, None)) is not None:
            self.endpoints.pop(fe_id, None)
            self.signed_in.pop(fe_id, None)
            if not died:
                with contextlib.suppress(Exception):
                    ray.kill(handle, no_restart=False)
            self.restarting[fe_id] = (handle, self.clock.monotonic() + delay)
            log.warning(
                "%s crashed (%s): Ray restarts it; it rejoins in %g s", fe_id, reason, delay
            )
        if crashed:  # its endpoints were lost with it, whether it comes back or not
            for time, record in lost_with(fe_id, self.opts.data_dir, noticed):
                self.store.add_cdr(time, record)

    def _restart_due(self) -> None:
        """Start again every crashed front end whose delay is over (one attempt at a time)."""
        now = self.clock.monotonic()
        for fe_id, (handle, due) in list(self.restarting.items()):
            if now >= due and fe_id not in self.rejoining:
                del self.restarting[fe_id]
                self.rejoining.add(fe_id)
                task = asyncio.get_running_loop().create_task(self._rejoin(fe_id, handle))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def _rejoin(self, fe_id: str, handle: Handle) -> None:
        try:
            port, metrics_port = self._ports(fe_id)
            await self._join(fe_id, handle, port, metrics_port, restarted=True)
            log.warning("%s restarted by itself and rejoined with its replicas", fe_id)
        except Exception as exc:  # still restarting, or gone: try again next round
            log.warning("%s: not restarted yet (%s); trying again", fe_id, exc)
            retry = self.clock.monotonic() + self.opts.heartbeat_interval
            self.restarting[fe_id] = (handle, retry)
        finally:
            self.rejoining.discard(fe_id)

    async def _retire(self, fe_id: str, *, wait: bool = True) -> None:
        """``fe_id`` is down: stop its actor if it still runs, and forget it. Without ``wait``
        it stops in the background: the call that asked (maybe through that very front end)
        is answered first, within its server's grace period; a start waits for that stop."""
        handle = self.handles.pop(fe_id, None)
        self.endpoints.pop(fe_id, None)
        self.signed_in.pop(fe_id, None)
        if handle is None:
            return
        stopping = asyncio.ensure_future(self._stop_actor(handle))
        self.retiring[fe_id] = stopping
        if wait:
            await stopping

    @staticmethod
    async def _stop_actor(handle: Handle) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(handle.stop.remote(), 5.0)
        with contextlib.suppress(Exception):
            ray.kill(handle)

    # --- failure detection ---

    async def _heartbeat_loop(self) -> None:
        interval = self.opts.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self._heartbeat_round(interval)
            except Exception:
                log.exception("heartbeat round failed")

    async def _heartbeat_round(self, interval: float) -> None:
        handles = dict(self.handles)
        results = await asyncio.gather(
            *(asyncio.wait_for(h.heartbeat.remote(), interval * 2) for h in handles.values()),
            return_exceptions=True,
        )
        async with self.lock:
            now = self.clock.monotonic()
            current = {
                fe: result
                for fe, result in zip(handles, results, strict=True)
                if self.handles.get(fe) is handles[fe]  # else stopped or started again since
            }
            judged = judge_round(self.fabric, self.missed, current, now)
            for fe, (endpoints, signed_in) in judged.answers.items():
                self.endpoints[fe], self.signed_in[fe] = endpoints, signed_in
            if judged.changes:
                await self._apply(judged.changes, died=judged.died)
            unfinished = self.fabric.unfinished()
            if unfinished:
                await self._apply(unfinished)
            self._restart_due()

    # --- what front ends ask (admin calls arrive at any front end and come here) ---

    def _counters(self) -> dict[str, int]:
        """The fabric's counters and the actor's own, for metrics and status."""
        counters = dataclasses.asdict(self.fabric.counters)
        counters["rebalances"] = self.rebalances
        counters["restarts"] = self.restarts
        counters["writes_caught_up"] = self.caught_up
        counters["writes_lost_in_recovery"] = self.lost_in_recovery
        counters["last_recovery_writes_lost"] = self.last_recovery_lost
        return counters

    def _status(self) -> PoolStatusInfo:
        users = Counter(u.routing_group for u in self.directory)
        known = set(self.fabric.front_ends())
        status = self.fabric.status(
            users,
            {fe: n for fe, n in self.endpoints.items() if fe in known},
            self.clock.monotonic(),
            users_signed_in=sum(self.signed_in.values()),
            wall_now=self.clock.now(),
        )
        status.extra.update({k: str(v) for k, v in self._counters().items()})
        status.extra["self_healing"] = "on" if self.opts.restart_delay >= 0 else "off"
        status.extra["rebalance_when_whole"] = "on" if self.opts.rebalance_when_whole else "off"
        if self.hold:
            status.extra["starting"] = self.hold
            detail = f"starting, not serving yet: {self.hold}; {status.quorum_detail}"
            status = dataclasses.replace(status, quorum_detail=detail)
        return status

    async def release(self) -> PoolStatusInfo:
        """The wait ``start(hold=...)`` named is over: serve."""
        async with self.lock:
            self.hold = ""
            await self._push_table()
        return self._status()

    async def status(self) -> PoolStatusInfo:
        """The pool now: endpoint counts are asked of every front end, not taken from the last
        heartbeat (an operator expects to see the sign-in just made)."""
        handles = dict(self.handles)
        results = await asyncio.gather(
            *(asyncio.wait_for(h.heartbeat.remote(), 2.0) for h in handles.values()),
            return_exceptions=True,
        )
        for fe, result in zip(handles, results, strict=True):
            if isinstance(result, tuple) and self.handles.get(fe) is handles[fe]:
                _, self.endpoints[fe], self.signed_in[fe] = result
        return self._status()

    @answers
    async def provision(
        self, prefix: str, domain: str, count: int, start_index: int, password: str
    ) -> tuple[ProvisionResult, int]:
        async with self.lock:
            rows, result = self.directory.plan_provision(
                prefix, domain, count, start_index, password
            )
            self.store.add_users(rows)
            for row in rows:
                self.directory.load(row)
            await asyncio.gather(*(self._call(fe, "load_users", rows) for fe in list(self.handles)))
        return result, len(self.directory)

    async def add_cdrs(self, cdrs: list[tuple[float, CdrRecord]]) -> None:
        for time, record in cdrs:
            self.store.add_cdr(time, record)

    async def backup(self, backups: list[Backup]) -> None:
        write_backups(self.store, backups)

    async def call_detail_records(self, since: float) -> list[StoredRecord]:
        await asyncio.gather(*(self._call(fe, "flush_cdrs") for fe in list(self.handles)))
        return list(self.store.list_cdr(since))

    @answers
    async def stop_front_end(self, fe_id: str, crash: bool, via: str = "") -> PoolStatusInfo:
        """``via``: the front end the request came through; if it is the one stopped, its
        actor stops in the background, after this call has been answered."""
        async with self.lock:
            state = self.fabric.state_of(fe_id)  # NotFound for an unknown id
            if state not in (FrontEndState.UP, FrontEndState.DRAINING):
                raise FailedPrecondition(f"front end {fe_id} is {state.value}: nothing to stop")
            handle = self.handles.get(fe_id)
            if crash:
                # as a power cut: the fabric finds out the way it would (Ray's death signal),
                # and Ray restarts the actor (self-healing) unless restart_delay is negative
                if handle is not None:
                    ray.kill(handle, no_restart=self.opts.restart_delay < 0)
                return self._status()
            self.stopping.add(fe_id)
            if via == fe_id:
                self.answer_first.add(fe_id)
            now = self.clock.monotonic()
            await self._apply(self.fabric.stop(fe_id, graceful=True, now=now))
            # its groups moved and the table push signed its users out: the drain is over
            await self._apply(self.fabric.stop(fe_id, graceful=False, now=now))
            return self._status()

    @answers
    async def start_front_end(self, fe_id: str) -> PoolStatusInfo:
        async with self.lock:
            if fe_id in self.handles:
                state = self.fabric.state_of(fe_id)
                raise FailedPrecondition(f"front end {fe_id} is {state.value}: it is running")
            if fe_id in self.rejoining:
                raise FailedPrecondition(
                    f"front end {fe_id} crashed and is being started again by itself: wait"
                )
            parked = self.restarting.pop(fe_id, None)
            if parked is not None:  # the operator is quicker than the restart delay
                with contextlib.suppress(Exception):
                    ray.kill(parked[0])
            if fe_id not in self.opts.front_end_ids():
                raise NotFound(
                    f"front end {fe_id} is not in pool {self.opts.pool_name}: its front ends are "
                    f"{', '.join(self.opts.front_end_ids())}"
                )
            await self._apply(self.fabric.start(fe_id))
        await self._launch(fe_id)
        return self._status()

    @answers
    async def reset(self, kind: ResetType, fe_id: str) -> tuple[list[int], PoolStatusInfo]:
        async with self.lock:
            target = fe_id if kind is ResetType.MACHINE_STATE_REMOVED else None
            lacking: dict[int, int] = {}
            if kind is ResetType.QUORUM_LOSS_RECOVERY and self.fabric.started:
                lacking = await self._lacking_from_backup()
            changes = self.fabric.reset(kind, fe_id=target)
            await self._apply(changes)
            if kind in (ResetType.QUORUM_LOSS_RECOVERY, ResetType.FROM_REPLICAS):
                self._report_recovery(kind, lacking)
        reloaded = sorted(c.group for c in changes if isinstance(c, ReloadTask))
        return reloaded, self._status()

    async def _lacking_from_backup(self) -> dict[int, int]:
        """What reloading each lost group from the backup loses (``backend.lacking``)."""
        placement = self.fabric.placement
        survivors = {g: placement[g].primary for g in self.fabric.lost_groups} if placement else {}
        replicas = {g: await self._call(fe, "group_data", g) for g, fe in survivors.items() if fe}
        return lacking(self.store, self.directory, replicas)

    def _report_recovery(self, kind: ResetType, lacking: dict[int, int]) -> None:
        self.last_recovery_lost = lost = sum(lacking.values())
        self.lost_in_recovery += lost
        log_recovery(kind, lacking)

    async def shutdown(self) -> None:
        """Stop every front end (signing users out, flushing records), then the store."""
        if self.heartbeats is not None:
            self.heartbeats.cancel()
        for task in list(self.tasks):
            task.cancel()
        for handle, _ in self.restarting.values():
            with contextlib.suppress(Exception):
                ray.kill(handle)
        self.restarting.clear()
        async with self.lock:
            await asyncio.gather(*(self._retire(fe) for fe in list(self.handles)))
            await asyncio.gather(*self.retiring.values(), return_exceptions=True)
            self.store.close()

    async def handles_of(self) -> dict[str, Handle]:
        return dict(self.handles)
