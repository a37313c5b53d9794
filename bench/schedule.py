"""Open-loop schedules: when each simulated user does what, drawn up before the run.

Every activity of every signed-in user is a Poisson process at the model's rate, so the
schedule does not wait for the server: a slow server cannot slow the offered load down and
hide its own slowness (coordinated omission). Same seed, same schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from bench.model import UserModel


class Kind(Enum):
    PUBLISH = "publish"
    POLL = "poll"
    SUBSCRIBE = "subscribe"
    IM_SESSION = "im-session"
    CONFERENCE = "conference"


@dataclass(frozen=True, slots=True, order=True)
class Planned:
    at: float  # seconds from the start of the run
    user: int  # index among the simulated users
    kind: Kind


@dataclass(frozen=True, slots=True)
class Population:
    """Who is simulated: endpoints per user, contact lists, sign-in times."""

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


def plan(model: UserModel, pop: Population, duration: float, seed: int) -> list[Planned]:
    """Every operation of the run, in time order."""
    rng = random.Random(seed ^ 0x5EED)
    out: list[Planned] = []
    by_kind = rates(model)
    for u in range(pop.users):
        start = pop.sign_in_at[u]
        for kind, rate in by_kind.items():
            if rate <= 0:
                continue
            t = start + rng.expovariate(rate)
            while t < duration:
                out.append(Planned(t, u, kind))
                t += rng.expovariate(rate)
    out.sort()
    return out


def pick_size(mix: tuple[tuple[int, float], ...], rng: random.Random) -> int:
    x = rng.random()
    for size, weight in mix:
        x -= weight
        if x < 0:
            return size
    return mix[-1][0]
