"""The `poolsim` command.

poolsim serve [--users N] ...      a Standard Edition front end (--edition enterprise: a pool)
poolsim run [--users N] ...        the user model against a pool, with a capacity report
poolsim plan [--target-users U]    capacity planning: users per front end, N-1 sizing
poolsim bench [--quick]            the hot routing path against bare baselines, as ratios
poolsim status [--address A]       what GetPoolStatus says, as a table
poolsim monitoring [--out DIR]     Prometheus config (every front end), rules, Grafana dashboard
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pool import logs
from pool.config import ConfigError, EngineConfig, Limits, Timers
from pool.durations import parse_duration
from pool.errors import PoolError

if TYPE_CHECKING:
    import grpc

    from pool.api.server import TlsFiles

PASSWORD_ENV = "POOLSIM_USER_PASSWORD"
DEFAULT_PASSWORD = "poolsim"


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--edition",
        choices=["standard", "enterprise"],
        default="standard",
        help="standard: one front end, no cluster; enterprise: a pool of front ends on Ray",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument(
        "--port",
        type=int,
        default=5061,
        help="gRPC port (default %(default)s; enterprise: front end i gets PORT+i-1; 0 any free)",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address the Prometheus endpoint listens on (default %(default)s; apart from "
        "--host: metrics are plaintext even when gRPC uses TLS)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=9464,
        help="Prometheus port (default %(default)s; enterprise: +i-1 as --port; 0 any free; "
        "-1 none)",
    )
    e = p.add_argument_group("enterprise edition")
    e.add_argument("--front-ends", type=int, default=3, help="front ends in the pool, 2..12")
    e.add_argument(
        "--ray-address",
        help="run on this existing Ray cluster (host:port, or auto for the one `ray start` made "
        "here); default: the one RAY_ADDRESS names, else a new local one",
    )
    e.add_argument(
        "--groups-per-front-end",
        type=int,
        default=8,
        help="routing groups per front end (default %(default)s)",
    )
    e.add_argument(
        "--heartbeat-interval",
        type=parse_duration,
        default="0.5s",
        help="between heartbeats; 3 missed mark a front end down",
    )
    e.add_argument(
        "--backup-interval",
        type=parse_duration,
        default="60s",
        help="between lazy backups to the back-end store",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("poolsim-data"),
        help="where the SQLite store and admin token live (default %(default)s)",
    )
    p.add_argument(
        "--users",
        type=int,
        default=0,
        help="provision sip:user0@DOMAIN .. sip:user<N-1>@DOMAIN at start",
    )
    p.add_argument(
        "--domain", default="contoso.com", help="domain of --users (default %(default)s)"
    )
    p.add_argument(
        "--user-password",
        help="password of --users (default: --user-password-file, else the "
        f"{PASSWORD_ENV} environment variable, else {DEFAULT_PASSWORD}); a flag shows in `ps`",
    )
    p.add_argument(
        "--user-password-file", type=Path, help="read the password of --users from this file"
    )
    p.add_argument(
        "--admin-token-file",
        type=Path,
        help="read the admin token from here (default: made in the data dir)",
    )
    p.add_argument("--tls-cert", type=Path, help="server certificate (PEM)")
    p.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    p.add_argument(
        "--tls-client-ca",
        type=Path,
        help="CA (PEM) that client certificates must chain to: mutual TLS",
    )
    p.add_argument(
        "--insecure", action="store_true", help="allow plaintext on a non-loopback address"
    )
    p.add_argument(
        "--durability",
        choices=["normal", "full"],
        default="normal",
        help="normal: acknowledged writes survive a crash of the process; full: "
        "also a power loss (slower)",
    )
    g = p.add_argument_group("engine settings (Lync's documented values by default)")
    g.add_argument("--pool-name", default="pool01", help="the pool's name (metrics, records)")
    g.add_argument("--routing-groups", type=int, default=8, help="Standard: routing groups")
    g.add_argument(
        "--event-queue",
        type=int,
        default=1000,
        help="events queued per endpoint before they are dropped",
    )
    g.add_argument(
        "--registration-expiry",
        type=parse_duration,
        default="10m",
        help="without a refresh before an endpoint is signed out (5m..15m)",
    )
    g.add_argument(
        "--idle-timeout",
        type=parse_duration,
        default="5m",
        help="without input before Inactive (5m..6h)",
    )
    g.add_argument("--max-contacts", type=int, default=250, help="per user, up to 1000")
    g.add_argument(
        "--max-users-per-registrar", type=int, default=12_000, help="signed-in users per front end"
    )
    g.add_argument("--password-iterations", type=int, default=50_000, help="PBKDF2-SHA256")


def user_password(a: argparse.Namespace) -> str:
    """--user-password, else the first line of --user-password-file, else $POOLSIM_USER_PASSWORD,
    else the default. Never printed."""
    if a.user_password is not None and a.user_password_file is not None:
        raise SystemExit("give --user-password or --user-password-file, not both")
    if a.user_password is not None:
        return str(a.user_password)
    if a.user_password_file is not None:
        try:
            text = a.user_password_file.read_text()
        except OSError as exc:
            raise SystemExit(f"cannot read --user-password-file: {exc}") from exc
        password = text.splitlines()[0] if text else ""
        if not password:
            raise SystemExit(f"--user-password-file {a.user_password_file} is empty")
        return password
    return os.environ.get(PASSWORD_ENV) or DEFAULT_PASSWORD


def engine_config(a: argparse.Namespace) -> EngineConfig:
    return EngineConfig(
        pool_name=a.pool_name,
        routing_groups=a.routing_groups,
        event_queue_capacity=a.event_queue,
        password_iterations=a.password_iterations,
        limits=Limits(
            max_contacts=a.max_contacts, max_users_per_registrar=a.max_users_per_registrar
        ),
        timers=Timers(registration_expiry=a.registration_expiry, idle_inactive=a.idle_timeout),
    )


def cmd_serve_enterprise(a: argparse.Namespace) -> int:
    from enterprise.actors import PoolOptions
    from enterprise.pool import EnterpriseServeOptions, main
    from standard.server import is_loopback

    tls = _tls_files(a)
    try:
        pem = tls.load() if tls is not None else None
    except OSError as exc:
        raise SystemExit(f"cannot read a TLS file: {exc}") from exc
    if pem is None and not is_loopback(a.host) and not a.insecure:
        raise SystemExit(
            f"refusing to serve on {a.host} without TLS: give --insecure to serve plaintext"
        )
    config = engine_config(a)
    pool = PoolOptions(
        front_ends=a.front_ends,
        pool_name=a.pool_name,
        host=a.host,
        base_port=a.port,
        metrics_host=a.metrics_host,
        metrics_base_port=a.metrics_port,
        groups_per_front_end=a.groups_per_front_end,
        heartbeat_interval=a.heartbeat_interval,
        backup_interval=a.backup_interval,
        data_dir=a.data_dir,
        durability=a.durability,
        engine=config,
        tls=pem,
    )
    pool.fabric_config()  # settings errors now, before Ray starts
    opts = EnterpriseServeOptions(
        pool,
        a.ray_address,
        users=a.users,
        domain=a.domain,
        user_password=user_password(a),
        admin_token_file=a.admin_token_file,
    )
    return main(opts)


def _tls_files(a: argparse.Namespace) -> TlsFiles | None:
    from pool.api.server import TlsFiles

    if (a.tls_cert is None) != (a.tls_key is None):
        raise SystemExit("--tls-cert and --tls-key go together")
    if a.tls_client_ca is not None and a.tls_cert is None:
        raise SystemExit("--tls-client-ca needs --tls-cert and --tls-key")
    return TlsFiles(a.tls_cert, a.tls_key, a.tls_client_ca) if a.tls_cert else None


def cmd_serve(a: argparse.Namespace) -> int:
    from standard.server import ServeOptions, main

    if a.edition == "enterprise":
        return cmd_serve_enterprise(a)
    tls = _tls_files(a)
    opts = ServeOptions(
        host=a.host,
        port=a.port,
        metrics_host=a.metrics_host,
        metrics_port=a.metrics_port,
        data_dir=a.data_dir,
        users=a.users,
        domain=a.domain,
        user_password=user_password(a),
        admin_token_file=a.admin_token_file,
        tls=tls,
        insecure=a.insecure,
        durability=a.durability,
        config=engine_config(a),
    )
    return main(opts)


def _admin_access(a: argparse.Namespace) -> tuple[str, grpc.ChannelCredentials | None]:
    """The admin token and, with --tls-ca, TLS credentials for a pool's admin API."""
    import grpc

    token = a.admin_token_file.read_text().strip()
    credentials = None
    if a.tls_ca is not None:
        try:
            ca = a.tls_ca.read_bytes()
        except OSError as exc:
            raise SystemExit(f"cannot read --tls-ca: {exc}") from exc
        credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    return token, credentials


