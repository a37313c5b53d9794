"""`--workers N`: the load spread over N driver processes, each a Ray actor.

Each worker plays a disjoint slice of the simulated users (conversation partners are chosen
inside the slice, presence polls and subscriptions reach anyone) and returns its measurements
in wire form; the coordinator merges them (HDR histograms merge exactly). On a Ray cluster the
actors spread over its nodes; otherwise a local Ray instance is started for the run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterable
from typing import Any

from bench.driver import Driver, DriverConfig
from bench.model import UserModel
from bench.schedule import Planned, Population
from bench.stats import Recorder


class DriverWorker:
    """The actor's body: one Driver over one slice of users."""

    async def run(
        self,
        cfg: DriverConfig,
        model: UserModel,
        pop: Population,
        schedule: Iterable[Planned],
        steady_from: float,
    ) -> dict[str, Any]:
        recorder = Recorder(steady_from=steady_from)
        await Driver(cfg, model, pop, schedule, recorder).run()
        return recorder.to_wire()


def slices(users: int, workers: int) -> list[tuple[int, ...]]:
    """Users dealt round-robin to workers (so every slice signs in throughout the ramp)."""
    return [tuple(range(k, users, workers)) for k in range(workers)]


async def run_workers(
    workers: int,
    cfg: DriverConfig,
    model: UserModel,
    pop: Population,
    schedule: Iterable[Planned],
    steady_from: float,
) -> Recorder:
    import ray  # only the multi-process harness needs Ray

    if not ray.is_initialized():
        ray.init(
            address=os.environ.get("RAY_ADDRESS") or None,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    actor_cls: Any = ray.remote(num_cpus=0)(DriverWorker)
    actors: list[Any] = [
        actor_cls.options(scheduling_strategy="SPREAD").remote() for _ in range(workers)
    ]
    refs = []
    for k, users in enumerate(slices(pop.users, workers)):
        part = dataclasses.replace(cfg, user_indices=users, seed=cfg.seed + k)
        refs.append(actors[k].run.remote(part, model, pop, schedule, steady_from))
    merged = Recorder(steady_from=steady_from)
    for wire in await asyncio.gather(*refs):
        merged.merge(Recorder.from_wire(wire))
    for actor in actors:
        ray.kill(actor)
    return merged
