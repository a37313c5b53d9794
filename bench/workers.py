"""`--workers N`: the load spread over N driver processes, each a Ray actor.

Each worker plays a disjoint slice of the simulated users (conversation partners are chosen
inside the slice, presence polls and subscriptions reach anyone) and returns its measurements
in wire form; the coordinator merges them (HDR histograms merge exactly). Each worker opens
its own measurement window when its own users reach the steady state; the coordinator asks
each for its phase once a second, so it knows when every window is open. On a Ray cluster
the actors spread over its nodes; otherwise a local Ray instance is started for the run.

``--workers auto``: one worker per core left free by the pool (and this coordinator), at
least one (:func:`auto_workers`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from bench.selfcheck import Health
from bench.stats import Phase, Recorder

if TYPE_CHECKING:  # the driver (grpc and all) only where a worker runs: options stay light
    from bench.driver import Driver, DriverConfig
    from bench.model import UserModel
    from bench.schedule import Planned, Population

PHASE_POLL_S = 1.0


def workers_option(text: str) -> int:
    """``--workers N|auto`` (an argparse type): the count, 0 for auto."""
    if text == "auto":
        return 0
    if not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a count >= 1 or auto")
    return int(text)


def auto_workers(cores: int | None, pool_processes: int) -> int:
    """Driver processes for ``cores`` cores when ``pool_processes`` busy processes of the
    pool share the machine: the cores left, at least 1 (a single driver runs in this process
    and needs no Ray)."""
    return max(1, (cores or 1) - pool_processes)


class DriverWorker:
    """The actor's body: one Driver over one slice of users."""

    def __init__(self) -> None:
        self.driver: Driver | None = None
        self.stopped = False  # asked to stop (Ctrl-C at the coordinator), maybe before run

    async def run(
        self,
        cfg: DriverConfig,
        model: UserModel,
        pop: Population,
        schedule: Iterable[Planned],
        metrics_port: int | None = None,
        cpus: frozenset[int] | None = None,
    ) -> dict[str, Any]:
        from bench.driver import Driver

        if cpus is not None:  # --pool-cpus: the driver's processors, not the pool's
            from bench.cpus import pin_process

            pin_process(cpus)

        server = None
        if metrics_port is not None:
            from bench.driver_metrics import MetricsServer

            server = MetricsServer(metrics_port)
        recorder = Recorder()
        self.driver = Driver(
            cfg, model, pop, schedule, recorder, metrics=server.metrics if server else None
        )
        try:
            running = asyncio.ensure_future(self.driver.run())
            await asyncio.sleep(0)  # run() has started its clock: stop() may act on it now
            if self.stopped:
                self.driver.stop()
            await running
        finally:
            if server is not None:
                server.stop()
        return {"recorder": recorder.to_wire(), "health": self.driver.health.to_wire()}

    async def stop(self) -> None:
        """End the load as at its planned end (``Driver.stop``): ``run`` returns what was
        measured. Async, so that it runs on the actor's event loop, beside ``run``."""
        self.stopped = True
        if self.driver is not None and self.driver.t0:
            self.driver.stop()

    def phase(self) -> str:
        return self.driver.phase.value if self.driver is not None else Phase.PROVISIONING.value


def slices(users: int, workers: int) -> list[tuple[int, ...]]:
    """Users dealt round-robin to workers (so every slice signs in throughout the ramp)."""
    return [tuple(range(k, users, workers)) for k in range(workers)]


async def run_workers(
    workers: int,
    cfg: DriverConfig,
    model: UserModel,
    pop: Population,
    schedule: Iterable[Planned],
    *,
    metrics_port: int | None = None,
    on_phase: Callable[[Phase], Awaitable[None]] | None = None,
    ray_address: str | None = None,
    stop: asyncio.Event | None = None,
    cpus: frozenset[int] | None = None,
) -> tuple[Recorder, dict[str, Health]]:
    """Run the workers; their recorders combined, and each one's health by name.

    ``metrics_port``: worker k serves its metrics on that port + k (0: each on a free
    port); ``on_phase`` is awaited when every worker is in the window, then in the wind-down;
    when ``stop`` is set (the first Ctrl-C), every worker ends its load as at its planned end;
    ``cpus``: the processors each worker runs on (``--pool-cpus``: the driver's).
    """
    import ray  # only the multi-process harness needs Ray

    from enterprise.cluster import connect

    connect(ray_address, forward_logs=False)  # the pool's cluster, RAY_ADDRESS's, or a new one
    actor_cls: Any = ray.remote(num_cpus=0)(DriverWorker)
    actors: list[Any] = [
        actor_cls.options(scheduling_strategy="SPREAD").remote() for _ in range(workers)
    ]
    refs = []
    for k, users in enumerate(slices(pop.users, workers)):
        part = dataclasses.replace(cfg, user_indices=users, seed=cfg.seed + k)
        port = None if metrics_port is None else (metrics_port + k if metrics_port else 0)
        refs.append(actors[k].run.remote(part, model, pop, schedule, port, cpus))
    watch = asyncio.create_task(_watch(actors, on_phase)) if on_phase is not None else None
    stopper = asyncio.create_task(_stop_on(stop, actors)) if stop is not None else None
    try:
        wires = await asyncio.gather(*refs)
    finally:
        for task in (watch, stopper):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    for actor in actors:
        ray.kill(actor)
    recorder = Recorder.combine([Recorder.from_wire(w["recorder"]) for w in wires])
    health = {f"driver-{k + 1}": Health.from_wire(w["health"]) for k, w in enumerate(wires)}
    return recorder, health


async def _stop_on(stop: asyncio.Event, actors: list[Any]) -> None:
    await stop.wait()
    await asyncio.gather(*(a.stop.remote() for a in actors))


async def _watch(actors: list[Any], on_phase: Callable[[Phase], Awaitable[None]]) -> None:
    """Tell ``on_phase`` when every worker's window is open, then when the first winds down."""
    told: set[Phase] = set()
    order = list(Phase)
    while True:
        phases = [Phase(p) for p in await asyncio.gather(*(a.phase.remote() for a in actors))]
        if Phase.WINDOW not in told and all(
            order.index(p) >= order.index(Phase.WINDOW) for p in phases
        ):
            told.add(Phase.WINDOW)
            await on_phase(Phase.WINDOW)
        if Phase.WIND_DOWN not in told and any(p is Phase.WIND_DOWN for p in phases):
            told.add(Phase.WIND_DOWN)
            await on_phase(Phase.WIND_DOWN)
            return
        await asyncio.sleep(PHASE_POLL_S)
