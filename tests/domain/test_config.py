"""Settings validation: errors name the field."""

from __future__ import annotations

from typing import Any

import pytest

from pool.config import ConfigError, EngineConfig, Limits, Timers


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("registration_expiry", 100),
        ("registration_expiry", 901),
        ("idle_inactive", 299),
        ("idle_away", 0),
        ("invitation_timeout", 0),
        ("immcu_buffer_window", -1),
        ("flow_control_timeout", 0),
    ],
)
def test_timers_out_of_range(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"^{field}="):
        Timers(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_endpoints_per_user", 9),
        ("max_endpoints_per_user", 0),
        ("max_contacts", 1001),
        ("max_note_bytes", 25_601),
        ("max_participants", 1),
        ("max_participants", 1001),
        ("max_message_chars", 0),
    ],
)
def test_limits_out_of_range(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"^{field}="):
        Limits(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("routing_groups", 0),
        ("event_queue_capacity", 0),
        ("immcu_buffer_messages", -1),
        ("password_iterations", 0),
    ],
)
def test_engine_config_out_of_range(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"^{field}="):
        EngineConfig(**{field: value})


def test_registration_expiry_message_names_value_and_range() -> None:
    with pytest.raises(ConfigError) as info:
        Timers(registration_expiry=100)
    assert str(info.value) == "registration_expiry=100 is out of range: expected 300..900"


def test_empty_front_end_id() -> None:
    with pytest.raises(ConfigError, match="front_end_id"):
        EngineConfig(front_end_id="")


def test_replace_unknown_setting_names_it() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        EngineConfig().replace(bogus=1)


def test_replace_validates() -> None:
    with pytest.raises(ConfigError, match="event_queue_capacity"):
        EngineConfig().replace(event_queue_capacity=0)
    assert EngineConfig().replace(event_queue_capacity=5).event_queue_capacity == 5


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_defaults_match_spec() -> None:
    config = EngineConfig()
    assert (
        config.limits.max_endpoints_per_user,
        config.limits.max_contacts,
        config.limits.max_subscriptions,
        config.limits.max_note_bytes,
        config.limits.max_message_chars,
        config.limits.max_participants,
    ) == (8, 250, 200, 4096, 8000, 250)
    assert (
        config.timers.registration_expiry,
        config.timers.idle_inactive,
        config.timers.idle_away,
        config.timers.immcu_buffer_window,
        config.timers.flow_control_timeout,
    ) == (600, 300, 300, 40, 60)
    assert config.immcu_buffer_messages == 50


def test_bounds_are_inclusive() -> None:
    assert Timers(registration_expiry=300).registration_expiry == 300
    assert Timers(registration_expiry=900).registration_expiry == 900
    assert Limits(max_endpoints_per_user=1).max_endpoints_per_user == 1
