"""The terminal side of a run: the status line redrawn each second (:class:`Progress`) and
Ctrl-C / SIGTERM (:class:`Interrupts`: the first ends the run cleanly, a second cancels)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from bench.stats import Phase, summary

if TYPE_CHECKING:
    from bench.driver import Driver


class Progress:
    """One status line, redrawn each second on a terminal: the phase, who is signed in, the
    load, the errors (counted as the report counts them) and the last second's p99."""

    def __init__(self, driver: Driver, duration: float, enabled: bool) -> None:
        self.driver = driver
        self.duration = duration
        self.enabled = enabled
        self._task: asyncio.Task[None] | None = None
        self._last = (0.0, 0)

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def line(self) -> str:
        d = self.driver
        t = d.now()
        done = d.rec.series.completed
        rate = (done - self._last[1]) / max(t - self._last[0], 1e-9)
        self._last = (t, done)
        recent = d.rec.series.second(int(t) - 1)
        p99 = summary(recent.histogram)["p99"] if recent else 0.0
        phase = d.phase.value
        if d.phase is Phase.WINDOW and d.rec.window_from is not None:
            phase = f"window {t - d.rec.window_from:.0f} s"
        return (
            f"\r{t:5.0f}/{self.duration:.0f} s  {phase:<13} signed in {len(d.sessions):>6}  "
            f"ops/s {rate:7.0f}  errors {d.rec.errors:>5}  p99 {p99:7.1f} ms "
        )

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            sys.stdout.write(self.line())
            sys.stdout.flush()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            sys.stdout.write("\n")


class Interrupts:
    """Ctrl-C and SIGTERM during a run: the first stops the load (``stop``: the driver's
    ``Driver.stop``, or the one that asks every worker to stop; the run ends as at its planned
    end, with what was measured); before the load starts, or a second time, the run's task is
    cancelled (its ``finally`` blocks still stop the pool)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.stop: Callable[[], None] | None = None
        self.received = 0
        self._task = asyncio.current_task()

    def install(self) -> None:
        """Take the signals over (only a main thread's event loop can; elsewhere, nothing)."""
        loop = asyncio.get_running_loop()
        try:
            for sig in self.SIGNALS:
                loop.add_signal_handler(sig, self._on_signal, sig)
        except (RuntimeError, ValueError):
            self.remove()

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            with contextlib.suppress(RuntimeError, ValueError):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self.received += 1
        if self.stop is not None and self.received == 1:
            print(f"\n{sig.name}: ending the run (again to cancel at once)", flush=True)
            self.stop()
        elif self._task is not None:
            print(f"\n{sig.name}: cancelling the run", flush=True)
            self._task.cancel()
