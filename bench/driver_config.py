"""What a load driver is given and keeps: its configuration, the ledger of acknowledged writes,
the status names it counts answers by, and the steady-state yardsticks of its window gate."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.model import UserModel
from bench.schedule import Kind
from bench.stats import THROTTLED
from pool.api.status import code_of as status_code_of
from pool.client import TransportError
from pool.errors import PoolError, ServerTooBusy

DRAIN_S = 10.0  # at the end, in-flight operations get this long to finish
ACCEPT_WAIT_S = 15.0  # the Lync client accepts an unanswered IM invitation after 15 s
PUBLISHED = ((3500, 0.45), (6500, 0.3), (12500, 0.1), (15500, 0.1), (9500, 0.05))
#: the row of the report where each planned kind's latency, late starts and skips go
OP_NAME = {
    Kind.PUBLISH: "publish",
    Kind.POLL: "poll",
    Kind.SUBSCRIBE: "subscribe",
    Kind.IM_SESSION: "im-invite",
    Kind.CONFERENCE: "conference-create",
}
SETTLE_S = 5.0  # at the end, messages in flight get this long to arrive
READ_RETRY_S = 0.25  # an event reader whose front end went away tries again after this
SIGN_OUT_BATCH = 200  # endpoints signed out at once at the end
LEDGER_TRIES = 3  # reading back one acknowledged write: attempts before it counts as unreadable
UNCERTAIN_KEPT = 8  # failed writes kept per user after its last acknowledged one
UNDELIVERED_AFTER_S = 120.0  # a message not delivered by then is counted undelivered, forgotten
SWEEP_S = 10.0  # how often the driver forgets what it no longer needs


def code_of(exc: BaseException) -> str:
    """A status name for the stress tool's 'responses by status code'; the pool's "server
    too busy" (UNAVAILABLE with a retry-after) is ``THROTTLED``, counted apart from errors."""
    if isinstance(exc, ServerTooBusy):
        return THROTTLED
    if isinstance(exc, TransportError):
        return exc.code.name
    if isinstance(exc, PoolError):
        return status_code_of(exc).name
    return "DEADLINE_EXCEEDED" if isinstance(exc, TimeoutError) else "INTERNAL"


@dataclass(frozen=True, slots=True)
class DriverConfig:
    address: str
    user_indices: tuple[int, ...]  # which users of the population this driver plays
    #: every front end of the pool (Enterprise), ``address`` first; empty: ``address`` alone
    addresses: tuple[str, ...] = ()
    prefix: str = "user"
    domain: str = "contoso.com"
    password: str = "poolsim"
    duration: float = 60.0
    speedup: float = 1.0  # IM pacing and subscription lengths shrink by it
    channels: int = 4
    #: how simulated endpoints send their calls: "session" (one FrontEnd.Session stream per
    #: endpoint, calls and events together) or "unary" (one RPC per call, an Events stream)
    transport: str = "session"
    max_in_flight: int = 2000
    seed: int = 1
    #: the measurement window opens no later than this (run seconds; None: when the steady
    #: state is reached, see ``bench.selfcheck.WindowGate``); tests set it
    window_at: float | None = None

    def uri(self, user: int) -> str:
        return f"sip:{self.prefix}{user}@{self.domain}"

    def start_addresses(self, channel: int) -> str | tuple[str, ...]:
        """What channel ``channel``'s client is given: the pool's front ends, rotated so that
        each channel starts its sign-ins at a different one."""
        if len(self.addresses) < 2:
            return self.address
        k = channel % len(self.addresses)
        return self.addresses[k:] + self.addresses[:k]


@dataclass
class Ledger:
    """Acknowledged persistent writes, read back at the end to prove none was lost.

    ``uncertain`` keeps, per user, the writes tried after the last acknowledged one that failed:
    a failure (a crash under way, say) does not prove the write was not applied, so reading
    one of those back is no loss; reading back anything older is.

    Bounded per user: the latest acknowledged value and at most ``UNCERTAIN_KEPT`` failed
    ones after it; a user with more (``overflowed``) whose read-back matches none of them is
    unverifiable, not lost (the value may be one of those forgotten)."""

    presence: dict[int, tuple[int, str]] = field(default_factory=dict)
    uncertain: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    overflowed: set[int] = field(default_factory=set)

    def acknowledged(self, user: int, value: tuple[int, str]) -> None:
        self.presence[user] = value
        self.uncertain.pop(user, None)
        self.overflowed.discard(user)

    def failed(self, user: int, value: tuple[int, str]) -> None:
        kept = self.uncertain.setdefault(user, [])
        kept.append(value)
        if len(kept) > UNCERTAIN_KEPT:
            del kept[0]
            self.overflowed.add(user)


def offered_calls_per_s(model: UserModel, users: int, speedup: float) -> float:
    """Calls per second the model offers ``users`` signed-in users in the steady state (the
    gate's yardstick for "calls in flight back at their baseline")."""
    typing = 2 if model.typing_per_message else 0
    per_user = (
        model.polls_per_s
        + model.publications_per_s
        + model.short_subscriptions_per_s
        + model.im_sessions_per_s * (2 + (1 + typing) * model.messages_per_session)
        + model.conferences_per_s
        * model.mean_conference_size
        * (1 + (1 + typing) * model.messages_per_conference_user)
    )
    return users * per_user


def steady_conferences(model: UserModel, users: int, speedup: float) -> float:
    """Conferences in progress in the steady state (Little's law: rate x length)."""
    return users * model.conferences_per_s * model.conference_minutes * 60 / speedup
