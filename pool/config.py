"""Typed, frozen engine settings, validated once.

Values marked *assumed* are not documented by Microsoft (SPEC.md says so); they are settings
with the default SPEC gives. Errors name the field, the value and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


class ConfigError(ValueError):
    """A setting is out of range. The message names the field, value and expectation."""


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not (low <= value <= high):
        raise ConfigError(f"{name}={value!r} is out of range: expected {low:g}..{high:g}")


@dataclass(frozen=True, slots=True)
class Limits:
    """The documented limits of SPEC sections 3 to 5."""

    max_endpoints_per_user: int = 8
    max_contacts: int = 250  # policy may raise it to 1,000
    max_subscriptions: int = 200  # open subscriptions per user (assumed)
    max_note_bytes: int = 4096
    max_message_chars: int = 8000  # assumed (measured on the predecessor product)
    max_participants: int = 250
    max_conversations_per_user: int = 100  # open conversations of one user (assumed)
    max_batch: int = 1000  # user URIs in one GetPresence / Subscribe call
    max_users_per_registrar: int = 12_000

    def __post_init__(self) -> None:
        _check_range("max_endpoints_per_user", self.max_endpoints_per_user, 1, 8)
        _check_range("max_contacts", self.max_contacts, 1, 1000)
        _check_range("max_subscriptions", self.max_subscriptions, 1, 10_000)
        _check_range("max_note_bytes", self.max_note_bytes, 0, 25_600)
        _check_range("max_message_chars", self.max_message_chars, 1, 1_000_000)
        _check_range("max_participants", self.max_participants, 2, 1000)
        _check_range("max_conversations_per_user", self.max_conversations_per_user, 1, 10_000)
        _check_range("max_batch", self.max_batch, 1, 100_000)
        _check_range("max_users_per_registrar", self.max_users_per_registrar, 1, 1_000_000)


@dataclass(frozen=True, slots=True)
class Timers:
    """Durations in seconds."""

    registration_expiry: float = 600.0  # 300..900
    idle_inactive: float = 300.0  # no input for this long: Inactive (5..360 min)
    idle_away: float = 300.0  # then this much longer: Away (assumed)
    invitation_timeout: float = 120.0  # an unanswered invitation ends as "no answer" (assumed)
    immcu_buffer_window: float = 40.0  # joiners within this of the first message see it
    flow_control_timeout: float = 60.0  # an endpoint that reads nothing this long is dropped

    def __post_init__(self) -> None:
        _check_range("registration_expiry", self.registration_expiry, 300, 900)
        _check_range("idle_inactive", self.idle_inactive, 300, 21_600)
        _check_range("idle_away", self.idle_away, 1, 86_400)
        _check_range("invitation_timeout", self.invitation_timeout, 1, 3600)
        _check_range("immcu_buffer_window", self.immcu_buffer_window, 0, 3600)
        _check_range("flow_control_timeout", self.flow_control_timeout, 1, 3600)


@dataclass(frozen=True, slots=True)
class Throttling:
    """Lync's overload thresholds (``pool.throttle``): seconds, and requests per endpoint."""

    store_latency_limit: float = 12.0  # a store write this slow: "server too busy"
    holding_time_limit: float = 6.0  # average holding time above it: flow control
    holding_time_release: float = 3.0  # flow control ends once the average is below it
    outstanding_limit: int = 20  # requests under way per endpoint
    flow_controlled_outstanding: int = 1  # the same, under flow control
    held_request_limit: float = 60.0  # a request held longer is answered "too busy"
    retry_after: float = 10.0  # what a refused request is told to wait (assumed)

    def __post_init__(self) -> None:
        _check_range("store_latency_limit", self.store_latency_limit, 1e-6, 3600)
        _check_range("holding_time_limit", self.holding_time_limit, 1e-6, 3600)
        _check_range("holding_time_release", self.holding_time_release, 0, 3600)
        _check_range("outstanding_limit", self.outstanding_limit, 1, 10_000)
        _check_range("flow_controlled_outstanding", self.flow_controlled_outstanding, 1, 10_000)
        _check_range("held_request_limit", self.held_request_limit, 0.001, 86_400)
        _check_range("retry_after", self.retry_after, 0, 3600)
        if self.holding_time_release >= self.holding_time_limit:
            raise ConfigError(
                f"holding_time_release={self.holding_time_release!r} must be below "
                f"holding_time_limit={self.holding_time_limit!r} (Lync: 3 s and 6 s)"
            )
        if self.flow_controlled_outstanding > self.outstanding_limit:
            raise ConfigError(
                f"flow_controlled_outstanding={self.flow_controlled_outstanding!r} is more than "
                f"outstanding_limit={self.outstanding_limit!r}: expected at most it"
            )


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """What one front end's engine needs to know."""

    front_end_id: str = "fe1"
    pool_name: str = "pool01"
    address: str = "127.0.0.1:5061"  # advertised as users' home address
    routing_groups: int = 8  # groups in the pool (assumed: 8 per front end)
    event_queue_capacity: int = 1000  # events queued per endpoint before dropping
    immcu_buffer_messages: int = 50
    password_iterations: int = 50_000  # PBKDF2-SHA256
    limits: Limits = Limits()
    timers: Timers = Timers()
    throttling: Throttling = Throttling()

    def __post_init__(self) -> None:
        if not self.front_end_id:
            raise ConfigError("front_end_id='' is empty: expected a name like fe1")
        _check_range("routing_groups", self.routing_groups, 1, 10_000)
        _check_range("event_queue_capacity", self.event_queue_capacity, 1, 1_000_000)
        _check_range("immcu_buffer_messages", self.immcu_buffer_messages, 0, 10_000)
        _check_range("password_iterations", self.password_iterations, 1, 10_000_000)

    def replace(self, **changes: Any) -> EngineConfig:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {sorted(unknown)}: expected one of {sorted(known)}"
            )
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return EngineConfig(**values)
