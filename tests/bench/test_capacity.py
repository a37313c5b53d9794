"""USL fitting, N-1 sizing (SPEC sections 1 and 2) and `poolsim plan` without a real load."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench import plan
from bench.capacity import (
    FIRST_START,
    LYNC_USERS_PER_FE,
    UslFit,
    fit_usl,
    format_sizing,
    front_ends_for,
    lync_figure,
)
from bench.plan_answer import point_line


def usl_points(
    lam: float, sigma: float, kappa: float, ns: list[float]
) -> list[tuple[float, float]]:
    return [(n, lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))) for n in ns]


# --- Universal Scalability Law ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("lam", "sigma", "kappa", "ns"),
    [
        (2.0, 0.05, 0.001, [1, 2, 4, 8, 16, 32, 64]),
        (100.0, 0.2, 0.01, [1, 3, 5, 10, 20]),
        (0.5, 1e-4, 1e-8, [1000, 2000, 4000, 8000, 16000, 32000, 64000]),  # users, not threads
        (1.0, 0.0, 1e-3, [1, 5, 10, 20, 40]),
    ],
)
def test_usl_fit_recovers_known_parameters(
    lam: float, sigma: float, kappa: float, ns: list[float]
) -> None:
    fit = fit_usl(usl_points(lam, sigma, kappa, ns))
    assert fit.lam == pytest.approx(lam, rel=1e-4)
    assert fit.sigma == pytest.approx(sigma, rel=1e-3, abs=1e-9)
    assert fit.kappa == pytest.approx(kappa, rel=1e-3, abs=1e-12)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    for n in ns:
        assert fit.throughput(n) == pytest.approx(
            usl_points(lam, sigma, kappa, [n])[0][1], rel=1e-4
        )


def test_usl_fit_without_coherency_has_no_peak() -> None:
    fit = fit_usl(usl_points(3.0, 0.1, 0.0, [1, 2, 4, 8, 16]))
    assert fit.kappa == 0.0
    assert fit.sigma == pytest.approx(0.1, rel=1e-4)
    assert fit.peak_n() == math.inf


def test_usl_fit_of_linear_scaling() -> None:
    fit = fit_usl([(1, 5.0), (2, 10.0), (3, 15.0)])
    assert fit.lam == pytest.approx(5.0)
    assert (fit.sigma, fit.kappa) == (0.0, 0.0)
    assert fit.peak_n() == math.inf
    assert fit.n_at_fraction_of_linear(0.5) == math.inf


def test_usl_fit_of_noisy_points_is_close() -> None:
    exact = usl_points(2.0, 0.03, 5e-4, [1, 2, 4, 8, 16, 32, 64])
    wobble = [1.01, 0.99, 1.02, 0.98, 1.0, 1.01, 0.99]
    fit = fit_usl([(n, x * w) for (n, x), w in zip(exact, wobble, strict=True)])
    assert 0.99 < fit.r2 < 1.0
    assert fit.lam == pytest.approx(2.0, rel=0.1)
    assert fit.peak_n() == pytest.approx(math.sqrt(0.97 / 5e-4), rel=0.15)


def test_peak_and_fraction_of_linear() -> None:
    fit = UslFit(lam=1.0, sigma=0.05, kappa=0.001, r2=1.0)
    peak = fit.peak_n()
    assert peak == pytest.approx(math.sqrt(0.95 / 0.001))
    assert fit.throughput(peak) > fit.throughput(peak * 0.9)
    assert fit.throughput(peak) > fit.throughput(peak * 1.1)
    n = fit.n_at_fraction_of_linear(0.5)
    assert fit.throughput(n) / (fit.lam * n) == pytest.approx(0.5)
    assert fit.n_at_fraction_of_linear(1.0) == 1.0
    assert UslFit(1.0, 0.1, 0.0, 1.0).n_at_fraction_of_linear(0.5) == pytest.approx(11.0)
    with pytest.raises(ValueError, match="fraction"):
        fit.n_at_fraction_of_linear(0.0)


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([], "at least 3 points"),
        ([(1, 1.0), (2, 2.0)], "at least 3 points"),
        ([(1, 1.0), (2, 2.0), (0, 3.0)], "must be finite and > 0"),
        ([(1, 1.0), (2, -2.0), (3, 3.0)], "must be finite and > 0"),
        ([(1, 1.0), (2, 0.0), (3, 3.0)], "must be finite and > 0"),
        ([(1, 1.0), (2, math.nan), (3, 3.0)], "must be finite and > 0"),
        ([(1, 1.0), (1, 1.1), (2, 2.0)], "3 distinct"),
    ],
)
def test_usl_fit_rejects_bad_points(points: list[tuple[float, float]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_usl(points)


# --- N-1 sizing ------------------------------------------------------------------------------


def test_spec_worked_example_30000_users() -> None:
    """SPEC 1: 5 FEs is 7,500 each after one failure (too many); 6 FEs is 6,000 (fine)."""
    s = front_ends_for(30_000, 6_660)
    assert s.front_ends == 6
    assert s.per_fe_all_up == 5_000
    assert s.per_fe_one_down == 6_000
    assert (s.fits, s.pools_needed, s.users_per_pool) == (True, 1, 30_000)
    assert any("on 5 FEs" in r and "7,500" in r and "too many" in r for r in s.reasons)
    assert any("on 6 FEs" in r and "6,000 after one failure" in r for r in s.reasons)
    assert lync_figure(30_000) == s
    assert LYNC_USERS_PER_FE < 30_000 / (5 - 1)  # 5 is rejected by the rule itself


def test_at_least_three_front_ends() -> None:
    s = front_ends_for(100, 6_660)
    assert s.front_ends == 3
    assert any("at least 3" in r for r in s.reasons)
    assert front_ends_for(13_320, 6_660).front_ends == 3  # 13,320 / 2 = 6,660 exactly
    assert front_ends_for(13_321, 6_660).front_ends == 4


def test_twelve_front_ends_is_the_most_in_a_pool() -> None:
    assert front_ends_for(73_260, 6_660).front_ends == 12  # 11 x 6,660
    assert front_ends_for(73_260, 6_660).fits
    over = front_ends_for(73_261, 6_660)
    assert not over.fits
    assert over.pools_needed == 2
    assert front_ends_for(30_000, 6_660, max_fe=5).pools_needed == 2


def test_80000_users_need_two_pools_at_lyncs_figure() -> None:
    s = lync_figure(80_000)
    assert (s.fits, s.pools_needed, s.users_per_pool, s.front_ends) == (False, 2, 40_000, 8)
    assert s.total_front_ends == 16
    assert s.per_fe_one_down == pytest.approx(40_000 / 7)
    assert any("7,273 after one failure" in r and "73,260" in r for r in s.reasons)


def test_pool_user_limit_applies_even_when_front_ends_would_cope() -> None:
    s = front_ends_for(100_000, 20_000)  # 7 FEs would do, but 80,000 users per pool at most
    assert (s.pools_needed, s.users_per_pool, s.front_ends) == (2, 50_000, 4)
    assert any("exceed 80,000 per pool" in r for r in s.reasons)
    assert front_ends_for(90_000, 50_000, max_pool_users=100_000).pools_needed == 1


def test_200000_users_need_several_pools() -> None:
    s = lync_figure(200_000)
    assert (s.pools_needed, s.front_ends, s.users_per_pool) == (3, 12, 66_667)
    assert s.pools_needed * s.users_per_pool >= 200_000
    assert s.users_per_pool <= 80_000
    assert s.per_fe_one_down <= LYNC_USERS_PER_FE


def test_first_start_table_is_spec_literal() -> None:
    assert FIRST_START == {
        2: 1,
        3: 3,
        4: 3,
        5: 4,
        6: 5,
        7: 5,
        8: 6,
        9: 7,
        10: 8,
        11: 9,
        12: 10,
    }
    s = lync_figure(30_000)
    assert s.first_start == 5
    assert any("needs 5 of them running for its first start" in r for r in s.reasons)
    assert lync_figure(200_000).first_start == 10


@pytest.mark.parametrize(
    ("users", "per_fe", "kwargs"),
    [
        (0, 6_660, {}),
        (10, 0.5, {}),
        (10, math.inf, {}),
        (10, 6_660, {"max_fe": 13}),
        (10, 6_660, {"max_fe": 2}),
        (10, 6_660, {"max_pool_users": 0}),
    ],
)
def test_sizing_rejects_bad_input(users: int, per_fe: float, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=r"expected|FEs"):
        front_ends_for(users, per_fe, **kwargs)


def test_format_sizing_shows_both_figures() -> None:
    text = format_sizing(
        lync_figure(30_000), front_ends_for(30_000, 3_000), measured_label="measured here"
    )
    assert "measured here" in text
    assert "Lync 2013 figure" in text
    assert "6,660" in text
    assert "3,000" in text
    assert "7,500 after one failure" in text
    only = format_sizing(lync_figure(30_000))
    assert "measured" not in only


# --- poolsim plan, without a load ------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="poolsim plan")
    plan.add_arguments(parser)
    return parser.parse_args(argv)


def test_plan_no_measure_sizes_with_lyncs_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plan"
    assert plan.main(parse(["--target-users", "30000", "--no-measure", "--out", str(out)])) == 0
    text = capsys.readouterr().out
    assert "no measurement" in text
    assert "6,660" in text
    assert "on 5 FEs: 30,000 / 5 = 6,000 each, 7,500 after one failure" in text
    doc = json.loads((out / "plan.json").read_text())
    assert doc["measured"] is False
    assert doc["points"] == []
    assert doc["fit"] is None
    assert doc["sizing"]["target_users"] == 30_000
    assert doc["sizing"]["measured"] is None
    assert doc["sizing"]["lync"]["front_ends"] == 6
    assert doc["sizing"]["lync"]["first_start"] == 5
    assert sorted(p.name for p in out.iterdir()) == ["plan.json"]  # no run was made


def test_plan_no_measure_80000_users(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p"
    assert plan.main(parse(["--target-users", "80000", "--no-measure", "--out", str(out)])) == 0
    assert "pools needed" in capsys.readouterr().out
    lync = json.loads((out / "plan.json").read_text())["sizing"]["lync"]
    assert (lync["pools_needed"], lync["front_ends"], lync["total_front_ends"]) == (2, 8, 16)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--no-measure"], "needs --target-users"),
        (["--target-users", "0", "--no-measure"], "at least 1"),
        (["--step", "1"], "--step"),
        (["--start-users", "1"], "at least 2 users"),
        (["--max-runs", "0"], "--max-runs"),
    ],
)
def test_plan_rejects_contradictory_options(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plan.main(parse([*argv, "--out", str(tmp_path / "p")])) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def fake_report(
    users: int, calls: int, p99: float, cpu: float, ok: bool, *, result: str = ""
) -> dict[str, Any]:
    """The keys of a bench.report.build dict that plan reads (a 10 s window)."""
    status = "ok" if ok else "fail"
    return {
        "config": {
            "users": users,
            "signed_in": round(users * 0.8),
            "duration": 20.0,
            "thresholds": {"p99_ms": 100.0},
        },
        "window": {"seconds": 10.0, "blocked_by": []},
        "operations": {
            "poll": {"p99": p99, "window": {"p99": p99 / 2}},
            "publish": {"p99": p99, "window": {"p99": p99}},
        },
        "front_ends": {"fe1": {"cpu_mean": cpu}},
        "driver": {"saturated": False, "drivers": {}},
        "server_latency": {"rows": []},
        "total_calls": calls * 2,
        "total_errors": 0,
        "window_calls": calls,
        "window_errors": 0,
        "verdict": {
            "result": result or ("PASS" if ok else "FAIL"),
            "pass": ok,
            "checks": [
                {"check": "measurement window", "status": "ok", "ok": True, "measured": ""},
                {
                    "check": "p99 latency in the window (worst: publish)",
                    "status": status,
                    "ok": ok,
                    "measured": f"{p99} ms",
                    "target": "< 100 ms",
                },
                {"check": "errors", "status": "ok", "ok": True},
            ],
        },
    }


def test_point_from_report() -> None:
    p = plan.point_from_report(fake_report(2000, 5000, 40.0, 55.0, True), 2000, 120.0, Path("x"))
    assert (p.users, p.signed_in, p.front_ends, p.throughput) == (2000, 1600, 1, 500.0)
    assert (p.worst_operation, p.worst_p99_ms, p.cpu_percent, p.passed) == (
        "publish",
        40.0,
        55.0,
        True,
    )
    q = plan.point_from_report(fake_report(2000, 5000, 400.0, 55.0, False), 2000, 120.0, Path("x"))
    assert q.failed_checks == ["p99 latency in the window (worst: publish)"]
    assert (q.limit_kind, q.passed) == (plan.POOL, False)
    assert "p99 of publish" in q.limit
    fast = plan.point_from_report(
        fake_report(100, 500, 20.0, 5.0, True), 100, 100.0, Path("x"), speedup=20.0
    )
    assert (fast.effective_users, fast.per_fe) == (2000.0, 2000.0)


def test_slow_clients_with_a_fast_pool_are_not_the_pools_limit() -> None:
    r = fake_report(2000, 5000, 400.0, 30.0, False)
    r["server_latency"]["rows"] = [
        {"operation": "publish", "rpc": "PublishPresence", "server_p99_ms": 0.8, "gap": True}
    ]
    p = plan.point_from_report(r, 2000, 100.0, Path("x"))
    assert p.passed is True  # for the pool
    assert p.limit_kind == plan.NONE
    assert p.note.startswith("machine: clients saw p99 of publish")
    # the table says so, beside the run's own verdict, as the answer under it counts it
    assert point_line(p).split("\n")[0].endswith("PASS for the pool (the run: FAIL)")
    r["server_latency"]["rows"][0]["server_p99_ms"] = 150.0  # the pool itself is slow
    q = plan.point_from_report(r, 2000, 100.0, Path("x"))
    assert (q.passed, q.limit_kind) == (False, plan.POOL)
    assert "FAIL (pool: " in point_line(q)
    assert "pool-side 150.0 ms" in q.limit
    # the handlers were fast, but calls waited inside the pool: a second's average holding
    # time (arrival to reply written, the loop's lag too) over the target is the pool's
    r["server_latency"]["rows"][0]["server_p99_ms"] = 0.8
    r["front_ends"]["fe1"]["holding_max_s"] = 0.099
    assert plan.point_from_report(r, 2000, 100.0, Path("x")).passed is True
    r["front_ends"]["fe1"]["holding_max_s"] = 0.25
    h = plan.point_from_report(r, 2000, 100.0, Path("x"))
    assert (h.passed, h.limit_kind) == (False, plan.POOL)
    assert h.limit.startswith("average holding time up to 250 ms > 100 ms: calls waited inside")


def test_a_saturated_driver_or_no_window_is_not_a_capacity_figure() -> None:
    r = fake_report(2000, 5000, 400.0, 30.0, False, result="INCONCLUSIVE")
    r["driver"] = {"saturated": True, "why": ["processor 97% of a core"], "drivers": {}}
    assert plan.classify(r)[0] == plan.DRIVER
    r = fake_report(2000, 5000, 40.0, 30.0, False, result="INCONCLUSIVE")
    r["verdict"]["checks"][0] = {
        "check": "measurement window",
        "status": "inconclusive",
        "ok": False,
        "measured": "never opened: 40 sign-ins still pending",
    }
    r["window"]["blocked_by"] = ["40 sign-ins still pending"]
    assert plan.classify(r)[0] == plan.RAMP
    r["window"]["blocked_by"] = ["backlog: 900 calls in flight"]
    assert plan.classify(r)[0] == plan.POOL  # the pool never caught up with the load


def point(users: int, ok: bool, kind: str = plan.NONE) -> plan.Point:
    return plan.Point(
        users=users, signed_in=users, front_ends=1, duration=1, ramp=1, total_calls=1,
        total_errors=0, throughput=float(users), worst_p99_ms=1, worst_operation="poll",
        cpu_percent=1, passed=ok, limit_kind=kind if not ok else plan.NONE,
    )  # fmt: skip


def test_steps_up_then_bisects_between_the_last_pass_and_the_first_fail() -> None:
    pts = [point(400, True)]
    assert plan.next_users(pts, 1.6, 0.1) == 640
    pts += [point(640, True), point(1024, False, plan.POOL)]
    assert plan.next_users(pts, 1.6, 0.1) == 832
    pts.append(point(832, False, plan.POOL))
    assert plan.next_users(pts, 1.6, 0.1) == 736
    pts.append(point(736, True))
    assert plan.next_users(pts, 1.6, 0.1) == 784
    pts.append(point(784, True))
    assert plan.next_users(pts, 1.6, 0.1) is None  # 784 .. 832: within 10%
    assert plan.next_users([point(400, False, plan.POOL)], 1.6, 0.1) == 250  # step down


def test_ramp_is_a_setting_beside_lyncs_peak() -> None:
    parser = argparse.ArgumentParser()
    plan.add_arguments(parser)
    args = parser.parse_args([])
    assert args.ramp == 100.0
    assert "12" in next(a.help for a in parser._actions if a.dest == "ramp")


def test_plan_measured_path_with_stubbed_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """main() with the runs replaced by USL-shaped results: fit, users per FE and both sizings."""
    curve = dict(usl_points(1.0, 1e-4, 1e-8, [1000, 2000, 3000, 4000, 8000]))

    def fake_measure(args: argparse.Namespace, out: Path) -> tuple[list[plan.Point], str]:
        points = []
        for users, x in curve.items():
            ok = users < 8000
            r = fake_report(int(users), round(x * 10.0), 20.0 if ok else 300.0, 50.0, ok)
            points.append(plan.point_from_report(r, int(users), 120.0, out / f"run-{users}"))
        return points, "bisected between the last pass and the first fail"

    monkeypatch.setattr(plan, "measure", fake_measure)
    out = tmp_path / "p"
    assert plan.main(parse(["--target-users", "30000", "--out", str(out)])) == 0
    text = capsys.readouterr().out
    assert "users per front end here: 4,000, against Lync's 6,660" in text
    assert "limited by the pool: p99 of publish" in text
    assert "95% intervals" in text
    assert "measured here" in text
    assert "Lync 2013 figure" in text
    doc = json.loads((out / "plan.json").read_text())
    assert len(doc["points"]) == 5
    assert doc["fit"]["r2"] > 0.999
    assert doc["fit"]["kappa"] == pytest.approx(1e-8, rel=0.05)
    low, high = doc["fit"]["interval_95"]["kappa"]
    assert low <= doc["fit"]["kappa"] <= high
    assert doc["users_per_fe"]["largest_passing"] == 4000.0
    assert doc["users_per_fe"]["usl_knee"] == pytest.approx(doc["fit"]["peak_users"])
    assert doc["users_per_fe"]["capacity_figure"] is True
    measured = doc["sizing"]["measured"]
    assert measured["users_per_fe"] == 4000.0
    assert measured["front_ends"] == front_ends_for(30_000, 4_000).front_ends == 9
    assert doc["sizing"]["lync"]["front_ends"] == 6
    assert "chart-plan" in (out / "plan.html").read_text()


def test_a_plan_the_driver_limited_gives_no_capacity_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_measure(args: argparse.Namespace, out: Path) -> tuple[list[plan.Point], str]:
        r = fake_report(400, 500, 300.0, 20.0, False, result="INCONCLUSIVE")
        r["driver"] = {"saturated": True, "why": ["processor 97% of a core"], "drivers": {}}
        return [plan.point_from_report(r, 400, 100.0, out)], "the driver"

    monkeypatch.setattr(plan, "measure", fake_measure)
    assert plan.main(parse(["--out", str(tmp_path / "p")])) == 3
    assert "no capacity figure: the limit was the driver" in capsys.readouterr().out


def test_analyse_without_enough_runs() -> None:
    p = plan.point_from_report(fake_report(1000, 500, 20.0, 30.0, True), 1000, 120.0, Path("x"))
    f = plan.analyse([p], "--max-runs 1 reached with every run passing")
    assert f.fit is None
    assert f.fit_note is not None
    assert "at least 3" in f.fit_note
    assert (f.users_per_fe, f.lower_bound) == (1000.0, True)
    assert "at least" in plan.summary([p], f, None, None, Path("out"))


def saturated_at_the_pools_limit() -> dict[str, Any]:
    """The quiet measurement's 26,200 point: the front end over its target *and* the driver
    lagging, in a window shorter than asked (so every check is inconclusive)."""
    r = fake_report(1310, 9190, 194.6, 87.4, False, result="INCONCLUSIVE")
    r["config"]["thresholds"] = {"p99_ms": 100.0, "cpu_percent": 80.0, "error_ratio": 0.01}
    r["driver"] = {
        "saturated": True,
        "why": ["event-loop lag p99 21.4 ms (limit 20 ms)"],
        "drivers": {},
    }
    r["verdict"]["checks"][0] = {
        "check": "measurement window",
        "status": "inconclusive",
        "ok": False,
        "measured": "10 s",
    }
    r["verdict"]["checks"][1]["status"] = "inconclusive"
    r["server_latency"]["rows"] = [
        {"operation": "publish", "rpc": "PublishPresence", "server_p99_ms": 0.25, "gap": True}
    ]
    return r


def test_a_pool_over_its_target_is_the_limit_even_with_a_saturated_driver() -> None:
    r = saturated_at_the_pools_limit()
    kind, limit, note = plan.classify(r)
    assert kind == plan.POOL
    assert limit == "front-end processor 87% > 80%"
    assert note.startswith("the driver was saturated too (event-loop lag p99 21.4 ms")
    assert "window was short" in note
    p = plan.point_from_report(r, 1310, 100.0, Path("x"), speedup=20.0)
    assert (p.passed, p.limit_kind, p.driver_saturated) == (False, plan.POOL, True)
    # the bisection goes on between the last pass and this point
    pts = [point(800, True), point(1024, True), p]
    assert plan.next_users(pts, 1.6, 0.1) == 1167


def test_a_saturated_driver_is_the_limit_only_when_nothing_pool_side_failed() -> None:
    r = saturated_at_the_pools_limit()
    r["front_ends"]["fe1"]["cpu_mean"] = 61.0
    kind, limit, _ = plan.classify(r)
    assert kind == plan.DRIVER
    assert limit.startswith("the load generator was saturated: event-loop lag")
    r["server_latency"]["rows"][0]["server_p99_ms"] = 140.0  # the pool's own histogram is slow
    assert plan.classify(r)[:2] == (plan.POOL, "p99 of publish: pool-side 140.0 ms > 100 ms")


def test_only_errors_the_pool_returned_count_against_it() -> None:
    r = saturated_at_the_pools_limit()
    r["front_ends"]["fe1"]["cpu_mean"] = 40.0
    r["operations"]["poll"]["window"] |= {"calls": 1000, "codes": {"OK": 900}}
    r["operations"]["poll"]["window"]["codes"]["DEADLINE_EXCEEDED"] = 100  # the client's clock
    assert plan.classify(r)[0] == plan.DRIVER
    r["operations"]["poll"]["window"]["codes"]["UNAVAILABLE"] = 30  # the pool said no
    kind, limit, _ = plan.classify(r)
    assert kind == plan.POOL
    assert limit.startswith("errors the pool returned: 30 of 1000")


def test_the_band_lies_around_the_fitted_curve_over_the_whole_range() -> None:
    from bench.capacity import usl_confidence

    exact = usl_points(2.0, 0.0, 0.0, [1000, 2000, 4000, 8000, 16000])
    wobble = [1.02, 0.97, 1.01, 0.99, 1.02]
    pts = [(n, x * w) for (n, x), w in zip(exact, wobble, strict=True)]
    fit = fit_usl(pts)
    xs = [i * 340.0 for i in range(1, 101)]  # past the last point, as the chart draws
    ci = usl_confidence(pts, fit, xs)
    assert [b[0] for b in ci.band] == xs
    for x, low, high in ci.band:
        assert low <= fit.throughput(x) <= high
        assert fit.throughput(x) - low == pytest.approx(high - fit.throughput(x), rel=1e-6) or (
            low == 0.0
        )
    assert ci.kappa is not None
    assert ci.kappa[0] == 0.0
    assert ci.peak_n is None  # kappa may be 0: the knee may be anywhere past the points


def test_a_fit_without_intervals_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three fitted points (as when the plan's last run was the driver's limit) fit the three
    parameters exactly: the answer says there are no intervals and why, never just omits them."""
    from bench.capacity import usl_confidence

    three = usl_points(1.0, 1e-4, 1e-8, [1000, 2000, 4000])
    ci = usl_confidence(three, fit_usl(three))
    assert ci.sigma is None
    assert "at least 4 runs" in ci.missing
    wobble = [
        (n, x * w)
        for (n, x), w in zip(usl_points(2.0, 0, 0, [1, 2, 3, 4]), [1, 1, 1, 1.01], strict=True)
    ]
    assert usl_confidence(wobble, fit_usl(wobble)).missing == ""

    def fake_measure(args: argparse.Namespace, out: Path) -> tuple[list[plan.Point], str]:
        points = []
        for users, x in three:
            r = fake_report(int(users), round(x * 10.0), 20.0, 50.0, True)
            points.append(plan.point_from_report(r, int(users), 120.0, out / f"run-{users}"))
        return points, "--max-runs 3 reached with every run passing"

    monkeypatch.setattr(plan, "measure", fake_measure)
    out = tmp_path / "p"
    plan.main(parse(["--out", str(out)]))
    text = capsys.readouterr().out
    assert "95% intervals" not in text.split("no 95% intervals")[0]
    assert "no 95% intervals: 3 points fit the 3 parameters exactly" in text
    doc = json.loads((out / "plan.json").read_text())
    assert "at least 4 runs" in doc["fit"]["interval_95"]["missing"]


