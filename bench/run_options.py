"""The options of ``poolsim run`` (:class:`RunOptions`), the checks they must pass before any
pool starts, the settings of the pool a run starts itself (and why they differ from ``poolsim
serve``'s), and the number of driver workers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import report
from bench.cpus import driver_cpus
from bench.workers import auto_workers
from pool.config import Throttling

#: ``poolsim serve``'s defaults, and what ``poolsim run`` starts its own pool with instead
SERVE_DEFAULTS = {"password_iterations": 50_000, "max_users_per_registrar": 12_000}


@dataclass(frozen=True, slots=True)
class RunOptions:
    users: int = 3000  # enabled users; 80% of them sign in
    level: str = "high"
    model_file: Path | None = None
    duration: float = 60.0
    ramp: float = 120.0  # sign-ins (users) per second
    speedup: float = 1.0
    #: the model's, unless given (of the enabled users, those who sign in; their endpoints)
    signed_in_fraction: float | None = None
    endpoints_per_user: float | None = None
    preset: str | None = None  # the --preset these options came from, for the report
    seed: int = 1
    workers: int = 1  # 0: auto (the cores the pool leaves free)
    #: the processors of the pool this run starts (the driver keeps the others); None: all
    pool_cpus: frozenset[int] | None = None
    metrics_port: int | None = None  # the driver's Prometheus endpoint (0: a free port)
    password_iterations: int = 1000  # of the pool this run starts (serve: 50,000)
    min_window: float = 10.0  # a shorter measurement window is INCONCLUSIVE
    window_at: float | None = None  # open the window by then at the latest (tests)
    edition: str = "standard"
    front_ends: int = 3  # enterprise: front ends in the pool
    heartbeat_interval: float = 0.5  # enterprise: of the pool this run starts
    peer_links: str = "direct"  # enterprise: how its front ends pass batches (PoolOptions)
    ray_address: str | None = None  # enterprise: an existing Ray cluster; None: a local one
    kill_at: float | None = None  # enterprise: crash a front end this far into the run
    kill_front_end: str | None = None  # which; None: the most signed-in users (not fe1)
    target: str | None = None
    admin_token_file: Path | None = None
    out: Path | None = None
    domain: str = "contoso.com"
    prefix: str = "user"
    password: str = "poolsim"
    channels: int = 4
    transport: str = "session"  # the driver's: "session" streams or "unary" RPCs
    thresholds: report.Thresholds = field(default_factory=report.Thresholds)
    progress: bool | None = None  # None: when stdout is a terminal
    #: the overload settings of the pool this run starts (Lync's by default)
    throttling: Throttling = field(default_factory=Throttling)


def check(opts: RunOptions) -> None:
    """Raise ValueError for options that do not go together (before any pool starts)."""
    if opts.pool_cpus is not None and (opts.target is not None or opts.ray_address):
        raise ValueError(
            "--pool-cpus pins a pool this run starts on this machine: not one at --target or "
            "on --ray-address's cluster"
        )
    if opts.kill_front_end is not None and opts.kill_at is None:
        raise ValueError("--kill-front-end needs --kill-front-end-at (when to kill it)")
    if opts.kill_at is None:
        return
    if not 0 < opts.kill_at < opts.duration:
        raise ValueError(
            f"--kill-front-end-at {opts.kill_at:g}: must be within the run (0..{opts.duration:g})"
        )
    if opts.workers > 1:
        raise ValueError("--kill-front-end-at works with a single driver (--workers 1)")
    if opts.target is None and opts.edition != "enterprise":
        raise ValueError(
            "--kill-front-end-at needs --edition enterprise (or an Enterprise pool as --target)"
        )


def pool_settings(opts: RunOptions) -> dict[str, Any]:
    """The settings of the pool ``poolsim run`` starts itself, and how they differ from
    ``poolsim serve``'s defaults and why (the report shows them)."""
    registrar = max(SERVE_DEFAULTS["max_users_per_registrar"], opts.users)
    settings: dict[str, Any] = {
        "password_iterations": opts.password_iterations,
        "max_users_per_registrar": registrar,
    }
    why = {
        "password_iterations": (
            "a compressed sign-in ramp: at the serve default every sign-in costs the front "
            "end about 50 times more processor (PBKDF2-SHA256), and the ramp's sign-ins would "
            "measure the password hash, not the pool (--password-iterations sets it)"
        ),
        "max_users_per_registrar": f"--users {opts.users} is more than Lync's 12,000 per registrar",
    }
    serve = dict(SERVE_DEFAULTS)
    for name in Throttling.__dataclass_fields__:  # overload settings given: passed on
        value = serve[name] = getattr(Throttling(), name)  # Lync's, serve's default
        if getattr(opts.throttling, name) != value:
            settings[name] = getattr(opts.throttling, name)
            why[name] = f"--{name.replace('_', '-')} given (Lync's value is {value:g})"
    differ = [
        {"setting": k, "run": v, "serve": serve[k], "why": why[k]}
        for k, v in settings.items()
        if v != serve[k]
    ]
    return {"settings": settings, "differ_from_serve": differ}


def resolve_workers(opts: RunOptions) -> int:
    """``--workers`` (0: auto, one per core the pool leaves free)."""
    if opts.workers > 0:
        return opts.workers
    if opts.pool_cpus is not None:  # the pool keeps to its own processors
        return max(1, len(driver_cpus(opts.pool_cpus)))
    if opts.target is not None:
        busy = 0  # the pool runs elsewhere (or its processes are not ours to count)
    elif opts.edition == "enterprise":
        busy = opts.front_ends
    else:
        busy = 1
    return auto_workers(os.cpu_count(), busy)
