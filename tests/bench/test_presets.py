"""``poolsim run --preset``: a preset's values are defaults, an option given beside it wins
(even when it equals the option's own default), and bad population settings exit 2."""

from __future__ import annotations

import argparse

import pytest

from bench.presets import AFTER_RAMP_S, LARGEST_POOL, PRESETS, Given, apply
from bench.run import run_model
from bench.run_options import RunOptions
from pool.cli import build_parser


def _run_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    run = action.choices["run"]
    assert isinstance(run, argparse.ArgumentParser)
    return run


def _parsed(*argv: str) -> argparse.Namespace:
    return apply(build_parser().parse_args(["run", *argv]))


def test_the_largest_pool_is_lyncs() -> None:
    a = _parsed("--preset", "largest-pool")
    assert (a.edition, a.front_ends, a.users) == ("enterprise", 12, 80_000)
    assert a.signed_in_fraction == 1.0
    assert a.endpoints_per_user == 1.9
    assert a.level == "low"
    assert a.heartbeat_interval == 2.0  # 12 front ends on a few cores: 6 s to be declared down
    assert round(a.users * a.signed_in_fraction * a.endpoints_per_user) == 152_000
    # long enough for everyone to sign in at its ramp, then settle and measure
    assert a.duration == 80_000 / a.ramp + AFTER_RAMP_S


def test_an_option_given_beside_a_preset_keeps_its_value_even_the_default() -> None:
    a = _parsed("--users", "8000", "--preset", "largest-pool", "--front-ends", "3")
    assert a.users == 8000
    assert a.front_ends == 3  # the option's own default, given: not the preset's 12
    assert a.edition == "enterprise"
    assert a.duration == 8000 / LARGEST_POOL.values["ramp"] + AFTER_RAMP_S  # follows --users
    assert _parsed("--preset", "largest-pool", "--duration", "1m").duration == 60.0


def test_without_a_preset_the_defaults_are_the_options_own() -> None:
    a = _parsed()
    assert (a.edition, a.front_ends, a.users) == ("standard", 3, 3000)
    assert a.signed_in_fraction is None


def test_every_option_a_preset_sets_can_tell_given_from_default() -> None:
    actions = {a.dest: a for a in _run_parser()._actions}
    for preset in PRESETS.values():
        for dest in [*preset.values, *(preset.derived or {})]:
            assert isinstance(actions[dest], Given), f"{preset.name} sets --{dest}"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--signed-in-fraction", "0"),
        ("--signed-in-fraction", "1.5"),
        ("--endpoints-per-user", "0.5"),
        ("--endpoints-per-user", "nine"),
    ],
)
def test_a_bad_population_setting_is_a_usage_error(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["run", option, value])
    assert exited.value.code == 2
    assert option in capsys.readouterr().err


def test_the_run_model_takes_the_population_settings() -> None:
    plain = run_model(RunOptions(level="low"))
    given = run_model(RunOptions(level="low", signed_in_fraction=1.0, endpoints_per_user=1.9))
    assert (plain.signed_in_fraction, plain.endpoints_per_user) == (0.8, 1.5)
    assert (given.signed_in_fraction, given.endpoints_per_user) == (1.0, 1.9)
    assert given.polls_per_hour == plain.polls_per_hour
