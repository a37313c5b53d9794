"""Overload as Lync meets it: "server too busy" while the store falls behind, flow control
while requests are held too long. Pure: no framework; time is passed in.

Two figures, with Lync's thresholds by default (``pool.config.Throttling``):

* **Store queue latency**: how long the latest store write took. A write at or over
  ``store_latency_limit`` (12 s) makes the front end *too busy*: new requests (all but
  SignOut) are refused with ``ServerTooBusy`` and a retry-after, before they run, so a refused
  request changes nothing. It lasts until a write is under the limit again or
  ``retry_after`` has passed since the slow one (then requests go in, and the next write
  measures again). Counted as Lync's "Local 503 Responses".
* **Average holding time of incoming requests**: every ``SAMPLE_S``, the mean time from a
  request's admission to its answer (on a Session stream: until the write that carries its
  reply is done), over the requests answered since the last sample and
  those still under way (at their age so far), plus the front end's lag: how late its event
  loop ran a timer since the last sample (``lagged``), which is how long a request that came in
  then waited before any handler saw it. Above ``holding_time_limit`` (6 s) the front
  end goes into *flow control*: each endpoint may have ``flow_controlled_outstanding`` (1)
  request under way, later ones wait at the door; below ``holding_time_release`` (3 s) it
  leaves, and ``outstanding_limit`` (20) applies again. A request that waited at the door
  longer than ``held_request_limit`` (60 s) is answered ``ServerTooBusy`` (``HELD_TOO_LONG``).
  The wait at the door is not holding time: the request is not being worked on, as Lync does
  not read a flow-controlled connection.

The flow-control states, written only by ``Throttle._enter`` (from ``sample``)::

    NORMAL          --average > holding_time_limit-->     FLOW_CONTROLLED
    FLOW_CONTROLLED --average < holding_time_release-->   NORMAL

The hot path reads ``busy_until`` and ``limit`` and an endpoint's ``outstanding`` (plain
numbers), and adds to a few sums; nothing else happens while the pool is not overloaded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from pool.config import Throttling
from pool.errors import PoolError, ServerTooBusy
from pool.registrar import Endpoint

SAMPLE_S = 1.0  # between samples of the average holding time
SERVER_TOO_BUSY = "SERVER_TOO_BUSY"  # ErrorInfo reasons (pool.api.status)
HELD_TOO_LONG = "HELD_TOO_LONG"


class FlowState(Enum):
    NORMAL = "normal"
    FLOW_CONTROLLED = "flow-controlled"


def next_state(state: FlowState, average: float, settings: Throttling) -> FlowState:
    """The flow-control state after a sample whose average holding time is ``average``:
    entered above the limit, left only below the (lower) release, kept in between."""
    if state is FlowState.NORMAL and average > settings.holding_time_limit:
        return FlowState.FLOW_CONTROLLED
    if state is FlowState.FLOW_CONTROLLED and average < settings.holding_time_release:
        return FlowState.NORMAL
    return state


class Waiter(Protocol):
    """A request (or a session's held calls) waiting at the door for its endpoint's turn."""

    arrived: float  # monotonic: when it (its oldest call) came

    def admit(self) -> None:
        """Its endpoint is under its limit: take a slot (``ep.outstanding += 1``) and go on,
        or wait again (``Throttle.hold``) with ``calls=0``."""

    def expire(self, cutoff: float, error: Callable[[float], PoolError]) -> None:
        """Answer what arrived at or before ``cutoff`` with ``error(arrived)``; wait again
        (``calls=0``) with what is left."""


class Throttle:
    """One front end's overload state. Owned by the engine; read by the transport."""

    def __init__(self, settings: Throttling) -> None:
        self.settings = settings
        self.state = FlowState.NORMAL
        #: requests are refused until this (monotonic; 0.0: not busy)
        self.busy_until = 0.0
        self.store_latency = 0.0  # the latest store write's, seconds
        #: requests an endpoint may have under way now
        self.limit = settings.outstanding_limit
        self.average = 0.0  # the last sample's average holding time
        self.lag = 0.0  # the loop's worst lateness in the current sample, seconds
        # the current sample: requests answered, their holding time; requests under way and
        # the sum of their admission times (their ages are ``in_flight * now - since_sum``)
        self.done = 0
        self.done_sum = 0.0
        self.in_flight = 0
        self.since_sum = 0.0
        #: endpoints with waiters at the door, by endpoint id
        self.holding: dict[str, Endpoint] = {}
        # counters
        self.refused = 0  # "server too busy": the store queue (Lync: Local 503 Responses)
        self.closed = 0  # held over the limit, answered "too busy" (also Local 503s)
        self.held = 0  # requests that waited at the door
        self.episodes = 0  # times flow control began

    # --- server too busy ---

    def store_write(self, seconds: float, now: float) -> None:
        """A store write took ``seconds`` and ended at ``now``."""
        self.store_latency = seconds
        if seconds >= self.settings.store_latency_limit:
            self.busy_until = now + self.settings.retry_after
        elif self.busy_until:
            self.busy_until = 0.0

    def too_busy(self) -> ServerTooBusy:
        """The error a request refused now gets (counted)."""
        self.refused += 1
        s = self.settings
        return ServerTooBusy(
            f"server too busy: a store write took {self.store_latency:.3g} s (the limit is "
            f"{s.store_latency_limit:g} s); nothing was done, try again in {s.retry_after:g} s",
            s.retry_after,
            SERVER_TOO_BUSY,
        )

    # --- holding time ---

    def started(self, now: float) -> None:
        self.in_flight += 1
        self.since_sum += now

    def finished(self, since: float, now: float) -> None:
        self.finished_many(1, since, now)

    def finished_many(self, n: int, since: float, now: float) -> None:
        """``n`` requests under way (``since``: the sum of their ``started`` times) were
        answered at ``now``."""
        self.in_flight -= n
        self.since_sum = self.since_sum - since if self.in_flight else 0.0  # no drift
        self.done += n
        self.done_sum += n * now - since

    def lagged(self, seconds: float) -> None:
        """The event loop ran a timer ``seconds`` late: requests that came meanwhile waited
        that long before a handler took them (time the handlers cannot see)."""
        if seconds > self.lag:
            self.lag = seconds

    def sample(self, now: float) -> float:
        """Close the current sample: the average holding time (with the loop's lag), the
        flow-control state, and held requests past the limit answered. Returns the average."""
        n = self.done + self.in_flight
        total = self.done_sum + self.in_flight * now - self.since_sum
        self.average = max(0.0, total / n) + self.lag if n else 0.0
        self.done, self.done_sum, self.lag = 0, 0.0, 0.0
        state = next_state(self.state, self.average, self.settings)
        if state is not self.state:
            self._enter(state)
        self.sweep(now)
        return self.average

    def _enter(self, state: FlowState) -> None:
        self.state = state
        s = self.settings
        if state is FlowState.FLOW_CONTROLLED:
            self.episodes += 1
            self.limit = s.flow_controlled_outstanding
        else:
            self.limit = s.outstanding_limit
            for ep in list(self.holding.values()):
                self.release(ep)

    # --- the door ---

    def hold(self, ep: Endpoint, waiter: Waiter, calls: int = 1) -> None:
        """``waiter`` waits for ``ep``'s turn (``calls``: requests it adds to the count)."""
        if ep.waiters is None:
            ep.waiters = deque()
        ep.waiters.append(waiter)
        self.holding[ep.id] = ep
        self.held += calls

    def release(self, ep: Endpoint) -> None:
        """``ep`` may be under its limit now: let its waiters in, first come first."""
        waiters = ep.waiters
        while waiters and ep.outstanding < self.limit:
            waiters.popleft().admit()
        if not waiters:
            self.holding.pop(ep.id, None)

    def forget(self, ep: Endpoint, waiter: Waiter) -> None:
        """``waiter`` no longer waits (its call was cancelled, its stream ended)."""
        waiters = ep.waiters
        if waiters and waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            self.holding.pop(ep.id, None)

    def sweep(self, now: float) -> None:
        """Answer the requests held longer than the limit."""
        cutoff = now - self.settings.held_request_limit
        for ep in list(self.holding.values()):
            waiters = ep.waiters or deque()

            def error(arrived: float, ep: Endpoint = ep) -> ServerTooBusy:
                return self._held_too_long(ep, now - arrived)

            for waiter in [w for w in waiters if w.arrived <= cutoff]:
                waiters.remove(waiter)
                waiter.expire(cutoff, error)
            if not ep.waiters:
                self.holding.pop(ep.id, None)

    def _held_too_long(self, ep: Endpoint, waited: float) -> ServerTooBusy:
        self.closed += 1
        s = self.settings
        return ServerTooBusy(
            f"server too busy: this request of {ep.uri} (endpoint {ep.id}) waited {waited:.0f} s "
            f"behind its {self.limit} outstanding (flow control: the front end's average "
            f"holding time went over {s.holding_time_limit:g} s; the limit is "
            f"{s.held_request_limit:g} s); it was not run, try again in {s.retry_after:g} s",
            s.retry_after,
            HELD_TOO_LONG,
        )

    # --- what the metrics read ---

    def flow_controlled(self, endpoints: int) -> int:
        """Connections (endpoints) under flow control now: all of them while it is on."""
        return endpoints if self.state is FlowState.FLOW_CONTROLLED else 0
