"""`poolsim plan`: how many users a front end holds here, and how many front ends U users need.

Every point is a ``poolsim run`` (``bench.run.run``) measured at steady state: the verdict and
the figures come from its measurement window, after the sign-in ramp and its backlog. The user
count steps up from ``--start-users`` (times ``--step``) while the points pass; after the
first point that the *pool* fails (front-end processor, p99 of an operation that the pool's
own histogram also shows slow, errors, store latency, or a backlog that never drained), the
plan bisects between the last pass and that fail until they are within ``--resolution`` or
``--max-runs`` runs are done. A point whose limit is not the pool ends the plan without a
capacity figure and says what limited it: the driver (the load generator was saturated: add
``--workers``), the ramp (no window: run longer), or the machine (clients waited while the
pool's own latency stayed low).

Throughput (calls completed per second in the window) against users is fitted with the
Universal Scalability Law (:mod:`bench.capacity`), with 95% confidence intervals. With
``--speedup S`` every user does S times the model's work: a point of U users stands for U x S
users (where memory or provisioning time is short), and the answer says so. With ``--edition
enterprise --front-ends N`` each point is an Enterprise pool of N front ends (users per front
end = users / N, the busiest front end's processor); ``--target ADDRESS --admin-token-file F``
measures a running pool (each point provisions more users on it).

With ``--target-users U`` the N-1 sizing of U users is printed with the measured figure and,
beside it, Lync's documented 6,660 users per FE. ``--no-measure`` skips the runs and sizes
with Lync's figure only.

Everything lands in ``--out`` (default ``reports/plan-<time>/``): ``plan.json`` (every point,
the fit, the sizing), ``plan.html`` (the chart) and one ``run-<users>/`` report folder per
point. Exit code: 0 with an answer, 3 without one (the limit was not the pool), 2 for
contradictory options.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.capacity import (
    LYNC_USERS_PER_FE,
    Sizing,
    UslConfidence,
    UslFit,
    fit_usl,
    format_sizing,
    front_ends_for,
    lync_figure,
    usl_confidence,
)
from bench.stats import is_error
from bench.workers import workers_option
from pool.durations import parse_duration

#: what limited a point
POOL, DRIVER, RAMP, MACHINE, NONE = "pool", "driver", "ramp", "machine", "none"


@dataclass(frozen=True, slots=True)
class Point:
    """One run of the plan: its load and what its report said (window figures)."""

    users: int
    signed_in: int
    front_ends: int
    duration: float
    ramp: float
    total_calls: int  # in the window
    total_errors: int  # in the window
    throughput: float  # completed calls per second in the window
    worst_p99_ms: float
    worst_operation: str
    cpu_percent: float  # the busiest front end's mean processor in the window
    passed: bool
    failed_checks: list[str] = field(default_factory=list)
    report: str = ""  # the run's report folder
    error: str | None = None  # the run did not finish: why
    speedup: float = 1.0
    result: str = ""  # PASS, FAIL or INCONCLUSIVE
    window_s: float = 0.0
    server_p99_ms: float | None = None  # the pool's own p99 of the worst operation's RPC
    driver_cpu: float = 0.0
    driver_lag_p99_ms: float = 0.0
    limit_kind: str = NONE  # what limited this point (POOL, DRIVER, RAMP, MACHINE, NONE)
    limit: str = ""  # in words
    note: str = ""  # what else the run showed (the clients' p99 was the machine's, say)
    driver_saturated: bool = False  # it delivered less than the load asked: kept out of the fit

    @property
    def effective_users(self) -> float:
        """Users this point stands for: users x speedup."""
        return self.users * self.speedup

    @property
    def per_fe(self) -> float:
        return self.effective_users / max(1, self.front_ends)


@dataclass(frozen=True, slots=True)
class Findings:
    """What the points say: the USL fit and the users-per-FE figures."""

    fit: UslFit | None
    fit_note: str | None  # why there is no fit
    best: Point | None  # the largest passing run
    users_per_fe: float | None  # best.effective_users / best.front_ends
    knee_users_per_fe: float | None  # the USL's throughput peak per FE (None: no fit or no peak)
    lower_bound: bool  # no run failed: the true figure may be higher
    stopped: str
    limit: str = ""  # the resource that limits users per FE ("" unknown)
    limit_kind: str = NONE
    confidence: UslConfidence | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``poolsim plan`` (see the module docstring)."""
    parser.add_argument(
        "--target-users", type=int, help="size a pool (or pools) for this many enabled users"
    )
    parser.add_argument(
        "--no-measure",
        action="store_true",
        help="skip the runs; size --target-users with Lync's 6,660 users per FE only",
    )
    parser.add_argument(
        "--start-users", type=int, default=200, help="users of the first run (default %(default)s)"
    )
    parser.add_argument(
        "--step",
        type=float,
        default=1.6,
        help="multiply the users by this after a passing run (default %(default)s)",
    )
    parser.add_argument(
        "--resolution",
        type=float,
        default=0.1,
        help="bisect until the last pass and the first fail are this close, relative "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--max-runs", type=int, default=7, help="at most this many runs (default %(default)s)"
    )
    parser.add_argument(
        "--duration", type=parse_duration, default="45s", help="per run (default %(default)s)"
    )
    parser.add_argument(
        "--min-window",
        type=parse_duration,
        default="20s",
        help="seconds of steady state a run must measure (default %(default)s)",
    )
    parser.add_argument(
        "--speedup",
        type=float,
        default=20.0,
        help="multiply every rate of the user model: a run of U users stands for U x speedup "
        "users (default %(default)s)",
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=100.0,
        help="sign-ins per second (default %(default)s; Lync's pool peak is about 12)",
    )
    parser.add_argument(
        "--p99-target-ms",
        type=float,
        default=100.0,
        help="p99 latency target per operation (default %(default)s)",
    )
    parser.add_argument(
        "--cpu-target",
        type=float,
        default=80.0,
        help="front-end processor %% target (Lync health threshold; default %(default)s)",
    )
    parser.add_argument(
        "--edition",
        choices=["standard", "enterprise"],
        default="standard",
        help="the pool each point starts (default %(default)s)",
    )
    parser.add_argument(
        "--front-ends", type=int, default=3, help="enterprise: front ends per pool (default 3)"
    )
    parser.add_argument("--target", help="measure a running pool at this address instead")
    parser.add_argument("--admin-token-file", type=Path, help="the target pool's admin token")
    parser.add_argument(
        "--workers",
        type=workers_option,
        default="1",
        help="driver processes per run, or auto (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=1, help="the schedules' seed")
    parser.add_argument("--out", type=Path, help="plan folder (default reports/plan-<time>)")


def _check(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, or None."""
    if args.no_measure and args.target_users is None:
        return "--no-measure needs --target-users (there is nothing else to do)"
    if args.target_users is not None and args.target_users < 1:
        return f"--target-users {args.target_users}: expected at least 1"
    if args.no_measure:
        return None
    if args.start_users < 2:
        return f"--start-users {args.start_users}: a load needs at least 2 users"
    if not args.step > 1:
        return f"--step {args.step}: expected more than 1"
    if args.max_runs < 1:
        return f"--max-runs {args.max_runs}: expected at least 1"
    if not args.duration > 0 or not args.speedup > 0:
        return "--duration and --speedup must be > 0"
    if not args.ramp > 0:
        return f"--ramp {args.ramp}: expected sign-ins per second > 0"
    if not 0 < args.resolution < 1:
        return f"--resolution {args.resolution}: expected 0 < x < 1"
    if args.target is not None and args.admin_token_file is None:
        return "--target needs --admin-token-file (the pool's admin token)"
    return None


#: answers a client's own clock or channel can produce without the pool saying anything
CLIENT_SIDE_CODES = frozenset({"DEADLINE_EXCEEDED", "CANCELLED"})


def pool_side_failures(result: dict[str, Any]) -> list[str]:
    """The pool's own figures in the measurement window that broke a target, in words:
    the busiest front end's processor, the pool's own p99 of an RPC (its histogram), the store
    queue's p99, and errors the pool returned (not deadlines or cancellations, which a slow
    client produces alone). Empty when the window never opened: there are no figures then."""
    window = result.get("window", {})
    if not float(window.get("seconds") or 0.0) > 0:
        return []
    limits = result.get("config", {}).get("thresholds", {})
    cpu_target = float(limits.get("cpu_percent", 80.0))
    p99_target = float(limits.get("p99_ms", 100.0))
    ratio_target = float(limits.get("error_ratio", 0.01))
    found: list[str] = []
    fronts = result.get("front_ends", {})
    if fronts:
        fe, busiest = max(fronts.items(), key=lambda kv: float(kv[1]["cpu_mean"]))
        cpu = float(busiest["cpu_mean"])
        if cpu >= cpu_target:
            where = f" ({fe})" if len(fronts) > 1 else ""
            found.append(f"front-end processor{where} {cpu:.0f}% > {cpu_target:g}%")
    srv = result.get("server_latency", {})
    slow = [
        r
        for r in srv.get("rows", [])
        if r.get("server_p99_ms") is not None and float(r["server_p99_ms"]) >= p99_target
    ]
    if slow:
        w = max(slow, key=lambda r: float(r["server_p99_ms"]))
        found.append(
            f"p99 of {w['operation']}: pool-side {float(w['server_p99_ms']):.1f} ms "
            f"> {p99_target:g} ms"
        )
    store = srv.get("store_write_p99_ms")
    if store is not None and float(store) >= p99_target:
        found.append(f"store queue p99 {float(store):.1f} ms > {p99_target:g} ms")
    ops = result.get("operations", {})
    calls = sum(int(o.get("window", {}).get("calls", 0)) for o in ops.values())
    returned = sum(
        n
        for name, o in ops.items()
        for code, n in o.get("window", {}).get("codes", {}).items()
        if is_error(name, code) and code not in CLIENT_SIDE_CODES
    )
    if calls and returned / calls >= ratio_target:
        found.append(
            f"errors the pool returned: {returned} of {calls} ({returned / calls:.2%}) "
            f">= {ratio_target:.0%}"
        )
    return found


def classify(result: dict[str, Any]) -> tuple[str, str, str]:
    """What limited a run: (``POOL``, ``DRIVER``, ``RAMP`` or ``NONE``; in words; a note).

    The pool's own figures come first (:func:`pool_side_failures`): when one broke a target
    the pool reached its limit *even if the driver was saturated too*, because a saturated
    driver only delivers less load than asked, so the pool failed under no more than this
    point's load. The note then says the driver was saturated too. Only when nothing
    pool-side failed is a saturated driver the limit (no capacity figure), then a window
    that never opened (the ramp, or a backlog the pool never drained).

    A client p99 above the target counts against the pool only when the pool's own
    histogram shows it too: when every RPC's pool-side p99 is under the target, the clients
    waited elsewhere (the driver, the network, the machine); the point then passes for the
    pool, with that said in the note (``MACHINE``)."""
    verdict = result["verdict"]
    checks = verdict["checks"]
    drv = result.get("driver", {})
    window = next((c for c in checks if c["check"] == "measurement window"), None)
    pool_side = pool_side_failures(result)
    if pool_side:
        notes = []
        if drv.get("saturated"):
            notes.append(
                "the driver was saturated too ("
                + "; ".join(drv.get("why", []))
                + "): it delivered no more than this load, so the pool failed under at most it"
            )
        if window is not None and window["status"] == "inconclusive":
            notes.append(f"the window was short of the minimum ({window['measured']})")
        return POOL, "; ".join(pool_side), "; ".join(notes)
    if drv.get("saturated"):
        return DRIVER, "the load generator was saturated: " + "; ".join(drv.get("why", [])), ""
    if window is not None and window["status"] == "inconclusive":
        blocked = " ".join(result.get("window", {}).get("blocked_by", []))
        if "backlog" in blocked and "sign-ins still pending" not in blocked:
            why = "the ramp's backlog never drained (the pool could not keep up): " + blocked
            return POOL, why, ""
        return RAMP, "no measurement window: " + (window["measured"] or "run longer"), ""
    target = float(result.get("config", {}).get("thresholds", {}).get("p99_ms", 100.0))
    rows = result.get("server_latency", {}).get("rows", [])
    note = ""
    for c in (c for c in checks if c["status"] == "fail"):
        name = c["check"]
        if not name.startswith("p99 latency"):
            return POOL, f"{name}: {c['measured']} (target {c['target']})", note
        op = name.split("worst: ", 1)[-1].rstrip(")")
        pool_rows = [r for r in rows if r["server_p99_ms"] is not None]
        if pool_rows:  # every pool-side p99 is under the target (pool_side_failures)
            worst = max(pool_rows, key=lambda r: float(r["server_p99_ms"]))
            note = (
                f"{MACHINE}: clients saw p99 of {op} {c['measured']} while the pool's own p99 "
                f"stayed under {target:g} ms (at most {worst['server_p99_ms']:.2f} ms, "
                f"{worst['rpc']}): the calls queued outside the pool's handlers"
            )
            continue
        return POOL, f"p99 of {op}: {c['measured']} (target {c['target']})", note
    return NONE, "", note


def point_from_report(
    result: dict[str, Any], users: int, ramp: float, folder: Path, speedup: float = 1.0
) -> Point:
    """A :class:`Point` from a ``bench.report.build`` dict (its window's figures)."""
    cfg = result["config"]
    duration = float(cfg["duration"])
    ops: dict[str, Any] = result["operations"]
    window = result.get("window", {})
    seconds = float(window.get("seconds") or 0.0)

    def p99(o: dict[str, Any]) -> float:
        return float(o.get("window", o)["p99"])

    worst = max(ops.items(), key=lambda kv: p99(kv[1]), default=("-", {"p99": 0.0}))
    fronts: dict[str, Any] = result["front_ends"]
    verdict = result["verdict"]
    calls = int(result.get("window_calls", result["total_calls"]))
    errors = int(result.get("window_errors", result["total_errors"]))
    rows = result.get("server_latency", {}).get("rows", [])
    server = next((r["server_p99_ms"] for r in rows if r["operation"] == worst[0]), None)
    drivers = result.get("driver", {}).get("drivers", {})
    kind, limit, note = classify(result) if "result" in verdict else (NONE, "", "")
    status = verdict.get("result", "PASS" if verdict["pass"] else "FAIL")
    passed = (bool(verdict["pass"]) or (kind == NONE and status == "FAIL")) and kind != POOL
    return Point(
        users=users,
        signed_in=int(cfg.get("signed_in", 0)),
        front_ends=max(1, len(fronts)),
        duration=duration,
        ramp=ramp,
        total_calls=calls,
        total_errors=errors,
        throughput=calls / (seconds or duration),
        worst_p99_ms=p99(worst[1]),
        worst_operation=worst[0],
        cpu_percent=max((float(f["cpu_mean"]) for f in fronts.values()), default=0.0),
        passed=passed,
        failed_checks=[str(c["check"]) for c in verdict["checks"] if not c["ok"]],
        report=str(folder),
        speedup=speedup,
        result=status,
        window_s=seconds,
        server_p99_ms=server,
        driver_cpu=max((float(d["cpu_mean"]) for d in drivers.values()), default=0.0),
        driver_lag_p99_ms=max((float(d["loop_lag_p99_ms"]) for d in drivers.values()), default=0.0),
        limit_kind=kind if not passed else NONE,
        limit=limit if not passed else "",
        note=note,
        driver_saturated=bool(result.get("driver", {}).get("saturated")),
    )


def _failed_point(users: int, args: argparse.Namespace, folder: Path, why: str) -> Point:
    return Point(
        users=users,
        signed_in=0,
        front_ends=1,
        duration=args.duration,
        ramp=args.ramp,
        total_calls=0,
        total_errors=0,
        throughput=0.0,
        worst_p99_ms=0.0,
        worst_operation="-",
        cpu_percent=0.0,
        passed=False,
        failed_checks=["run did not finish"],
        report=str(folder),
        error=why,
        speedup=args.speedup,
    )


def next_users(points: list[Point], step: float, resolution: float) -> int | None:
    """The next user count: step up while the pool passes; once it failed, bisect between
    the largest pass and the smallest pool fail; None when they are within ``resolution``."""
    passes = [p.users for p in points if p.passed]
    fails = [p.users for p in points if not p.passed and p.limit_kind == POOL]
    hi = min(fails, default=None)
    lo = max((u for u in passes if hi is None or u < hi), default=None)
    if hi is None:
        return max(max(passes) + 1, round(max(passes) * step)) if passes else None
    if lo is None:
        down = round(hi / step)
        return down if down >= 2 and down not in {p.users for p in points} else None
    if (hi - lo) / lo <= resolution:
        return None
    mid = (lo + hi) // 2
    return mid if mid not in {p.users for p in points} else None


def measure(args: argparse.Namespace, out: Path) -> tuple[list[Point], str]:
    """The runs (stepping, then bisecting); returns the points and why the plan stopped."""
    from bench import report
    from bench.run import RunOptions, run

    thresholds = report.Thresholds(cpu_percent=args.cpu_target, p99_ms=args.p99_target_ms)
    points: list[Point] = []
    users: int | None = int(args.start_users)
    for i in range(args.max_runs):
        if users is None:
            break
        folder = out / f"run-{users}"
        print(
            f"plan run {i + 1}/{args.max_runs}: {users:,} users x speedup {args.speedup:g} "
            f"(stands for {users * args.speedup:,.0f}), {args.duration:g} s, "
            f"ramp {args.ramp:g}/s",
            flush=True,
        )
        opts = RunOptions(
            users=users,
            duration=args.duration,
            speedup=args.speedup,
            ramp=args.ramp,
            seed=args.seed,
            workers=args.workers,
            edition=args.edition,
            front_ends=args.front_ends,
            target=args.target,
            admin_token_file=args.admin_token_file,
            min_window=args.min_window,
            thresholds=thresholds,
            out=folder,
            progress=False,
        )
        try:
            result = asyncio.run(run(opts))
        except Exception as exc:  # a run that cannot finish ends the plan, keeping what we have
            why = f"{type(exc).__name__}: {exc}"
            points.append(_failed_point(users, args, folder, why))
            return points, f"the run at {users:,} users did not finish ({why})"
        report.write(result, folder)
        p = point_from_report(result, users, args.ramp, folder, args.speedup)
        points.append(p)
        print("  " + _point_line(p), flush=True)
        if p.limit_kind in (DRIVER, RAMP):
            return (
                points,
                f"at {users:,} users the limit was the {p.limit_kind}, not the pool: {p.limit}",
            )
        users = next_users(points, args.step, args.resolution)
    if users is None:
        fails = [p for p in points if p.limit_kind == POOL]
        if fails:
            return points, "bisected between the last pass and the first fail"
    fails = [p for p in points if p.limit_kind == POOL]
    if fails:
        return (
            points,
            f"--max-runs {args.max_runs} reached (the pool failed at "
            f"{min(p.users for p in fails):,} users)",
        )
    return points, f"--max-runs {args.max_runs} reached with every run passing"


def analyse(points: list[Point], stopped: str) -> Findings:
    """Fit the USL to the finished runs the pool limited (or passed), and read off the
    users-per-FE figure, its limit and the knee."""
    done = [
        p for p in points if p.error is None and p.throughput > 0 and p.limit_kind in (POOL, NONE)
    ]
    # a saturated driver delivered less than its users ask: its throughput is not theirs
    fitted = [p for p in done if not p.driver_saturated]
    fit: UslFit | None = None
    note: str | None = None
    confidence: UslConfidence | None = None
    pts = [(p.effective_users, p.throughput) for p in fitted]
    if len({p.users for p in fitted}) < 3:
        note = (
            "a USL fit needs at least 3 finished runs at different user counts with a driver "
            f"that kept up ({len(fitted)})"
        )
    else:
        try:
            fit = fit_usl(pts)
        except ValueError as exc:
            note = str(exc)
    if fit is not None:  # the band over the whole plotted range (bench.plan_chart)
        top = max(p.effective_users for p in points if p.throughput > 0) * 1.3
        confidence = usl_confidence(pts, fit, [top * i / 100 for i in range(1, 101)])
    passing = [p for p in done if p.passed]
    best = max(passing, key=lambda p: p.users, default=None)
    per_fe = best.per_fe if best is not None else None
    knee: float | None = None  # only when its interval is finite: else the points cannot tell
    if (
        fit is not None
        and math.isfinite(fit.peak_n())
        and confidence is not None
        and confidence.peak_n is not None
    ):
        fes = best.front_ends if best is not None else done[-1].front_ends
        knee = fit.peak_n() / fes
    pool_fails = sorted((p for p in points if p.limit_kind == POOL), key=lambda p: p.users)
    others = [p for p in points if p.limit_kind in (DRIVER, RAMP, MACHINE)]
    if pool_fails:  # the pool failed somewhere: the largest pass below it is a capacity figure
        limit_kind, limit = POOL, pool_fails[0].limit
    elif others:
        limit_kind, limit = others[0].limit_kind, others[0].limit
    else:
        limit_kind, limit = NONE, ""
    lower = bool(done) and not pool_fails
    return Findings(fit, note, best, per_fe, knee, lower, stopped, limit, limit_kind, confidence)


def _point_line(p: Point) -> str:
    if p.error is not None:
        return f"{p.users:>7,}  did not finish: {p.error}"
    server = "-" if p.server_p99_ms is None else f"{p.server_p99_ms:.2f}"
    return (
        f"{p.users:>7,} {p.per_fe:>9,.0f} {p.window_s:>5.0f} {p.throughput:>8.1f} "
        f"{p.worst_p99_ms:>8.1f} {server:>8} {p.worst_operation:<17} {p.cpu_percent:>5.1f} "
        f"{p.driver_cpu:>5.1f} {p.driver_lag_p99_ms:>6.1f} {p.total_errors:>6,}  "
        f"{p.result or ('PASS' if p.passed else 'FAIL')}"
        + (f" ({p.limit_kind}: {p.limit})" if p.limit else "")
        + (f"\n{'':>9}note: {p.note}" if p.note else "")
    )


def summary(
    points: list[Point],
    findings: Findings | None,
    lync: Sizing | None,
    measured: Sizing | None,
    out: Path,
) -> str:
    """The plan as a terminal reads it."""
    lines: list[str] = []
    if findings is None:
        lines += [
            f"poolsim plan: no measurement (--no-measure): sizing with Lync's documented "
            f"{LYNC_USERS_PER_FE:,} users per front end only",
            "",
        ]
    else:
        speedups = {p.speedup for p in points}
        lines += [f"poolsim plan: {len(points)} run(s); {findings.stopped}", ""]
        lines.append(
            f"{'users':>7} {'per FE':>9} {'win s':>5} {'calls/s':>8} {'p99 ms':>8} "
            f"{'pool p99':>8} {'(worst op)':<17} {'fe %':>5} {'drv %':>5} {'lag ms':>6} "
            f"{'errors':>6}  verdict"
        )
        lines += [_point_line(p) for p in points]
        if any(s != 1 for s in speedups):
            lines.append(
                f"(per FE: users x speedup {', '.join(f'{s:g}' for s in sorted(speedups))}: each "
                "simulated user does that many users' work, standing in for more users)"
            )
        lines.append("")
        fit = findings.fit
        ci = findings.confidence
        if fit is None:
            lines.append(f"USL fit: none ({findings.fit_note})")
        else:
            peak = fit.peak_n()
            if not math.isfinite(peak):
                where = "no peak (kappa = 0: throughput keeps rising, ever more slowly)"
            elif ci is None or ci.peak_n is None:
                where = "its peak is not determined by these points (kappa may be 0)"
            else:
                where = (
                    f"throughput peaks at {peak:,.0f} users ({fit.throughput(peak):,.1f} calls/s)"
                )

            def band(v: tuple[float, float] | None) -> str:
                return "" if v is None else f" [{v[0]:.3g}, {v[1]:.3g}]"

            lines.append(
                f"USL fit (95% intervals): lambda {fit.lam:.4g}{band(ci.lam if ci else None)} "
                f"calls/s per user, sigma {fit.sigma:.3g}{band(ci.sigma if ci else None)}, "
                f"kappa {fit.kappa:.3g}{band(ci.kappa if ci else None)}, R^2 {fit.r2:.4f}; {where}"
            )
            if (
                ci is not None
                and ci.kappa is not None
                and ci.kappa[0] <= 0
                and (ci.sigma is None or ci.sigma[0] <= 0)
            ):
                lines.append(
                    "  (sigma and kappa are not told apart from 0: within these points "
                    "throughput scales linearly, so the curve says nothing about the knee)"
                )
        if findings.limit_kind in (DRIVER, RAMP, MACHINE):
            lines.append(
                f"users per front end here: no capacity figure: the limit was the "
                f"{findings.limit_kind}, not the pool ({findings.limit})"
            )
            if findings.best is not None:
                lines.append(
                    f"  (the pool passed up to {findings.best.per_fe:,.0f} users per front end)"
                )
        elif findings.best is None or findings.users_per_fe is None:
            lines.append("users per front end here: unknown (no run met the targets)")
        else:
            b = findings.best
            bound = (
                " at least (no run broke a target: raise --max-runs or --step)"
                if findings.lower_bound
                else ""
            )
            lines.append(
                f"users per front end here:{bound} {findings.users_per_fe:,.0f}, against "
                f"Lync's {LYNC_USERS_PER_FE:,} (largest passing run: {b.users:,} users"
                + (f" x speedup {b.speedup:g}" if b.speedup != 1 else "")
                + f" on {b.front_ends} front end(s), p99 {b.worst_p99_ms:.1f} ms, processor "
                f"{b.cpu_percent:.1f}%)"
            )
            if b.front_ends > 1:
                lines.append(
                    f"the pool of {b.front_ends} front ends: {b.effective_users:,.0f} users"
                )
            if findings.limit:
                lines.append(f"limited by the pool: {findings.limit}")
                first_fail = min(
                    (p for p in points if p.limit_kind == POOL), key=lambda p: p.users, default=None
                )
                if first_fail is not None and first_fail.note:
                    lines.append(f"  (at {first_fail.per_fe:,.0f} per FE: {first_fail.note})")
            notes = [p for p in points if p.note.startswith(MACHINE)]
            if notes:
                lines.append(
                    f"note: at {len(notes)} point(s) the clients' p99 was over the target while "
                    "the pool's own stayed under it (the machine, not the pool): " + notes[-1].note
                )
        knee = findings.knee_users_per_fe
        if knee is not None and fit is not None and ci is not None and ci.peak_n is not None:
            per = knee / fit.peak_n()  # users per FE per unit of concurrency
            lines.append(
                f"USL knee: {knee:,.0f} users per front end, 95% [{ci.peak_n[0] * per:,.0f}, "
                f"{ci.peak_n[1] * per:,.0f}] (past it, more users bring less throughput)"
            )
        lines.append(
            f"hardware: {os.cpu_count()} CPUs, {platform.machine()}; measured on "
            + (
                "an Enterprise pool"
                if points and points[0].front_ends > 1
                else "a Standard pool (no replication to secondaries, which an Enterprise "
                "front end also does)"
            )
        )
        lines.append("")
    if lync is not None:
        lines.append(
            format_sizing(lync, measured, measured_label="measured here")
            if measured is not None
            else format_sizing(lync)
        )
        if findings is not None and measured is None:
            lines.append("(no measured users-per-FE figure: Lync's only)")
        lines.append("")
    lines.append(
        f"plan: {out / 'plan.json'}" + ("" if findings is None else f", {out / 'plan.html'}")
    )
    return "\n".join(lines)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _sizing_dict(s: Sizing | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {**asdict(s), "total_front_ends": s.total_front_ends}


def plan_document(
    args: argparse.Namespace,
    points: list[Point],
    findings: Findings | None,
    lync: Sizing | None,
    measured: Sizing | None,
) -> dict[str, Any]:
    """What plan.json holds (strict JSON: no infinities)."""
    options = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if not callable(v)
    }
    fit = findings.fit if findings is not None else None
    ci = findings.confidence if findings is not None else None
    return {
        "created": datetime.now().isoformat(timespec="seconds"),
        "options": options,
        "hardware": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "platform": platform.platform(),
        },
        "measured": findings is not None,
        "stopped": findings.stopped if findings is not None else None,
        "points": [
            {**asdict(p), "effective_users": p.effective_users, "per_fe": p.per_fe} for p in points
        ],
        "fit": None
        if fit is None
        else {
            "lambda": fit.lam,
            "sigma": fit.sigma,
            "kappa": fit.kappa,
            "r2": fit.r2,
            "peak_users": _finite(fit.peak_n()),
            "interval_95": None
            if ci is None
            else {"lambda": ci.lam, "sigma": ci.sigma, "kappa": ci.kappa, "peak_users": ci.peak_n},
            "band": [list(b) for b in ci.band] if ci is not None else [],
        },
        "fit_note": findings.fit_note if findings is not None else None,
        "users_per_fe": None
        if findings is None
        else {
            "largest_passing": findings.users_per_fe,
            "usl_knee": findings.knee_users_per_fe,
            "lower_bound": findings.lower_bound,
            "limit": findings.limit,
            "limit_kind": findings.limit_kind,
            "capacity_figure": findings.limit_kind in (POOL, NONE)
            and findings.users_per_fe is not None,
        },
        "lync_users_per_fe": LYNC_USERS_PER_FE,
        "sizing": None
        if lync is None
        else {
            "target_users": lync.users,
            "measured": _sizing_dict(measured),
            "lync": _sizing_dict(lync),
        },
    }


def plan_html(doc: dict[str, Any], text: str) -> str:
    """The plan's chart and summary as one offline page."""
    import html as h

    from bench import charts
    from bench.plan_chart import plan_chart

    chart = plan_chart(doc)
    body = charts.div(chart) if chart is not None else "<p>no finished runs to draw</p>"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>poolsim plan</title>
{charts.head()}
<style>body{{font-family:sans-serif;margin:2em auto;max-width:80em;padding:0 1em;color:#222}}
pre{{background:#f8f8f8;padding:0.5em;white-space:pre-wrap;font-size:12px}}</style></head><body>
<h1>poolsim plan</h1>{body}<pre>{h.escape(text)}</pre></body></html>"""


def main(args: argparse.Namespace) -> int:
    """Run ``poolsim plan`` with parsed options: 0 with an answer (or with --no-measure),
    3 without one (the limit was the driver, the ramp or the machine, or no run passed), 2 for
    contradictory options.

    Writes ``<out>/plan.json`` (created with its parents) and ``plan.html``, and prints a
    summary; with ``--no-measure`` no pool is started and nothing but plan.json is written.
    """
    problem = _check(args)
    if problem is not None:
        print(f"poolsim plan: {problem}", file=sys.stderr)
        return 2
    out: Path = args.out or Path("reports") / f"plan-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    points: list[Point] = []
    findings: Findings | None = None
    if not args.no_measure:
        points, stopped = measure(args, out)
        findings = analyse(points, stopped)
    lync = measured = None
    answered = (
        findings is not None
        and findings.users_per_fe is not None
        and findings.limit_kind in (POOL, NONE)
    )
    if args.target_users is not None:
        lync = lync_figure(args.target_users)
        if findings is not None and answered and findings.users_per_fe is not None:
            measured = front_ends_for(args.target_users, max(1.0, findings.users_per_fe))
    doc = plan_document(args, points, findings, lync, measured)
    (out / "plan.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    text = summary(points, findings, lync, measured, out)
    if findings is not None:
        (out / "plan.html").write_text(plan_html(doc, text))
    print(text)
    return 0 if findings is None or answered else 3