def _admin_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--address", default="127.0.0.1:5061", help="any front end of the pool (host:port)"
    )
    p.add_argument(
        "--admin-token-file",
        type=Path,
        default=Path("poolsim-data") / "admin.token",
        help="the pool's admin token",
    )
    p.add_argument(
        "--tls-ca", type=Path, help="CA (PEM) of a pool that serves TLS: connect with TLS"
    )


def cmd_status(a: argparse.Namespace) -> int:
    from pool.api.status_table import fetch_and_format

    token, credentials = _admin_access(a)
    print(asyncio.run(fetch_and_format(a.address, token, credentials)))
    return 0


def cmd_monitoring(a: argparse.Namespace) -> int:
    from pool import monitoring
    from pool._proto.poolsim.v1 import admin_pb2 as apb
    from pool.client import PoolClient

    targets: list[monitoring.Target] = []
    if not a.no_pool:
        token, credentials = _admin_access(a)

        async def fetch() -> apb.PoolStatus:
            async with PoolClient(a.address, credentials=credentials) as client:
                return await client.admin(token).status()

        status = asyncio.run(fetch())
        targets = [
            monitoring.Target(f.metrics_address, (("pool", status.pool_name), ("front_end", f.id)))
            for f in status.front_ends
            if f.metrics_address
        ]
        if not targets:
            raise SystemExit(f"the pool at {a.address} serves no metrics (--metrics-port -1)")
    driver = [monitoring.Target(d, (("role", "driver"),)) for d in a.driver]
    for path in monitoring.write(a.out, targets, driver, targets_only=a.targets_only):
        print(f"wrote {path}")
    for t in targets:
        print(f"  scrape {dict(t.labels)['front_end']}: http://{t.address}/metrics")
    config = a.out / "prometheus.yml"
    print(
        f"run: prometheus --config.file={config} --storage.tsdb.path={a.out / 'prometheus-data'}"
        f"\nGrafana: import {a.out / 'grafana-dashboard.json'} (choose the Prometheus data source)"
    )
    return 0


