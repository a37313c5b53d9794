"""Open-loop schedules: when each simulated user does what, generated as the run goes.

Every activity of every signed-in user is a Poisson process at the model's rate, so the
schedule does not wait for the server: a slow server cannot slow the offered load down and
hide its own slowness (coordinated omission). Same seed, same schedule.

``Schedule`` streams the operations in time order with memory independent of the duration:
per kind, the pool's operations are one Poisson process at ``users x rate`` whose every
arrival goes to a user drawn uniformly, and is dropped if that user has not signed in yet
(thinning). Each user's operations of that kind are then a Poisson process at ``rate`` from
its sign-in on, independent of the others' (superposition; memoryless), which is the model.
Five such generators (one seeded random source each) and one for the conferences in
progress are merged by time: a 12-hour day of Lync's largest pool holds six cursors, not
tens of millions of planned operations. ``plan`` builds the same operations as a list (the
reference the tests compare the stream with).

A pool in its busy hour already has conferences under way: "5% of users in a conference at
any time" (SPEC 7). So that a run does not start with none and reach that level only after
one conference length, each user, as it signs in, organizes ``Poisson(conference_fraction /
mean size)`` conferences already in progress (``Planned.remaining``: the fraction of the
conference length still to run, uniform: the residual life of a fixed length). With the
conferences the user starts later at the model's rate, the expected number in progress is
then ``conferences_in_progress(model, signed-in users)`` at every moment of the run, ramp
included (``expected_conferences``).
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from bench.model import UserModel

#: a conference already in progress starts this long after its organizer's sign-in, so the
#: session is there when the driver reaches it
IN_PROGRESS_AFTER_S = 1.0


class Kind(Enum):
    PUBLISH = "publish"
    POLL = "poll"
    SUBSCRIBE = "subscribe"
    IM_SESSION = "im-session"
    CONFERENCE = "conference"


KINDS = tuple(Kind)


@dataclass(frozen=True, slots=True, order=True)
class Planned:
    at: float  # seconds from the start of the run
    user: int  # index among the simulated users
    kind: Kind
    #: a conference already in progress at the user's sign-in: the fraction of its length
    #: still to run (1.0: a whole operation, started at ``at``)
    remaining: float = 1.0


@dataclass(frozen=True, slots=True)
class Population:
    """Who is simulated: endpoints per user, contact lists, sign-in times (ascending)."""

    users: int
    endpoints: tuple[int, ...]
    contacts: tuple[tuple[int, ...], ...]
    sign_in_at: tuple[float, ...]


def rates(model: UserModel) -> dict[Kind, float]:
    """Operations per signed-in user per second, by kind."""
    return {
        Kind.PUBLISH: model.publications_per_s,
        Kind.POLL: model.polls_per_s,
        Kind.SUBSCRIBE: model.short_subscriptions_per_s,
        Kind.IM_SESSION: model.im_sessions_per_s,
        Kind.CONFERENCE: model.conferences_per_s,
    }


def conferences_in_progress(model: UserModel, users: float) -> float:
    """Conferences in progress at steady state among ``users`` signed-in users (Little's law:
    the fraction of users in one, divided by the mean size)."""
    return users * model.conference_fraction / model.mean_conference_size


def expected_conferences(model: UserModel, pop: Population, t: float) -> float:
    """Conferences the schedule has in progress at run time ``t``, in expectation: the steady
    level of the users signed in by then (so the harness can tell when the conference
    population has reached its steady level: ``conferences_in_progress(model, pop.users)``)."""
    signed_in = bisect.bisect_right(pop.sign_in_at, t - IN_PROGRESS_AFTER_S)
    return conferences_in_progress(model, signed_in)


def population(model: UserModel, users: int, ramp: float, seed: int) -> Population:
    """Endpoints and contact lists per user (SPEC section 7), sign-ins at ``ramp`` per second."""
    if users < 2:
        raise ValueError(f"users={users}: a load needs at least 2 users")
    if ramp <= 0:
        raise ValueError(f"ramp={ramp}: expected sign-ins per second > 0")
    rng = random.Random(seed)
    extra = model.endpoints_per_user - 1
    endpoints = tuple(1 + int(extra) + (1 if rng.random() < extra % 1 else 0) for _ in range(users))
    cap = min(model.contacts_max, users - 1)
    contacts: list[tuple[int, ...]] = []
    for u in range(users):
        n = max(0, min(cap, round(rng.gauss(model.contacts_mean, model.contacts_sd))))
        picks = rng.sample(range(users - 1), n)
        contacts.append(tuple(p if p < u else p + 1 for p in picks))  # never oneself
    sign_in_at = tuple(u / ramp for u in range(users))
    return Population(users, endpoints, tuple(contacts), sign_in_at)


#: one planned operation before it is a ``Planned``: (at, user, index in KINDS, remaining)
_Row = tuple[float, int, int, float]


def _arrivals(
    kind: int, rate: float, pop: Population, duration: float, seed: int
) -> Iterator[_Row]:
    """One kind's operations for the whole pool, in time order (see the module docstring)."""
    rng = random.Random(f"{seed}:{KINDS[kind].value}")
    total = rate * pop.users
    users, sign_in_at = pop.users, pop.sign_in_at
    expo, uniform = rng.expovariate, rng.random
    t = expo(total)
    while t < duration:
        u = int(uniform() * users)
        if t >= sign_in_at[u]:
            yield (t, u, kind, 1.0)
        t += expo(total)


