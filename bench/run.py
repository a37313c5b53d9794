"""`poolsim run`: drive a pool with the Lync user model and report what planners read.

With no arguments: a Standard pool in its own process, a few thousand users at the High level
with a compressed sign-in ramp, about a minute; the report is printed and written to
``reports/<time>/``. ``--target`` drives a running pool instead (with its admin token).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.driver import Driver, DriverConfig
from bench.model import UserModel, level_model
from bench.pool_process import PoolProcess, start_standard
from bench.probe import Probe
from bench.schedule import Population, plan, population
from bench.stats import Recorder, summary
from bench.workers import run_workers
from pool.client import AdminClient, PoolClient
from pool.privacy import AccessLevel

CONTACT_CHUNK = 20_000


@dataclass(frozen=True, slots=True)
class RunOptions:
    users: int = 3000  # enabled users; 80% of them sign in
    level: str = "high"
    model_file: Path | None = None
    duration: float = 60.0
    ramp: float = 120.0  # sign-ins (users) per second
    speedup: float = 1.0
    seed: int = 1
    workers: int = 1
    edition: str = "standard"
    target: str | None = None
    admin_token_file: Path | None = None
    out: Path | None = None
    domain: str = "contoso.com"
    prefix: str = "user"
    password: str = "poolsim"
    channels: int = 4
    thresholds: report.Thresholds = field(default_factory=report.Thresholds)
    progress: bool | None = None  # None: when stdout is a terminal


def contact_entries(
    opts: RunOptions, pop: Population, seed: int
) -> list[tuple[str, str, int, str]]:
    """Contact lists with access levels: some Workgroup and Friends and Family (privacy)."""
    import random

    rng = random.Random(seed)
    entries = []
    for u, contacts in enumerate(pop.contacts):
        owner = f"sip:{opts.prefix}{u}@{opts.domain}"
        for c in contacts:
            x = rng.random()
            level = (
                AccessLevel.WORKGROUP
                if x < 0.10
                else AccessLevel.FRIENDS_AND_FAMILY
                if x < 0.15
                else AccessLevel.UNSPECIFIED
            )
            group = "Team" if level is AccessLevel.WORKGROUP else "Other Contacts"
            entries.append((owner, f"sip:{opts.prefix}{c}@{opts.domain}", int(level), group))
    return entries


class Progress:
    """One status line, redrawn each second on a terminal."""

    def __init__(self, driver: Driver, duration: float, enabled: bool) -> None:
        self.driver = driver
        self.duration = duration
        self.enabled = enabled
        self._task: asyncio.Task[None] | None = None
        self._last = (0.0, 0)

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def line(self) -> str:
        d = self.driver
        t = d.now()
        done = sum(s.completed for s in d.rec.seconds.values())
        errs = sum(s.errors for s in d.rec.seconds.values())
        rate = (done - self._last[1]) / max(t - self._last[0], 1e-9)
        self._last = (t, done)
        recent = d.rec.seconds.get(int(t) - 1)
        p99 = summary(recent.histogram)["p99"] if recent else 0.0
        return (
            f"\r{t:5.0f}/{self.duration:.0f} s  users signed in {len(d.sessions):>6}  "
            f"ops/s {rate:7.0f}  errors {errs:>5}  p99 {p99:7.1f} ms "
        )

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            sys.stdout.write(self.line())
            sys.stdout.flush()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            sys.stdout.write("\n")


async def _prepare(opts: RunOptions, address: str, token: str, pop: Population) -> dict[str, str]:
    """Provision users and contact lists; returns front end id -> metrics address."""
    async with PoolClient(address) as client:
        admin = AdminClient(client.channel(), token)
        await admin.provision_users(opts.prefix, opts.domain, opts.users, opts.password)
        entries = contact_entries(opts, pop, opts.seed)
        for i in range(0, len(entries), CONTACT_CHUNK):
            await admin.provision_contacts(entries[i : i + CONTACT_CHUNK])
        status = await admin.status()
        return {f.id: f.metrics_address for f in status.front_ends}


async def drive(opts: RunOptions, address: str, token: str) -> dict[str, Any]:
    """Provision, run the load, and build the report (the pool is already running)."""
    model: UserModel = level_model(opts.level, opts.model_file).scaled(opts.speedup)
    signed_in = max(2, round(opts.users * model.signed_in_fraction))
    pop = population(model, signed_in, opts.ramp, opts.seed)
    schedule = plan(model, pop, opts.duration, opts.seed)
    metrics = await _prepare(opts, address, token, pop)
    recorder = Recorder(steady_from=signed_in / opts.ramp)
    cfg = DriverConfig(
        address=address,
        user_indices=tuple(range(signed_in)),
        prefix=opts.prefix,
        domain=opts.domain,
        password=opts.password,
        duration=opts.duration,
        speedup=opts.speedup,
        channels=opts.channels,
        seed=opts.seed,
    )
    probe = Probe(metrics, time.perf_counter())
    probe.start()
    try:
        if opts.workers > 1:
            recorder = await run_workers(
                opts.workers, cfg, model, pop, schedule, recorder.steady_from
            )
        else:
            driver = Driver(cfg, model, pop, schedule, recorder)
            show = sys.stdout.isatty() if opts.progress is None else opts.progress
            progress = Progress(driver, opts.duration, show)
            progress.start()
            try:
                await driver.run()
            finally:
                await progress.stop()
    finally:
        await probe.stop()
    config = {
        "edition": opts.edition,
        "users": opts.users,
        "signed_in": signed_in,
        "level": opts.level,
        "duration": opts.duration,
        "ramp": opts.ramp,
        "speedup": opts.speedup,
        "seed": opts.seed,
        "workers": opts.workers,
        "target": address,
        "planned_operations": len(schedule),
        "endpoints": sum(pop.endpoints),
        "model": model.to_dict(),
        "thresholds": asdict(opts.thresholds),
    }
    ramp_end = signed_in / opts.ramp
    return report.build(recorder, probe.series, config, ramp_end, opts.thresholds)


async def run(opts: RunOptions) -> dict[str, Any]:
    if opts.target is not None:
        if opts.admin_token_file is None:
            raise ValueError("--target needs --admin-token-file (the pool's admin token)")
        return await drive(opts, opts.target, opts.admin_token_file.read_text().strip())
    with tempfile.TemporaryDirectory(prefix="poolsim-run-") as tmp:
        pool: PoolProcess = await asyncio.to_thread(
            start_standard,
            Path(tmp),
            "--password-iterations",
            "1000",
            "--max-users-per-registrar",
            str(max(12_000, opts.users)),
            "--max-contacts",
            "1000",
        )
        try:
            print(
                f"started a Standard pool at {pool.address} (metrics {pool.metrics_address})",
                flush=True,
            )
            return await drive(opts, pool.address, pool.admin_token)
        finally:
            code = await asyncio.to_thread(pool.stop)
            if code != 0:
                print(
                    "the pool exited with code",
                    code,
                    "\n" + "\n".join(pool.output[-10:]),
                    file=sys.stderr,
                )


def main(opts: RunOptions, strict: bool = False) -> int:
    result = asyncio.run(run(opts))
    out = opts.out or Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S")
    paths = report.write(result, out)
    print(report.text(result))
    print(f"\nreport: {paths[3]} (and {', '.join(p.name for p in paths[:3])})")
    return 3 if strict and not result["verdict"]["pass"] else 0
