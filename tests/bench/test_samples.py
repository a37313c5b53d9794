"""Gauge samples at bounded cost: recent seconds kept, older ones merged into exact means."""

from __future__ import annotations

import pytest

from bench.samples import Samples, merge, weighted_mean


def test_recent_samples_are_kept_and_older_ones_merged_per_ten_seconds_then_per_minute() -> None:
    s = Samples(live_s=30, tens_s=120)
    for t in range(600):
        s.append((float(t), float(t % 7), 2.0 * t))
    kept = list(s)
    # the last 30 s one by one, the 10-s spans before them, minutes before 600 - 120 s
    recent = [k for k in kept if k[-1] == 1]
    assert [k[0] for k in recent] == [float(t) for t in range(570, 600)]
    tens = [k for k in kept if k[-1] == 10]
    assert len(tens) == (570 - 480) // 10
    assert tens[0][0] == pytest.approx(484.5)  # the mean second of 480..489
    minutes = [k for k in kept if k[-1] == 60]
    assert len(minutes) == 480 // 60
    assert sum(k[-1] for k in kept) == 600  # every second stands somewhere, once
    assert [k[0] for k in kept] == sorted(k[0] for k in kept)
    # means stay exact across the tiers
    assert weighted_mean(kept, 1, 3) == pytest.approx(sum(t % 7 for t in range(600)) / 600)
    assert weighted_mean(kept, 2, 3) == pytest.approx(599.0)


def test_memory_is_bounded_by_the_tiers_not_the_run() -> None:
    s = Samples()  # 600 s live, 10-s means to 6 h, then minutes
    for t in range(12 * 3600):
        s.append((float(t), 50.0))
    assert len(s) == 600 + (6 * 3600 - 600) // 10 + 6 * 3600 // 60
    assert len(s) < 12 * 3600 / 10


def test_merge_weighs_and_fresh_samples_are_taken_once() -> None:
    assert merge([(0.0, 10.0, 1), (1.0, 40.0, 3)]) == (0.75, 32.5, 4)
    s = Samples(live_s=5, tens_s=60)
    for t in range(30):
        s.append((float(t), 1.0))
    assert len(s.take_fresh()) == 30  # raw, for the run folder
    assert s.take_fresh() == []
    assert weighted_mean([(0.0, 2.0), (1.0, 4.0)], 1, 2) == 3.0  # raw samples weigh 1


def test_a_drivers_health_keeps_its_seconds_bounded_and_travels_whole() -> None:
    import json

    from bench.selfcheck import Health

    h = Health()
    for t in range(2000):  # what its sampling loop appends, a second each
        h.samples.append((float(t), 40.0 + t % 3, 2.0, 5.0))
    h.window_cpu = (410.0, 10, 42.0)
    assert len(h.samples) < 2000
    back = Health.from_wire(json.loads(json.dumps(h.to_wire())))
    assert list(back.samples) == list(h.samples)
    s = back.summary()
    assert (s["cpu_mean"], s["cpu_max"]) == (41.0, 42.0)  # the window's
    back.window_cpu = (0.0, 0, 0.0)  # no window: the whole run's weighted mean
    assert back.summary()["cpu_mean"] == pytest.approx(sum(40 + t % 3 for t in range(2000)) / 2000)
