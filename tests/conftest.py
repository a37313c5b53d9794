"""Shared fixtures: a real Standard front end (grpc.aio on loopback port 0, SQLite in tmp_path)
with an injected fake clock, and helpers to wait on conditions (never on sleeps).

Every test gets exactly one tier marker (``pytest -m fast``, ``-m grpc``, ``-m process``,
``-m ray``; ``make check`` runs them all), by where it lives and what it uses:

* ``fast``: the domain and the pure Enterprise logic (fake clocks, in-process transports, no
  sockets): tests/domain, tests/enterprise and the files in ``TIERS``;
* ``grpc``: real ``grpc.aio`` servers on loopback in the test's process (the default);
* ``process``: poolsim (or a compiler) in processes of their own;
* ``ray``: a real Ray cluster (the ``ray_cluster`` fixture, or the Enterprise edition of the
  contract suite), whatever the file's tier.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pool.api.metrics import Metrics
from pool.api.server import FrontEndServer, start_front_end
from pool.client import PoolClient, Session
from pool.clock import FakeClock
from pool.config import EngineConfig
from pool.engine import Engine
from pool.service import PoolService
from pool.sqlite_store import SqliteStore
from pool.store import Store
from tests.pki import OPENSSL, Pki, make_pki

ADMIN_TOKEN = "test-admin-token-0123456789"
PASSWORD = "pw"
DOMAIN = "contoso.com"
DEADLINE = 20.0  # seconds a condition may take before a test fails
RAY_NODES = 3


TIER_NAMES = ("fast", "grpc", "process", "ray")
#: test folders and files whose tier is not the default (``grpc``)
TIERS = {
    "tests/domain": "fast",
    "tests/enterprise": "fast",
    "tests/test_layout.py": "fast",
    "tests/bench/test_capacity.py": "fast",
    "tests/bench/test_throttled.py": "fast",
    "tests/bench/test_report.py": "fast",
    "tests/bench/test_schedule.py": "fast",
    "tests/bench/test_presets.py": "fast",
    "tests/bench/test_run_enterprise.py": "fast",
    "tests/bench/test_run.py": "process",
    "tests/bench/test_lifeline.py": "process",
    "tests/bench/test_interrupt_workers.py": "ray",
    "tests/test_process.py": "process",
    "tests/test_ray_priority.py": "process",
    "tests/test_codegen.py": "process",
    "tests/test_sqlite_store.py": "process",
}
ROOT = Path(__file__).resolve().parent.parent


def tier_of(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    if "ray_cluster" in getattr(item, "fixturenames", ()) or (
        callspec is not None and "enterprise" in callspec.params.values()
    ):
        return "ray"
    path = item.path.resolve().relative_to(ROOT).as_posix()
    for prefix, tier in TIERS.items():
        if path == prefix or path.startswith(prefix + "/"):
            return tier
    return "grpc"


def pytest_configure(config: pytest.Config) -> None:
    for name, what in zip(
        TIER_NAMES,
        (
            "pure domain and Enterprise logic: fake clocks, no sockets, no Ray",
            "real grpc.aio servers on loopback in the test's process",
            "poolsim or a compiler in processes of their own",
            "a real Ray cluster",
        ),
        strict=True,
    ):
        config.addinivalue_line("markers", f"{name}: tier: {what}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(tier_of(item))


def uri(i: int, domain: str = DOMAIN) -> str:
    return f"sip:user{i}@{domain}"


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, deadline: float = DEADLINE, what: str = ""
) -> None:
    """Wait until ``check()`` is true; fail after ``deadline`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > end:
            raise AssertionError(f"condition not met within {deadline} s: {what or check}")
        await asyncio.sleep(0.01)


@dataclass
class StandardPool:
    """A running Standard front end and what a test needs to drive it."""

    engine: Engine
    server: FrontEndServer
    clock: FakeClock
    registry: CollectorRegistry
    client: PoolClient
    address: str
    admin_token: str = ADMIN_TOKEN
    service: PoolService | None = None  # the one ``start_standard`` was given, if any

    async def sign_in(self, i: int, device: str = "desktop", domain: str = DOMAIN) -> Session:
        return await self.client.sign_in(uri(i, domain), PASSWORD, device)

    async def close(self) -> None:
        await self.client.close()
        await self.server.stop(grace=0.5)
        self.engine.store.close()

    def advance(self, seconds: float) -> None:
        """Move the fake clock and run what came due (on the server's own loop)."""
        self.clock.advance(seconds)
        self.engine.tick()

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value


async def start_standard(
    tmp_path: Path,
    config: EngineConfig | None = None,
    users: int = 10,
    *,
    store: Callable[[Path, FakeClock], Store] | None = None,
    service: Callable[[Engine], PoolService] | None = None,
) -> StandardPool:
    """``store``: makes the store from its file's path and the clock (a slow one, say);
    ``service``: answers the RPCs instead of the engine alone."""
    config = config or EngineConfig(password_iterations=1)
    clock = FakeClock()
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    path = tmp_path / "pool.db"
    engine = Engine(config, store(path, clock) if store else SqliteStore(path), clock, metrics)
    engine.load()
    engine.provision("user", DOMAIN, users, 0, PASSWORD)
    engine.provision("user", "fabrikam.com", 3, 0, PASSWORD)
    metrics.watch(engine, "standard")
    answers = service(engine) if service else None
    server = await start_front_end(
        engine, host="127.0.0.1", port=0, admin_token=ADMIN_TOKEN, metrics=metrics, service=answers
    )
    address = f"127.0.0.1:{server.port}"
    client = PoolClient(address)
    return StandardPool(engine, server, clock, registry, client, address, service=answers)


@pytest.fixture
async def standard(tmp_path: Path) -> AsyncIterator[StandardPool]:
    pool = await start_standard(tmp_path)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head
    and two workers), one Enterprise front end per node; one for the whole session, defined
    here only so that every test shares it."""
    import ray
    from ray.cluster_utils import Cluster

    from enterprise.cluster import NICENESS

    os.environ.setdefault(NICENESS, "0")  # front ends at the tests' priority, as poolsim's own
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    for _ in range(RAY_NODES - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="poolsim-tests", include_dashboard=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA with server and client certificates (tests/pki.py); skips the test when
    the openssl CLI is missing."""
    if OPENSSL is None:
        pytest.skip("the openssl CLI is not installed")
    return make_pki(tmp_path_factory.mktemp("pki"))
