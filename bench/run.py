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
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import memory, report, report_files
from bench.cpus import driver_cpus, pool_started_on, show
from bench.driver import Driver, DriverConfig
from bench.failover import Failover, KillPlan
from bench.folder import RunFolder
from bench.model import UserModel, level_model
from bench.pool_process import PoolProcess, start_standard
from bench.probe import Probe
from bench.provision import prepare
from bench.run_options import RunOptions, check, pool_settings, resolve_workers
from bench.schedule import Planned, Population, Schedule, population
from bench.selfcheck import Health
from bench.series import Series
from bench.server_latency import WindowScrapes
from bench.stats import Phase, Recorder
from bench.terminal import Interrupts, Progress
from bench.workers import run_workers
from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool.config import EngineConfig, Limits

#: the population (endpoints, contact lists) is drawn from this seed, not ``--seed``: it is a
#: property of the provisioned pool, so a second run against the same pool with another
#: ``--seed`` (another schedule) finds the contact lists it provisioned before
POPULATION_SEED = 1
LYNC_SIGN_INS_PER_S = 12.0  # a Lync pool's documented peak (SPEC 5)
#: exit codes of ``poolsim run`` (and ``poolsim plan``)
EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3


def _addresses(address: str, status: apb.PoolStatus) -> tuple[str, ...]:
    """Every front end that is up, ``address`` first; () for a pool of one front end."""
    up = [f.address for f in status.front_ends if f.state == apb.FRONT_END_STATE_UP]
    if len(up) < 2:
        return ()
    return (address, *(a for a in up if a != address))


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


def run_model(opts: RunOptions) -> UserModel:
    """The user model of this run: its level's, scaled by --speedup, with the population
    settings given (--signed-in-fraction, --endpoints-per-user)."""
    model = level_model(opts.level, opts.model_file).scaled(opts.speedup)
    if opts.signed_in_fraction is not None:
        model = dataclasses.replace(model, signed_in_fraction=opts.signed_in_fraction)
    if opts.endpoints_per_user is not None:
        model = dataclasses.replace(model, endpoints_per_user=opts.endpoints_per_user)
    return model


