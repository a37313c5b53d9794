"""`poolsim run`: drive a pool with the Lync user model and report what planners read.

With no arguments: a Standard pool in its own process, a few thousand users at the High level
with a compressed sign-in ramp, about a minute; the report is printed and written to
``reports/<time>/``. ``--target`` drives a running pool instead (with its admin token).

``--edition enterprise --front-ends N`` starts an Enterprise pool of N front ends instead, in
this process, on Ray (``--ray-address``: an existing cluster; default a new local instance,
stopped at the end). Users and contacts are provisioned through the admin API as for Standard;
the driver gets every front end's address (each client starts its sign-ins at a different one
and follows the redirect home), and the probe reads every front end's processor use: the report
shows each one, and the pool's total and mean per front end.

``--kill-front-end-at SECONDS`` (Enterprise; a single driver): at that time into the run the
driver crashes a front end (``--kill-front-end FE``; default the one with the most signed-in
users then, never fe1 if another will do) through ``PoolAdmin.StopFrontEnd`` and measures the
fail-over (``bench.failover``): the report gets a fail-over section, errors caught in it do not
count against the verdict, and a lost acknowledged write still fails it.

The schedule is generated as the run goes and the run's folder (``--out``) is written as it
goes (``bench.folder``): a run stopped or killed leaves what it measured, and `poolsim report
FOLDER` builds its report. Ctrl-C or SIGTERM ends a run cleanly at any point: the operations
under way finish, the report covers what was measured, the pool is stopped (a second one
cancels at once; the pool is still stopped). Memory of the driver and of every front end is
sampled throughout (``bench.memory``) and judged after the warm-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import memory, report
from bench.driver import Driver, DriverConfig
from bench.failover import Failover, KillPlan
from bench.folder import RunFolder
from bench.model import UserModel, level_model
from bench.pool_process import PoolProcess, start_standard
from bench.probe import Probe
from bench.schedule import Population, Schedule, population
from bench.series import Series
from bench.stats import Recorder, summary
from bench.workers import run_workers
from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool.client import AdminClient, PoolClient
from pool.config import EngineConfig, Limits
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
    front_ends: int = 3  # enterprise: front ends in the pool
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
        done = d.rec.series.completed
        errs = d.rec.series.errors
        rate = (done - self._last[1]) / max(t - self._last[0], 1e-9)
        self._last = (t, done)
        recent = d.rec.series.second(int(t) - 1)
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


async def _prepare(opts: RunOptions, address: str, token: str, pop: Population) -> apb.PoolStatus:
    """Provision users and contact lists; returns the pool's status."""
    async with PoolClient(address) as client:
        admin = AdminClient(client.channel(), token)
        await admin.provision_users(opts.prefix, opts.domain, opts.users, opts.password)
        entries = contact_entries(opts, pop, opts.seed)
        for i in range(0, len(entries), CONTACT_CHUNK):
            await admin.provision_contacts(entries[i : i + CONTACT_CHUNK])
        return await admin.status()


def _addresses(address: str, status: apb.PoolStatus) -> tuple[str, ...]:
    """Every front end that is up, ``address`` first; () for a pool of one front end."""
    up = [f.address for f in status.front_ends if f.state == apb.FRONT_END_STATE_UP]
    if len(up) < 2:
        return ()
    return (address, *(a for a in up if a != address))


def check(opts: RunOptions) -> None:
    """Raise ValueError for options that do not go together (before any pool starts)."""
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


def _kill_plan(
    opts: RunOptions, status: apb.PoolStatus, addresses: tuple[str, ...], token: str
) -> KillPlan | None:
    if opts.kill_at is None:
        return None
    if not addresses:
        raise ValueError(
            "--kill-front-end-at needs an Enterprise pool of two front ends or more "
            "(--edition enterprise, or --target one)"
        )
    ids = [f.id for f in status.front_ends]
    if opts.kill_front_end is not None and opts.kill_front_end not in ids:
        raise ValueError(
            f"--kill-front-end {opts.kill_front_end}: the pool's front ends are {', '.join(ids)}"
        )
    return KillPlan(opts.kill_at, opts.kill_front_end, token, addresses)


