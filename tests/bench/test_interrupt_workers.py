"""With driver workers (``--workers 2``, a local Ray instance the run starts), the first
Ctrl-C ends the run cleanly as without workers: the load ends, the writes are read back, the
report is written and the pool stopped."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from tests.bench.test_interrupt import signalled_run


def test_the_first_signal_ends_a_run_with_workers_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pool.cli", "run", "--users", "60", "--duration", "600"]
    cmd += ["--ramp", "50", "--speedup", "40", "--quiet", "--exit-zero", "--out", str(out)]
    cmd += ["--workers", "2"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a Ray of its own
    output = signalled_run(cmd, out, signal.SIGINT, env=env)
    assert "SIGINT: ending the run" in output
    assert "cancelling" not in output
    r = json.loads((out / "report.json").read_text())
    assert r["config"]["workers"] == 2
    assert r["operations"]["poll"]["calls"] > 0
    assert r["counters"]["ledger_checked"] > 0  # the read-back ran
    assert set(r["driver"]["drivers"]) == {"driver-1", "driver-2"}
