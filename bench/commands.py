"""The harness's commands, as ``poolsim`` finds them (the entry points ``poolsim.commands``
in pyproject.toml, see ``pool.commands``): run, plan, bench and report. Each module they call
is imported only when its command runs, so ``poolsim --help`` stays quick.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cpus import add_pool_cpus_argument
from bench.presets import PRESETS, Given, apply, help_text
from bench.workers import workers_option
from pool.commands import Command
from pool.durations import parse_duration
from pool.serve_options import add_throttling_arguments


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a fraction, 0 < x <= 1")
    return value


def endpoints_per_user(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 1 <= value <= 8:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 1 to 8 endpoints per user")
    return value


def _run(a: argparse.Namespace) -> int:
    from bench.report import Thresholds
    from bench.run import main
    from bench.run_options import RunOptions
    from pool.serve_options import throttling

    a = apply(a)
    opts = RunOptions(
        users=a.users,
        level=a.level,
        model_file=a.model,
        duration=a.duration,
        ramp=a.ramp,
        speedup=a.speedup,
        signed_in_fraction=a.signed_in_fraction,
        endpoints_per_user=a.endpoints_per_user,
        preset=a.preset,
        seed=a.seed,
        transport=a.transport,
        workers=a.workers,
        pool_cpus=a.pool_cpus,
        metrics_port=a.metrics_port,
        password_iterations=a.password_iterations,
        min_window=a.min_window,
        edition=a.edition,
        front_ends=a.front_ends,
        heartbeat_interval=a.heartbeat_interval,
        peer_links=a.peer_links,
        ray_address=a.ray_address,
        kill_at=a.kill_front_end_at,
        kill_front_end=a.kill_front_end,
        target=a.target,
        admin_token_file=a.admin_token_file,
        out=a.out,
        thresholds=Thresholds(cpu_percent=a.cpu_target, p99_ms=a.p99_target_ms),
        progress=False if a.quiet else None,
        throttling=throttling(a),
    )
    return main(opts, exit_zero=a.exit_zero)


def _report(a: argparse.Namespace) -> int:
    from bench.folder import main

    return main(a.folder, a.out)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--users",
        action=Given,
        type=int,
        default=3000,
        help="enabled users; 80%% of them sign in (default %(default)s)",
    )
    p.add_argument(
        "--level",
        action=Given,
        choices=["high", "medium", "low", "custom"],
        default="high",
        help="stress-tool load level: high = the user model, medium 60%%, low 30%%",
    )
    p.add_argument("--model", type=Path, help="TOML file of explicit rates (--level custom)")
    p.add_argument(
        "--duration", action=Given, type=parse_duration, default="60s", help="of the run"
    )
    p.add_argument(
        "--ramp",
        action=Given,
        type=float,
        default=120.0,
        help="sign-ins per second during the ramp (default %(default)s; Lync's pool peak is "
        "about 12)",
    )
    p.add_argument(
        "--signed-in-fraction",
        action=Given,
        type=fraction,
        help="of the enabled users, those who sign in (default: the model's, 0.8)",
    )
    p.add_argument(
        "--endpoints-per-user",
        action=Given,
        type=endpoints_per_user,
        help="endpoints each signed-in user signs in, on average, 1..8 (default: the "
        "model's, 1.5; 1.9 with mobile)",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="a whole scenario; options given beside it keep their values. " + help_text(),
    )
    p.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        help="multiply every rate, for short runs (default %(default)s)",
    )
    p.add_argument("--seed", type=int, default=1, help="the schedule's seed (default %(default)s)")
    p.add_argument(
        "--transport",
        choices=("session", "unary"),
        default="session",
        help="how each simulated endpoint sends its calls: on one FrontEnd.Session stream "
        "with its events, or one unary RPC per call and an Events stream (default %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=workers_option,
        default="1",
        help="driver processes (Ray actors beyond one), or auto: one per core the pool leaves "
        "free (default %(default)s)",
    )
    add_pool_cpus_argument(p)
    p.add_argument(
        "--metrics-port",
        type=int,
        help="serve the driver's own Prometheus metrics on 127.0.0.1:PORT (0: a free port; "
        "worker k of --workers uses PORT+k)",
    )
    p.add_argument(
        "--min-window",
        action=Given,
        type=parse_duration,
        default="10s",
        help="steady state the run must measure, else INCONCLUSIVE (default %(default)s)",
    )
    p.add_argument(
        "--password-iterations",
        type=int,
        default=1000,
        help="PBKDF2 cost of the pool this run starts (default %(default)s; serve's is 50000)",
    )
    p.add_argument(
        "--edition",
        action=Given,
        choices=["standard", "enterprise"],
        default="standard",
        help="the pool to start: standard (one front end, its own process) or enterprise "
        "(front ends on Ray, in this process); default %(default)s",
    )
    add_throttling_arguments(p)  # the pool's overload settings, as `poolsim serve` has them
    e = p.add_argument_group("enterprise edition")
    e.add_argument(
        "--front-ends", action=Given, type=int, default=3, help="front ends in the pool, 2..12"
    )
    e.add_argument(
        "--heartbeat-interval",
        action=Given,
        type=parse_duration,
        default="0.5s",
        help="of the pool this run starts: between heartbeats, 3 missed mark a front end down; "
        "longer on a machine with fewer cores than front ends (default %(default)s)",
    )
    e.add_argument(
        "--peer-links",
        choices=("direct", "ray"),
        default="direct",
        help="of the pool this run starts: how its front ends pass messages to each other, "
        "over TCP connections of their own or an actor call per batch (default %(default)s)",
    )
    e.add_argument(
        "--ray-address",
        help="the Ray cluster for the pool and --workers (host:port, or auto for the one `ray "
        "start` made here); default: the one RAY_ADDRESS names, else a new local one",
    )
    e.add_argument(
        "--kill-front-end-at",
        type=parse_duration,
        metavar="TIME",
        help="crash a front end this far into the run (30s, 1m) and report the fail-over",
    )
    e.add_argument(
        "--kill-front-end",
        metavar="FE",
        help="the front end to crash (default: the one with the most signed-in users then, "
        "not fe1)",
    )
    p.add_argument("--target", help="drive a running pool at this address instead")
    p.add_argument("--admin-token-file", type=Path, help="the target pool's admin token")
    p.add_argument("--out", type=Path, help="report folder (default reports/<time>)")
    p.add_argument("--cpu-target", type=float, default=80.0, help="front-end processor %% limit")
    p.add_argument("--p99-target-ms", type=float, default=100.0, help="p99 latency limit")
    p.add_argument(
        "--exit-zero",
        action="store_true",
        help="exit 0 whatever the verdict (default: 0 PASS, 1 FAIL, 3 INCONCLUSIVE; 2 bad options)",
    )
    p.add_argument("--quiet", action="store_true", help="no live progress line")


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", type=Path, help="the run's folder (its --out)")
    p.add_argument("--out", type=Path, help="write the report here (default: the folder)")


def _plan_args(p: argparse.ArgumentParser) -> None:
    from bench import plan

    plan.add_arguments(p)


def _plan(a: argparse.Namespace) -> int:
    from bench import plan

    return plan.main(a)


def _bench_args(p: argparse.ArgumentParser) -> None:
    from bench import hotpath

    hotpath.add_arguments(p)


def _bench(a: argparse.Namespace) -> int:
    from bench import hotpath

    return hotpath.main(a)


RUN = Command("run", "drive a pool with the Lync user model and report", 10, _run_args, _run)
PLAN = Command(
    "plan",
    "step the load up, fit the USL, size a pool for N users with one FE down",
    20,
    _plan_args,
    _plan,
)
BENCH = Command(
    "bench",
    "hot-path benchmarks against baselines measured in the same run",
    30,
    _bench_args,
    _bench,
)
REPORT = Command(
    "report",
    "build the report of a run from its folder (also one stopped or killed)",
    40,
    _report_args,
    _report,
)