class Interrupts:
    """Ctrl-C and SIGTERM during a run: the first stops the driver (``Driver.stop``: the run
    ends as at its planned end, with what was measured); before the load starts, with driver
    workers, or a second time, the run's task is cancelled (its ``finally`` blocks still stop
    the pool)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.driver: Driver | None = None
        self.received = 0
        self._task = asyncio.current_task()

    def install(self) -> None:
        """Take the signals over (only a main thread's event loop can; elsewhere, nothing)."""
        loop = asyncio.get_running_loop()
        try:
            for sig in self.SIGNALS:
                loop.add_signal_handler(sig, self._on_signal, sig)
        except (RuntimeError, ValueError):
            self.remove()

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            with contextlib.suppress(RuntimeError, ValueError):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self.received += 1
        if self.driver is not None and self.received == 1:
            print(f"\n{sig.name}: ending the run (again to cancel at once)", flush=True)
            self.driver.stop()
        elif self._task is not None:
            print(f"\n{sig.name}: cancelling the run", flush=True)
            self._task.cancel()


async def drive(
    opts: RunOptions, address: str, token: str, interrupts: Interrupts | None = None
) -> dict[str, Any]:
    """Provision, run the load, and build the report (the pool is already running)."""
    model: UserModel = level_model(opts.level, opts.model_file).scaled(opts.speedup)
    signed_in = max(2, round(opts.users * model.signed_in_fraction))
    pop = population(model, signed_in, opts.ramp, opts.seed)
    schedule = Schedule(model, pop, opts.duration, opts.seed)
    check(opts)
    status = await _prepare(opts, address, token, pop)
    metrics = {f.id: f.metrics_address for f in status.front_ends}
    addresses = _addresses(address, status)
    kill = _kill_plan(opts, status, addresses, token)
    failover = Failover(kill) if kill is not None else None
    folder = RunFolder(opts.out or default_out())
    recorder = Recorder(steady_from=signed_in / opts.ramp, series=Series(sink=folder.series))
    cfg = DriverConfig(
        address=address,
        addresses=addresses,
        user_indices=tuple(range(signed_in)),
        prefix=opts.prefix,
        domain=opts.domain,
        password=opts.password,
        duration=opts.duration,
        speedup=opts.speedup,
        channels=opts.channels,
        seed=opts.seed,
    )
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
        "planned_operations_expected": round(schedule.expected_operations()),
        "endpoints": sum(pop.endpoints),
        "model": model.to_dict(),
        "thresholds": asdict(opts.thresholds),
    }
    if addresses:
        config["front_ends"] = len(status.front_ends)
        config["addresses"] = list(addresses)
    if kill is not None:
        config["kill_front_end_at"] = kill.at
        config["kill_front_end"] = kill.front_end or "most signed-in users"
    ramp_end = signed_in / opts.ramp
    # memory is judged once the model's populations are steady (short subscriptions last
    # 10 minutes of model time; conferences start in progress, but their members' do not)
    settle = max(model.short_subscription_s, model.conference_minutes * 60) / opts.speedup
    warm_up = memory.warm_up(ramp_end, settle, opts.duration)
    folder.begin(config, ramp_end, warm_up)
    t0 = time.perf_counter()
    probe = Probe(metrics, t0)
    probe.start()
    sampler = memory.MemorySampler(metrics, t0, sink=folder.memory)
    sampler.start()
    folder.start(recorder, probe)
    driver: Driver | None = None
    try:
        if opts.workers > 1:
            recorder = await run_workers(
                opts.workers, cfg, model, pop, schedule, recorder.steady_from
            )
            for bucket in recorder.series.buckets():  # the workers' series, merged
                folder.series(bucket)
        else:
            driver = Driver(cfg, model, pop, schedule, recorder, failover)
            if interrupts is not None:
                interrupts.driver = driver
            show = sys.stdout.isatty() if opts.progress is None else opts.progress
            progress = Progress(driver, opts.duration, show)
            progress.start()
            try:
                await driver.run()
            finally:
                await progress.stop()
    finally:
        if interrupts is not None:
            interrupts.driver = None
        await folder.stop()
        await sampler.stop()
        await probe.stop()
        folder.checkpoint(recorder, probe)
    if driver is not None and driver.end_at < opts.duration:
        config["stopped_at"] = round(driver.end_at, 3)
    fo_summary = failover.summary() if failover is not None else None
    result = report.build(
        recorder,
        probe.series,
        config,
        ramp_end,
        opts.thresholds,
        pool=probe.pool,
        failover=fo_summary,
    )
    mem = memory.section(
        sampler.samples,
        warm_up,
        opts.thresholds.memory_growth_pct_per_hour,
        until_s=driver.end_at if driver is not None else opts.duration,
    )
    memory.add_to(result, mem)
    folder.close(recorder, probe, failover=fo_summary)
    return result