def _in_progress(model: UserModel, pop: Population, duration: float, seed: int) -> Iterator[_Row]:
    """The conferences already under way that each user organizes as it signs in."""
    per_user = conferences_in_progress(model, 1)
    if per_user <= 0:
        return
    rng = random.Random(f"{seed}:in-progress")
    threshold = math.exp(-per_user)
    kind = KINDS.index(Kind.CONFERENCE)
    for u in sorted(range(pop.users), key=pop.sign_in_at.__getitem__):
        at = pop.sign_in_at[u] + IN_PROGRESS_AFTER_S
        if at >= duration:
            return
        remaining = []
        product = rng.random()  # Knuth's Poisson draw: per_user is small
        while product > threshold:
            remaining.append(1.0 - rng.random())
            product *= rng.random()
        for r in sorted(remaining):  # in the order a sort of the whole plan puts them
            yield (at, u, kind, r)


def _sources(model: UserModel, pop: Population, duration: float, seed: int) -> list[Iterator[_Row]]:
    out = [
        _arrivals(KINDS.index(kind), rate, pop, duration, seed)
        for kind, rate in rates(model).items()
        if rate > 0
    ]
    out.append(_in_progress(model, pop, duration, seed))
    return out


@dataclass(frozen=True, slots=True)
class Schedule:
    """Every operation of a run, generated in time order as it is iterated (again from the
    start on every iteration). Small and picklable: a driver worker is sent this, not a list."""

    model: UserModel
    pop: Population
    duration: float
    seed: int

    def __iter__(self) -> Iterator[Planned]:
        merged = heapq.merge(*_sources(self.model, self.pop, self.duration, self.seed))
        for at, user, kind, remaining in merged:
            yield Planned(at, user, KINDS[kind], remaining)

    def expected_operations(self) -> float:
        """How many operations the schedule holds, in expectation."""
        total = sum(rates(self.model).values())
        span = sum(max(0.0, self.duration - t) for t in self.pop.sign_in_at)
        in_progress = sum(1 for t in self.pop.sign_in_at if t + IN_PROGRESS_AFTER_S < self.duration)
        return total * span + conferences_in_progress(self.model, in_progress)


def plan(model: UserModel, pop: Population, duration: float, seed: int) -> list[Planned]:
    """Every operation of the run as one sorted list: the reference ``Schedule`` is checked
    against. Each source is drawn in full, then everything is sorted (memory grows with the
    duration: runs use ``Schedule``)."""
    out = [
        Planned(at, user, KINDS[kind], remaining)
        for source in _sources(model, pop, duration, seed)
        for at, user, kind, remaining in source
    ]
    out.sort()
    return out


def pick_size(mix: tuple[tuple[int, float], ...], rng: random.Random) -> int:
    x = rng.random()
    for size, weight in mix:
        x -= weight
        if x < 0:
            return size
    return mix[-1][0]
