"""Start and stop an Enterprise pool on Ray, and `poolsim serve --edition enterprise`.

``EnterprisePool.start`` connects to Ray (a new local instance by default, an existing cluster
with ``ray_address``), creates the fabric actor, which starts the front ends, and returns once
the pool serves. Actors take no CPU reservation (``num_cpus=0``) so a small machine holds a
whole pool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from enterprise.actors import Handle, unwrap
from enterprise.cluster import connect
from enterprise.fabric_actor import FabricActor
from enterprise.options import PoolOptions
from pool.errors import PoolError
from pool.status import FrontEndState, PoolStatusInfo
from standard.admin_token import load_or_create
from standard.data_lock import DataDirLock

log = logging.getLogger("poolsim.enterprise")


@dataclass
class EnterprisePool:
    fabric: Handle
    opts: PoolOptions
    status: PoolStatusInfo

    @classmethod
    async def start(
        cls, opts: PoolOptions, ray_address: str | None = None, *, hold: str = ""
    ) -> EnterprisePool:
        """Start a pool; with ``hold``, it answers UNAVAILABLE naming it (and health
        NOT_SERVING) until ``call("release")``."""
        connect(ray_address)
        # the back-end store lives here, on this machine: the fabric runs on this node
        opts = replace(opts, data_dir=opts.data_dir.resolve())
        name = f"poolsim-{opts.pool_name}-fabric-{secrets.token_hex(3)}"
        here = ray.get_runtime_context().get_node_id()
        actor: Any = ray.remote(FabricActor)
        actor = actor.options(
            num_cpus=0,
            max_concurrency=1000,
            name=name,
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True),
        )
        fabric = actor.remote(opts)
        status: PoolStatusInfo = await fabric.start.remote(hold)
        return cls(fabric, opts, status)

    @property
    def addresses(self) -> list[str]:
        return [fe.address for fe in self.status.front_ends if fe.state is FrontEndState.UP]

    async def refresh(self) -> PoolStatusInfo:
        self.status = await self.fabric.status.remote()
        return self.status

    async def call(self, method: str, *args: Any) -> Any:
        """A fabric method, with domain errors raised as themselves."""
        return await unwrap(getattr(self.fabric, method).remote(*args))

    async def stop(self) -> None:
        try:
            await self.fabric.shutdown.remote()
        finally:
            ray.kill(self.fabric)


@dataclass(frozen=True, slots=True)
class EnterpriseServeOptions:
    pool: PoolOptions
    ray_address: str | None = None
    users: int = 0
    user_prefix: str = "user"
    domain: str = "contoso.com"
    user_password: str = "poolsim"
    admin_token_file: Path | None = None


async def serve(opts: EnterpriseServeOptions, *, stop: asyncio.Event | None = None) -> int:
    pool_opts = opts.pool
    pool_opts.data_dir.mkdir(parents=True, exist_ok=True)
    token_path = opts.admin_token_file or pool_opts.data_dir / "admin.token"
    token = load_or_create(token_path, create=opts.admin_token_file is None)
    pool_opts = replace(pool_opts, admin_token=token)
    where = opts.ray_address or "a new local Ray instance"
    print(f"poolsim enterprise edition: starting {pool_opts.front_ends} front ends on {where}")
    hold = f"provisioning {opts.users} users" if opts.users else ""
    pool = await EnterprisePool.start(pool_opts, opts.ray_address, hold=hold)
    try:
        if opts.users:
            result, _ = await pool.call(
                "provision", opts.user_prefix, opts.domain, opts.users, 0, opts.user_password
            )
            print(
                f"users: {result.created} provisioned, {result.already_existed} already there "
                f"({result.first_uri} .. {result.last_uri})"
            )
        await pool.call("release")  # ready means ready: only now does any front end serve
        status = await pool.refresh()
        for fe in status.front_ends:
            metrics = f"  metrics http://{fe.metrics_address}/metrics" if fe.metrics_address else ""
            print(f"front end {fe.id}: {fe.state.value} on {fe.address}{metrics}")
        print(f"pool {status.pool_name}: {status.quorum.value} ({status.quorum_detail})")
        print(f"admin token: {token_path}")
        print("stop with Ctrl-C or SIGTERM", flush=True)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("stopping: signing endpoints out", flush=True)
    except PoolError as exc:
        print(f"poolsim: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await pool.stop()
    print("stopped", flush=True)
    return 0


def main(opts: EnterpriseServeOptions) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    with DataDirLock(opts.pool.data_dir):  # a second server on this directory refuses here
        return asyncio.run(serve(opts))
