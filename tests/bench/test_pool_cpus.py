"""`--pool-cpus`: the option reads processor lists as taskset does and refuses what cannot be
pinned; a pool started inside ``pool_started_on`` runs (every thread of it) on the pool's
processors while this process goes back to the others; a short run says so in its report."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import cpus, report_files
from bench.run import main
from bench.run_options import RunOptions, check

MANY = frozenset(range(4))
two_cores = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="pinning apart needs two processors"
)


@pytest.fixture
def restore_affinity() -> Iterator[None]:
    """This test process runs on every processor again afterwards (a run pins it)."""
    before = os.sched_getaffinity(0)
    yield
    cpus.pin_process(before)


def test_lists_read_as_taskset_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(MANY))
    assert cpus.cpus_option("1") == {1}
    assert cpus.cpus_option("1,3") == {1, 3}
    assert cpus.cpus_option("1-2") == {1, 2}
    assert cpus.cpus_option(" 0 , 2-3") == {0, 2, 3}
    assert cpus.show({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert cpus.show({3}) == "3"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("one", "expected processor numbers"),
        ("1-", "expected processor numbers"),
        ("-1", "expected processor numbers"),
        ("3-1", "a range runs low to high"),
        ("4", "may run on processors 0-3 only"),
        ("0-3", "leave at least one for the load generator"),
    ],
)
def test_what_cannot_be_pinned_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, text: str, says: str
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(MANY))
    with pytest.raises(argparse.ArgumentTypeError, match=says):
        cpus.cpus_option(text)


def test_a_pool_elsewhere_cannot_be_pinned() -> None:
    for opts in (
        RunOptions(pool_cpus=frozenset({1}), target="127.0.0.1:1"),
        RunOptions(pool_cpus=frozenset({1}), edition="enterprise", ray_address="auto"),
    ):
        with pytest.raises(ValueError, match="pins a pool this run starts"):
            check(opts)


def _affinities(pid: int) -> set[str]:
    """Cpus_allowed_list of every thread of ``pid``."""
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                out.add(line.split(":", 1)[1].strip())
    return out


@two_cores
@pytest.mark.usefixtures("restore_affinity")
def test_a_pool_started_inside_runs_on_its_processors_and_the_driver_on_the_rest() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    pool = frozenset(allowed[-1:])
    driver = cpus.show(allowed[:-1])
    # a process that starts a thread of its own later, as a server starts its pollers
    code = "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start()"
    with cpus.pool_started_on(pool):
        child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        while len(list(Path(f"/proc/{child.pid}/task").iterdir())) < 2:
            assert time.monotonic() < deadline, "the child never started its thread"
            time.sleep(0.05)
        assert _affinities(child.pid) == {cpus.show(pool)}
        assert _affinities(os.getpid()) == {driver}
    finally:
        child.kill()
        child.wait()


@two_cores
@pytest.mark.usefixtures("restore_affinity")
def test_a_pinned_run_reports_where_the_pool_and_the_driver_ran(tmp_path: Path) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    out = tmp_path / "report"
    opts = RunOptions(
        users=20, duration=10.0, ramp=50.0, speedup=20.0, out=out, progress=False,
        min_window=2.0, window_at=5.0, pool_cpus=frozenset(allowed[-1:]),
    )  # fmt: skip
    main(opts)
    r = json.loads((out / "report.json").read_text())
    cfg = r["config"]
    assert cfg["pool_cpus"] == str(allowed[-1])
    assert cfg["driver_cpus"] == cpus.show(allowed[:-1])
    assert cfg["workers"] == 1
    assert f"pool pinned to processor(s) {allowed[-1]}, the driver to" in report_files.text(r)


def test_a_plan_records_its_pool_cpus_as_written() -> None:
    from bench import plan

    doc = plan.plan_document(
        argparse.Namespace(pool_cpus=frozenset({1, 2, 3}), out=Path("p")), [], None, None, None
    )
    assert json.loads(json.dumps(doc))["options"] == {"pool_cpus": "1-3", "out": "p"}
