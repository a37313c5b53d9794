"""The open-loop schedule produces the user model's rates (for a fixed seed); the streaming
``Schedule`` gives exactly the operations of the list-building reference ``plan``."""

from __future__ import annotations

import itertools
import math
import pickle
import tracemalloc
from pathlib import Path

import pytest

from bench.model import BUSY_HOUR_FACTOR, ModelError, UserModel, level_model, load_custom
from bench.schedule import (
    IN_PROGRESS_AFTER_S,
    Kind,
    Schedule,
    conferences_in_progress,
    expected_conferences,
    plan,
    population,
    rates,
)


def test_spec_pool_figures_for_80000_users() -> None:
    """SPEC section 7's pool-level figures follow from the per-user rates."""
    m = UserModel()
    users = 80_000
    assert users * m.publications_per_s == pytest.approx(89, abs=0.5)
    assert users * m.polls_per_s == pytest.approx(1333, abs=1)
    messages = users * m.im_sessions_per_s * m.messages_per_session
    assert messages == pytest.approx(420, rel=0.01)
    assert pytest.approx(0.3125) == BUSY_HOUR_FACTOR


def test_levels_scale_every_rate() -> None:
    high, medium, low = level_model("high"), level_model("medium"), level_model("low")
    assert medium.polls_per_hour == pytest.approx(0.6 * high.polls_per_hour)
    assert low.im_sessions_per_day == pytest.approx(0.3 * high.im_sessions_per_day)
    with pytest.raises(ModelError, match="level"):
        level_model("extreme")


def test_schedule_rates_match_the_model_within_tolerance() -> None:
    model = UserModel().scaled(20)  # enough events for a tight statistical check
    pop = population(model, 500, ramp=1e9, seed=7)
    duration = 120.0
    ops = plan(model, pop, duration, seed=7)
    assert ops == sorted(ops)
    expected = rates(model)
    for kind, rate in expected.items():
        n = sum(1 for p in ops if p.kind is kind and p.remaining == 1.0)
        mean = rate * pop.users * duration
        # Poisson: the count is within 5 standard deviations of its mean
        assert abs(n - mean) <= 5 * math.sqrt(mean) + 1, (kind, n, mean)


def test_schedule_is_repeatable_by_seed() -> None:
    model = UserModel().scaled(10)
    pop = population(model, 50, ramp=10, seed=1)
    assert plan(model, pop, 30, seed=1) == plan(model, pop, 30, seed=1)
    assert plan(model, pop, 30, seed=1) != plan(model, pop, 30, seed=2)


def test_population_contacts_and_endpoints() -> None:
    model = UserModel()
    pop = population(model, 2000, ramp=100, seed=3)
    sizes = [len(c) for c in pop.contacts]
    assert sum(sizes) / len(sizes) == pytest.approx(80, abs=3)
    assert sum(1 for n in sizes if n >= 100) / len(sizes) < 0.25
    assert all(u not in c for u, c in enumerate(pop.contacts))
    assert sum(pop.endpoints) / len(pop.endpoints) == pytest.approx(1.5, abs=0.05)
    assert pop.sign_in_at[100] == pytest.approx(1.0)


def test_no_operation_before_the_user_signs_in() -> None:
    model = UserModel().scaled(50)
    pop = population(model, 100, ramp=2, seed=5)
    for op in plan(model, pop, 60, seed=5):
        assert op.at >= pop.sign_in_at[op.user]
    assert any(op.kind is Kind.IM_SESSION for op in plan(model, pop, 60, seed=5))


def test_custom_level_from_toml(tmp_path: Path) -> None:
    f = tmp_path / "rates.toml"
    f.write_text("[model]\npolls_per_hour = 120\nconference_sizes = [[4, 0.5], [6, 0.5]]\n")
    m = load_custom(f)
    assert m.polls_per_hour == 120
    assert m.conference_sizes == ((4, 0.5), (6, 0.5))
    f.write_text("[model]\npols_per_hour = 1\n")
    with pytest.raises(ModelError, match="pols_per_hour"):
        load_custom(f)
    f.write_text("[model]\npolls_per_hour = -1\n")
    with pytest.raises(ModelError, match="polls_per_hour=-1"):
        load_custom(f)


@pytest.mark.parametrize(("users", "ramp", "seed"), [(300, 10.0, 1), (120, 1e9, 2), (50, 2.0, 9)])
def test_streaming_schedule_is_the_reference_plan(users: int, ramp: float, seed: int) -> None:
    """Same seed, same operations in the same order, whether streamed or built as a list."""
    model = UserModel().scaled(10)
    pop = population(model, users, ramp, seed)
    schedule = Schedule(model, pop, 120.0, seed)
    streamed = list(schedule)
    assert streamed == plan(model, pop, 120.0, seed)
    assert list(schedule) == streamed  # every iteration starts again from the start
    assert list(pickle.loads(pickle.dumps(schedule))) == streamed  # as a worker gets it
    assert streamed != list(Schedule(model, pop, 120.0, seed + 1))
    assert abs(len(streamed) - schedule.expected_operations()) < 5 * math.sqrt(len(streamed))


def test_streaming_memory_does_not_grow_with_the_duration() -> None:
    """Pulling operations from a 12-hour schedule holds a few cursors, not a list: the peak of
    traced memory while reading 40,000 operations stays far below what they would take."""
    model = UserModel()
    pop = population(model, 2000, ramp=100, seed=4)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        n = sum(1 for _ in itertools.islice(Schedule(model, pop, 12 * 3600.0, 4), 40_000))
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert n == 40_000
    assert peak < 1_000_000  # 40,000 Planned alone would be over 3 MB


def test_conferences_in_progress_from_the_start() -> None:
    """Each user organizes its share of the steady conference population as it signs in:
    Poisson(fraction / mean size) conferences with uniform remaining lengths."""
    model = UserModel()
    pop = population(model, 20_000, ramp=1e9, seed=6)
    ops = list(Schedule(model, pop, 5.0, seed=6))
    started = [p for p in ops if p.kind is Kind.CONFERENCE and p.remaining < 1.0]
    steady = conferences_in_progress(model, pop.users)
    assert steady == pytest.approx(20_000 * 0.05 / 4.55)  # mean size 4.55
    assert abs(len(started) - steady) <= 5 * math.sqrt(steady)
    assert all(p.at == pop.sign_in_at[p.user] + IN_PROGRESS_AFTER_S for p in started)
    mean_remaining = sum(p.remaining for p in started) / len(started)
    assert mean_remaining == pytest.approx(0.5, abs=0.1)
    assert all(0.0 < p.remaining < 1.0 for p in started)


def test_expected_conferences_follow_the_sign_ins() -> None:
    model = UserModel()
    pop = population(model, 1000, ramp=10, seed=1)  # everyone signed in after 100 s
    assert expected_conferences(model, pop, 0.0) == 0.0
    half = expected_conferences(model, pop, 50.0 + IN_PROGRESS_AFTER_S)
    assert half == pytest.approx(conferences_in_progress(model, 501))
    full = conferences_in_progress(model, 1000)
    assert expected_conferences(model, pop, 500.0) == pytest.approx(full)
