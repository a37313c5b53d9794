"""The pool a driver started ends with the driver, even after ``kill -9`` (pool.lifeline)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

DEADLINE_S = 60.0

DRIVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from bench.pool_process import start_standard

    pool = start_standard(Path(sys.argv[1]))
    print(pool.proc.pid, flush=True)
    time.sleep(600)  # killed long before
    """
)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # orphaned, not yet reaped
    except psutil.NoSuchProcess:
        return True


def test_the_pool_dies_with_a_driver_killed_by_sigkill(tmp_path: Path) -> None:
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        text=True,
    )
    pool_pid = 0
    try:
        assert driver.stdout is not None
        pool_pid = int(driver.stdout.readline())
        assert not gone(pool_pid)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(DEADLINE_S)
        end = time.monotonic() + DEADLINE_S
        while not gone(pool_pid):
            assert time.monotonic() < end, f"the pool (pid {pool_pid}) outlived its driver"
            time.sleep(0.1)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        if driver.stdout is not None:
            driver.stdout.close()
        if pool_pid and not gone(pool_pid):
            os.kill(pool_pid, signal.SIGKILL)  # the pool this test started, by its pid
