"""The pool manager's settings (``FabricConfig``), validated once, with SPEC's defaults written
here and nowhere else (``enterprise.options.PoolOptions`` and the command line take them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from enterprise.placement import MIN_REPLICAS_FOR_SERVICE, REPLICAS
from enterprise.quorum import MAX_POOL_SIZE, MIN_POOL_SIZE
from pool.config import ConfigError


def _check_int(name: str, value: int, low: int, high: int, note: str = "") -> None:
    if type(value) is not int or not (low <= value <= high):
        raise ConfigError(
            f"{name}={value!r} is out of range: expected an integer {low}..{high}{note}"
        )


def _check_float(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (low <= value <= high):
        raise ConfigError(f"{name}={value!r} is out of range: expected {low:g}..{high:g} seconds")


GROUPS_PER_FRONT_END: Final = 8  # assumed (SPEC)
HEARTBEAT_INTERVAL: Final = 0.5  # assumed: with 3 misses a crash is noticed within ~2 s
HEARTBEAT_MISSES: Final = 3
POOL_NAME: Final = "pool01"


@dataclass(frozen=True, slots=True)
class FabricConfig:
    """The pool manager's settings, validated once. Values marked *assumed* are not documented
    by Microsoft; they are settings with SPEC's defaults."""

    pool_size: int
    groups_per_front_end: int = GROUPS_PER_FRONT_END
    replicas: int = REPLICAS
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    heartbeat_misses: int = HEARTBEAT_MISSES
    drain_timeout: float = 10.0  # assumed: how long a graceful stop waits for users to move
    pool_name: str = POOL_NAME

    def __post_init__(self) -> None:
        _check_int("pool_size", self.pool_size, MIN_POOL_SIZE, MAX_POOL_SIZE, " front ends")
        _check_int("groups_per_front_end", self.groups_per_front_end, 1, 1000)
        _check_int("replicas", self.replicas, MIN_REPLICAS_FOR_SERVICE, REPLICAS, " (SPEC: 3)")
        _check_float("heartbeat_interval", self.heartbeat_interval, 0.001, 60.0)
        _check_int("heartbeat_misses", self.heartbeat_misses, 1, 100)
        _check_float("drain_timeout", self.drain_timeout, 0.0, 3600.0)
        if not isinstance(self.pool_name, str) or not self.pool_name.strip():
            raise ConfigError(f"pool_name={self.pool_name!r} is empty: expected a name like pool01")

    @property
    def heartbeat_timeout(self) -> float:
        """Seconds without a heartbeat after which an FE is declared down."""
        return self.heartbeat_interval * self.heartbeat_misses

    @property
    def routing_groups(self) -> int:
        """Routing groups in the pool, fixed when it is created."""
        return self.groups_per_front_end * self.pool_size
