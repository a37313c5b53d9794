"""The overload decisions (``pool.throttle``), pure: the hysteresis of flow control, the
average holding time, "server too busy" after a slow store write, and the door's waiters."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest

from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool.config import ConfigError, Throttling
from pool.errors import PoolError, ServerTooBusy
from pool.events import EventQueue
from pool.registrar import Endpoint
from pool.throttle import HELD_TOO_LONG, SERVER_TOO_BUSY, FlowState, Throttle, next_state

LYNC = Throttling()
N, F = FlowState.NORMAL, FlowState.FLOW_CONTROLLED


@pytest.mark.parametrize(
    ("state", "average", "after"),
    [
        (N, 0.0, N),
        (N, 6.0, N),  # at the limit: not over it
        (N, 6.01, F),
        (F, 5.0, F),  # between release and limit: kept (hysteresis)
        (F, 3.0, F),
        (F, 2.99, N),
        (N, 4.0, N),  # in between from below: kept too
    ],
)
def test_hysteresis(state: FlowState, average: float, after: FlowState) -> None:
    assert next_state(state, average, LYNC) is after


def test_lyncs_defaults_and_checks() -> None:
    assert (LYNC.store_latency_limit, LYNC.holding_time_limit, LYNC.holding_time_release) == (
        12.0,
        6.0,
        3.0,
    )
    assert (LYNC.outstanding_limit, LYNC.flow_controlled_outstanding) == (20, 1)
    assert LYNC.held_request_limit == 60.0
    with pytest.raises(ConfigError, match="holding_time_release"):
        Throttling(holding_time_limit=2.0, holding_time_release=3.0)
    with pytest.raises(ConfigError, match="flow_controlled_outstanding"):
        Throttling(outstanding_limit=2, flow_controlled_outstanding=3)


def test_reasons_are_the_protos() -> None:
    name = pb.ErrorReason.Name
    assert name(pb.ERROR_REASON_SERVER_TOO_BUSY) == "ERROR_REASON_" + SERVER_TOO_BUSY
    assert name(pb.ERROR_REASON_HELD_TOO_LONG) == "ERROR_REASON_" + HELD_TOO_LONG


def test_a_slow_store_write_makes_it_too_busy_until_a_fast_one_or_retry_after() -> None:
    t = Throttle(Throttling(store_latency_limit=1.0, retry_after=5.0))
    t.store_write(0.5, now=100.0)
    assert t.busy_until == 0.0
    t.store_write(1.0, now=100.0)
    assert t.busy_until == 105.0
    error = t.too_busy()
    assert (error.retry_after, error.reason, t.refused) == (5.0, SERVER_TOO_BUSY, 1)
    assert error.metadata == {"retry-after-ms": "5000"}
    t.store_write(0.2, now=101.0)  # the queue is back
    assert t.busy_until == 0.0


def took(t: Throttle, seconds: float, now: float = 0.0) -> None:
    """A request answered ``seconds`` after it came, at ``now``."""
    t.started(now - seconds)
    t.finished(now - seconds, now)


def test_the_average_counts_answered_requests_and_those_under_way() -> None:
    t = Throttle(Throttling(holding_time_limit=6.0, holding_time_release=3.0))
    took(t, 1.0)
    t.started(10.0)
    t.started(12.0)
    t.finished(12.0, 15.0)  # 3 s
    # answered: 1 + 3; under way since 10.0, at 20.0: 10 s -> (1 + 3 + 10) / 3
    assert t.sample(20.0) == pytest.approx(14 / 3)
    assert t.state is N  # 4.67 is not over 6
    assert t.sample(21.0) == pytest.approx(11.0)  # only the one under way, now 11 s old
    assert t.state is F
    assert t.limit == 1
    assert t.episodes == 1
    t.finished(10.0, 22.0)
    assert t.in_flight == 0
    assert t.since_sum == 0.0  # reset exactly: no drift
    assert t.sample(23.0) == pytest.approx(12.0)
    assert t.sample(24.0) == 0.0  # nothing held: flow control ends
    assert t.state is N
    assert t.limit == 20
    assert t.flow_controlled(7) == 0


def test_the_loops_lag_counts_into_the_average_while_requests_come() -> None:
    """A request that came while the loop ran late waited that long before any handler saw
    it: the sample's worst lag is added to its average (not when no request came), once."""
    t = Throttle(Throttling(holding_time_limit=0.5, holding_time_release=0.25))
    t.lagged(0.2)
    t.lagged(0.4)
    t.lagged(0.1)  # the worst counts
    took(t, 0.05)
    assert t.sample(1.0) == pytest.approx(0.45)
    assert t.state is N  # not over 0.5
    t.lagged(0.6)
    took(t, 0.05)
    assert t.sample(2.0) == pytest.approx(0.65)
    assert t.state is F
    took(t, 0.05)
    assert t.sample(3.0) == pytest.approx(0.05)  # the lag is per sample
    assert t.state is N
    t.lagged(9.0)
    assert t.sample(4.0) == 0.0  # no request: no holding time


