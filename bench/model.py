"""The Lync 2013 user model (SPEC section 7) as data, and the load levels of the stress tool.

Rates are per signed-in user. Busy-hour rates of daily activities are daily x 0.5 / 1.6
(half a day's sessions in a fifth of the day). Values SPEC leaves open are *assumed* and are
fields here, so a Custom level (a TOML file) can change them.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

BUSY_HOUR_FACTOR = 0.5 / 1.6


class ModelError(ValueError):
    """A user model setting is wrong: the message names the field, value and expectation."""


@dataclass(frozen=True, slots=True)
class UserModel:
    # sign-in
    signed_in_fraction: float = 0.8  # of enabled users
    endpoints_per_user: float = 1.5  # 1 + a second endpoint for half of them
    # contacts
    contacts_mean: float = 80.0
    contacts_sd: float = 25.0  # assumed: keeps "under 25% have 100 or more"
    contacts_max: int = 250
    batch_subscription: int = 40  # contacts subscribed at sign-in
    # two-party IM
    im_sessions_per_day: float = 6.0
    messages_per_session: int = 10
    message_interval_s: float = 15.0  # between messages of a session (assumed)
    typing_per_message: bool = True  # 2 INFO (typing on / off) per message
    message_bytes: int = 60  # assumed average IM length
    # group IM
    conference_fraction: float = 0.05  # of users in a conference at any time
    conference_sizes: tuple[tuple[int, float], ...] = ((4, 0.85), (6, 0.10), (11, 0.05))
    conference_minutes: float = 10.0  # assumed
    messages_per_conference_user: int = 5
    # presence
    polls_per_hour: float = 60.0
    poll_sizes: tuple[tuple[int, float], ...] = ((1, 0.5), (4, 0.3), (20, 0.2))  # assumed mix
    short_subscriptions_per_hour: float = 6.0
    short_subscription_s: float = 600.0
    publications_per_hour: float = 4.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ModelError(f"{f.name}={value} is negative: expected a rate or count >= 0")
        if not 0 < self.signed_in_fraction <= 1:
            raise ModelError(f"signed_in_fraction={self.signed_in_fraction}: expected 0 < x <= 1")
        if not 1 <= self.endpoints_per_user <= 8:
            raise ModelError(f"endpoints_per_user={self.endpoints_per_user}: expected 1..8")
        for name in ("conference_sizes", "poll_sizes"):
            mix = getattr(self, name)
            total = sum(w for _, w in mix)
            if not mix or abs(total - 1.0) > 1e-6 or any(n < 1 for n, _ in mix):
                raise ModelError(f"{name}={mix}: expected (size >= 1, weight) pairs summing to 1")

    # --- rates per signed-in user per second (busy hour) ---

    @property
    def im_sessions_per_s(self) -> float:
        return self.im_sessions_per_day * BUSY_HOUR_FACTOR / 3600

    @property
    def mean_conference_size(self) -> float:
        return sum(n * w for n, w in self.conference_sizes)

    @property
    def conferences_per_s(self) -> float:
        """Per user: conferences started so that the fraction in one holds (Little's law)."""
        concurrent = self.conference_fraction / self.mean_conference_size
        return concurrent / (self.conference_minutes * 60)

    @property
    def polls_per_s(self) -> float:
        return self.polls_per_hour / 3600

    @property
    def short_subscriptions_per_s(self) -> float:
        return self.short_subscriptions_per_hour / 3600

    @property
    def publications_per_s(self) -> float:
        return self.publications_per_hour / 3600

    def scaled(self, factor: float) -> UserModel:
        """Every rate multiplied by ``factor`` (load levels, --speedup)."""
        return replace(
            self,
            im_sessions_per_day=self.im_sessions_per_day * factor,
            conference_fraction=min(1.0, self.conference_fraction * factor),
            polls_per_hour=self.polls_per_hour * factor,
            short_subscriptions_per_hour=self.short_subscriptions_per_hour * factor,
            publications_per_hour=self.publications_per_hour * factor,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


LEVELS = {"high": 1.0, "medium": 0.6, "low": 0.3}


def level_model(level: str, custom: Path | None = None) -> UserModel:
    """The model at a stress-tool load level; ``custom`` reads explicit rates from TOML."""
    if level == "custom":
        if custom is None:
            raise ModelError("level custom needs a TOML file of rates (--model FILE)")
        return load_custom(custom)
    if level not in LEVELS:
        raise ModelError(f"level {level!r} is not one of high, medium, low, custom")
    return UserModel().scaled(LEVELS[level])


def load_custom(path: Path) -> UserModel:
    """A Custom level: a TOML table of UserModel fields; the rest keep the High values."""
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{path}: not valid TOML: {exc}") from exc
    table = data.get("model", data)
    known = {f.name for f in fields(UserModel)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ModelError(f"{path}: unknown field(s) {unknown}: expected some of {sorted(known)}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in ("conference_sizes", "poll_sizes"):
            value = tuple((int(n), float(w)) for n, w in value)
        values[key] = value
    return UserModel(**values)
