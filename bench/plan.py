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
import sys
from datetime import datetime
from pathlib import Path

from bench.capacity import front_ends_for, lync_figure
from bench.cpus import add_pool_cpus_argument
from bench.plan_answer import Findings, analyse, plan_document, plan_html, point_line, summary
from bench.plan_points import (
    DRIVER,
    MACHINE,
    NONE,
    POOL,
    RAMP,
    Point,
    classify,
    failed_point,
    next_users,
    point_from_report,
    pool_side_failures,
)
from bench.workers import workers_option
from pool.durations import parse_duration
from pool.serve_options import add_throttling_arguments, throttling

__all__ = [  # the command, and what it is made of, for one import
    "DRIVER",
    "MACHINE",
    "NONE",
    "POOL",
    "RAMP",
    "Findings",
    "Point",
    "add_arguments",
    "analyse",
    "classify",
    "main",
    "measure",
    "next_users",
    "plan_document",
    "plan_html",
    "point_from_report",
    "pool_side_failures",
    "run_duration",
    "summary",
]


def run_duration(users: int, steady: float, ramp: float) -> float:
    """How long a plan run of ``users`` lasts: its sign-in ramp (``users / ramp`` seconds) and
    then ``steady`` seconds, so every run, however large, has as long a steady part to measure
    its window in (a fixed length would leave the largest runs no window)."""
    return steady + users / ramp


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
        "--duration",
        type=parse_duration,
        default="45s",
        help="per run, besides its sign-in ramp: a run of U users lasts this plus U / --ramp "
        "seconds, so a larger run keeps as long a steady part (default %(default)s)",
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
    add_pool_cpus_argument(parser)
    parser.add_argument("--seed", type=int, default=1, help="the schedules' seed")
    parser.add_argument("--out", type=Path, help="plan folder (default reports/plan-<time>)")
    add_throttling_arguments(parser)  # of the pools the plan's runs start, as `poolsim run`


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
    if args.target is not None and args.pool_cpus is not None:
        return "--pool-cpus pins the pools the plan starts: not one at --target"
    return None


def measure(args: argparse.Namespace, out: Path) -> tuple[list[Point], str]:
    """The runs (stepping, then bisecting); returns the points and why the plan stopped."""
    from bench import report, report_files
    from bench.run import run
    from bench.run_options import RunOptions

    thresholds = report.Thresholds(cpu_percent=args.cpu_target, p99_ms=args.p99_target_ms)
    points: list[Point] = []
    users: int | None = int(args.start_users)
    for i in range(args.max_runs):
        if users is None:
            break
        folder = out / f"run-{users}"
        duration = run_duration(users, args.duration, args.ramp)
        print(
            f"plan run {i + 1}/{args.max_runs}: {users:,} users x speedup {args.speedup:g} "
            f"(stands for {users * args.speedup:,.0f}), {duration:.0f} s, "
            f"ramp {args.ramp:g}/s",
            flush=True,
        )
        opts = RunOptions(
            users=users,
            duration=duration,
            speedup=args.speedup,
            ramp=args.ramp,
            seed=args.seed,
            workers=args.workers,
            pool_cpus=args.pool_cpus,
            edition=args.edition,
            front_ends=args.front_ends,
            target=args.target,
            admin_token_file=args.admin_token_file,
            min_window=args.min_window,
            thresholds=thresholds,
            out=folder,
            progress=False,
            throttling=throttling(args),
        )
        try:
            result = asyncio.run(run(opts))
        except Exception as exc:  # a run that cannot finish ends the plan, keeping what we have
            why = f"{type(exc).__name__}: {exc}"
            points.append(failed_point(users, args, folder, why))
            return points, f"the run at {users:,} users did not finish ({why})"
        report_files.write(result, folder)
        p = point_from_report(result, users, args.ramp, folder, args.speedup)
        points.append(p)
        print("  " + point_line(p), flush=True)
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
