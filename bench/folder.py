"""The run's folder, written as the run goes, so a run that is stopped or killed (even with
``kill -9``) leaves what it measured, and `poolsim report FOLDER` builds its report.

    run.json           the configuration, when the figures after the ramp start, thresholds
    series.jsonl       the time series, one bucket a line as it is sealed (``bench.series``)
    memory.jsonl       the driver's and the front ends' memory, a sample a line
    front_ends.jsonl   the probe's samples per front end (processor, memory, endpoints, overload)
    recorder.json      everything else the driver measured (per operation histograms,
                       status codes, counters), replaced every ``CHECKPOINT_S`` (atomically)
    report.*           the report, at the end (``bench.report_files.write``)

A killed run loses at most the last ``CHECKPOINT_S`` of its totals and the last minute or
so of its time series (the seconds still live, ``bench.series``).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from bench import memory, report, report_files
from bench.probe import FIELDS as FE_FIELDS
from bench.probe import FrontEndSeries, Probe
from bench.samples import Samples
from bench.selfcheck import Health
from bench.series import Sealed, Series
from bench.server_latency import WindowScrapes
from bench.stats import Recorder

CHECKPOINT_S = 10.0


class RunFolder:
    """Appends the run's figures to its folder; ``checkpoint`` and ``close`` write the rest."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._task: asyncio.Task[None] | None = None
        self._info: dict[str, Any] = {}

    def begin(self, config: dict[str, Any], steady_from: float, warm_up_s: float) -> None:
        """``run.json``: the configuration as the run starts (``close`` writes it again, with
        what only the end knows: the driver's metrics port, when it was stopped)."""
        self._info = {"config": config, "steady_from": steady_from, "warm_up_s": warm_up_s}
        _replace(self.path / "run.json", json.dumps(self._info, indent=1))

    def _append(self, name: str, *rows: dict[str, Any]) -> None:
        """Rows at the end of ``name``, in the kernel's hands when this returns (a killed
        driver loses nothing written; a few appends every 10 s)."""
        with (self.path / name).open("a") as f:
            f.writelines(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)

    def series(self, bucket: Sealed) -> None:
        """``Series``' sink."""
        self._append("series.jsonl", bucket.to_row())

    def memory(self, sample: memory.Sample) -> None:
        """``MemorySampler``'s sink."""
        self._append("memory.jsonl", sample)

    def checkpoint(
        self, rec: Recorder, probe: Probe | None, *, final: bool = False, **extra: Any
    ) -> None:
        """The recorder's totals (not its series: that has its own file), and the probe's
        samples taken since the last checkpoint."""
        if probe is not None:
            rows: list[dict[str, Any]] = []
            for fe, s in probe.series.items():  # at full resolution (bench.samples)
                rows += [{"fe": fe, "at": s.address, "s": x} for x in s.samples.take_fresh()]
            rows += [{"pool": list(r)} for r in probe.pool.take_fresh()]
            if rows:
                self._append("front_ends.jsonl", *rows)
        wire = {"final": final, "recorder": rec.to_wire(series=False), **extra}
        _replace(self.path / "recorder.json", json.dumps(wire))

    def start(
        self,
        rec: Recorder,
        probe: Probe | None,
        every: float = CHECKPOINT_S,
        so_far: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        """Checkpoint every ``every`` seconds; ``so_far`` gives what else to keep (the
        driver's health and the pool's latency scrapes so far, see ``bench.run``)."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(every)
                extra = await so_far() if so_far is not None else {}
                self.checkpoint(rec, probe, **extra)

        self._task = asyncio.get_running_loop().create_task(loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def close(
        self, rec: Recorder, probe: Probe | None, config: dict[str, Any], **extra: Any
    ) -> None:
        """At the end of the run: the live seconds of the series, the final totals, and
        ``run.json`` again with the final ``config``."""
        rec.series.flush()
        self.checkpoint(rec, probe, final=True, **extra)
        _replace(self.path / "run.json", json.dumps({**self._info, "config": config}, indent=1))


def _replace(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a kill mid-write leaves the previous version)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON lines of ``path``; a last line cut short by a kill is left out."""
    if not path.exists():
        return
    with path.open() as f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                return


def rebuild(path: Path) -> dict[str, Any]:
    """The report of the run in folder ``path``, from what it wrote as it went."""
    run_file = path / "run.json"
    if not run_file.exists():
        raise ValueError(f"{path}: no run.json: not the folder of a poolsim run")
    info = json.loads(run_file.read_text())
    config = info["config"]
    try:
        saved = json.loads((path / "recorder.json").read_text())
    except FileNotFoundError:
        saved = {"final": False, "recorder": Recorder().to_wire(series=False)}
    rec = Recorder.from_wire(saved["recorder"])
    rec.series = Series.from_rows(_lines(path / "series.jsonl"))
    fronts: dict[str, FrontEndSeries] = {}
    pool = Samples()
    for row in _lines(path / "front_ends.jsonl"):
        if "pool" in row:
            pool.append(tuple(row["pool"]))
        else:
            fes = fronts.setdefault(row["fe"], FrontEndSeries(row["at"]))
            raw = tuple(row["s"])  # a folder from before the overload figures has fewer
            fes.samples.append(raw + (0.0,) * (FE_FIELDS - len(raw)))
    known = {f.name for f in fields(report.Thresholds)}
    thresholds = report.Thresholds(
        **{k: v for k, v in config.get("thresholds", {}).items() if k in known}
    )
    health = {name: Health.from_wire(w).summary() for name, w in saved.get("health", {}).items()}
    scrapes = WindowScrapes.from_wire(saved.get("server") or {})
    out = report.build(
        rec,
        fronts,
        config,
        thresholds,
        pool=pool,
        failover=saved.get("failover"),
        health=health,
        server=scrapes.histograms(so_far=True),
    )
    samples = list(_lines(path / "memory.jsonl"))
    memory.add_to(
        out,
        memory.section(
            samples,
            info["warm_up_s"],
            thresholds.memory_growth_pct_per_hour,
            until_s=config.get("stopped_at", config.get("duration", math.inf)),
        ),
    )
    ends = [b.t + b.span for b in rec.series.buckets()]
    ends += [s["t"] for s in samples]
    out["rebuilt"] = {
        "complete": bool(saved.get("final")),
        "measured_until_s": max(ends, default=0.0),
        "missing": missing_parts(saved, config, scrapes),
    }
    return out


def missing_parts(
    saved: dict[str, Any], config: dict[str, Any], scrapes: WindowScrapes
) -> list[str]:
    """The report's parts a rebuild cannot give, each with why."""
    missing = []
    if not saved.get("health"):
        why = (
            f"the run's {config.get('workers')} workers keep their health until they return"
            if int(config.get("workers") or 1) > 1 and not saved.get("final")
            else "no checkpoint held it (a folder written before poolsim checkpointed it, or a "
            "run killed before its first checkpoint)"
        )
        missing.append(f"driver health: {why}")
    if scrapes.start is None:
        missing.append("server latency: the measurement window never opened (nothing scraped)")
    elif scrapes.end is None:
        missing.append(
            "server latency at the window's end: the run ended first; the pool's figures are "
            "up to the last checkpoint's scrape"
            if scrapes.latest is not None
            else "server latency: the run ended before a checkpoint scraped the pool again"
        )
    return missing


def main(path: Path, out: Path | None = None) -> int:
    """`poolsim report FOLDER`: rebuild the report, write its files (into ``out``, default
    the folder itself) and print it."""
    result = rebuild(path)
    paths = report_files.write(result, out or path)
    print(report_files.text(result))
    print(f"\nreport: {paths[3]} (and {', '.join(p.name for p in paths[:3])})")
    return 0
