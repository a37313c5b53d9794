"""The Standard edition as ``poolsim serve`` finds it (the entry point ``poolsim.editions:
standard``, see ``pool.commands``): one front end, no cluster."""

from __future__ import annotations

import argparse

from pool.commands import Edition
from pool.serve_options import engine_config, tls_files, user_password


def serve(a: argparse.Namespace) -> int:
    """``poolsim serve``: one front end until Ctrl-C or SIGTERM."""
    from standard.server import ServeOptions, main

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
        tls=tls_files(a),
        insecure=a.insecure,
        durability=a.durability,
        config=engine_config(a),
    )
    return main(opts)


EDITION = Edition("standard", order=0, serve=serve)