def test_requests_answered_together_count_one_by_one() -> None:
    """A Session stream's write answers several calls at once: each counts its own time."""
    t = Throttle(Throttling(holding_time_limit=6.0, holding_time_release=3.0))
    for came in (1.0, 2.0, 4.0):
        t.started(came)
    t.started(5.0)  # still under way after the write
    t.finished_many(3, 1.0 + 2.0 + 4.0, 10.0)  # 9 + 8 + 6 s
    assert (t.in_flight, t.since_sum) == (1, 5.0)
    assert t.sample(11.0) == pytest.approx((9 + 8 + 6 + 6) / 4)
    t.finished_many(1, 5.0, 12.0)
    assert (t.in_flight, t.since_sum) == (0, 0.0)


class FakeWaiter:
    def __init__(self, ep: Endpoint, arrived: float) -> None:
        self.ep = ep
        self.arrived = arrived
        self.admitted = False
        self.error: PoolError | None = None

    def admit(self) -> None:
        self.ep.outstanding += 1
        self.admitted = True

    def expire(self, cutoff: float, error: Callable[[float], PoolError]) -> None:
        self.error = error(self.arrived)


def endpoint(i: int) -> Endpoint:
    return Endpoint(
        id=f"ep{i}",
        user=SimpleNamespace(uri=f"sip:user{i}@contoso.com"),  # type: ignore[arg-type]  # uri only
        device="d",
        token=f"t{i}",
        registered_at=0.0,
        expires_at=0.0,
        queue=EventQueue(1),
        last_input=0.0,
    )


def test_the_door_lets_waiters_in_first_come_first_and_all_when_flow_control_ends() -> None:
    t = Throttle(Throttling(holding_time_limit=1.0, holding_time_release=0.5))
    t._enter(F)
    ep = endpoint(1)
    ep.outstanding = 1
    first, second = FakeWaiter(ep, 1.0), FakeWaiter(ep, 2.0)
    t.hold(ep, first)
    t.hold(ep, second)
    assert t.held == 2
    assert list(t.holding) == ["ep1"]
    ep.outstanding -= 1
    t.release(ep)
    assert first.admitted
    assert not second.admitted
    assert ep.outstanding == 1
    t._enter(N)  # the limit is 20 again: the rest come in
    assert second.admitted
    assert ep.outstanding == 2
    assert not t.holding


def test_a_request_held_over_the_limit_is_answered_too_busy() -> None:
    t = Throttle(Throttling(held_request_limit=60.0, retry_after=10.0))
    t._enter(F)
    ep = endpoint(2)
    ep.outstanding = 1
    old, young = FakeWaiter(ep, 100.0), FakeWaiter(ep, 130.0)
    t.hold(ep, old)
    t.hold(ep, young)
    t.sweep(159.0)
    assert old.error is None
    t.sweep(160.0)
    assert isinstance(old.error, ServerTooBusy)
    assert old.error.reason == HELD_TOO_LONG
    assert "waited 60 s" in old.error.message
    assert t.closed == 1
    assert young.error is None
    assert list(ep.waiters or ()) == [young]
    t.forget(ep, young)
    assert not t.holding
