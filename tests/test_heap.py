"""The collector of a front end process (``pool.heap``): tuned by the server's entry point,
what it loaded frozen out of later scans; a process that did not ask is left as it was.

Each case runs in a process of its own: thresholds and frozen objects are the process's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SERVER = textwrap.dedent(
    """
    import asyncio, gc, sys
    from pathlib import Path
    from pool import heap
    from pool.config import EngineConfig
    from standard.server import ServeOptions, serve

    async def main() -> None:
        before = (gc.get_threshold(), gc.get_freeze_count())
        ready, stop = asyncio.Event(), asyncio.Event()
        opts = ServeOptions(
            port=0, metrics_port=-1, data_dir=Path(sys.argv[1]), users=200,
            config=EngineConfig(password_iterations=1),
        )
        task = asyncio.create_task(serve(opts, ready=ready, stop=stop))
        await asyncio.wait_for(ready.wait(), 60)
        print("=", before[0] != heap.THRESHOLDS, before[1] == 0)
        print("=", gc.get_threshold() == heap.THRESHOLDS, gc.get_freeze_count() > 10_000)
        stop.set()
        await task

    asyncio.run(main())
    """
)

UNTUNED = textwrap.dedent(
    """
    import gc
    from pool import heap
    threshold = gc.get_threshold()
    heap.settle()
    print("=", gc.get_threshold() == threshold, gc.get_freeze_count() == 0)
    heap.tune()
    heap.settle()
    print("=", gc.get_threshold() == heap.THRESHOLDS, gc.get_freeze_count() > 0)
    """
)


def run(script: str, *args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [line[2:] for line in done.stdout.splitlines() if line.startswith("= ")]


def test_a_standard_server_tunes_its_collector_and_freezes_what_it_loaded(tmp_path: Path) -> None:
    assert run(SERVER, str(tmp_path / "data")) == ["True True", "True True"]


def test_settling_does_nothing_in_a_process_that_did_not_tune() -> None:
    assert run(UNTUNED) == ["True True", "True True"]