def test_no_knee_and_no_answer_marker_without_a_meaningful_figure(tmp_path: Path) -> None:
    from bench.plan_chart import plan_chart

    pts = [
        plan.point_from_report(fake_report(u, 50 * u, 20.0, 30.0, True), u, 100.0, Path("x"))
        for u in (1000, 2000, 4000, 8000)
    ]
    r = fake_report(16000, 50 * 16000, 150.0, 60.0, False, result="INCONCLUSIVE")
    r["driver"] = {"saturated": True, "why": ["processor 97% of a core"], "drivers": {}}
    pts.append(plan.point_from_report(r, 16000, 100.0, Path("x")))
    f = plan.analyse(pts, "the driver")
    assert f.limit_kind == plan.DRIVER
    assert f.knee_users_per_fe is None
    text = plan.summary(pts, f, None, None, tmp_path)
    assert "no capacity figure" in text
    assert "USL knee" not in text
    args = parse(["--out", str(tmp_path)])
    doc = plan.plan_document(args, pts, f, None, None)
    assert doc["users_per_fe"]["capacity_figure"] is False
    chart = plan_chart(doc)
    assert chart is not None
    notes = [a.text for a in chart.figure.layout.annotations]
    assert not any("answer" in t for t in notes)
    assert any("Lync" in t for t in notes)


def test_every_plan_run_keeps_the_same_steady_part_after_its_ramp() -> None:
    """A larger run signs in for longer; its run grows by that, so its window does not shrink
    below the minimum (45 s at 1,703 users and 100 sign-ins/s left a 15 s window)."""
    assert plan.run_duration(200, 45.0, 100.0) == pytest.approx(47.0)
    assert plan.run_duration(1_703, 45.0, 100.0) == pytest.approx(62.03)
    steady = [plan.run_duration(u, 45.0, 100.0) - u / 100.0 for u in (200, 819, 2_096)]
    assert steady == pytest.approx([45.0, 45.0, 45.0])
