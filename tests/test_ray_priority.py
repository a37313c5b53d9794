"""A local Ray instance started for a pool runs its workers (the front ends) at the priority
of the process that started it, not at Ray's default niceness of 15 below it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import os
import ray
from enterprise.cluster import connect

connect(None, forward_logs=False)

@ray.remote(num_cpus=0)
def niceness() -> int:
    return os.nice(0)

print("driver", os.nice(0), "worker", ray.get(niceness.remote(), timeout=120), flush=True)
ray.shutdown()
"""


def _run(
    script: str, preexec_fn: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh Python, with no RAY_ settings of ours."""
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=preexec_fn,
        check=False,
    )


def test_a_local_instances_workers_run_at_the_starting_processs_priority() -> None:
    done = _run(PROBE, preexec_fn=lambda: os.nice(3))  # not 0: the default would be 15 anyway
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("driver"))
    driver, worker = int(line.split()[1]), int(line.split()[3])
    assert worker == driver >= 3


RETRY = """
import logging
import ray
from enterprise import cluster

logging.basicConfig(level=logging.WARNING)
real, calls = ray.init, []

def init(**kwargs):
    calls.append(kwargs["address"])
    if len(calls) == 1:  # what Ray raises when its raylet does not register in time
        raise Exception("The current node timed out during startup.")
    return real(**kwargs)

ray.init = init
cluster.connect(None, forward_logs=False)
print("attempts", len(calls), "initialized", ray.is_initialized(), flush=True)
ray.shutdown()
"""


def test_a_local_instance_that_times_out_while_starting_is_started_again() -> None:
    done = _run(RETRY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "attempts 2 initialized True" in done.stdout, done.stdout + done.stderr
    assert "a local Ray instance did not start (The current node timed out" in done.stderr
