"""Ctrl-C (SIGINT) and SIGTERM end a `poolsim run` cleanly: the report of what was measured
is written and the pool is stopped."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

DEADLINE_S = 120.0


def wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    end = time.monotonic() + DEADLINE_S
    while not path.exists():
        assert proc.poll() is None, "the run ended before it was signalled"
        assert time.monotonic() < end, f"{path.name} never appeared"
        time.sleep(0.1)


def signalled_run(cmd: list[str], out: Path, sig: signal.Signals, **popen: Any) -> str:
    """Start ``cmd`` (a ``poolsim run`` into ``out``), signal it once the load is on, and
    return what it printed once it ended."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen
    )
    try:
        wait_for(out / "front_ends.jsonl", proc)  # the first checkpoint: the load is on
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    return output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_run_with_its_report_and_the_pool_stopped(
    tmp_path: Path, sig: signal.Signals
) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pool.cli", "run", "--users", "60", "--duration", "600"]
    cmd += ["--ramp", "50", "--speedup", "40", "--quiet", "--exit-zero", "--out", str(out)]
    output = signalled_run(cmd, out, sig)
    assert f"{sig.name}: ending the run" in output
    r = json.loads((out / "report.json").read_text())
    assert 0 < r["config"]["stopped_at"] < 600
    assert r["operations"]["poll"]["calls"] > 0
    assert r["counters"]["ledger_checked"] > 0  # the read-back ran
    assert json.loads((out / "recorder.json").read_text())["final"] is True
    found = re.search(r"Standard pool at 127\.0\.0\.1:(\d+)", output)
    assert found is not None, output
    port = int(found[1])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass  # the pool is gone
