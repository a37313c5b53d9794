"""An Enterprise pool for tests: a fresh pool per test on the session's Ray cluster
(``ray_cluster`` in tests/conftest.py), with users provisioned as the Standard fixture does."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from enterprise.actors import PoolOptions
from enterprise.pool import EnterprisePool
from pool.client import PoolClient, Session
from pool.config import EngineConfig
from tests.conftest import ADMIN_TOKEN, DOMAIN, PASSWORD, uri
from tests.conftest import RAY_NODES as NODES

LOCAL_SUBCHANNELS = ("grpc.use_local_subchannel_pool", 1)


@dataclass
class RayPool:
    """A running Enterprise pool and what a test needs to drive it (like ``StandardPool``)."""

    pool: EnterprisePool
    client: PoolClient
    admin_token: str = ADMIN_TOKEN
    sessions: list[Session] = field(default_factory=list)

    async def sign_in(self, i: int, device: str = "desktop", domain: str = DOMAIN) -> Session:
        return await self.client.sign_in(uri(i, domain), PASSWORD, device)

    @property
    def addresses(self) -> list[str]:
        return self.pool.addresses

    async def close(self) -> None:
        await self.client.close()
        await self.pool.stop()


async def start_enterprise(
    data_dir: Path, *, front_ends: int = NODES, users: int = 10, **settings: object
) -> RayPool:
    opts = PoolOptions(
        front_ends=front_ends,
        data_dir=data_dir,
        metrics_base_port=0,
        admin_token=ADMIN_TOKEN,
        engine=EngineConfig(password_iterations=1),
    )
    if settings:
        from dataclasses import replace

        opts = replace(opts, **settings)  # type: ignore[arg-type]
    pool = await EnterprisePool.start(opts)
    await pool.call("provision", "user", DOMAIN, users, 0, PASSWORD)
    await pool.call("provision", "user", "fabrikam.com", 3, 0, PASSWORD)
    # connections of its own: gRPC shares them per address across the process, and an earlier
    # test's crashed front end at a port this pool's took again may be in reconnect backoff
    return RayPool(pool, PoolClient(pool.addresses, options=[LOCAL_SUBCHANNELS]))
