"""The `poolsim` command: serve a pool, show its status.

poolsim serve [--users N] ...      a Standard Edition front end
poolsim status [--address A]       what GetPoolStatus says, as a table
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from pool.config import ConfigError, EngineConfig, Limits, Timers


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--edition",
        choices=["standard"],
        default="standard",
        help="standard: one front end, no cluster (enterprise: see issue 3)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=5061, help="gRPC port (default %(default)s)")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=9464,
        help="Prometheus port (default %(default)s; 0 any free port; -1 none)",
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
        "--user-password", default="poolsim", help="password of --users (default %(default)s)"
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
    g = p.add_argument_group("engine settings (SPEC values by default)")
    g.add_argument("--pool-name", default="pool01")
    g.add_argument("--routing-groups", type=int, default=8)
    g.add_argument(
        "--event-queue",
        type=int,
        default=1000,
        help="events queued per endpoint before they are dropped",
    )
    g.add_argument("--registration-expiry", type=float, default=600.0, help="seconds, 300..900")
    g.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        help="seconds without input before Inactive (300..21600)",
    )
    g.add_argument("--max-contacts", type=int, default=250, help="per user, up to 1000")
    g.add_argument("--max-users-per-registrar", type=int, default=12_000)
    g.add_argument("--password-iterations", type=int, default=50_000, help="PBKDF2-SHA256")


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


def cmd_serve(a: argparse.Namespace) -> int:
    from pool.api.server import TlsFiles
    from standard.server import ServeOptions, main

    if (a.tls_cert is None) != (a.tls_key is None):
        raise SystemExit("--tls-cert and --tls-key go together")
    if a.tls_client_ca is not None and a.tls_cert is None:
        raise SystemExit("--tls-client-ca needs --tls-cert and --tls-key")
    tls = TlsFiles(a.tls_cert, a.tls_key, a.tls_client_ca) if a.tls_cert else None
    opts = ServeOptions(
        host=a.host,
        port=a.port,
        metrics_port=a.metrics_port,
        data_dir=a.data_dir,
        users=a.users,
        domain=a.domain,
        user_password=a.user_password,
        admin_token_file=a.admin_token_file,
        tls=tls,
        insecure=a.insecure,
        durability=a.durability,
        config=engine_config(a),
    )
    return main(opts)


def cmd_status(a: argparse.Namespace) -> int:
    from pool.api.status_table import fetch_and_format

    token = a.admin_token_file.read_text().strip()
    print(asyncio.run(fetch_and_format(a.address, token)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poolsim",
        description="A simulator of a Lync Server 2013 IM and presence front-end pool.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a pool (Standard Edition: one front end)")
    _serve_args(serve)
    serve.set_defaults(func=cmd_serve)
    status = sub.add_parser("status", help="show a running pool's front ends, groups and quorum")
    status.add_argument("--address", default="127.0.0.1:5061")
    status.add_argument(
        "--admin-token-file", type=Path, default=Path("poolsim-data") / "admin.token"
    )
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"poolsim: bad setting: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"poolsim: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
