"""`poolsim run --kill-front-end-at SECONDS`: crash one front end of an Enterprise pool during the
run and measure the fail-over as the simulated users live it.

At ``at`` seconds into the run, ``Failover`` asks the pool (``PoolAdmin.StopFrontEnd``, mode
crash, at a front end other than the victim) to kill a front end: the one given, else the one
with the most signed-in users of this driver at that moment, never ``fe1`` when another is up.
The users homed there are the *affected* users. From then on it measures:

* when the pool shows the victim down and none of its routing groups without a new primary
  (``GetPoolStatus`` polled every 0.1 s);
* when each affected endpoint has signed in again elsewhere (its ``Session`` does that by itself
  after an Unavailable or a Redirect), first and last;
* the first successful operation of an affected user at its new home front end, and per affected
  user the first one (the users served again);
* the fail-over itself is over once the pool has failed over, every affected endpoint has
  signed in again and an affected user has been served again.

After the fail-over it keeps watching (self-healing, on by default): when the victim is up
again (restarted by itself), when every group is healthy again (its replicas caught up, with
how many writes), when primaries were rebalanced back onto it, when the users of the groups
handed back have signed in there again, and when a user homed there before the crash is
served there again. The report's timeline lists them all.

The *fail-over window* runs from the kill through all of that: until the pool is whole again
(the victim restarted, every group healthy, primaries rebalanced and the users they moved
signed in again), or the run ends; when the pool does not heal itself (its status says
``self_healing`` off), until the fail-over is over. An operation that ends inside the window,
or that fails in a conversation the crash broke (hosted on the victim, or with an affected
participant), counts as caught in the fail-over: its errors are reported apart and its latency
is left out of the steady state. The verdict does not hold those errors against the pool; it
still fails the run when an acknowledged write was lost or no affected user was served
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool.client import AdminClient, PoolClient, Session
from pool.directory import routing_group_of
from pool.errors import PoolError
from pool.immcu import group_of

STATUS_POLL_S = 0.1
SESSION_POLL_S = 0.05
AVOID = "fe1"  # the front end not to kill when another will do


@dataclass(frozen=True, slots=True)
class KillPlan:
    """What to kill and when: ``at`` seconds into the run (the driver's clock)."""

    at: float
    front_end: str | None  # None: the one with the most signed-in users then (not fe1)
    admin_token: str
    addresses: tuple[str, ...]  # the pool's front ends, for the admin calls


def choose_victim(up: Iterable[str], homes: Iterable[str]) -> str:
    """The front end (of ``up``) home to the most of ``homes`` (one entry per signed-in user),
    never ``fe1`` when another is up; ties go to the lower id."""
    counts = Counter(homes)
    candidates = sorted(up)
    if not candidates:
        raise PoolError("no front end is up: nothing to kill")
    others = [fe for fe in candidates if fe != AVOID] or candidates
    return max(others, key=lambda fe: (counts.get(fe, 0), -candidates.index(fe)))


class Run(Protocol):
    """What a fail-over needs of the run it is part of (``bench.driver.Driver`` is one)."""

    @property
    def stopping(self) -> bool: ...

    @property
    def sessions(self) -> Mapping[int, Sequence[Session]]: ...

    def now(self) -> float: ...

    async def until(self, at: float) -> None: ...

    def uri(self, user: int) -> str: ...


class Failover:
    """Carries out a ``KillPlan`` during a ``Driver`` run and keeps what it measured."""

    def __init__(self, plan: KillPlan) -> None:
        self.plan = plan
        self.victim: str | None = None
        self.kill_at: float | None = None  # run seconds when the kill was asked for
        self.kill_answered_at: float | None = None
        self.window_end = math.inf  # run seconds; known once the pool is whole again
        self.failed_over_by: float | None = None  # the fail-over over (see _close_window)
        self.heals = True  # the pool restarts the victim by itself (its status says)
        self.rebalances = True  # and rebalances primaries once whole again
        self.pool_failed_over_at: float | None = None
        self.affected_users: set[int] = set()
        self.victim_groups: set[int] = set()  # routing groups whose primary the victim held
        self.affected_uris: dict[str, int] = {}
        self.affected_sessions: list[Session] = []
        self.signed_in_at_kill = 0
        self.first_reregistered_at: float | None = None
        self.all_reregistered_at: float | None = None
        self.served_again: dict[int, float] = {}  # affected user -> first success at new home
        self.restarted_at: float | None = None  # the victim up again
        self.healthy_at: float | None = None  # every group healthy again (caught up)
        self.rebalanced_at: float | None = None  # primaries spread again, some on the victim
        self.moved_back: list[Session] = []  # sessions of the groups the rebalance handed back
        self.settled_at: float | None = None  # the pool whole again: the window's end
        self.home_again_at: float | None = None  # an affected user served on the victim again
        self.writes_caught_up = 0
        self.error = ""

    # --- what the driver asks ---

    def in_window(self, at: float, end: float) -> bool:
        """Whether an operation intended at ``at`` that ended at ``end`` overlaps the window."""
        return self.kill_at is not None and end >= self.kill_at and at < self.window_end

    def during(self, t: float) -> bool:
        """Whether run second ``t`` is inside the window."""
        return self.kill_at is not None and self.kill_at <= t < self.window_end

    def broken(self, conversation_id: str, members: Iterable[int]) -> bool:
        """Whether the crash broke this conversation: hosted on the victim, or one of its
        members was homed there."""
        if self.kill_at is None or not conversation_id:
            return False
        return group_of(conversation_id) in self.victim_groups or any(
            m in self.affected_users for m in members
        )

    def succeeded(self, session: Session, end: float) -> None:
        """A call of ``session`` succeeded at ``end`` (run seconds)."""
        if self.kill_at is None or end < self.kill_at:
            return
        if session.front_end_id == self.victim:
            back = self.restarted_at is not None and session.user_uri in self.affected_uris
            if back and self.home_again_at is None:
                self.home_again_at = end
            return
        user = self.affected_uris.get(session.user_uri)
        if user is None or user in self.served_again:
            return
        self.served_again[user] = end
        if len(self.served_again) == 1:
            self._close_window()

    def _close_window(self) -> None:
        """The fail-over is over once the pool failed over, every affected endpoint signed in
        again and an affected user was served again: when the last of those three happened.
        The window ends then if the pool does not heal itself, else once it is whole again
        (``settled_at``)."""
        if (
            self.pool_failed_over_at is None
            or self.all_reregistered_at is None
            or not self.served_again
        ):
            return
        self.failed_over_by = max(
            self.pool_failed_over_at, self.all_reregistered_at, min(self.served_again.values())
        )
        if not self.heals:
            self.window_end = self.failed_over_by
        elif self.settled_at is not None:
            self.window_end = max(self.failed_over_by, self.settled_at)

    # --- the kill ---

    async def run(self, driver: Run) -> None:
        """Wait for the time, kill, then watch the pool and the affected sessions."""
        await driver.until(self.plan.at)
        if driver.stopping:
            self.error = "the run ended before the kill"
            return
        client = PoolClient(self.plan.addresses, reconnect=False)
        try:
            await self._kill_and_watch(driver, client)
        except PoolError as exc:
            self.error = f"{type(exc).__name__}: {exc.message}"
        finally:
            await client.close()

    async def _kill_and_watch(self, driver: Run, client: PoolClient) -> None:
        status = await self._status(client, None)
        self.heals = status.details.get("self_healing", "on") != "off"
        self.rebalances = status.details.get("rebalance_when_whole", "on") != "off"
        up = {f.id: f.address for f in status.front_ends if f.state == apb.FRONT_END_STATE_UP}
        homes = [ss[0].front_end_id for ss in driver.sessions.values()]
        victim = self.plan.front_end or choose_victim(up, homes)
        if victim not in up:
            raise PoolError(f"front end {victim} is not up: up are {', '.join(sorted(up))}")
        self.victim = victim
        self.victim_groups = {g.id for g in status.routing_groups if g.primary == victim}
        self.affected_users = {
            u for u, ss in driver.sessions.items() if ss[0].front_end_id == victim
        }
        self.affected_uris = {driver.uri(u).lower(): u for u in self.affected_users}
        self.affected_sessions = [s for u in self.affected_users for s in driver.sessions[u]]
        self.signed_in_at_kill = len(driver.sessions)
        others = [a for fe, a in sorted(up.items()) if fe != victim]
        if not others:
            raise PoolError(f"{victim} is the only front end up: killing it ends the pool")
        admin = AdminClient(client.channel(others[0]), self.plan.admin_token)
        self.kill_at = driver.now()
        await admin.stop_front_end(victim, "crash")
        self.kill_answered_at = driver.now()
        await asyncio.gather(self._watch_pool(driver, admin), self._watch_sessions(driver))
        if self.heals:
            await self._watch_moved_back(driver)

    async def _status(self, client: PoolClient, avoid: str | None) -> apb.PoolStatus:
        """The pool's status from the first front end that answers."""
        error: PoolError | None = None
        for address in client.addresses:
            if address == avoid:
                continue
            try:
                return await AdminClient(client.channel(address), self.plan.admin_token).status()
            except PoolError as exc:
                error = exc
        raise error or PoolError("no front end to ask")

    async def _watch_pool(self, driver: Run, admin: AdminClient) -> None:
        victim = self.victim or ""
        caught_up_before: int | None = None
        while not driver.stopping and self.rebalanced_at is None:
            with contextlib.suppress(PoolError):
                status = await admin.status()
                now = driver.now()
                states = {f.id: f.state for f in status.front_ends}
                caught = int(status.details.get("writes_caught_up", "0"))
                if caught_up_before is None:
                    caught_up_before = caught
                if self.pool_failed_over_at is None:
                    if states.get(victim) == apb.FRONT_END_STATE_DOWN and all(
                        g.primary and g.primary != victim for g in status.routing_groups
                    ):
                        self.pool_failed_over_at = now
                        self._close_window()
                elif self.restarted_at is None and states.get(victim) == apb.FRONT_END_STATE_UP:
                    self.restarted_at = now
                if self.restarted_at is not None:
                    self._watch_healing(driver, status, victim, now)
                    self.writes_caught_up = caught - caught_up_before
            if self.pool_failed_over_at is not None and (
                not self.heals or (not self.rebalances and self.healthy_at is not None)
            ):
                break  # no restart, or no rebalance, to wait for
            await asyncio.sleep(STATUS_POLL_S)

    def _watch_healing(self, driver: Run, status: apb.PoolStatus, victim: str, now: float) -> None:
        healthy = all(g.state == apb.ROUTING_GROUP_STATE_HEALTHY for g in status.routing_groups)
        if healthy and self.healthy_at is None:
            self.healthy_at = now
        primaries = [f.primaries for f in status.front_ends]
        on_victim = {g.id for g in status.routing_groups if g.primary == victim}
        if healthy and on_victim and max(primaries) - min(primaries) <= 1:
            self.rebalanced_at = now
            # the rebalance hands these groups back to the victim: their conversations end
            # (host-changed) as a consequence of the crash, like those of the fail-over
            self.victim_groups |= on_victim
            groups = len(status.routing_groups)
            self.moved_back = [
                s
                for u, ss in driver.sessions.items()
                if routing_group_of(driver.uri(u).lower(), groups) in on_victim
                for s in ss
            ]

    async def _watch_moved_back(self, driver: Run) -> None:
        """Until the pool is whole again: restarted, healthy, rebalanced (when it does) and
        every session of the groups handed back signed in there again; or the run ends."""
        while not driver.stopping:
            healed = self.healthy_at is not None and (
                self.rebalanced_at is not None or not self.rebalances
            )
            if healed and all(s.front_end_id == self.victim for s in self.moved_back):
                self.settled_at = driver.now()
                self._close_window()
                return
            await asyncio.sleep(SESSION_POLL_S)

    async def _watch_sessions(self, driver: Run) -> None:
        sessions = self.affected_sessions
        if not sessions:
            self.all_reregistered_at = driver.now()
        while sessions and not driver.stopping:
            moved = sum(1 for s in sessions if s.front_end_id != self.victim)
            if moved and self.first_reregistered_at is None:
                self.first_reregistered_at = driver.now()
            if moved == len(sessions):
                self.all_reregistered_at = driver.now()
                self._close_window()
                return
            await asyncio.sleep(SESSION_POLL_S)

    # --- the report ---

    def summary(self) -> dict[str, Any]:
        """What the report shows (seconds after the kill unless named ``*_at``)."""

        def after(t: float | None) -> float | None:
            return None if t is None or self.kill_at is None else t - self.kill_at

        recovery = (
            sorted(t - self.kill_at for t in self.served_again.values()) if self.kill_at else []
        )
        return {
            "front_end": self.victim,
            "requested": self.plan.front_end or "most signed-in users",
            "planned_at": self.plan.at,
            "killed_at": self.kill_at,
            "kill_answered_after": after(self.kill_answered_at),
            "pool_failed_over_after": after(self.pool_failed_over_at),
            "first_reregistered_after": after(self.first_reregistered_at),
            "all_reregistered_after": after(self.all_reregistered_at),
            "first_affected_success_after": recovery[0] if recovery else None,
            "affected_served_median_after": recovery[len(recovery) // 2] if recovery else None,
            "affected_served_last_after": recovery[-1] if recovery else None,
            "window_end": None if math.isinf(self.window_end) else self.window_end,
            "window_through": "the fail-over" if not self.heals else "the pool whole again",
            "failed_over_by": self.failed_over_by,
            "settled_after": after(self.settled_at),
            "signed_in_users_at_kill": self.signed_in_at_kill,
            "affected_users": len(self.affected_users),
            "affected_endpoints": len(self.affected_sessions),
            "affected_users_served_again": len(self.served_again),
            "restarted_after": after(self.restarted_at),
            "healthy_after": after(self.healthy_at),
            "writes_caught_up": self.writes_caught_up,
            "rebalanced_after": after(self.rebalanced_at),
            "home_again_after": after(self.home_again_at),
            "timeline": self.timeline(),
            "error": self.error,
        }

    def timeline(self) -> list[tuple[float, str]]:
        """(run seconds, what happened), in order: the crash and what followed."""
        victim = self.victim or "?"
        events = [
            (self.kill_at, f"{victim} crashed"),
            (self.pool_failed_over_at, f"fail-over: {victim}'s routing groups promoted"),
            (self.all_reregistered_at, "every affected endpoint signed in again elsewhere"),
            (self.restarted_at, f"{victim} restarted by itself, rejoined with its replicas"),
            (
                self.healthy_at,
                f"every group healthy: replicas caught up ({self.writes_caught_up} writes)",
            ),
            (self.rebalanced_at, f"primaries rebalanced: {victim} a home again"),
            (self.home_again_at, f"a user served on {victim} again"),
            (
                self.settled_at,
                "pool whole again: the users of the groups handed back signed in there; "
                "the fail-over window ends",
            ),
        ]
        return sorted((t, what) for t, what in events if t is not None)