def _monitoring_args(p: argparse.ArgumentParser) -> None:
    _admin_args(p)
    p.add_argument(
        "--out", type=Path, default=Path("monitoring"), help="folder to write the files into"
    )
    p.add_argument(
        "--targets-only",
        action="store_true",
        help="only rewrite poolsim-targets.json (Prometheus re-reads it): after the pool changed",
    )
    p.add_argument(
        "--driver",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a load driver's metrics endpoint to scrape too (repeatable)",
    )
    p.add_argument(
        "--no-pool",
        action="store_true",
        help="write the files without asking a pool for its front ends (empty target list)",
    )


def cmd_run(a: argparse.Namespace) -> int:
    from bench.report import Thresholds
    from bench.run import RunOptions, main

    opts = RunOptions(
        users=a.users,
        level=a.level,
        model_file=a.model,
        duration=a.duration,
        ramp=a.ramp,
        speedup=a.speedup,
        seed=a.seed,
        transport=a.transport,
        workers=0 if a.workers == "auto" else int(a.workers),
        metrics_port=a.metrics_port,
        password_iterations=a.password_iterations,
        min_window=a.min_window,
        edition=a.edition,
        front_ends=a.front_ends,
        ray_address=a.ray_address,
        kill_at=a.kill_front_end_at,
        kill_front_end=a.kill_front_end,
        target=a.target,
        admin_token_file=a.admin_token_file,
        out=a.out,
        thresholds=Thresholds(cpu_percent=a.cpu_target, p99_ms=a.p99_target_ms),
        progress=False if a.quiet else None,
    )
    return main(opts, exit_zero=a.exit_zero)