async def run_enterprise(opts: RunOptions, interrupts: Interrupts | None = None) -> dict[str, Any]:
    """Start an Enterprise pool in this process (on Ray), drive it, stop it."""
    import ray

    from enterprise.actors import PoolOptions
    from enterprise.pool import EnterprisePool

    started_ray = not ray.is_initialized()
    with tempfile.TemporaryDirectory(prefix="poolsim-run-") as tmp:
        pool_opts = PoolOptions(
            front_ends=opts.front_ends,
            data_dir=Path(tmp),
            metrics_base_port=0,
            engine=EngineConfig(
                password_iterations=1000,
                limits=Limits(max_contacts=1000, max_users_per_registrar=max(12_000, opts.users)),
            ),
        )
        pool_opts.fabric_config()  # settings errors now, before Ray starts
        where = opts.ray_address or "the current Ray cluster"
        if started_ray:
            where = opts.ray_address or "a new local Ray instance"
        print(f"starting an Enterprise pool of {opts.front_ends} front ends on {where}", flush=True)
        pool = await EnterprisePool.start(pool_opts, opts.ray_address)
        try:
            for fe in pool.status.front_ends:
                print(
                    f"  front end {fe.id}: {fe.address} (metrics {fe.metrics_address})", flush=True
                )
            return await drive(opts, pool.addresses[0], pool_opts.admin_token, interrupts)
        finally:
            try:
                await pool.stop()
            finally:
                if started_ray:
                    ray.shutdown()


async def run(opts: RunOptions) -> dict[str, Any]:
    check(opts)
    interrupts = Interrupts()
    interrupts.install()
    try:
        return await _run(opts, interrupts)
    finally:
        interrupts.remove()


async def _run(opts: RunOptions, interrupts: Interrupts) -> dict[str, Any]:
    if opts.target is not None:
        if opts.admin_token_file is None:
            raise ValueError("--target needs --admin-token-file (the pool's admin token)")
        token = opts.admin_token_file.read_text().strip()
        return await drive(opts, opts.target, token, interrupts)
    if opts.edition == "enterprise":
        return await run_enterprise(opts, interrupts)
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
            return await drive(opts, pool.address, pool.admin_token, interrupts)
        finally:
            code = await asyncio.to_thread(pool.stop)
            if code != 0:
                print(
                    "the pool exited with code",
                    code,
                    "\n" + "\n".join(pool.output[-10:]),
                    file=sys.stderr,
                )


def default_out() -> Path:
    return Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S")


def main(opts: RunOptions, strict: bool = False) -> int:
    out = opts.out or default_out()
    try:
        result = asyncio.run(run(dataclasses.replace(opts, out=out)))
    except asyncio.CancelledError:
        print(
            f"run cancelled; the pool was stopped. What was measured is in {out} "
            f"(poolsim report {out})",
            file=sys.stderr,
        )
        return 130
    paths = report.write(result, out)
    print(report.text(result))
    print(f"\nreport: {paths[3]} (and {', '.join(p.name for p in paths[:3])})")
    return 3 if strict and not result["verdict"]["pass"] else 0
