"""The `poolsim` command: the composition root. The core's commands are here; the harness's
(run, plan, bench, report) and the editions ``serve`` starts are found through entry points
(``pool.commands``), so nothing in ``pool`` imports ``bench``, ``enterprise`` or ``standard``.

poolsim serve [--users N] ...      a Standard Edition front end (--edition enterprise: a pool)
poolsim run [--users N] ...        the user model against a pool, with a capacity report
poolsim plan [--target-users U]    capacity planning: users per front end, N-1 sizing
poolsim bench [--quick]            the hot routing path against bare baselines, as ratios
poolsim status [--address A]       what GetPoolStatus says, as a table
poolsim stop-front-end FE [--crash] | start-front-end FE | reset-registrar TYPE
                                   the pool's administration, as Lync's cmdlets do it
poolsim monitoring [--out DIR]     Prometheus config (every front end), rules, Grafana dashboard
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pool import admin_cli, logs, serve_options
from pool.commands import Command, editions, installed_commands
from pool.config import ConfigError
from pool.errors import PoolError

if TYPE_CHECKING:
    import grpc


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


def cmd_serve(a: argparse.Namespace) -> int:
    """``poolsim serve``: the edition asked for (``pool.commands.editions``)."""
    from pool.lifeline import watch_from_env

    watch_from_env()  # started by `poolsim run`: end with it (pool.lifeline)
    found = editions()
    if a.edition not in found:
        raise SystemExit(f"edition {a.edition!r} is not installed: pip install -e . (or poolsim)")
    return found[a.edition].serve(a)


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    serve_options.add_arguments(p, list(editions()) or ["standard", "enterprise"])


def _admin_command(
    order: int,
    name: str,
    text: str,
    arguments: Callable[[argparse.ArgumentParser], None],
    action: Callable[[argparse.Namespace, admin_cli.Access], int],
) -> Command:
    def add(p: argparse.ArgumentParser) -> None:
        arguments(p)
        _admin_args(p)

    return Command(name, text, order, add, lambda a: action(a, _admin_access))


#: the core's own commands; the others come from the entry points (``pool.commands``)
CORE = (
    Command(
        "serve",
        "run a pool: one front end, or --edition enterprise for several on Ray",
        0,
        _serve_arguments,
        cmd_serve,
    ),
    Command(
        "status", "show a running pool's front ends, groups and quorum", 50, _admin_args, cmd_status
    ),
    Command(
        "monitoring",
        "write a Prometheus config scraping every front end, rules, a dashboard",
        60,
        _monitoring_args,
        cmd_monitoring,
    ),
    *(_admin_command(51 + k, *command) for k, command in enumerate(admin_cli.COMMANDS)),
)


def build_parser() -> argparse.ArgumentParser:
    installed = installed_commands()
    parser = argparse.ArgumentParser(
        prog="poolsim",
        description="A simulator of a Lync Server 2013 IM and presence front-end pool.",
        formatter_class=_HelpFormatter,
        epilog=None
        if installed
        else "run, plan, bench and report are not installed: pip install -e . in the source tree",
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
    for command in sorted((*CORE, *installed), key=lambda c: c.order):
        p = sub.add_parser(
            command.name, help=command.help, parents=[common], formatter_class=_HelpFormatter
        )
        command.add_arguments(p)
        p.set_defaults(func=command.run)
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