def _workers(text: str) -> str:
    if text != "auto" and not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a count >= 1 or auto")
    return text


def cmd_report(a: argparse.Namespace) -> int:
    from bench.folder import main

    return main(a.folder, a.out)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--users",
        type=int,
        default=3000,
        help="enabled users; 80%% of them sign in (default %(default)s)",
    )
    p.add_argument(
        "--level",
        choices=["high", "medium", "low", "custom"],
        default="high",
        help="stress-tool load level: high = the user model, medium 60%%, low 30%%",
    )
    p.add_argument("--model", type=Path, help="TOML file of explicit rates (--level custom)")
    p.add_argument("--duration", type=parse_duration, default="60s", help="of the run")
    p.add_argument(
        "--ramp",
        type=float,
        default=120.0,
        help="sign-ins per second during the ramp (default %(default)s; Lync's pool peak is "
        "about 12)",
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
        type=_workers,
        default="1",
        help="driver processes (Ray actors beyond one), or auto: one per core the pool leaves "
        "free (default %(default)s)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        help="serve the driver's own Prometheus metrics on 127.0.0.1:PORT (0: a free port; "
        "worker k of --workers uses PORT+k)",
    )
    p.add_argument(
        "--min-window",
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
        choices=["standard", "enterprise"],
        default="standard",
        help="the pool to start: standard (one front end, its own process) or enterprise "
        "(front ends on Ray, in this process); default %(default)s",
    )
    e = p.add_argument_group("enterprise edition")
    e.add_argument("--front-ends", type=int, default=3, help="front ends in the pool, 2..12")
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


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's default in --help, unless its help already says it, or it has none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default" in text or not action.option_strings:
            return text
        if action.default in (None, [], argparse.SUPPRESS) or action.default is False:
            return text
        return f"{text} (default %(default)s)" if text else "default %(default)s"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("poolsim")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poolsim",
        description="A simulator of a Lync Server 2013 IM and presence front-end pool.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"poolsim {_version()}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        choices=logs.LEVELS,
        default="warning",
        help="what is logged to stderr; Ray's own logs and banners only at info or debug",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common], formatter_class=_HelpFormatter)

    serve = command(
        "serve", "run a pool: one front end, or --edition enterprise for several on Ray"
    )
    _serve_args(serve)
    serve.set_defaults(func=cmd_serve)
    run = command("run", "drive a pool with the Lync user model and report")
    _run_args(run)
    run.set_defaults(func=cmd_run)
    from bench import plan

    plan_parser = command(
        "plan", "step the load up, fit the USL, size a pool for N users with one FE down"
    )
    plan.add_arguments(plan_parser)
    plan_parser.set_defaults(func=plan.main)
    from bench import hotpath

    bench_parser = command(
        "bench", "hot-path benchmarks against baselines measured in the same run"
    )
    hotpath.add_arguments(bench_parser)
    bench_parser.set_defaults(func=hotpath.main)
    report = command(
        "report", "build the report of a run from its folder (also one stopped or killed)"
    )
    report.add_argument("folder", type=Path, help="the run's folder (its --out)")
    report.add_argument("--out", type=Path, help="write the report here (default: the folder)")
    report.set_defaults(func=cmd_report)
    status = command("status", "show a running pool's front ends, groups and quorum")
    _admin_args(status)
    status.set_defaults(func=cmd_status)
    monitoring = command(
        "monitoring", "write a Prometheus config scraping every front end, rules, a dashboard"
    )
    _monitoring_args(monitoring)
    monitoring.set_defaults(func=cmd_monitoring)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"poolsim: bad setting: {exc}", file=sys.stderr)
        return 2
    except PoolError as exc:
        print(f"poolsim: {exc.message}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"poolsim: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
