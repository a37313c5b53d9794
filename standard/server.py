"""`poolsim serve` for the Standard Edition: one front end over a SQLite store.

Start-up: open the store under the data dir, load the directory, provision ``--users`` (those
that exist are kept), read or make the admin token, start metrics and gRPC, print where each
is. SIGTERM / SIGINT: stop accepting, sign every endpoint out (with records), exit 0.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from pool import heap
from pool.api.metrics import Metrics, serve_metrics
from pool.api.server import TlsFiles, start_front_end
from pool.clock import SystemClock
from pool.config import EngineConfig
from pool.engine import Engine
from pool.sqlite_store import SqliteStore
from standard.admin_token import load_or_create
from standard.data_lock import DataDirLock

log = logging.getLogger("poolsim.standard")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 5061
    metrics_host: str = "127.0.0.1"  # apart from host: metrics are plaintext even with TLS
    metrics_port: int = 9464  # -1: no metrics endpoint
    data_dir: Path = Path("poolsim-data")
    users: int = 0
    user_prefix: str = "user"
    domain: str = "contoso.com"
    user_password: str = "poolsim"
    admin_token_file: Path | None = None
    tls: TlsFiles | None = None
    insecure: bool = False
    durability: str = "normal"
    config: EngineConfig = field(default_factory=EngineConfig)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(opts: ServeOptions) -> None:
    if not is_loopback(opts.host) and opts.tls is None and not opts.insecure:
        raise SystemExit(
            f"refusing to serve on {opts.host} without TLS: give --tls-cert and --tls-key, or "
            "--insecure to serve plaintext anyway"
        )


def private_data(data_dir: Path) -> Path:
    """The data directory, mode 0700, with its store file made 0600 before SQLite opens it
    (SQLite gives its -wal and -shm files the database file's mode)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    for name in ("pool.db", "pool.db-wal", "pool.db-shm"):
        path = data_dir / name
        if path.exists():
            path.chmod(0o600)
    db = data_dir / "pool.db"
    if not db.exists():
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))
    return data_dir


async def serve(
    opts: ServeOptions, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None
) -> int:
    check(opts)
    with DataDirLock(opts.data_dir):  # a second server on this directory refuses here
        return await _serve(opts, ready, stop)


async def _serve(
    opts: ServeOptions, ready: asyncio.Event | None, stop: asyncio.Event | None
) -> int:
    store = SqliteStore(private_data(opts.data_dir) / "pool.db", durability=opts.durability)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    engine = Engine(opts.config, store, SystemClock(), metrics)
    heap.tune()
    loaded = engine.load()
    if opts.users:
        result = engine.provision(opts.user_prefix, opts.domain, opts.users, 0, opts.user_password)
        print(
            f"users: {result.created} provisioned, {result.already_existed} already there "
            f"({result.first_uri} .. {result.last_uri})"
        )
    elif loaded:
        print(f"users: {loaded} loaded from {opts.data_dir}")
    heap.settle()  # the directory and the contact lists live until the server stops
    token_path = opts.admin_token_file or opts.data_dir / "admin.token"
    token = load_or_create(token_path, create=opts.admin_token_file is None)
    metrics_server = None
    if opts.metrics_port >= 0:
        metrics_server, bound = serve_metrics(opts.metrics_host, opts.metrics_port, registry)
        engine.metrics_address = f"{opts.metrics_host}:{bound}"
    metrics.watch(engine, "standard")
    server = await start_front_end(
        engine, host=opts.host, port=opts.port, admin_token=token, metrics=metrics, tls=opts.tls
    )
    scheme = "TLS" if opts.tls else "plaintext"
    print(
        f"poolsim standard edition: front end {engine.config.front_end_id} serving on "
        f"{engine.address} ({scheme})"
    )
    if engine.metrics_address:
        print(f"metrics: http://{engine.metrics_address}/metrics")
    print(f"admin token: {token_path}")
    print("stop with Ctrl-C or SIGTERM", flush=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
        print("stopping: signing endpoints out", flush=True)
        await server.stop(grace=5.0)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        store.close()
    print("stopped", flush=True)
    return 0


def main(opts: ServeOptions) -> int:
    """`poolsim serve`: logging is set up by the command line (``--log-level``)."""
    return asyncio.run(serve(opts))