async def drive(
    opts: RunOptions,
    address: str,
    token: str,
    pool: dict[str, Any] | None = None,
    interrupts: Interrupts | None = None,
) -> dict[str, Any]:
    """Provision, run the load, and build the report (the pool is already running;
    ``pool``: the settings this run started it with, see ``pool_settings``)."""
    model: UserModel = run_model(opts)
    signed_in = max(2, round(opts.users * model.signed_in_fraction))
    pop = population(model, signed_in, opts.ramp, POPULATION_SEED)
    schedule = Schedule(model, pop, opts.duration, opts.seed)
    check(opts)
    workers = resolve_workers(opts)
    on_cpus = driver_cpus(opts.pool_cpus) if opts.pool_cpus is not None else None  # --pool-cpus
    status, kept, provisioning = await prepare(opts, address, token, pop, POPULATION_SEED)
    metrics = {f.id: f.metrics_address for f in status.front_ends}
    addresses = _addresses(address, status)
    kill = _kill_plan(opts, status, addresses, token)
    failover = Failover(kill) if kill is not None else None
    folder = RunFolder(opts.out or default_out())
    recorder = Recorder(series=Series(sink=folder.series))
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
        transport=opts.transport,
        seed=opts.seed,
        window_at=opts.window_at,
    )
    config: dict[str, Any] = {
        "edition": opts.edition,
        "users": opts.users,
        "signed_in": signed_in,
        "level": opts.level,
        "preset": opts.preset,
        "duration": opts.duration,
        "ramp": opts.ramp,
        "lync_peak_sign_ins_per_s": LYNC_SIGN_INS_PER_S,
        "speedup": opts.speedup,
        "seed": opts.seed,
        "transport": opts.transport,
        "population_seed": POPULATION_SEED,
        "workers": workers,
        "workers_requested": "auto" if opts.workers == 0 else opts.workers,
        "cores": os.cpu_count(),
        "pool_cpus": show(opts.pool_cpus) if opts.pool_cpus is not None else None,
        "driver_cpus": show(on_cpus) if on_cpus is not None else None,
        "target": address,
        "driven_pool": "started by this run" if pool is not None else "a running pool (--target)",
        "planned_operations_expected": round(schedule.expected_operations()),
        "endpoints": sum(pop.endpoints),
        "model": model.to_dict(),
        "thresholds": asdict(opts.thresholds),
        "min_window": opts.min_window,
        "contact_lists_kept": kept,
        "provisioning": provisioning,
    }
    if pool is not None:
        config["pool"] = pool
        config["throttling"] = asdict(opts.throttling)  # of a pool this run started
    if opts.metrics_port is not None and workers > 1:
        config["driver_metrics_ports"] = (
            [opts.metrics_port + k for k in range(workers)] if opts.metrics_port else "free ports"
        )
    if opts.edition == "enterprise" and pool is not None:
        config["heartbeat_interval"] = opts.heartbeat_interval
        config["peer_links"] = opts.peer_links
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
    scrapes = WindowScrapes(metrics.values())
    driver_ports: list[int] = []
    t0 = time.perf_counter()
    probe = Probe(metrics, t0)
    probe.start()
    sampler = memory.MemorySampler(metrics, t0, sink=folder.memory)
    sampler.start()
    pending: list[asyncio.Task[None]] = []
    here = Here(recorder, interrupts)

    def to_keep() -> dict[str, Any]:
        """What a rebuilt report needs beyond the totals: the driver's health (a driver in
        this process; workers keep theirs until they return) and the pool's scrapes."""
        health = {"driver": here.driver.health.to_wire()} if here.driver is not None else {}
        return {"health": health, "server": scrapes.to_wire()}

    async def so_far() -> dict[str, Any]:
        await scrapes.mark_progress()
        return to_keep()

    folder.start(recorder, probe, so_far=so_far)

    async def on_phase(phase: Phase) -> None:
        if phase is Phase.WINDOW:
            await scrapes.mark_start()
        elif phase is Phase.WIND_DOWN:
            await scrapes.mark_end()

    try:
        if workers > 1:
            stop = asyncio.Event()
            if interrupts is not None:
                interrupts.stop = stop.set
            recorder, health = await run_workers(
                workers,
                cfg,
                model,
                pop,
                schedule,
                metrics_port=opts.metrics_port,
                on_phase=on_phase,
                ray_address=opts.ray_address,
                stop=stop,
                cpus=on_cpus,
            )
            for bucket in recorder.series.buckets():  # the workers' series, merged
                folder.series(bucket)
        else:
            health = await _drive_here(
                opts, cfg, model, pop, schedule, failover, on_phase, pending, driver_ports, here
            )
    finally:
        if interrupts is not None:
            interrupts.stop = None
        await folder.stop()
        await sampler.stop()
        await probe.stop()
        for task in pending:  # the window's end scrape among them
            await asyncio.gather(task, return_exceptions=True)
        folder.checkpoint(recorder, probe, **to_keep())
    driver = here.driver
    if driver_ports:
        config["driver_metrics_port"] = driver_ports[0]
    if driver is not None and driver.end_at < opts.duration:
        config["stopped_at"] = round(driver.end_at, 3)
    fo_summary = failover.summary() if failover is not None else None
    result = report.build(
        recorder,
        probe.series,
        config,
        opts.thresholds,
        pool=probe.pool,
        failover=fo_summary,
        health={name: h.summary() for name, h in health.items()},
        server=scrapes.histograms(),
    )
    mem = memory.section(
        sampler.samples,
        warm_up,
        opts.thresholds.memory_growth_pct_per_hour,
        until_s=driver.end_at if driver is not None else opts.duration,
    )
    memory.add_to(result, mem)
    folder.close(
        recorder,
        probe,
        config,
        failover=fo_summary,
        health={name: h.to_wire() for name, h in health.items()},
        server=scrapes.to_wire(),
    )
    return result


@dataclass
class Here:
    """The driver of a run in this process, once it exists (Ctrl-C stops it)."""

    recorder: Recorder
    interrupts: Interrupts | None
    driver: Driver | None = None


