"""The Enterprise edition as ``poolsim serve --edition enterprise`` finds it (the entry point
``poolsim.editions: enterprise``, see ``pool.commands``)."""

from __future__ import annotations

import argparse

from pool.commands import Edition
from pool.serve_options import engine_config, tls_files, user_password


def serve(a: argparse.Namespace) -> int:
    """``poolsim serve --edition enterprise``: a pool of front ends on Ray."""
    from enterprise.actors import PoolOptions
    from enterprise.pool import EnterpriseServeOptions, main
    from standard.server import is_loopback

    tls = tls_files(a)
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
        restart_delay=-1.0 if a.no_restart else a.restart_delay,
        rebalance_when_whole=not a.no_rebalance,
        data_dir=a.data_dir,
        durability=a.durability,
        engine=config,
        tls=pem,
        peer_links=a.peer_links,
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


EDITION = Edition("enterprise", order=1, serve=serve)
