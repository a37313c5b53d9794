"""The options of ``poolsim serve``, which every edition reads (``pool.commands.Edition``):
the parser's arguments, and what they make: the engine's configuration, the users' password,
the TLS files.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pool.config import EngineConfig, Limits, Throttling, Timers
from pool.durations import parse_duration

if TYPE_CHECKING:
    from pool.api.server import TlsFiles

PASSWORD_ENV = "POOLSIM_USER_PASSWORD"
DEFAULT_PASSWORD = "poolsim"


def add_arguments(p: argparse.ArgumentParser, editions: Sequence[str]) -> None:
    """The options of ``poolsim serve``; ``editions``: the names ``--edition`` offers."""
    p.add_argument(
        "--edition",
        choices=list(editions),
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
    e.add_argument(
        "--restart-delay",
        type=parse_duration,
        default="2s",
        help="before a crashed front end is started again by itself (Ray's actor restart)",
    )
    e.add_argument(
        "--no-restart",
        action="store_true",
        help="never restart a crashed front end by itself (StartFrontEnd does)",
    )
    e.add_argument(
        "--peer-links",
        choices=("direct", "ray"),
        default="direct",
        help="how front ends pass messages to each other: direct, over TCP connections of "
        "their own (plaintext, opened with a secret given through Ray), or ray, an actor call "
        "per batch (default %(default)s)",
    )
    e.add_argument(
        "--no-rebalance",
        action="store_true",
        help="leave primaries where fail-overs put them once every front end is back",
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
    add_throttling_arguments(p)


def add_throttling_arguments(p: argparse.ArgumentParser) -> None:
    """The overload settings (``pool.throttle``), Lync's values by default; ``poolsim run``
    offers the same ones for the pool it starts."""
    d = Throttling()
    t = p.add_argument_group("overload (Lync's thresholds by default)")
    t.add_argument(
        "--store-latency-limit",
        type=parse_duration,
        metavar="DURATION",
        default=d.store_latency_limit,
        help="a store write this slow makes the front end answer new requests 'server too "
        "busy' (UNAVAILABLE, retry-after) (default %(default)gs)",
    )
    t.add_argument(
        "--holding-time-limit",
        type=parse_duration,
        metavar="DURATION",
        default=d.holding_time_limit,
        help="average holding time of requests above which each endpoint gets "
        "--flow-controlled-outstanding requests under way (default %(default)gs)",
    )
    t.add_argument(
        "--holding-time-release",
        type=parse_duration,
        metavar="DURATION",
        default=d.holding_time_release,
        help="average holding time below which flow control ends (default %(default)gs)",
    )
    t.add_argument(
        "--outstanding-limit",
        type=int,
        metavar="N",
        default=d.outstanding_limit,
        help="requests under way per endpoint; more wait (default %(default)s)",
    )
    t.add_argument(
        "--flow-controlled-outstanding",
        type=int,
        metavar="N",
        default=d.flow_controlled_outstanding,
        help="the same under flow control (default %(default)s)",
    )
    t.add_argument(
        "--held-request-limit",
        type=parse_duration,
        metavar="DURATION",
        default=d.held_request_limit,
        help="a request waiting this long behind its endpoint's is answered 'server too busy' "
        "(default %(default)gs)",
    )
    t.add_argument(
        "--retry-after",
        type=parse_duration,
        metavar="DURATION",
        default=d.retry_after,
        help="what a refused request is told to wait, and how long a slow store write keeps "
        "the front end too busy (default %(default)gs)",
    )


def throttling(a: argparse.Namespace) -> Throttling:
    """The overload settings given (ConfigError names a bad one)."""
    return Throttling(
        store_latency_limit=a.store_latency_limit,
        holding_time_limit=a.holding_time_limit,
        holding_time_release=a.holding_time_release,
        outstanding_limit=a.outstanding_limit,
        flow_controlled_outstanding=a.flow_controlled_outstanding,
        held_request_limit=a.held_request_limit,
        retry_after=a.retry_after,
    )


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
        throttling=throttling(a),
    )


def tls_files(a: argparse.Namespace) -> TlsFiles | None:
    from pool.api.server import TlsFiles

    if (a.tls_cert is None) != (a.tls_key is None):
        raise SystemExit("--tls-cert and --tls-key go together")
    if a.tls_client_ca is not None and a.tls_cert is None:
        raise SystemExit("--tls-client-ca needs --tls-cert and --tls-key")
    return TlsFiles(a.tls_cert, a.tls_key, a.tls_client_ca) if a.tls_cert else None
