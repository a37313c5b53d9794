"""How an Enterprise pool is set up: ``PoolOptions``, validated by the fabric's own config
(``enterprise.fabric.FabricConfig``) and the engine's. The fabric's defaults are written once,
in ``enterprise.fabric_config``; those only the actors use, here."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from enterprise.fabric_config import (
    GROUPS_PER_FRONT_END,
    HEARTBEAT_INTERVAL,
    HEARTBEAT_MISSES,
    POOL_NAME,
    FabricConfig,
)
from pool.api.server import TlsPem
from pool.config import EngineConfig

FRONT_ENDS = 3
BACKUP_INTERVAL = 60.0  # seconds between a primary's lazy backups to the back-end store
PEER_LINKS = ("direct", "ray")
RESTART_DELAY = 2.0  # seconds before a crashed front end is started again (assumed)


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """One Enterprise pool. ``data_dir`` holds the back-end store (kept across restarts)."""

    front_ends: int = FRONT_ENDS
    pool_name: str = POOL_NAME
    host: str = "127.0.0.1"
    base_port: int = 0  # 0: any free port; else front end i listens on base_port + i - 1
    metrics_base_port: int = 0  # 0: any free port; -1: no metrics endpoints
    metrics_host: str = "127.0.0.1"  # apart from host: metrics are plaintext even with TLS
    groups_per_front_end: int = GROUPS_PER_FRONT_END
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    heartbeat_misses: int = HEARTBEAT_MISSES
    backup_interval: float = BACKUP_INTERVAL
    data_dir: Path = Path("poolsim-data")
    durability: str = "normal"  # of the back-end store and every front end's local store
    rebalance_when_whole: bool = True  # rebalance primaries once every front end is back
    #: seconds before a front end that crashed (not one an operator stopped) is started again
    #: through Ray's own actor restart; negative: never (an operator runs StartFrontEnd)
    restart_delay: float = RESTART_DELAY
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    engine: EngineConfig = field(default_factory=EngineConfig)
    tls: TlsPem | None = field(default=None, repr=False)  # every front end serves TLS with it
    #: how a front end's batches reach the others: "direct", over connections of their own
    #: (``enterprise.peers``), or "ray", one actor call per batch
    peer_links: str = "direct"

    def __post_init__(self) -> None:
        if self.peer_links not in PEER_LINKS:
            raise ValueError(
                f"peer_links must be one of {', '.join(PEER_LINKS)}, not {self.peer_links!r}"
            )

    def fabric_config(self) -> FabricConfig:
        return FabricConfig(
            self.front_ends,
            self.groups_per_front_end,
            heartbeat_interval=self.heartbeat_interval,
            heartbeat_misses=self.heartbeat_misses,
            pool_name=self.pool_name,
        )

    def front_end_ids(self) -> list[str]:
        return [f"fe{i}" for i in range(1, self.front_ends + 1)]