async def _drive_here(
    opts: RunOptions,
    cfg: DriverConfig,
    model: UserModel,
    pop: Population,
    schedule: Iterable[Planned],
    failover: Failover | None,
    on_phase: Any,
    pending: list[asyncio.Task[None]],
    ports: list[int],
    here: Here,
) -> dict[str, Health]:
    """One driver in this process (with its metrics endpoint when asked for)."""
    server = None
    if opts.metrics_port is not None:
        from bench.driver_metrics import MetricsServer

        server = MetricsServer(opts.metrics_port)
        ports.append(server.port)
        print(f"driver metrics: http://{server.host}:{server.port}/metrics", flush=True)

    def phase_changed(phase: Phase, _at: float) -> None:
        pending.append(asyncio.get_running_loop().create_task(on_phase(phase)))

    driver = Driver(
        cfg,
        model,
        pop,
        schedule,
        here.recorder,
        failover,
        metrics=server.metrics if server else None,
        on_phase=phase_changed,
    )
    here.driver = driver
    if here.interrupts is not None:
        here.interrupts.stop = driver.stop
    show = sys.stdout.isatty() if opts.progress is None else opts.progress
    progress = Progress(driver, opts.duration, show)
    progress.start()
    try:
        await driver.run()
    finally:
        await progress.stop()
        if server is not None:
            server.stop()
    return {"driver": driver.health}


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
            heartbeat_interval=opts.heartbeat_interval,
            peer_links=opts.peer_links,
            engine=EngineConfig(
                password_iterations=opts.password_iterations,
                limits=Limits(max_users_per_registrar=max(12_000, opts.users)),
                throttling=opts.throttling,
            ),
        )
        pool_opts.fabric_config()  # settings errors now, before Ray starts
        where = opts.ray_address or "the current Ray cluster"
        if started_ray:
            where = opts.ray_address or "a new local Ray instance"
        print(f"starting an Enterprise pool of {opts.front_ends} front ends on {where}", flush=True)
        with pool_started_on(opts.pool_cpus):  # Ray's processes inherit the pool's processors
            pool = await EnterprisePool.start(pool_opts, opts.ray_address)
        try:
            for fe in pool.status.front_ends:
                print(
                    f"  front end {fe.id}: {fe.address} (metrics {fe.metrics_address})", flush=True
                )
            return await drive(
                opts, pool.addresses[0], pool_opts.admin_token, pool_settings(opts), interrupts
            )
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
        return await drive(opts, opts.target, token, interrupts=interrupts)
    if opts.edition == "enterprise":
        return await run_enterprise(opts, interrupts)
    with tempfile.TemporaryDirectory(prefix="poolsim-run-") as tmp:
        with pool_started_on(opts.pool_cpus):  # the server inherits the pool's processors
            pool: PoolProcess = await asyncio.to_thread(
                start_standard,
                Path(tmp),
                *(
                    arg
                    for key, value in pool_settings(opts)["settings"].items()
                    for arg in (f"--{key.replace('_', '-')}", str(value))
                ),
            )
        try:
            print(
                f"started a Standard pool at {pool.address} (metrics {pool.metrics_address})",
                flush=True,
            )
            return await drive(
                opts, pool.address, pool.admin_token, pool_settings(opts), interrupts
            )
        finally:
            code = await asyncio.to_thread(pool.stop)
            if code != 0:
                print(
                    "the pool exited with code",
                    code,
                    "\n" + "\n".join(pool.output[-10:]),
                    file=sys.stderr,
                )


def exit_code(result: dict[str, Any], exit_zero: bool = False) -> int:
    """0 PASS, 1 FAIL, 3 INCONCLUSIVE (2 is argparse's for bad options); ``exit_zero``:
    always 0 once the report is written."""
    if exit_zero:
        return EXIT_PASS
    return {"PASS": EXIT_PASS, "FAIL": EXIT_FAIL}.get(
        result["verdict"]["result"], EXIT_INCONCLUSIVE
    )


def default_out() -> Path:
    return Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S")


def main(opts: RunOptions, exit_zero: bool = False) -> int:
    """Run, write the report, print it; the exit code of the verdict (``exit_code``)."""
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
    paths = report_files.write(result, out)
    print(report_files.text(result))
    print(f"\nreport: {paths[3]} (and {', '.join(p.name for p in paths[:3])})")
    return exit_code(result, exit_zero)
