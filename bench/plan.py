"""`poolsim plan`: how many users a front end holds here, and how many front ends U users need.

Run after run (each one ``bench.run.run`` on a fresh Standard pool), the user count steps up
from ``--start-users`` by ``--step`` until a service target breaks (the run's verdict fails:
p99 above ``--p99-target-ms``, front-end processor above ``--cpu-target``, errors, ...) or
``--max-runs`` runs are done. Each run's throughput (completed calls per second) against its
user count is fitted with the Universal Scalability Law (:mod:`bench.capacity`). The largest
passing user count per front end is this hardware's users-per-FE figure; with
``--target-users U`` the N-1 sizing of U users is printed with that figure and, beside it,
with Lync's documented 6,660 users per FE. ``--no-measure`` skips the runs and sizes with
Lync's figure only.

Everything lands in ``--out`` (default ``reports/plan-<time>/``): ``plan.json`` (every point,
the fit, the sizing) and one ``run-<users>/`` report folder per run.
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
    UslFit,
    fit_usl,
    format_sizing,
    front_ends_for,
    lync_figure,
)
from pool.durations import parse_duration

#: sign-ins finish within this fraction of a run when --ramp is not given
RAMP_FRACTION = 1 / 3


@dataclass(frozen=True, slots=True)
class Point:
    """One run of the plan: its load and what the report said."""

    users: int
    signed_in: int
    front_ends: int
    duration: float
    ramp: float
    total_calls: int
    total_errors: int
    throughput: float  # completed calls per second: total_calls / duration
    worst_p99_ms: float
    worst_operation: str
    cpu_percent: float  # the busiest front end's mean processor after the ramp
    passed: bool
    failed_checks: list[str] = field(default_factory=list)
    report: str = ""  # the run's report folder
    error: str | None = None  # the run did not finish: why


@dataclass(frozen=True, slots=True)
class Findings:
    """What the points say: the USL fit and the users-per-FE figures."""

    fit: UslFit | None
    fit_note: str | None  # why there is no fit
    best: Point | None  # the largest passing run
    users_per_fe: float | None  # best.users / best.front_ends
    knee_users_per_fe: float | None  # the USL's throughput peak per FE (None: no fit or no peak)
    lower_bound: bool  # no run failed: the true figure may be higher
    stopped: str


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
        "--start-users", type=int, default=1000, help="users of the first run (default %(default)s)"
    )
    parser.add_argument(
        "--step",
        type=float,
        default=2.0,
        help="multiply the users by this after a passing run (default %(default)s)",
    )
    parser.add_argument(
        "--max-runs", type=int, default=6, help="at most this many runs (default %(default)s)"
    )
    parser.add_argument(
        "--duration", type=parse_duration, default="30s", help="per run (default %(default)s)"
    )
    parser.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        help="multiply every rate of the user model (default %(default)s)",
    )
    parser.add_argument(
        "--ramp",
        type=float,
        help="sign-ins per second (default: at least 120, and fast enough that everyone "
        "signs in within the first third of a run)",
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
        help="front-end processor %% target (SPEC 6; default %(default)s)",
    )
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
    if args.ramp is not None and not args.ramp > 0:
        return f"--ramp {args.ramp}: expected sign-ins per second > 0"
    return None


def ramp_for(users: int, duration: float, ramp: float | None) -> float:
    """The given ramp, or one that signs everyone in within RAMP_FRACTION of the run."""
    if ramp is not None:
        return ramp
    return max(120.0, users / (duration * RAMP_FRACTION))


def point_from_report(result: dict[str, Any], users: int, ramp: float, folder: Path) -> Point:
    """A :class:`Point` from a ``bench.report.build`` dict."""
    cfg = result["config"]
    duration = float(cfg["duration"])
    ops: dict[str, Any] = result["operations"]
    worst = max(ops.items(), key=lambda kv: float(kv[1]["p99"]), default=("-", {"p99": 0.0}))
    fronts: dict[str, Any] = result["front_ends"]
    verdict = result["verdict"]
    return Point(
        users=users,
        signed_in=int(cfg.get("signed_in", 0)),
        front_ends=max(1, len(fronts)),
        duration=duration,
        ramp=ramp,
        total_calls=int(result["total_calls"]),
        total_errors=int(result["total_errors"]),
        throughput=int(result["total_calls"]) / duration,
        worst_p99_ms=float(worst[1]["p99"]),
        worst_operation=worst[0],
        cpu_percent=max((float(f["cpu_mean"]) for f in fronts.values()), default=0.0),
        passed=bool(verdict["pass"]),
        failed_checks=[str(c["check"]) for c in verdict["checks"] if not c["ok"]],
        report=str(folder),
    )


def measure(args: argparse.Namespace, out: Path) -> tuple[list[Point], str]:
    """The runs, stepping the users up; returns the points and why stepping stopped."""
    from bench import report
    from bench.run import RunOptions, run

    thresholds = report.Thresholds(cpu_percent=args.cpu_target, p99_ms=args.p99_target_ms)
    points: list[Point] = []
    users = int(args.start_users)
    for i in range(args.max_runs):
        ramp = ramp_for(users, args.duration, args.ramp)
        folder = out / f"run-{users}"
        print(
            f"plan run {i + 1}/{args.max_runs}: {users:,} users, {args.duration:g} s, "
            f"speedup {args.speedup:g}, ramp {ramp:,.0f}/s",
            flush=True,
        )
        opts = RunOptions(
            users=users,
            duration=args.duration,
            speedup=args.speedup,
            ramp=ramp,
            thresholds=thresholds,
            out=folder,
            progress=False,
        )
        try:
            result = asyncio.run(run(opts))
        except Exception as exc:  # a run that cannot finish ends the plan, keeping what we have
            why = f"{type(exc).__name__}: {exc}"
            points.append(
                Point(
                    users=users,
                    signed_in=0,
                    front_ends=1,
                    duration=args.duration,
                    ramp=ramp,
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
                )
            )
            return points, f"the run at {users:,} users did not finish ({why})"
        report.write(result, folder)
        p = point_from_report(result, users, ramp, folder)
        points.append(p)
        print("  " + _point_line(p), flush=True)
        if not p.passed:
            return points, f"a target broke at {users:,} users: {', '.join(p.failed_checks)}"
        users = max(users + 1, round(users * args.step))
    return points, f"--max-runs {args.max_runs} reached with every run passing"


def analyse(points: list[Point], stopped: str) -> Findings:
    """Fit the USL to the finished runs and read off the users-per-FE figures."""
    done = [p for p in points if p.error is None and p.throughput > 0]
    fit: UslFit | None = None
    note: str | None = None
    if len({p.users for p in done}) < 3:
        note = f"a USL fit needs at least 3 finished runs at different user counts ({len(done)})"
    else:
        try:
            fit = fit_usl([(float(p.users), p.throughput) for p in done])
        except ValueError as exc:
            note = str(exc)
    passing = [p for p in done if p.passed]
    best = max(passing, key=lambda p: p.users, default=None)
    per_fe = best.users / best.front_ends if best is not None else None
    knee: float | None = None
    if fit is not None and math.isfinite(fit.peak_n()):
        fes = best.front_ends if best is not None else done[-1].front_ends
        knee = fit.peak_n() / fes
    lower = bool(done) and all(p.passed for p in points)
    return Findings(fit, note, best, per_fe, knee, lower, stopped)


def _point_line(p: Point) -> str:
    if p.error is not None:
        return f"{p.users:>9,}  did not finish: {p.error}"
    return (
        f"{p.users:>9,} {p.signed_in:>10,} {p.throughput:>9.1f} {p.worst_p99_ms:>9.1f} "
        f"{p.worst_operation:<18} {p.cpu_percent:>6.1f} {p.total_errors:>7,}  "
        f"{'PASS' if p.passed else 'FAIL: ' + ', '.join(p.failed_checks)}"
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
        lines += [f"poolsim plan: {len(points)} run(s); {findings.stopped}", ""]
        lines.append(
            f"{'users':>9} {'signed in':>10} {'calls/s':>9} {'p99 ms':>9} {'(worst op)':<18} "
            f"{'cpu %':>6} {'errors':>7}  verdict"
        )
        lines += [_point_line(p) for p in points]
        lines.append("")
        fit = findings.fit
        if fit is None:
            lines.append(f"USL fit: none ({findings.fit_note})")
        else:
            peak = fit.peak_n()
            where = (
                f"throughput peaks at {peak:,.0f} users ({fit.throughput(peak):,.1f} calls/s)"
                if math.isfinite(peak)
                else "no peak (kappa = 0: throughput keeps rising, ever more slowly)"
            )
            lines.append(
                f"USL fit: lambda {fit.lam:.4g} calls/s per user, sigma {fit.sigma:.3g}, "
                f"kappa {fit.kappa:.3g}, R^2 {fit.r2:.4f}; {where}"
            )
        if findings.best is None or findings.users_per_fe is None:
            lines.append("users per front end here: unknown (no run met the targets)")
        else:
            b = findings.best
            bound = (
                " at least (no run broke a target: raise --max-runs or --step)"
                if (findings.lower_bound)
                else ""
            )
            lines.append(
                f"users per front end here:{bound} {findings.users_per_fe:,.0f} (largest "
                f"passing run: {b.users:,} users on {b.front_ends} front end(s), p99 "
                f"{b.worst_p99_ms:.1f} ms, processor {b.cpu_percent:.1f}%)"
            )
        if findings.knee_users_per_fe is not None:
            lines.append(
                f"USL knee: {findings.knee_users_per_fe:,.0f} users per front end "
                "(past it, more users bring less throughput)"
            )
        lines.append(
            f"hardware: {os.cpu_count()} CPUs, {platform.machine()}; measured on a Standard "
            "pool (no replication to secondaries, which an Enterprise front end also does)"
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
    lines.append(f"plan: {out / 'plan.json'}")
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
        "points": [asdict(p) for p in points],
        "fit": None
        if fit is None
        else {
            "lambda": fit.lam,
            "sigma": fit.sigma,
            "kappa": fit.kappa,
            "r2": fit.r2,
            "peak_users": _finite(fit.peak_n()),
        },
        "fit_note": findings.fit_note if findings is not None else None,
        "users_per_fe": None
        if findings is None
        else {
            "largest_passing": findings.users_per_fe,
            "usl_knee": findings.knee_users_per_fe,
            "lower_bound": findings.lower_bound,
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


def main(args: argparse.Namespace) -> int:
    """Run ``poolsim plan`` with parsed options; 0 when done, 2 for contradictory options.

    Writes ``<out>/plan.json`` (created with its parents) and prints a summary; with
    ``--no-measure`` no pool is started and nothing but plan.json is written.
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
    if args.target_users is not None:
        lync = lync_figure(args.target_users)
        if findings is not None and findings.users_per_fe is not None:
            measured = front_ends_for(args.target_users, max(1.0, findings.users_per_fe))
    doc = plan_document(args, points, findings, lync, measured)
    (out / "plan.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    print(summary(points, findings, lync, measured, out))
    return 0
