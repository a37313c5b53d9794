"""The run folder written as the run goes: a run killed half-way (no final checkpoint, a
last line cut short) still rebuilds into a report of what it measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

from bench import memory
from bench.folder import RunFolder, rebuild
from bench.report import Thresholds
from bench.series import Series
from bench.stats import Recorder
from pool.cli import main as cli_main


def test_growth_maths() -> None:
    flat = [(t * 10.0, 100 * memory.MIB) for t in range(100)]
    assert memory.growth(flat, 5.0)["pct_per_hour"] == 0.0
    # 1 MiB a minute on a mean of 130 MiB: 60 MiB an hour, 46% of the mean
    rising = [(t * 60.0, (100 + t) * memory.MIB) for t in range(61)]
    g = memory.growth(rising, 5.0)
    assert g["mib_per_hour"] == pytest.approx(60.0)
    assert g["pct_per_hour"] == pytest.approx(100 * 60 / 130)
    assert g["ok"] is False
    assert memory.slope([(1.0, 2.0)]) == 0.0


def test_memory_section_judges_only_after_warm_up_and_long_enough() -> None:
    samples = [
        {"t": t * 10.0, "driver": (50 + (t if t < 30 else 30)) * memory.MIB, "front_ends": {}}
        for t in range(200)
    ]
    for s in samples:
        s["front_ends"] = {"fe-1": 80 * memory.MIB}
    judged = memory.section(samples, warm_up_s=300.0)
    g = judged["growth"]
    assert g["judged"]
    assert g["ok"]
    assert g["driver"]["pct_per_hour"] == pytest.approx(0.0)
    assert g["pool"]["mean_mib"] == pytest.approx(80.0)
    report: dict[str, object] = {"verdict": {"pass": True, "checks": []}}
    memory.add_to(report, judged)
    assert report["verdict"] == {"pass": True, "checks": [memory.check(judged)]}
    short = memory.section(samples[:40], warm_up_s=300.0)
    assert not short["growth"]["judged"]
    assert memory.check(short) is None
    lines = memory.text(judged)
    assert lines[0].startswith("memory (resident")
    assert "not judged" not in lines[-1]


def test_sampler_keeps_a_bounded_number_of_samples() -> None:
    kept: list[memory.Sample] = []
    sampler = memory.MemorySampler({}, 0.0, interval=1.0, sink=kept.append, max_samples=10)
    for t in range(25):
        sampler.add({"t": float(t), "driver": 1, "front_ends": {}})
    assert len(kept) == 25  # the folder gets every sample
    assert len(sampler.samples) <= 10
    assert sampler.interval > 1.0
    assert sampler.samples[0]["t"] == 0.0


def partial_folder(path: Path) -> Recorder:
    """A folder as a driver killed with ``kill -9`` after 300 s leaves it."""
    folder = RunFolder(path)
    rec = Recorder(series=Series(sink=folder.series))
    config = {"edition": "standard", "users": 10, "signed_in": 8, "level": "high"}
    config |= {"duration": 600.0, "speedup": 1.0, "thresholds": {"p99_ms": 100.0}}
    folder.begin(config, steady_from=20.0, warm_up_s=30.0)
    for t in range(300):
        rec.record("poll", t + 0.5, 0.002, "OK")
        if t % 50 == 0:
            rec.record("publish", t + 0.2, 0.004, "UNAVAILABLE")
        if t % 10 == 0:
            folder.memory({"t": float(t), "driver": 60 * memory.MIB, "front_ends": {"fe1": 1}})
    rec.count("logon_attempts", 8)
    folder.checkpoint(rec, None)  # the last checkpoint before the kill
    rec.record("poll", 299.9, 0.002, "OK")  # measured after it: lost with the driver
    with (path / "memory.jsonl").open("a") as f:
        f.write('{"t": 300.0, "dri')  # a line cut short by the kill
    return rec


def test_rebuild_from_a_killed_runs_folder(tmp_path: Path) -> None:
    partial_folder(tmp_path)
    assert not (tmp_path / "report.json").exists()
    r = rebuild(tmp_path)
    assert r["rebuilt"]["complete"] is False
    assert r["operations"]["poll"]["calls"] == 300
    assert r["operations"]["publish"]["codes"] == {"UNAVAILABLE": 6}
    assert r["counters"]["logon_attempts"] == 8
    # the series up to its last sealed bucket: seconds older than a minute behind the last
    series = r["timeseries"]
    assert series
    assert series[0]["t"] == 0
    covered = series[-1]["t"] + series[-1]["span"]
    assert 300 - 60 - 10 <= covered <= 300
    assert sum(row["calls"] for row in series) == covered + sum(1 for t in range(0, covered, 50))
    assert len(r["memory"]["samples"]) == 30
    assert r["config"]["thresholds"] == {"p99_ms": 100.0}
    assert Thresholds(p99_ms=100.0).memory_growth_pct_per_hour == 5.0


def test_poolsim_report_writes_the_rebuilt_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    partial_folder(tmp_path)
    assert cli_main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "did not finish: measured until" in out
    r = json.loads((tmp_path / "report.json").read_text())
    assert r["operations"]["poll"]["calls"] == 300
    assert (tmp_path / "report.html").stat().st_size > 0
    assert cli_main(["report", str(tmp_path / "nothing")]) == 1


def test_a_rebuilt_report_keeps_driver_health_and_the_pools_latency_so_far(
    tmp_path: Path,
) -> None:
    import math

    from bench.selfcheck import Health
    from bench.server_latency import Buckets, WindowScrapes
    from bench.stats import Phase

    folder = RunFolder(tmp_path)
    rec = Recorder(series=Series(sink=folder.series))
    config = {"edition": "standard", "users": 10, "signed_in": 8, "duration": 600.0}
    folder.begin(config | {"thresholds": {"p99_ms": 100.0}}, steady_from=20.0, warm_up_s=30.0)
    rec.enter(Phase.WINDOW, 100.0)
    for t in range(100, 200):
        rec.record("poll", t + 0.5, 0.002, "OK")
    health = Health()
    for ms in (1, 2, 3, 40):
        health.lag.record_value(ms * 1000)
    bounds = [0.001, 0.01, math.inf]
    scrapes = WindowScrapes(["fe1"])
    scrapes.start = {"fe1": {("GetPresence", "OK"): Buckets(bounds, [5.0, 10.0, 10.0], 0.02)}}
    scrapes.latest = {"fe1": {("GetPresence", "OK"): Buckets(bounds, [90.0, 110.0, 110.0], 0.2)}}
    folder.checkpoint(rec, None, health={"driver": health.to_wire()}, server=scrapes.to_wire())

    r = rebuild(tmp_path)
    assert r["driver"]["drivers"]["driver"]["loop_lag_p99_ms"] == pytest.approx(40, rel=0.01)
    (row,) = r["server_latency"]["rows"]
    assert (row["operation"], row["server_calls"]) == ("poll", 100.0)
    assert r["rebuilt"]["missing"] == [
        "server latency at the window's end: the run ended first; the pool's figures are up "
        "to the last checkpoint's scrape"
    ]


def test_a_rebuild_says_which_parts_a_folder_lacks(tmp_path: Path) -> None:
    partial_folder(tmp_path)  # a checkpoint without health or scrapes, no window
    r = rebuild(tmp_path)
    missing = r["rebuilt"]["missing"]
    assert missing[0].startswith("driver health: no checkpoint held it")
    assert missing[1] == "server latency: the measurement window never opened (nothing scraped)"
    from bench.report_files import text

    assert "not in this report: driver health" in text(r)


def test_the_whole_pool_is_its_processes_proportional_set_not_the_driver_workers() -> None:
    me = psutil.Process()
    assert memory.pool_pss(me) is None or me.children()  # nothing started: no figure
    sleep = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]
    pool = subprocess.Popen(sleep, stdout=subprocess.PIPE, text=True)
    worker = subprocess.Popen([*sleep, memory.DRIVER_WORKER], stdout=subprocess.PIPE, text=True)
    try:
        for p in (pool, worker):
            assert p.stdout is not None
            assert p.stdout.readline() == "up\n"  # started: its memory is what it will be
        only_pool = psutil.Process(pool.pid).memory_full_info().pss
        assert memory.pool_pss(me) == pytest.approx(only_pool, rel=0.2)
    finally:
        for p in (pool, worker):
            p.kill()
            p.communicate()
    samples = [
        {"t": 0.0, "driver": 1, "front_ends": {}, "machine": 300 * memory.MIB},
        {"t": 10.0, "driver": 1, "front_ends": {}, "machine": 200 * memory.MIB},
    ]
    mem = memory.section(samples, warm_up_s=0.0)
    assert mem["growth"]["machine"] == {"max_mib": 300.0, "last_mib": 200.0}
    assert "max 300 MiB, last 200 MiB" in memory.text(mem)[-1]
    assert sorted(["fe10", "fe2", "fe1"], key=memory.natural) == ["fe1", "fe2", "fe10"]
